"""Every command that reaches a service, against every way the service can fail: one line on
stderr, the right exit code, no minute-long retries, and nothing half-written.

The service is a stand-in HTTP server on this machine answering every request the same way
(401, 403, a 5xx storm, a malformed body), or nothing listening at all; the Azure-side commands
run with no Azure credential in reach. The commands run as a user runs them: `python -m ftops`
in a scratch copy of the repository.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port

# No retry storm, no RBAC wait: a failure must come back in seconds, not after minutes of waiting
# (the bound is loose on purpose: it tells a few retries from the 85 s ones, not speed).
BOUND_S = 30.0
KEY = "matrix-key"

FAULTS = {
    # name: (status, body, extra headers)
    "expired-key": (401, b'{"error": {"code": "401", "message": "Access denied due to invalid key."}}', {}),
    "forbidden": (403, b'{"error": {"code": "Forbidden", "message": "Public access is disabled."}}', {}),
    "5xx-storm": (
        503,
        b'{"error": {"code": "ServiceUnavailable", "message": "busy"}}',
        {"retry-after-ms": "1"},
    ),
    "malformed": (200, b"<html>a captive portal</html>", {}),
}


class Stand(http.server.BaseHTTPRequestHandler):
    fault: tuple[int, bytes, dict[str, str]] = FAULTS["malformed"]
    hits = 0

    def _answer(self) -> None:
        type(self).hits += 1
        status, body, headers = self.fault
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def do_PUT(self) -> None:
        self._answer()

    def do_DELETE(self) -> None:
        self._answer()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def stand() -> Iterator[tuple[str, type[Stand]]]:
    handler = type("Handler", (Stand,), {"hits": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def point_local_at(repo: Path, endpoint: str) -> None:
    stack = repo / "environments" / "Pulumi.local.yaml"
    stack.write_text(stack.read_text().replace("http://127.0.0.1:8790", endpoint))


def snapshot(repo: Path) -> dict[str, str]:
    """Every file under the scratch repository with its digest: what a failure must leave as it was."""
    return {
        str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(repo.rglob("*"))
        if p.is_file()
    }


def ftops(repo: Path, *args: str, key: str | None = KEY) -> tuple[int, str, str, float]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AZURE_", "ACTIONS_ID_TOKEN", "IDENTITY_", "MSI_", "FTOPS_"))
    }
    env.update({"HOME": str(repo.parent / "home"), "FTOPS_RBAC_WAIT": "0", "NO_COLOR": "1", "COLUMNS": "400"})
    if key is not None:
        env["FTOPS_EMULATOR_KEY"] = key
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "ftops", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr, time.monotonic() - started


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


EVALUATE = ("evaluate", "--env", "local", "--model", "support-bot")


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_evaluate_against_a_failing_service(
    repo_copy: Path, stand: tuple[str, type[Stand]], fault: str
) -> None:
    endpoint, handler = stand
    handler.fault = FAULTS[fault]
    point_local_at(repo_copy, endpoint)
    before = snapshot(repo_copy)
    code, _, stderr, seconds = ftops(repo_copy, *EVALUATE)
    line = one_error_line(stderr)
    assert code == 2, stderr
    assert "reading deployment support-bot" in line, line
    expected = {
        "expired-key": "HTTP 401",
        "forbidden": "HTTP 403",
        "5xx-storm": "HTTP 503",
        "malformed": "is not a deployment (<html>a captive portal</html>)",
    }[fault]
    assert expected in line, line
    assert handler.hits >= 1
    if fault == "5xx-storm":
        assert handler.hits > 1  # a 5xx is worth retrying, with the wait the service asked for
    assert seconds < BOUND_S, seconds
    assert snapshot(repo_copy) == before  # no evidence, no progress file, nothing


def test_evaluate_with_nothing_listening(repo_copy: Path) -> None:
    point_local_at(repo_copy, f"http://127.0.0.1:{free_port()}")
    before = snapshot(repo_copy)
    code, _, stderr, seconds = ftops(repo_copy, *EVALUATE)
    line = one_error_line(stderr)
    assert code == 2
    assert "cannot reach http://127.0.0.1:" in line, line
    assert "start the emulator" in line, line
    assert seconds < BOUND_S, seconds
    assert snapshot(repo_copy) == before


def test_evaluate_without_the_key(repo_copy: Path, stand: tuple[str, type[Stand]]) -> None:
    endpoint, handler = stand
    point_local_at(repo_copy, endpoint)
    code, _, stderr, _ = ftops(repo_copy, *EVALUATE, key=None)
    line = one_error_line(stderr)
    assert code == 2
    assert "FTOPS_EMULATOR_KEY holding the API key is not set" in line, line
    assert handler.hits == 0  # nothing was sent without it


@pytest.mark.parametrize("fault", [*sorted(FAULTS), "down"])
def test_status_reports_a_failing_service_in_its_row(
    repo_copy: Path, stand: tuple[str, type[Stand]], fault: str
) -> None:
    endpoint, handler = stand
    if fault == "down":
        endpoint = f"http://127.0.0.1:{free_port()}"
    else:
        handler.fault = FAULTS[fault]
    point_local_at(repo_copy, endpoint)
    before = snapshot(repo_copy)
    code, stdout, stderr, seconds = ftops(repo_copy, "status", "--env", "local")
    assert code == 1, (stdout, stderr)  # git, the log and the service do not agree: a check failed
    assert "Traceback" not in stdout + stderr
    flat = " ".join(stdout.split())
    assert ("unreachable" if fault == "down" else "error") in flat, stdout
    assert seconds < BOUND_S, seconds
    assert snapshot(repo_copy) == before


AZURE_COMMANDS = {
    "audit": ("audit", "--env", "prod", "--verify"),
    "status": ("status", "--env", "prod"),
    "promote": ("promote", "support-bot", "--from", "staging", "--to", "prod"),
}


@pytest.mark.parametrize("command", sorted(AZURE_COMMANDS))
def test_azure_commands_without_a_credential(repo_copy: Path, command: str) -> None:
    before = snapshot(repo_copy)
    code, _, stderr, seconds = ftops(repo_copy, *AZURE_COMMANDS[command])
    line = one_error_line(stderr)
    assert code == 2, stderr
    assert "no Azure credential (tried EnvironmentCredential" in line, line
    assert "az login" in line, line
    assert seconds < BOUND_S, seconds  # it was 85 s of the storage SDK retrying a missing login
    assert snapshot(repo_copy) == before  # no pin written, no audit record
