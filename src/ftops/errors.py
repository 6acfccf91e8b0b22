"""One small exception hierarchy; the CLI turns each into one line and an exit code."""

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
