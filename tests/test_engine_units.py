"""The engine's pieces without the engine: where the CLI comes from, locks, and how events become
lines. Fast; the real engine runs in test_engine.py."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pulumi.automation import events as ev

from ftops.engine import install, locks
from ftops.engine.events import Renderer, provider_message
from tests.conftest import REPO

JOB = "urn:pulumi:local::ftops::ftops:model:FineTunedModel$pulumi-python:dynamic:Resource::support-bot-job"
GATE = "urn:pulumi:local::ftops::ftops:model:FineTunedModel$pulumi-python:dynamic:Resource::support-bot-gate"
MODEL = "urn:pulumi:local::ftops::ftops:model:FineTunedModel::support-bot"
STACK = "urn:pulumi:local::ftops::pulumi:pulumi:Stack::ftops-local"
TRACEBACK = """Traceback (most recent call last):
  File "/x/pulumi/dynamic/__main__.py", line 150, in Create
    result = provider.create(props)
  File "/x/ftops/providers/gate.py", line 300, in create
    raise GateFailedError(message)
ftops.providers.gate.GateFailedError: gate support-bot failed for model m: answers 0.000 < 1"""


def test_the_workflows_pin_the_cli_version_engine_go_mod_builds() -> None:
    version = install.pinned_version(REPO)
    assert re.fullmatch(r"v3\.\d+\.\d+", version)
    pinned = {
        path.name: re.findall(r'PULUMI_VERSION: "([^"]+)"', path.read_text())
        for path in (REPO / ".github" / "workflows").glob("*.yml")
    }
    assert {name: found for name, found in pinned.items() if found and found != [version[1:]]} == {}
    assert any(pinned.values())


def test_the_go_module_pins_the_sdk_at_the_same_version_and_every_hash() -> None:
    gomod = (REPO / "engine" / "go.mod").read_text()
    version = install.pinned_version(REPO)
    assert f"github.com/pulumi/pulumi/sdk/v3 {version}" in gomod
    assert "github.com/atotto/clipboard => github.com/tgummerer/clipboard" in gomod
    gosum = (REPO / "engine" / "go.sum").read_text()
    assert f"github.com/pulumi/pulumi/pkg/v3 {version} h1:" in gosum


def _bare_path(tmp_path: Path, **tools: str) -> dict[str, str]:
    """An environment whose PATH holds python and the given fake tools only (no pulumi, no go)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(sys.executable, bin_dir / "python3")
    for name, script in tools.items():
        tool = bin_dir / name
        tool.write_text("#!/bin/sh\n" + script)
        tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    env.update(PATH=str(bin_dir), HOME=str(tmp_path / "home"), FTOPS_ENGINE_CACHE=str(tmp_path / "cache"))
    return env


def _ftops(env: dict[str, str], *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ftops", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_without_a_cli_and_without_go_one_line_names_both_ways(tmp_path: Path) -> None:
    started = time.monotonic()
    run = _ftops(_bare_path(tmp_path), "engine", "install")
    assert time.monotonic() - started < 30
    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr.strip().splitlines() == [
        f"error: no Pulumi CLI found (PATH, ~/.pulumi/bin, {tmp_path / 'cache' / 'pulumi-v3.276.0'}) and no Go "
        "to build one; install the CLI with Pulumi's installer (https://www.pulumi.com/docs/install/), "
        "or install Go 1.26+ (https://go.dev/dl/) and run `ftops engine install`"
    ]


def test_a_failed_build_is_one_line_and_leaves_nothing_that_looks_installed(tmp_path: Path) -> None:
    env = _bare_path(tmp_path, go='echo "go: module lookup disabled by GOPROXY=off" >&2\nexit 1\n')
    run = _ftops(env, "engine", "install")
    assert run.returncode == 2
    assert "error: building pulumi v3.276.0 failed: go: module lookup disabled by GOPROXY=off;" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "cache" / "pulumi-v3.276.0").exists()
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []


