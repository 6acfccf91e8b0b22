"""What the Pulumi engine adds to a no-op reconcile of the local stack, next to the providers alone.

    python bench/bench_engine.py [--runs 5]

A throwaway repository (this one's Pulumi.yaml, infra/ and engine/go.mod, and one local
environment: a model trained for one epoch on the tiny stand-in, a gate of one regex item, a
deployment) is brought up once against a fresh emulator with `ftops up`. Then, interleaved
A B A B ..., `--runs` times each:
(A) `ftops up --env local-bench --json` as users run it (a separate process, the real Pulumi
    engine: refresh, program, check and diff of every resource), expected to change nothing;
(B) the same dynamic resources, as the engine's state file lists them, reconciled without the
    engine: each resource's own provider (the one serialized in its state) reads it back and
    diffs it through the SDK's provider host (`python -m pulumi.dynamic`), as bench_providers.py
    drives them.
For both: wall time and the requests the emulator counted. Figures are appended to bench/RESULTS.md.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import dill
import httpx2 as httpx

from _common import KEY, OUT, REPO, append_section, arg_parser, emulator
from ftops.engine import install
from ftops.engine.stack import state_dir
from ftops.providers.base import PROVIDER_KEY

# isort: split
# Only after _common, which puts the repository root on sys.path (isort would sort `tests` first).
from tests.provider_host import DynamicHost

ENV = "local-bench"
ACCOUNT = "bench-engine"
DYNAMIC = "pulumi-python:dynamic:Resource"
ARM = re.compile(r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.CognitiveServices")
# The salt of the passphrase secrets provider for the empty passphrase (as environments/Pulumi.local.yaml
# carries it): the engine then never rewrites the stack file on first use.
SALT = "encryptionsalt: v1:/bITiIOmxa8=:v1:pF7uKiBCpxtornyj:CxIU0b2NkTKc7T+9JtPxeuAX4ifdMQ==\n"
STACK = """\
config:
  ftops:environment:
    name: {env}
    stage: development
    target: local
    location: swedencentral
    naming:
      prefix: ftops
    emulator:
      endpoint: {endpoint}
      account: {account}
    models:
      support-bot:
        base_model: gpt-4.1-mini-2025-04-14
        method:
          type: supervised
          hyperparameters:
            n_epochs: 1
        training_file: data/train.jsonl
        suffix: bot
        seed: 7
    deployments:
      support-bot:
        model: support-bot
        sku: {{name: GlobalStandard, capacity: 10}}
    gates:
      support-bot:
        repeats: 1
        temperature: 0
        fail_on_uncertainty: false
        safety: null
        quality:
          - {{name: answers, eval_set: data/evals.jsonl, grader: regex, threshold: 1.0}}
"""
EVALS = (
    '{"messages": [{"role": "user", "content": "How long is the return window?"}], '
    '"pattern": ".", "max_tokens": 4}\n'
)


@dataclass
class Sample:
    seconds: float
    requests: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.requests.values())


def make_repo(root: Path, endpoint: str) -> None:
    (root / "environments").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "engine").mkdir()
    shutil.copy(REPO / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copytree(REPO / "infra", root / "infra", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "engine" / "go.mod", root / "engine" / "go.mod")
    shutil.copy(REPO / "data" / "support-bot" / "train.jsonl", root / "data" / "train.jsonl")
    (root / "data" / "evals.jsonl").write_text(EVALS)
    stack = STACK.format(env=ENV, endpoint=endpoint, account=ACCOUNT)
    (root / "environments" / f"Pulumi.{ENV}.yaml").write_text(SALT + stack)


class Emulator:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, headers={"api-key": KEY}, timeout=60)

    def reset(self) -> None:
        self.http.delete("/admin/requests").raise_for_status()

    def requests(self) -> dict[str, int]:
        response = self.http.get("/admin/requests")
        response.raise_for_status()
        return {k: int(v) for k, v in response.json()["requests"].items()}


def ftops_env(home: Path) -> dict[str, str]:
    """As a user runs ftops on the local stack: no PULUMI_* settings but a home of its own, so ftops
    picks the file backend in the repository and the empty passphrase."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    env.pop("FTOPS_ROOT", None)
    env.update(FTOPS_EMULATOR_KEY=KEY, PULUMI_HOME=str(home))
    return env


def ftops_up(root: Path, home: Path) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "ftops", "up", "--env", ENV, "--json"],
        cwd=root,
        env=ftops_env(home),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=1800,
        check=False,
    )
    seconds = time.perf_counter() - started
    if run.returncode != 0:
        raise RuntimeError(f"ftops up exited {run.returncode}:\n{run.stdout}\n{run.stderr}")
    return seconds, dict(json.loads(run.stdout))


@dataclass
class Managed:
    """One dynamic resource as the engine's state holds it, with the provider object it runs."""

    name: str
    id: str
    provider: Any
    inputs: dict[str, Any]
    outputs: dict[str, Any]


