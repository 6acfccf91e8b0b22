"""Azurite, the Azure Storage emulator from npm, for tests that need a real blob endpoint (the audit
append blob, the evidence container, the engine's azblob:// state backend)."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port

ACCOUNT = "devstoreaccount1"
# Azurite's documented development account key (public, well-known; not a secret).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@dataclass(frozen=True)
class Azurite:
    port: int

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.port}/{ACCOUNT};"
        )

    def backend_url(self, container: str) -> str:
        """The Pulumi CLI's azblob:// backend on this Azurite (gocloud's local-emulator form)."""
        return f"azblob://{container}?domain=127.0.0.1:{self.port}&protocol=http&localemu=true"


@contextmanager
def running(location: Path) -> Iterator[Azurite]:
    """Azurite from npm, installed once into .ftops/azurite, serving blobs on a free port."""
    prefix = REPO / ".ftops" / "azurite"
    binary = prefix / "node_modules" / ".bin" / "azurite-blob"
    prefix.mkdir(parents=True, exist_ok=True)
    with (prefix / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test workers: one installs, the others wait for it
        if not binary.exists():
            if shutil.which("npm") is None:
                pytest.fail("the blob tests need Azurite: install Node.js and npm")
            subprocess.run(
                [
                    "npm",
                    "install",
                    "--prefix",
                    str(prefix),
                    "--no-audit",
                    "--no-fund",
                    "--silent",
                    "azurite@3",
                ],
                check=True,
                timeout=600,
            )
    port = free_port()
    process = subprocess.Popen(
        [
            str(binary),
            "--silent",
            "--skipApiVersionCheck",
            "--location",
            str(location),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
        ],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.2)
    else:
        os.killpg(process.pid, signal.SIGTERM)
        pytest.fail("Azurite did not start within 60 s")
    try:
        yield Azurite(port)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
