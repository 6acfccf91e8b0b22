"""Start `ftops emulator` for a benchmark, as users do (a separate process on a free port)."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx


def start_emulator(
    data_dir: Path, cache: Path, key: str, stand_in: str = "tiny-test", provisioning_seconds: float = 0.2
) -> tuple[subprocess.Popen[str], str]:
    command = [
        sys.executable,
        "-m",
        "ftops",
        "emulator",
        "--port",
        "0",
        "--api-key",
        key,
        "--data-dir",
        str(data_dir),
        "--model-cache",
        str(cache),
        "--stand-in",
        stand_in,
        "--provisioning-seconds",
        str(provisioning_seconds),
    ]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL
    )
    if proc.stdout is None:
        raise RuntimeError("no stdout")
    match = re.search(r"listening on (http://\S+)", proc.stdout.readline())
    if match is None:
        proc.kill()
        raise RuntimeError("the emulator did not start")
    url = match.group(1)
    for _ in range(100):
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health").status_code == 200:
                break
        time.sleep(0.1)
    return proc, url
