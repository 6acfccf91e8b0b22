"""What the benchmarks in bench/ share: where they keep things, the emulator they measure against and
how a run appends its dated section to bench/RESULTS.md.

The benchmarks run as scripts (`python bench/bench_x.py`), so Python puts bench/ first on sys.path:
that is how they import this module (and gen_sft, naive_providers) by name.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"  # generated data, model caches, throwaway emulator state (git ignores it)
KEY = "bench-key"  # the API key of every emulator a benchmark starts

# bench_providers and bench_engine drive the providers through the host the tests use
# (tests/provider_host.py); a script in bench/ has only bench/ on sys.path, not the repository root.
sys.path.insert(0, str(REPO))


@contextlib.contextmanager
def emulator(
    data_dir: Path, cache: Path, stand_in: str = "tiny-test", stop_timeout: float = 60
) -> Iterator[str]:
    """`ftops emulator` as users start it (a separate process, on a free port), its URL once it answers;
    terminated on the way out."""
    command = [
        sys.executable,
        "-m",
        "ftops",
        "emulator",
        "--port",
        "0",
        "--api-key",
        KEY,
        "--data-dir",
        str(data_dir),
        "--model-cache",
        str(cache),
        "--stand-in",
        stand_in,
        # 0.2 s instead of the default 2 s for a deployment to provision: the benchmarks measure
        # ftops, not the emulator's simulated waiting.
        "--provisioning-seconds",
        "0.2",
    ]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL
    )
    try:
        if proc.stdout is None:
            raise RuntimeError("no stdout")
        # Port 0: the emulator picks a free port and prints the URL as its first line.
        match = re.search(r"listening on (http://\S+)", proc.stdout.readline())
        if match is None:
            raise RuntimeError("the emulator did not start")
        url = match.group(1)
        for _ in range(100):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(stop_timeout)


def target(url: str, account: str, resource_group: str = "rg") -> dict[str, str]:
    """An emulated account as provider inputs take it (`target`); the key comes from
    FTOPS_EMULATOR_KEY, which each benchmark sets to KEY."""
    return {
        "endpoint": f"{url}/accounts/{account}",
        "auth": "env:FTOPS_EMULATOR_KEY",
        "arm_id": f"/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/{resource_group}/"
        f"providers/Microsoft.CognitiveServices/accounts/{account}",
        "arm_endpoint": url,
    }


def arg_parser(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's command line: its docstring as the help, and where its section goes."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    return parser


def machine() -> str:
    """The cores and the Python of a run, as the sections' "Machine:" lines start."""
    return f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}"


def append_section(results: Path, title: str, body: str) -> str:
    """Append `## title (date)` and `body` (ending in a newline) to the results file; returns what was
    appended. Sections are only ever appended, so earlier figures stay next to the newer ones."""
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = f"\n## {title} ({when})\n\n{body}"
    with results.open("a", encoding="utf-8") as fh:
        fh.write(text)
    return text
