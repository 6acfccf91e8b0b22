from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ftops.dataset.findings_report import FileReport
from ftops.dataset.validate import ValidateOptions, validate_file
from tests.emulator_process import Emulator, start

if TYPE_CHECKING:
    from tests.provider_host import DynamicHost

# Torch's OpenMP threads spin while they wait for work. The suite runs the test process, emulators,
# their training workers and Pulumi side by side on two cores, and spinning threads then take the CPU
# from the ones with work to do: on a busy 2-core machine, ten tiny-test training steps took 21-31 s
# with 2 spinning threads against 1.8 s with passive ones. Passive waiting changes no result, only
# who gets the CPU. Set before anything loads torch; the emulators and CLIs the tests start inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parent.parent
SYSTEM = "You are Contoso Outdoor's support assistant."


def good_example(i: int) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"What is the status of order CO-{10000 + i}?"},
            {
                "role": "assistant",
                "content": f"Order CO-{10000 + i} shipped and arrives in {1 + i % 5} days.",
            },
        ]
    }


def good_dpo(i: int) -> dict[str, Any]:
    return {
        "input": {
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Tent {i}?"}]
        },
        "preferred_output": [{"role": "assistant", "content": f"Tent {i} sleeps two and weighs 1.8 kg."}],
        "non_preferred_output": [{"role": "assistant", "content": f"Tent {i} is a tent."}],
    }


def good_rft(i: int) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": f"Classify ticket {i}: my boots leak."}],
        "label": "warranty",
    }


def line_of(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


def write_lines(path: Path, lines: Iterable[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    """One JSON object per line, as the training files and eval sets are written."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def validate(path: Path, **options: Any) -> FileReport:
    return validate_file(path, ValidateOptions(**options))


def findings(report: FileReport) -> list[tuple[str, int, str]]:
    return [(r.code, f.line, f.message) for r in [*report.errors, *report.warnings] for f in r.first]


def free_port() -> int:
    """A TCP port nothing listens on right now (for a server to take, or to find nothing at)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def host() -> Iterator[DynamicHost]:
    """Pulumi's dynamic-provider host (tests/provider_host.py), with the emulator's key set."""
    from tests.emulator_process import HOST_ENV
    from tests.provider_host import DynamicHost  # imported here: the gRPC stubs only for the tests using it

    h = DynamicHost(HOST_ENV)
    yield h
    h.close()


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """A scratch copy of the repository's environments and data."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "Pulumi.yaml").write_text((REPO / "Pulumi.yaml").read_text())
    shutil.copytree(REPO / "environments", root / "environments")
    shutil.copytree(REPO / "data", root / "data")
    return root


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One Azurite for the whole run (each test takes containers of its own)."""
    from tests.azurite import running

    with running(tmp_path_factory.mktemp("azurite")) as server:
        yield server


@pytest.fixture
def azurite(azurite_server: Any) -> str:
    """Azurite's connection string (the development account)."""
    return str(azurite_server.connection_string)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in models, materialized once for every emulator of the session."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def emu(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[Emulator]:
    """One tiny-test emulator for the session. Tests keep apart by account (each test module uses
    account names of its own); the faults, the one setting every account shares, are cleared after
    every test that used it (`_emulator_faults_cleared`)."""
    server = start(tmp_path_factory.mktemp("emulator"), model_cache)
    yield server
    assert server.stop() == 0


@pytest.fixture(autouse=True)
def _emulator_faults_cleared(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that used the session's emulator, its injected faults are off again (also when
    the test failed before its own clean-up)."""
    if "emu" not in request.fixturenames:
        yield
        return
    server = request.getfixturevalue("emu")
    yield
    if server.proc.poll() is None:
        with server.http() as http:
            assert http.put("/admin/faults", json={}).status_code == 200