def pulumi_env(root: Path, home: Path) -> dict[str, str]:
    """What `ftops up` gives the CLI on a local stack: the file backend, the empty passphrase."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    env.update(
        PULUMI_HOME=str(home),
        PULUMI_BACKEND_URL=state_dir(root).as_uri(),
        PULUMI_CONFIG_PASSPHRASE="",
        PULUMI_SKIP_UPDATE_CHECK="true",
    )
    return env


def managed(root: Path, home: Path, engine: install.Engine) -> list[Managed]:
    """The dynamic resources of the engine's state file, each with its own provider. `__provider` is
    a secret there (encrypted for the stack's empty passphrase); the engine's CLI decrypts it from the
    same checkpoint (`pulumi stack export --show-secrets`), and it is unpickled as the host does."""
    path = state_dir(root) / ".pulumi" / "stacks" / "ftops" / f"{ENV}.json"
    state = json.loads(path.read_text())["checkpoint"]["latest"]["resources"]
    exported = subprocess.run(
        [str(engine.cli), "stack", "export", "--show-secrets", "--stack", ENV],
        cwd=root,
        env=pulumi_env(root, home),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=True,
    )
    serialized = {
        r["urn"]: json.loads(r["outputs"][PROVIDER_KEY]["plaintext"])
        for r in json.loads(exported.stdout)["deployment"]["resources"]
        if r["type"] == DYNAMIC
    }

    def props(values: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in values.items() if k != PROVIDER_KEY}

    return [
        Managed(
            name=r["urn"].rsplit("::", 1)[-1],
            id=r["id"],
            provider=dill.loads(base64.b64decode(serialized[r["urn"]])),
            inputs=props(r["inputs"]),
            outputs=props(r["outputs"]),
        )
        for r in state
        if r["type"] == DYNAMIC
    ]


def engine_run(root: Path, home: Path, emu: Emulator) -> Sample:
    """(A) `ftops up` through the real engine; it must change nothing."""
    emu.reset()
    seconds, result = ftops_up(root, home)
    requests = emu.requests()
    if set(result["changes"]) != {"same"}:
        raise RuntimeError(f"a no-op `ftops up` changed something: {result['changes']}")
    return Sample(seconds, requests)


def providers_run(resources: list[Managed], emu: Emulator) -> tuple[Sample, float]:
    """(B) each resource's read, then diff of its inputs against what was read, through a fresh
    provider host (`python -m pulumi.dynamic`, as the engine's plugin starts it). Returns the sample
    (host start included) and the seconds of the calls alone."""
    emu.reset()
    started = time.perf_counter()
    host = DynamicHost(env={"FTOPS_EMULATOR_KEY": KEY})
    try:
        ready = time.perf_counter()
        for r in resources:
            _, refreshed = host.read(r.provider, r.id, r.outputs)
            if not refreshed:
                raise RuntimeError(f"{r.name}: read found nothing")
            diff = host.diff(r.provider, r.id, refreshed, r.inputs)
            if diff.changes == diff.DIFF_SOME:
                raise RuntimeError(f"{r.name}: a no-op diff found changes ({list(diff.diffs)})")
        done = time.perf_counter()
    finally:
        host.close()
    return Sample(done - started, emu.requests()), done - ready


def cli_version(engine: install.Engine) -> str:
    run = subprocess.run([str(engine.cli), "version"], capture_output=True, text=True, check=False)
    return run.stdout.strip() or "unknown"


def per_run(samples: list[Sample]) -> str:
    """Each request and how many times a run made it (the same in every run, else min-max)."""
    keys = sorted({k for s in samples for k in s.requests})
    parts = []
    for key in keys:
        seen = [s.requests.get(key, 0) for s in samples]
        times = str(seen[0]) if min(seen) == max(seen) else f"{min(seen)}-{max(seen)}"
        parts.append(f"`{ARM.sub('[ARM]', key)}` x{times}")
    return ", ".join(parts) or "none"


def cli_start(root: Path, home: Path) -> float:
    """Seconds for `python -m ftops --help`: the part of (A) that is ftops' own start, not the engine."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "ftops", "--help"],
        cwd=root,
        env=ftops_env(home),
        capture_output=True,
        stdin=subprocess.DEVNULL,
        check=True,
    )
    return time.perf_counter() - started


def row(label: str, what: str, samples: list[Sample]) -> str:
    seconds = [s.seconds for s in samples]
    totals = [s.total for s in samples]
    spread = f"{min(totals)}-{max(totals)}" if min(totals) != max(totals) else f"{totals[0]}"
    return (
        f"| {label} | {what} | {statistics.median(seconds):.2f} | {min(seconds):.2f} | {max(seconds):.2f} "
        f"| {statistics.median(totals):g} | {spread} |"
    )


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--runs", type=int, default=5, help="runs of (A) and of (B), interleaved")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway repository")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    engine = install.find(REPO)
    if engine is None:
        print("bench_engine: no Pulumi CLI found; run `.venv/bin/ftops engine install` first")
        sys.exit(2)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="ftops-bench-engine-"))
    root, home = tmp / "repo", tmp / "pulumi-home"
    home.mkdir()
    engine_samples: list[Sample] = []
    provider_samples: list[Sample] = []
    calls_only: list[float] = []
    starts: list[float] = []
    resources: list[Managed] = []
    # Unwound in reverse: the HTTP client closes, then the emulator stops, then the throwaway
    # repository goes (or stays, with --keep).
    with contextlib.ExitStack() as cleanup:
        if args.keep:
            cleanup.callback(print, f"kept {tmp}")
        else:
            cleanup.callback(shutil.rmtree, tmp, ignore_errors=True)
        url = cleanup.enter_context(emulator(tmp / "emulator", OUT / "models"))
        emu = Emulator(url)
        cleanup.callback(emu.http.close)
        make_repo(root, url)
        print(f"first `ftops up --env {ENV}` (uploads, trains, gates, deploys) ...", flush=True)
        emu.reset()
        first_s, first = ftops_up(root, home)
        first_requests = sum(emu.requests().values())
        created = sum(first["changes"].values())
        print(f"  {first_s:.1f} s, {first_requests} requests, changes {first['changes']}", flush=True)
        for i in range(1, args.runs + 1):
            a = engine_run(root, home, emu)
            engine_samples.append(a)
            resources = managed(root, home, engine)  # as the engine's last update left them
            b, calls = providers_run(resources, emu)
            provider_samples.append(b)
            calls_only.append(calls)
            print(
                f"run {i}/{args.runs}: (A) engine {a.seconds:.2f} s, {a.total} requests; "
                f"(B) providers {b.seconds:.2f} s ({calls:.2f} s of calls), {b.total} requests",
                flush=True,
            )
        starts = [cli_start(root, home) for _ in range(args.runs)]

    a_s = statistics.median(s.seconds for s in engine_samples)
    b_s = statistics.median(s.seconds for s in provider_samples)
    a_n = statistics.median(s.total for s in engine_samples)
    b_n = statistics.median(s.total for s in provider_samples)
    names = ", ".join(r.name for r in resources)
    same = "the same as (A)"
    same_requests = all(
        a.requests == b.requests for a, b in zip(engine_samples, provider_samples, strict=True)
    )
    command = " ".join(["python", "bench/bench_engine.py", *sys.argv[1:]])
    body = "\n".join(
        [
            f"Machine: {cores} cores (`nproc`), CPython {platform.python_version()}, pulumi CLI "
            f"{cli_version(engine)} ({engine.source}), pulumi SDK {version('pulumi')}; load average "
            f"{load:.2f} at start. `{command}`",
            f"Stack: one local environment on a fresh emulator (tiny stand-in): a model trained for one "
            f"epoch, a gate of one regex item, a deployment; {len(resources)} dynamic resources "
            f"({names}). Interleaved A B A B, {args.runs} runs each.",
            "",
            "| run | what | median s | min | max | requests/run (median) | range |",
            "|---|---|---:|---:|---:|---:|---:|",
            row(
                "(A)",
                f"`ftops up --env {ENV} --json`, no change: a separate process driving the real engine "
                "(refresh, program, check, diff)",
                engine_samples,
            ),
            row(
                "(B)",
                "the same resources without the engine: each one's provider (from the state) reads, "
                "then diffs, through a fresh `python -m pulumi.dynamic` (start included)",
                provider_samples,
            ),
            "",
            f"- A / B = {a_s / b_s:.1f} (median wall time); requests per run: A {a_n:g}, B {b_n:g}",
            f"- of (B), the calls alone (host started): median {statistics.median(calls_only):.2f} s "
            f"(min {min(calls_only):.2f}, max {max(calls_only):.2f}), which includes the host importing "
            "each provider's module on its first call",
            f"- requests per run, (A): {per_run(engine_samples)} "
            "([ARM] = /subscriptions/…/resourceGroups/…/providers/Microsoft.CognitiveServices)",
            f"- requests per run, (B): {same if same_requests else per_run(provider_samples)}",
            f"- of (A), starting ftops itself (`python -m ftops --help`, imports): median "
            f"{statistics.median(starts):.2f} s",
            f"- the first `ftops up` (from empty: upload, train, gate, deploy, audit; {created} created, "
            f"{len(resources)} of them dynamic): {first_s:.1f} s, {first_requests} requests; not part of "
            "the comparison",
            "",
        ]
    )
    print(append_section(args.results, "engine: a no-op `ftops up` vs the providers alone", body))
    print(
        json.dumps(
            {
                "engine_s": a_s,
                "providers_s": b_s,
                "ratio": a_s / b_s,
                "engine_requests": a_n,
                "providers_requests": b_n,
            }
        )
    )


if __name__ == "__main__":
    main()
