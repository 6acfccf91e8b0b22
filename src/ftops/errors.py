"""ftops' one exception tree; the CLI's single handler turns each into one line and its exit code
(`--debug` shows the traceback instead). Library exceptions are mapped into it where they are
caught, at the edge (`ftops.azure`, the engine, git), never passed through raw.

    FtopsError                 exit 2: the command could not run as asked
    ├── UsageError             wrong arguments, a missing file, key or credential
    │   ├── CredentialError    no usable Azure credential (never retried: it will not appear)
    │   └── UnreachableError   a service cannot be reached (the emulator is down, no network path)
    ├── ServiceError           a service answered with an error ftops cannot act on (HTTP status)
    ├── ConfigError            an environment declaration is invalid (every problem, a line each)
    ├── PinsUnreadableError    a release file cannot be read: a provider will not delete a model
    ├── GitError               a git command failed
    ├── RefusedError           a promotion or rollback refused, with why and what to do
    ├── EngineError            the Pulumi engine is missing, cannot start, or holds a live lock
    ├── GateError              a gate could not decide (a changed eval set, an unreachable judge)
    ├── StackInterruptedError  exit 130: Ctrl+C during a stack operation
    └── CheckFailedError       exit 1: a check ran and found a problem
        ├── DataError          training data is invalid
        ├── StackFailedError   a stack operation ran and resources failed (one line each)
        └── ResourceError      a provider could not bring a resource to its declared state
            ├── JobError           a fine-tuning job failed, was cancelled or outlived the wait
            ├── DeploymentError    a deployment could not be written or read
            └── GateFailedError    the candidate did not clear a gate's threshold

Outside the tree on purpose: `catalog.UnknownModelError` is a ValueError so that pydantic turns
it into a validation error; the eval runner's `StoppedError` is control flow between its
workers; the emulator's `ApiError` is the emulated service's HTTP answer, not ours.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INVALID = 1  # the input was read and found wrong (bad data, failed gate)
EXIT_USAGE = 2  # the command could not run as asked (missing file, bad option, bad config)


class FtopsError(Exception):
    """An error the user can fix; `fix` says how."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def one_line(self) -> str:
        return f"{self.message}; {self.fix}" if self.fix else self.message


class UsageError(FtopsError):
    """Wrong arguments, missing files."""


class CredentialError(UsageError):
    """No Azure credential could be had; the message names the chain tried and what to set up.
    Not an azure-core error on purpose: the SDKs' retry policies retry those, and a missing login
    does not appear by waiting."""


class UnreachableError(UsageError):
    """Nothing answers at an endpoint (connection refused, no route, name not found)."""


class ServiceError(FtopsError):
    """A service answered with an error ftops cannot act on; the message has the status and why."""


class ConfigError(FtopsError):
    """An environment declaration is invalid; `problems` holds every finding, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems[0] if problems else "invalid configuration")
        self.problems = problems

    def one_line(self) -> str:
        return self.problems[0]


class DataError(FtopsError):
    """Training data is invalid."""

    exit_code = EXIT_INVALID


class CheckFailedError(FtopsError):
    """A check ran and found a problem (a failed job, a failed gate)."""

    exit_code = EXIT_INVALID


class PinsUnreadableError(FtopsError):
    """A release file could not be read or validated: a provider about to delete a model stops."""


class GitError(FtopsError):
    """A git command failed; the message is git's own first line."""


class RefusedError(FtopsError):
    """Promotion or rollback refused; the message says why and what to do."""


class GateError(FtopsError):
    """The gate could not decide (an eval set changed, a deployment failed); never a pass."""


class EngineError(FtopsError):
    """The Pulumi engine is missing, could not start, or holds a lock it cannot prove stale."""


class StackFailedError(FtopsError):
    """A stack operation ran and resources failed; `failures` holds one line per failed resource."""

    exit_code = EXIT_INVALID

    def __init__(self, message: str, failures: list[str], fix: str | None = None) -> None:
        super().__init__(message, fix)
        self.failures = failures


class StackInterruptedError(FtopsError):
    """Ctrl+C during a stack operation: the engine was asked to stop."""

    exit_code = 130


class ResourceError(CheckFailedError):
    """Raised inside a dynamic provider: Pulumi shows the message as the resource's failure."""


class JobError(ResourceError):
    """A job that ended badly or outlived the wait; the message says what to do."""


class DeploymentError(ResourceError):
    """A deployment could not be written or read back as declared."""


class GateFailedError(ResourceError):
    """The candidate did not clear a threshold; the message names metric, threshold and value."""
