"""Start `ftops emulator` as users do (a separate process) and talk to it with the openai SDK."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai

KEY = "test-key-0123456789"
HOST_ENV = {"FTOPS_EMULATOR_KEY": KEY}  # what a provider host needs to reach the emulator


@dataclass
class Emulator:
    url: str
    data_dir: Path
    model_cache: Path
    args: list[str]
    proc: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)

    def dated(self, account: str | None = None, **kwargs: Any) -> openai.AzureOpenAI:
        endpoint = self.url if account is None else f"{self.url}/accounts/{account}"
        return openai.AzureOpenAI(azure_endpoint=endpoint, api_key=KEY, api_version="2024-10-21", **kwargs)

    def v1(self, account: str | None = None, **kwargs: Any) -> openai.OpenAI:
        root = self.url if account is None else f"{self.url}/accounts/{account}"
        return openai.OpenAI(base_url=f"{root}/openai/v1", api_key=KEY, **kwargs)

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"api-key": KEY}, timeout=60)

    def arm(
        self, account: str = "local", sub: str = "00000000-0000-0000-0000-000000000000", rg: str = "rg-local"
    ) -> str:
        return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.CognitiveServices/accounts/{account}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 90) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start(data_dir: Path, model_cache: Path, *extra: str, port: int = 0) -> Emulator:
    args = [
        sys.executable,
        "-m",
        "ftops",
        "emulator",
        "--port",
        str(port),
        "--api-key",
        KEY,
        "--data-dir",
        str(data_dir),
        "--model-cache",
        str(model_cache),
        "--stand-in",
        "tiny-test",
        "--provisioning-seconds",
        "0.5",
        *extra,
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, stdin=subprocess.DEVNULL
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    match = re.search(r"listening on (http://\S+)", first)
    if not match:
        rest = proc.stdout.read() if proc.poll() is not None else ""
        proc.kill()
        raise RuntimeError(f"emulator did not start: {first}{rest}")
    url = match.group(1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    return Emulator(url, data_dir, model_cache, args, proc, [first])


def restart(old: Emulator) -> Emulator:
    """The same data directory and port, as after a machine restart."""
    old.stop()
    port = int(old.url.rsplit(":", 1)[1])
    return start(old.data_dir, old.model_cache, port=port)


def wait_for(client: Any, job_id: str, states: tuple[str, ...], timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    job = client.fine_tuning.jobs.retrieve(job_id)
    while job.status not in states:
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job.status} after {timeout}s")
        time.sleep(0.3)
        job = client.fine_tuning.jobs.retrieve(job_id)
    return job


def wait_file(client: Any, file_id: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    f = client.files.retrieve(file_id)
    while f.status not in ("processed", "error"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"file {file_id} still {f.status}")
        time.sleep(0.1)
        f = client.files.retrieve(file_id)
    return f


def target(emu: Emulator, account: str) -> dict[str, str]:
    """A provider target for one of the emulator's accounts; the key comes from the environment."""
    return {
        "endpoint": f"{emu.url}/accounts/{account}",
        "auth": "env:FTOPS_EMULATOR_KEY",
        "arm_id": emu.arm(account),
        "arm_endpoint": emu.url,
    }


def deployment_props(
    emu: Emulator, account: str, name: str, model: str, capacity: int = 20
) -> dict[str, Any]:
    """ModelDeployment provider inputs for a GlobalStandard deployment in an emulated account."""
    return {
        "target": target(emu, account),
        "deployment_name": name,
        "model": {"name": model, "version": "1"},
        "sku": {"name": "GlobalStandard", "capacity": capacity},
        "rai_policy": "Microsoft.DefaultV2",
        "version_upgrade_option": "NoAutoUpgrade",
    }
