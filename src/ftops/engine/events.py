"""The engine's events as lines people read: one per resource step that changes something, the
providers' own progress (job events, loss, gate results), and one line per failed resource with the
provider's message rather than the SDK's traceback around it."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pulumi.automation import events as ev

QUIET_OPS = {ev.OpType.SAME, ev.OpType.READ, ev.OpType.REFRESH}
DONE = {
    ev.OpType.CREATE: "created",
    ev.OpType.UPDATE: "updated",
    ev.OpType.DELETE: "deleted",
    ev.OpType.REPLACE: "replaced",
    ev.OpType.CREATE_REPLACEMENT: "created replacement",
    ev.OpType.DELETE_REPLACED: "deleted old",
    ev.OpType.IMPORT: "imported",
    ev.OpType.DISCARD: "forgotten",
}
# The engine's own follow-up errors after a resource failed: they repeat it or say nothing more.
ENGINE_NOISE = re.compile(
    r"^(?:(?:update|preview|refresh|destroy) failed|Resource monitor has terminated, shutting down"
    r"|one or more errors occurred.*)$",
    re.IGNORECASE,
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m|<\{%[^%]*%\}>")  # terminal colours and Pulumi's colour tags


def resource_name(urn: str) -> str:
    """`urn:pulumi:local::ftops::a$b$ftops:jobs:FineTuningJob::support-bot-job` -> `support-bot-job`."""
    return urn.rsplit("::", 1)[-1] if urn else "the stack"


def resource_type(urn: str) -> str:
    kind = urn.rsplit("::", 2)[-2] if urn.count("::") >= 2 else ""
    return kind.rsplit("$", 1)[-1].rsplit(":", 1)[-1]


def label(urn: str) -> str:
    """How a line names a resource: its name, and its type where the type says something (every
    dynamic resource has the type `pulumi-python:dynamic:Resource`, whose names say what they are)."""
    kind = resource_type(urn)
    return resource_name(urn) if kind in ("Resource", "") else f"{resource_name(urn)} ({kind})"


def _shown(meta: ev.StepEventMetadata) -> bool:
    """Steps worth a line: real resources (not components, providers or the stack) that change."""
    # Components have no provider; providers and the stack have `pulumi:` types.
    return meta.op not in QUIET_OPS and bool(meta.provider) and not meta.type.startswith("pulumi:")


def provider_message(message: str) -> str:
    """The one line a provider raised: the dynamic-provider host sends `traceback.format_exc()`,
    whose last line is `ExceptionType: message`; the program sends `RunError` text as is."""
    text = _ANSI.sub("", message).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "failed (no message)"
    if any(line.startswith("Traceback (most recent call last)") for line in lines):
        last = lines[-1]
        # `module.SomeError: message` -> `message`; a last line that names no exception stays whole.
        last = re.sub(r"^(?:[A-Za-z_][\w.]*\.)?(?:[A-Z]\w*)?(?:Error|Exception|Exit): ", "", last)
        return last
    if lines[0].startswith("Exception: "):
        lines[0] = lines[0][len("Exception: ") :]
    return " ".join(lines)


@dataclass
class Failure:
    urn: str
    message: str

    def line(self) -> str:
        if not self.urn or resource_type(self.urn) == "Stack":
            return self.message
        return f"{label(self.urn)}: {self.message}"


@dataclass
class Renderer:
    """Turns engine events into lines; collects failures and the summary for the caller."""

    say: Callable[[str], None]
    verb: str = "up"
    started: dict[str, float] = field(default_factory=dict)
    failures: dict[str, Failure] = field(default_factory=dict)
    changes: dict[str, int] = field(default_factory=dict)
    planned: dict[str, str] = field(default_factory=dict)  # resource name -> its step (create, same, ...)
    seconds: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, event: ev.EngineEvent) -> None:
        with self._lock:
            self._handle(event)

    def _handle(self, event: ev.EngineEvent) -> None:
        if event.resource_pre_event is not None:
            meta = event.resource_pre_event.metadata
            if _shown(meta):
                self.started[meta.urn] = time.monotonic()
                if self.verb != "preview":
                    self.say(f"  {meta.op.value} {label(meta.urn)} ...")
        elif event.res_outputs_event is not None:
            meta = event.res_outputs_event.metadata
            self.planned[resource_name(meta.urn)] = meta.op.value
            if _shown(meta):
                took = time.monotonic() - self.started.pop(meta.urn, time.monotonic())
                if self.verb == "preview":
                    self.say(f"  would {meta.op.value} {label(meta.urn)}")
                else:
                    self.say(f"  {DONE.get(meta.op, meta.op.value)} {label(meta.urn)} ({_took(took)})")
        elif event.diagnostic_event is not None:
            self._diagnostic(event.diagnostic_event)
        elif event.summary_event is not None:
            self.changes = {
                (op.value if isinstance(op, ev.OpType) else str(op)): n
                for op, n in event.summary_event.resource_changes.items()
            }
            self.seconds = float(event.summary_event.duration_seconds)

    def _diagnostic(self, diag: ev.DiagnosticEvent) -> None:
        urn = diag.urn or ""
        if diag.severity == "error":
            message = provider_message(diag.message)
            # The engine adds its own summary error ("update failed", "one or more errors") after the
            # resource's; keep the resource's message and drop those.
            if ENGINE_NOISE.match(message):
                return
            if urn in self.failures:
                return
            self.failures[urn] = Failure(urn, message)
            return
        if diag.ephemeral:
            return
        text = _ANSI.sub("", diag.message).strip()
        severity = diag.severity
        # A dynamic provider has no engine connection for `pulumi.log`: it prints `warning: ...` to
        # its stderr, which the engine forwards as `info#err`. The prefix is the real severity.
        prefixed = re.match(r"^(info|warning)(?:#err)?: ", text)
        if prefixed:
            text = text[prefixed.end() :]
            if severity in ("info", "info#err"):
                severity = prefixed.group(1)
        if not text:
            return
        who = resource_name(urn) if urn and resource_type(urn) != "Stack" else ""
        if severity == "warning":
            self.say(f"  warning: {who + ': ' if who else ''}{text}")
        elif severity in ("info", "info#err"):
            for line in text.splitlines():
                self.say(f"    {who + ': ' if who else ''}{line}")

    def failure_lines(self) -> list[str]:
        """One line per failed resource, the resource's own failures before the stack's."""
        resource = [f for urn, f in self.failures.items() if urn and resource_type(urn) != "Stack"]
        stack = [f for urn, f in self.failures.items() if not urn or resource_type(urn) == "Stack"]
        return [f.line() for f in [*resource, *stack]]


def _took(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