def test_an_installed_cli_is_used_as_it_is(tmp_path: Path) -> None:
    env = _bare_path(tmp_path, pulumi="echo v3.999.0\n", **{install.PLUGIN: "exit 0\n"})
    run = _ftops(env, "engine", "install")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"engine: using the installed Pulumi CLI {tmp_path / 'bin' / 'pulumi'}"


def test_a_cli_that_does_not_run_is_one_line(tmp_path: Path, repo_copy: Path) -> None:
    env = _bare_path(
        tmp_path, pulumi="echo 'segmentation fault' >&2\nexit 139\n", **{install.PLUGIN: "exit 0\n"}
    )
    run = _ftops(env, "preview", "--env", "local", cwd=repo_copy)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(
        f"error: the Pulumi CLI at {tmp_path / 'bin' / 'pulumi'} does not run: `pulumi version` exited 139 "
        "(segmentation fault); install the CLI"
    ), lines[0]


# ---------------------------------------------------------------- locks


def _lock(folder: Path, **fields: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{len(list(folder.iterdir()))}.json"
    path.write_text(json.dumps(fields))
    return path


def test_a_lock_is_stale_only_when_its_process_is_gone_from_this_host(tmp_path: Path) -> None:
    folder = tmp_path / ".pulumi" / "locks" / "organization" / "ftops" / "local"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    _lock(folder, pid=dead.pid, username="ci", hostname=host, timestamp="2026-12-02T08:00:00Z")
    _lock(folder, pid=os.getpid(), username="me", hostname=host, timestamp="2026-12-02T08:00:00.123+00:00")
    _lock(folder, pid=dead.pid, username="ci", hostname="another-runner", timestamp="2026-12-02T08:00:00Z")
    (folder / "3.json").write_text("{not json")
    found = locks.stack_locks(tmp_path.as_uri(), "ftops", "local")
    assert found is not None
    assert [(lock.username, lock.alive()) for lock in found] == [
        ("ci", False),
        ("me", True),
        ("ci", True),  # another machine: nothing here proves it gone
        ("?", True),  # unreadable: treated as held
    ]
    assert found[0].owner() == f"ci@{host} pid {dead.pid}"
    assert locks.stack_locks("s3://state-bucket", "ftops", "local") is None  # not one ftops reads
    assert locks.stack_locks(tmp_path.as_uri(), "ftops", "other") == []


def test_the_locks_of_an_azure_blob_backend_are_read_and_cleared_in_its_container(
    azurite_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same rules on the azblob:// backend CI keeps its state in (Azurite here, through the
    URL form the Pulumi CLI itself uses)."""
    from azure.storage.blob import BlobServiceClient

    from tests.azurite import ACCOUNT, ACCOUNT_KEY

    service = BlobServiceClient.from_connection_string(azurite_server.connection_string)
    container = service.create_container("state-locks")
    prefix = ".pulumi/locks/organization/ftops/local/"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    mine = {"pid": dead.pid, "username": "ci", "hostname": host, "timestamp": "2026-12-02T08:00:00Z"}
    container.upload_blob(prefix + "a.json", json.dumps(mine))
    container.upload_blob(prefix + "b.json", json.dumps({**mine, "hostname": "another-runner"}))
    container.upload_blob(prefix + "c.json", b"{not json")
    container.upload_blob(".pulumi/locks/organization/ftops/other/d.json", json.dumps(mine))
    url = azurite_server.backend_url("state-locks")
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT", raising=False)
    assert locks.stack_locks(url, "ftops", "local") is None  # no account named: not readable here
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT", ACCOUNT)
    monkeypatch.setenv("AZURE_STORAGE_KEY", ACCOUNT_KEY)
    store = locks.store_of(url)
    assert store is not None
    found = store.locks("ftops", "local")
    assert [(lock.where, lock.alive()) for lock in found] == [
        (prefix + "a.json", False),
        (prefix + "b.json", True),  # another machine: nothing here proves it gone
        (prefix + "c.json", True),  # unreadable: treated as held
    ]
    store.remove(found[0])
    store.remove(found[0])  # already gone: not an error
    assert [lock.where for lock in store.locks("ftops", "local")] == [prefix + "b.json", prefix + "c.json"]


# ---------------------------------------------------------------- events


DYNAMIC = "urn:pulumi:local::ftops::pulumi:providers:pulumi-python::default"


def _meta(op: ev.OpType, urn: str, provider: str) -> ev.StepEventMetadata:
    return ev.StepEventMetadata(op=op, urn=urn, type=urn.split("::")[2].rsplit("$", 1)[-1], provider=provider)


def _pre(op: ev.OpType, urn: str, provider: str = DYNAMIC) -> ev.EngineEvent:
    pre = ev.ResourcePreEvent(metadata=_meta(op, urn, provider))
    return ev.EngineEvent(sequence=0, timestamp=0, resource_pre_event=pre)


def _out(op: ev.OpType, urn: str, provider: str = DYNAMIC) -> ev.EngineEvent:
    done = ev.ResOutputsEvent(metadata=_meta(op, urn, provider))
    return ev.EngineEvent(sequence=0, timestamp=0, res_outputs_event=done)


def _diag(message: str, severity: str, urn: str | None = None) -> ev.EngineEvent:
    diag = ev.DiagnosticEvent(message=message, color="never", severity=severity, urn=urn)
    return ev.EngineEvent(sequence=0, timestamp=0, diagnostic_event=diag)


def test_events_become_lines_for_resources_that_change_and_the_providers_own_progress() -> None:
    lines: list[str] = []
    render = Renderer(lines.append)
    render(_pre(ev.OpType.CREATE, MODEL, provider=""))  # a component: no line
    render(_pre(ev.OpType.SAME, JOB))  # unchanged: no line
    render(_pre(ev.OpType.CREATE, JOB))
    render(_diag("info: support-bot: Step 3/10: training loss=6.7\n", "info#err", JOB))
    render(_diag("warning: deployment support-bot no longer exists\n", "info#err", JOB))
    render(_diag("", "info", JOB))  # nothing to say: no line
    render(_out(ev.OpType.CREATE, JOB))
    render(_out(ev.OpType.CREATE, MODEL, provider=""))
    assert lines[0] == "  create support-bot-job ..."
    assert lines[1] == "    support-bot-job: support-bot: Step 3/10: training loss=6.7"
    assert lines[2] == "  warning: support-bot-job: deployment support-bot no longer exists"
    assert re.fullmatch(r"  created support-bot-job \(\d+\.\d s\)", lines[3])
    assert len(lines) == 4


def test_a_failed_resource_is_one_line_with_the_provider_s_message_not_the_traceback() -> None:
    render = Renderer(lambda _line: None)
    render(_diag(TRACEBACK, "error", GATE))
    render(_diag("update failed", "error", STACK))
    render(_diag("Resource monitor has terminated, shutting down", "error"))
    render(_diag("another message for the same resource", "error", GATE))
    assert render.failure_lines() == [
        "support-bot-gate: gate support-bot failed for model m: answers 0.000 < 1"
    ]
    assert (
        provider_message("Traceback (most recent call last):\n  File x\nQuota: exceeded") == "Quota: exceeded"
    )
    assert provider_message("Traceback (most recent call last):\nException: plain") == "plain"


def test_a_program_error_keeps_its_own_text() -> None:
    render = Renderer(lambda _line: None)
    render(
        _diag(
            "Exception: invalid environment:\n  environments/Pulumi.local.yaml: x: bad (line 3)",
            "error",
            STACK,
        )
    )
    assert render.failure_lines() == ["invalid environment: environments/Pulumi.local.yaml: x: bad (line 3)"]
    assert provider_message("") == "failed (no message)"


def test_the_summary_event_gives_the_changes() -> None:
    render = Renderer(lambda _line: None)
    summary = ev.SummaryEvent(
        maybe_corrupt=False,
        duration_seconds=3,
        resource_changes={ev.OpType.SAME: 9, ev.OpType.CREATE: 1},
        policy_packs={},
    )
    render(ev.EngineEvent(sequence=0, timestamp=0, summary_event=summary))
    assert render.changes == {"same": 9, "create": 1}
    assert render.seconds == 3
