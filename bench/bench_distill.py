"""Benchmark capturing a teacher's answers for distillation: ftops' capture against a plain loop, in
one run, whole and killed half-way.

    python bench/bench_distill.py [--max-tokens 48]

The prompts: dev's prompt set (data/support-bot-distill/prompts.jsonl, 82 support questions). The
teacher: a deployment of the emulator's stand-in declared as gpt-4.1 at capacity 100 (100,000
tokens and 600 requests per minute, enforced by the emulator as Azure does).

(A) ftops: the DistillationDataset provider through the provider host, as `pulumi up` runs it:
    the paced runner at the teacher's rate limits (8 requests at a time), `store: true` with each
    prompt's digest as metadata, the journal, then the split, `ftops validate`'s rules, the safety
    screen and the content-addressed files.
(B) plain: one chat completion at a time with the openai SDK (`store: true`, the SDK's own
    retries), each answer appended to a JSONL file as it comes, as a notebook does it; no split,
    no validation.
Then each is killed once half-way (SIGKILL once half the prompts are answered) and run again to
the end: ftops resumes from its journal and reads back from the teacher's stored completions what
was in flight; the plain loop starts over. Each run uses a fresh emulator account; the requests
are the emulator's own count of chat completions the teacher received.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from _common import KEY, OUT, REPO, append_section, arg_parser, emulator, machine, target

PROMPTS = REPO / "data" / "support-bot-distill" / "prompts.jsonl"
TEACHER = "gpt-4.1-2025-04-14"
WHAT = {
    "A": "ftops: DistillationDataset (paced, 8 at a time, journal, split, validate, screen)",
    "B": "plain: one SDK call at a time, answers appended to a JSONL",
}


def http(url: str) -> Any:
    import httpx2 as httpx

    return httpx.Client(
        base_url=url, headers={"api-key": KEY}, timeout=60, params={"api-version": "2024-10-01"}
    )


def deploy_teacher(url: str, account: str) -> None:
    arm = f"{target(url, account, 'rg-bench')['arm_id']}/deployments/teacher"
    body = {
        "sku": {"name": "GlobalStandard", "capacity": 100},
        "properties": {"model": {"format": "OpenAI", "name": "gpt-4.1", "version": "2025-04-14"}},
    }
    with http(url) as client:
        client.put(arm, json=body).raise_for_status()
        for _ in range(400):
            if client.get(arm).json()["properties"]["provisioningState"] == "Succeeded":
                return
            time.sleep(0.05)
    raise RuntimeError("the teacher deployment did not provision")


def asked(url: str, account: str) -> int:
    with http(url) as client:
        counts = client.get("/admin/requests").json()["requests"]
    return int(counts.get(f"POST /accounts/{account}/openai/v1/chat/completions", 0))


def props(url: str, account: str, folder: Path, max_tokens: int) -> dict[str, Any]:
    from ftops.providers.spec import sha256_file

    return {
        "target": target(url, account, "rg-bench"),
        "name": "support-mini",
        "source": "prompts",
        "prompts_path": str(PROMPTS),
        "prompts_digest": sha256_file(str(PROMPTS)),
        "stored": None,
        "teacher_target": target(url, account, "rg-bench"),
        "teacher": {"deployment": "teacher", "model": TEACHER, "capacity": 100},
        "sampling": {"temperature": 0.0, "max_tokens": max_tokens, "seed": 0},
        "max_examples": None,
        "quality_filter": None,
        "validation_split": 0.15,
        "held_out": 20,
        "student_base": "gpt-4.1-nano-2025-04-14",
        "folder": str(folder),
        "concurrency": 8,
    }


def run_ftops(url: str, account: str, folder: Path, max_tokens: int, kill_at: int | None) -> float:
    """One capture through the provider host; with `kill_at`, the host is killed once that many
    answers are journaled. Its wall seconds."""
    from tests.provider_host import DynamicHost

    from ftops.providers.distillation import DistillationDatasetProvider

    host = DynamicHost({"FTOPS_EMULATOR_KEY": KEY})
    started = time.monotonic()
    try:
        if kill_at is None:
            host.create(DistillationDatasetProvider(), props(url, account, folder, max_tokens), timeout=900)
            return time.monotonic() - started
        thread = threading.Thread(
            target=lambda: _quietly(
                host, DistillationDatasetProvider(), props(url, account, folder, max_tokens)
            ),
            daemon=True,
        )
        thread.start()
        while thread.is_alive():
            journals = list(folder.glob("*/capture-*.jsonl"))
            if journals and len(journals[0].read_text().splitlines()) >= kill_at:
                break
            time.sleep(0.02)
        host.kill()
        thread.join()
        return time.monotonic() - started
    finally:
        host.close()


def _quietly(host: Any, provider: Any, inputs: dict[str, Any]) -> None:
    from tests.provider_host import HostError

    with contextlib.suppress(HostError):  # killed, as the benchmark meant
        host.create(provider, inputs, timeout=900)


def run_capture(url: str, account: str, folder: Path, max_tokens: int) -> float:
    """The capture alone, in this process (`distillation.capture`: the paced runner and its journal,
    no provider host, no split, validation or screen). Its wall seconds."""
    from ftops.azure.connection import Target
    from ftops.evaluation import distillation as distill

    deploy_teacher(url, account)
    planned = distill.plan(
        PROMPTS, max_tokens=max_tokens, max_examples=None, validation_split=0.15, held_out=20, seed=0
    )
    call = distill.TeacherCall("teacher", TEACHER, 100, 0.0, 0, 8)
    client = Target.of({"target": target(url, account, "rg-bench")}).client()
    started = time.monotonic()
    journal = distill.journal_path(folder, planned.prompts, call, account)
    distill.capture(client, call, planned.prompts, journal)
    return time.monotonic() - started


def plain_loop(url: str, account: str, out: Path, max_tokens: int) -> None:
    """What a notebook does: each prompt in turn, the answer appended as it comes."""
    import openai

    client = openai.OpenAI(base_url=f"{url}/accounts/{account}/openai/v1", api_key=KEY)
    with out.open("w", encoding="utf-8") as sink:
        for line in PROMPTS.read_text().splitlines():
            messages = json.loads(line)["messages"]
            reply = client.chat.completions.create(
                model="teacher", messages=messages, max_tokens=max_tokens, temperature=0, store=True
            )
            answer = {"role": "assistant", "content": reply.choices[0].message.content or ""}
            sink.write(json.dumps({"messages": [*messages, answer]}) + "\n")
            sink.flush()


def run_plain(url: str, account: str, out: Path, max_tokens: int, kill_at: int | None) -> float:
    """The plain loop in a process of its own (so it can be killed like one)."""
    command = [sys.executable, __file__, "--plain-worker", url, account, str(out), str(max_tokens)]
    started = time.monotonic()
    proc = subprocess.Popen(command, start_new_session=True)
    if kill_at is None:
        if proc.wait() != 0:
            raise RuntimeError("the plain loop failed")
        return time.monotonic() - started
    while proc.poll() is None:
        if out.exists() and len(out.read_text().splitlines()) >= kill_at:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return time.monotonic() - started


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()
    os.environ["FTOPS_EMULATOR_KEY"] = KEY
    n = len(PROMPTS.read_text().splitlines())
    half = n // 2
    work = OUT / f"distill-{int(time.time())}"
    rows: list[tuple[str, str, float, int]] = []
    with emulator(work / "emulator", OUT / "model-cache") as url:
        # The stand-in loads on the first request: paid here, not by whichever run comes first.
        deploy_teacher(url, "bench-warm-up")
        plain_loop(url, "bench-warm-up", work / "warm-up.jsonl", 4)
        capture_only = run_capture(url, "bench-a-capture", work / "bench-a-capture", args.max_tokens)
        for label, runner in (("A", run_ftops), ("B", run_plain)):
            account = f"bench-{label.lower()}-whole"
            deploy_teacher(url, account)
            seconds = runner(url, account, work / account, args.max_tokens, None)
            rows.append((f"({label})", WHAT[label], seconds, asked(url, account)))
            print(rows[-1], flush=True)
        for label, runner in (("A", run_ftops), ("B", run_plain)):
            account = f"bench-{label.lower()}-crash"
            deploy_teacher(url, account)
            first = runner(url, account, work / account, args.max_tokens, half)
            time.sleep(2)  # the requests the kill left in flight finish on the teacher
            before = asked(url, account)
            second = runner(url, account, work / account, args.max_tokens, None)
            total = asked(url, account)
            rows.append((f"({label}')", f"{WHAT[label]}: killed at {half}, run again", first + second, total))
            print(rows[-1], f"asked before the rerun {before}", flush=True)
    table = [
        "| run | what | wall s | teacher requests | prompts/s |",
        "|---|---|---:|---:|---:|",
    ]
    table += [f"| {r} | {what} | {s:.1f} | {asked_} | {n / s:.2f} |" for r, what, s, asked_ in rows]
    whole_a, whole_b, crash_a, crash_b = (r[2] for r in rows)
    table.insert(
        3,
        f"| (A0) | ftops' capture alone, in-process (paced runner, journal) | {capture_only:.1f} | {n} "
        f"| {n / capture_only:.2f} |",
    )
    body = (
        f"Machine: {machine()}. `python bench/bench_distill.py --max-tokens {args.max_tokens}`\n"
        f"{n} prompts (dev's prompt set), teacher: the stand-in as gpt-4.1 at capacity 100, "
        f"max_tokens {args.max_tokens}, temperature 0. One emulator account per run.\n\n"
        + "\n".join(table)
        + f"\n\n- whole capture: A / B = {whole_a / whole_b:.2f} (wall), "
        f"A0 / B = {capture_only / whole_b:.2f}; killed and run again: "
        f"A' / B' = {crash_a / crash_b:.2f}; teacher requests after the crash: "
        f"{rows[2][3]} (ftops) vs {rows[3][3]} (plain)\n"
    )
    print(append_section(args.results, "distillation capture: ftops vs a plain loop, whole and killed", body))


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--plain-worker":
        plain_loop(sys.argv[2], sys.argv[3], Path(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
