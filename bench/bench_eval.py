"""How close the eval runner gets to a deployment's rate limit, next to two common alternatives.

    python bench/bench_eval.py [--items 300] [--capacity 10]

Against a fresh emulator (tiny stand-in model), three deployments of the same capacity (10 units:
60 requests and 10,000 tokens per minute, enforced over 10-second windows as Azure does), one per
contestant so none inherits another's spent budget, each answering the same N eval items:
(a) ftops' runner: client-side token buckets sized from the capacity, 8 workers, 429s waited out;
(b) a naive sequential loop with the openai SDK's default retries (2, honouring Retry-After);
(c) unbounded concurrency (a thread per item) with the SDK's retries raised to 5.
For each: achieved requests per minute as a fraction of the limit (target >= 0.85 for ftops),
failed items (target 0 for ftops) and the 429s received. Figures are appended to bench/RESULTS.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx
import openai

from _common import KEY, OUT, append_section, arg_parser, emulator
from _common import target as emulator_target
from ftops.azure.connection import Target
from ftops.evaluation.evalset import EvalSet, parse
from ftops.evaluation.runner import Limits, Runner, RunOptions
from ftops.providers.deployments import ModelDeploymentProvider
from ftops.ratelimit import limits_for

ACCOUNT = "bench"
MODEL = "tiny-test"


@dataclass
class Result:
    name: str
    seconds: float
    answered: int
    failed: int
    throttled: int

    def rpm(self) -> float:
        return self.answered / self.seconds * 60 if self.seconds else 0.0


class Throttles:
    """Counts 429 responses as the HTTP client sees them (SDK retries included)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def hook(self, response: Any) -> None:
        if response.status_code == 429:
            with self._lock:
                self.count += 1

    def client(self, url: str, max_retries: int) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{url}/accounts/{ACCOUNT}/openai/v1",
            api_key=KEY,
            max_retries=max_retries,
            http_client=openai.DefaultHttpxClient(event_hooks={"response": [self.hook]}),
        )


def eval_items(n: int) -> EvalSet:
    lines = [
        json.dumps(
            {
                "id": f"item-{i:04d}",
                "messages": [{"role": "user", "content": f"What is the return window for order {i}?"}],
                "max_tokens": 16,
            }
        )
        for i in range(n)
    ]
    return parse(("\n".join(lines) + "\n").encode(), "bench.jsonl")


def deploy(url: str, name: str, capacity: int) -> None:
    target = emulator_target(url, ACCOUNT)
    Target.of({"target": target})  # validates the shape
    ModelDeploymentProvider().create(
        {
            "target": target,
            "deployment_name": name,
            "model": {"name": MODEL, "version": "1"},
            "sku": {"name": "GlobalStandard", "capacity": capacity},
            "rai_policy": "Microsoft.DefaultV2",
            "version_upgrade_option": "NoAutoUpgrade",
        }
    )


def run_ftops(url: str, deployment: str, evalset: EvalSet, capacity: int) -> Result:
    tpm, rpm = limits_for(capacity, MODEL)
    throttles = Throttles()
    runner = Runner(
        throttles.client(url, 0), RunOptions(deployment, MODEL, limits=Limits(tpm, rpm), concurrency=8)
    )
    start = time.monotonic()
    answers = runner.run(evalset)
    seconds = time.monotonic() - start
    return Result("ftops runner (paced, 8 workers)", seconds, len(answers), 0, throttles.count)


def _ask(client: openai.OpenAI, deployment: str, item: Any) -> bool:
    try:
        client.chat.completions.create(
            model=deployment,
            messages=item.messages_json(),
            max_completion_tokens=item.max_tokens,
            temperature=0,
            seed=0,
        )
        return True
    except openai.APIError:
        return False


def run_sequential(url: str, deployment: str, evalset: EvalSet) -> Result:
    throttles = Throttles()
    client = throttles.client(url, 2)
    start = time.monotonic()
    ok = sum(_ask(client, deployment, item) for item in evalset.items)
    seconds = time.monotonic() - start
    return Result(
        "naive sequential loop (SDK retries 2)", seconds, ok, len(evalset.items) - ok, throttles.count
    )


def run_unbounded(url: str, deployment: str, evalset: EvalSet) -> Result:
    throttles = Throttles()
    client = throttles.client(url, 5)
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(evalset.items)) as pool:
        ok = sum(pool.map(lambda item: _ask(client, deployment, item), evalset.items))
    seconds = time.monotonic() - start
    return Result(
        "unbounded concurrency (SDK retries 5)", seconds, ok, len(evalset.items) - ok, throttles.count
    )


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--capacity", type=int, default=10)
    parser.add_argument(
        "--latency-ms", type=int, default=0, help="Added to every answer (a real model takes about a second)."
    )
    args = parser.parse_args()
    os.environ["FTOPS_EMULATOR_KEY"] = KEY
    out = OUT / f"eval-{os.getpid()}"
    out.mkdir(parents=True, exist_ok=True)
    # Unwound in reverse: the emulator stops, then its data goes.
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, out, ignore_errors=True)
        url = cleanup.enter_context(emulator(out / "data", OUT / "model-cache"))
        if args.latency_ms:
            httpx.put(
                f"{url}/admin/faults",
                headers={"api-key": KEY},
                json={"latency_ms": args.latency_ms, "path_pattern": "chat/completions"},
            )
        evalset = eval_items(args.items)
        _, limit = limits_for(args.capacity, MODEL)
        results = []
        contestants: list[tuple[str, Callable[[str], Result]]] = [
            ("ours", lambda d: run_ftops(url, d, evalset, args.capacity)),
            ("sequential", lambda d: run_sequential(url, d, evalset)),
            ("unbounded", lambda d: run_unbounded(url, d, evalset)),
        ]
        for name, run in contestants:
            deploy(url, f"bench-{name}", args.capacity)
            result = run(f"bench-{name}")
            print(
                f"{result.name}: {result.answered}/{args.items} answered in {result.seconds:.1f} s, "
                f"{result.rpm():.1f} requests/min = {result.rpm() / limit:.2f} of the limit, "
                f"{result.failed} failed, {result.throttled} 429s",
                flush=True,
            )
            results.append(result)
    lines = [
        f"{args.items} eval items (max 16 tokens each) against emulator deployments of capacity "
        f"{args.capacity} ({limit} requests/min, {args.capacity * 1000:,} tokens/min, 10-second windows), "
        f"tiny stand-in model, {args.latency_ms} ms added to every answer, {os.cpu_count()} cores. "
        f"`python bench/bench_eval.py --latency-ms {args.latency_ms}`",
        "",
        "| contestant | answered | failed | 429s | seconds | requests/min | fraction of limit |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.name} | {r.answered} | {r.failed} | {r.throttled} | {r.seconds:.1f} | {r.rpm():.1f} "
        f"| {r.rpm() / limit:.2f} |"
        for r in results
    ]
    append_section(args.results, "Eval runner vs a deployment's rate limit", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
