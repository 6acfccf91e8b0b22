"""Benchmark `ftops validate` against the raw tokenizer and a naive validator, in one run.

    python bench/bench_validate.py [--size-mb 512] [--seed 7]

(a) `ftops validate FILE --format json`, the real command, in its own process;
(b) the floor: tiktoken alone encoding every message text with its batch API on both cores
    (`encode_ordinary_batch(texts, num_threads=2)`), texts loaded beforehand and not timed;
(b') a tighter floor: the same texts counted with ftops' joined-text counter on two threads
    (one tokenizer call per ~1 MB, no parsing, no rules) - what tokenizing costs at best;
(c) a naive validator as users write it: whole file in memory, json.loads per line, a few
    structural checks, `encode` per message, one thread.
Each runs in a fresh process; peak RSS comes from wait4(). Figures are appended to
bench/RESULTS.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from _common import OUT, append_section, arg_parser, machine
from gen_sft import generate

TARGETS = {"a/b": 1.3, "c/a": 1.5, "rss_mb": 300}

LOAD_TEXTS = """
import json, sys
texts = []
with open(sys.argv[1], "rb") as fh:
    for line in fh:
        for m in json.loads(line)["messages"]:
            c = m.get("content")
            if isinstance(c, str):
                texts.append(c)
"""

FLOOR_BATCH = (
    LOAD_TEXTS
    + """
import time, tiktoken
from ftops.tokenizer import encoding
enc = encoding("o200k_base")
start = time.perf_counter()
for i in range(0, len(texts), 50_000):  # slices keep the returned id lists from filling memory
    enc.encode_ordinary_batch(texts[i:i + 50_000], num_threads=2)
print(json.dumps({"seconds": time.perf_counter() - start, "texts": len(texts)}))
"""
)

FLOOR_JOINED = (
    LOAD_TEXTS
    + """
import time
from concurrent.futures import ThreadPoolExecutor
from ftops.tokenizer import TokenCounter
counter = TokenCounter("o200k_base")
slices, size, current = [], 0, []
for t in texts:
    current.append(t)
    size += len(t)
    if size >= 1 << 20:
        slices.append(current)
        current, size = [], 0
slices.append(current)
start = time.perf_counter()
with ThreadPoolExecutor(2) as pool:
    tokens = sum(int(c.sum()) for c in pool.map(counter.count_many, slices))
print(json.dumps({"seconds": time.perf_counter() - start, "tokens": tokens}))
"""
)

NAIVE = """
import json, sys, time
from ftops.tokenizer import encoding
start = time.perf_counter()
enc = encoding("o200k_base")
with open(sys.argv[1], encoding="utf-8") as fh:
    lines = fh.read().splitlines()
errors, lengths = 0, []
for n, line in enumerate(lines, 1):
    try:
        ex = json.loads(line)
    except json.JSONDecodeError:
        errors += 1
        continue
    messages = ex.get("messages")
    if not isinstance(messages, list) or not messages:
        errors += 1
        continue
    tokens = 3
    for m in messages:
        if m.get("role") not in ("system", "user", "assistant", "tool"):
            errors += 1
        tokens += 3
        for key, value in m.items():
            if isinstance(value, str):
                tokens += len(enc.encode(value, disallowed_special=()))
    if not any(m.get("role") == "assistant" for m in messages):
        errors += 1
    if tokens > 65536:
        errors += 1
    lengths.append(tokens)
print(json.dumps({"seconds": time.perf_counter() - start, "examples": len(lengths), "errors": errors,
                  "tokens": sum(lengths)}))
"""


def run(argv: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) and stdout of a child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    out = proc.stdout.read() if proc.stdout else b""
    err = proc.stderr.read() if proc.stderr else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{argv[:4]} failed ({proc.returncode}): {err.decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024, out.decode()


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--size-mb", type=float, default=512.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    data = OUT / f"sft-{args.size_mb:g}mb-seed{args.seed}.jsonl"
    if not data.exists():
        print(f"generating {data} ...", flush=True)
        generate(data, int(args.size_mb * 2**20), args.seed)
    size_mb = data.stat().st_size / 2**20
    py = sys.executable
    model = "gpt-4o-mini-2024-07-18"
    ftops = [py, "-m", "ftops", "validate", str(data), "--format", "json", "--base-model", model]

    print("(a) ftops validate ...", flush=True)
    a, rss_a, out = run(ftops)
    report = json.loads(out)["files"][0]
    print("(b) tiktoken batch API, 2 threads ...", flush=True)
    _, _, out_b = run([py, "-c", FLOOR_BATCH, str(data)])
    b = json.loads(out_b)["seconds"]
    print("(b') joined counting, 2 threads ...", flush=True)
    _, _, out_b2 = run([py, "-c", FLOOR_JOINED, str(data)])
    b2 = json.loads(out_b2)["seconds"]
    print("(c) naive validator ...", flush=True)
    c, rss_c, out_c = run([py, "-c", NAIVE, str(data)])
    naive = json.loads(out_c)

    ratios = {"a/b": a / b, "a/b'": a / b2, "c/a": c / a}
    ok = {
        "a/b": ratios["a/b"] <= TARGETS["a/b"],
        "c/a": ratios["c/a"] >= TARGETS["c/a"],
        "rss_mb": rss_a <= TARGETS["rss_mb"],
    }

    def mark(key: str) -> str:
        return "met" if ok[key] else "MISSED"

    rows = [
        (
            "(a)",
            "`ftops validate --format json` (all rules, exact counts, secrets/PII scan)",
            a,
            f"{rss_a:,.0f} MB",
        ),
        ("(b)", "floor: tiktoken `encode_ordinary_batch`, 2 threads, texts preloaded", b, ""),
        ("(b')", "tighter floor: joined-text counting, 2 threads, texts preloaded", b2, ""),
        ("(c)", "naive: whole file, `json.loads` + `encode` per message, 1 thread", c, f"{rss_c:,.0f} MB"),
    ]
    table = "\n".join(
        f"| {k} | {what} | {sec:.1f} | {size_mb / sec:.1f} | {rss} |" for k, what, sec, rss in rows
    )
    gen = f"`bench/gen_sft.py --size-mb {args.size_mb:g} --seed {args.seed}`"
    body = f"""\
Machine: {machine()}.
File: {report["examples"]:,} examples, {report["tokens"]["total"]:,} tokens
(naive count: {naive["tokens"]:,}), generated by {gen}.

| run | what | seconds | MB/s | peak RSS |
|---|---|---:|---:|---:|
{table}

- a/b = {ratios["a/b"]:.2f} (target <= {TARGETS["a/b"]}: {mark("a/b")})
- a/b' = {ratios["a/b'"]:.2f} (no target; the cost of parsing, rules and scanning over tokenizing alone)
- c/a = {ratios["c/a"]:.2f} (target >= {TARGETS["c/a"]}: {mark("c/a")})
- peak RSS of (a) = {rss_a:,.0f} MB (target <= {TARGETS["rss_mb"]} MB: {mark("rss_mb")})
"""
    print(append_section(args.results, f"validate: {size_mb:,.0f} MB SFT file", body))
    if not all(ok.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
