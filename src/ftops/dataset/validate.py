"""`ftops validate`: stream a JSONL file once, check every example, count its tokens exactly.

The file is read in chunks of about a megabyte of whole lines; each chunk is checked on a
worker thread (JSON parsing and the rules hold the GIL; tokenizing one joined text per chunk
does not, so the two workers overlap), and results are merged in file order. Memory stays
bounded by the chunks in flight plus a few numbers per example.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt
import orjson

from ftops.catalog import (
    DEFAULT_BASE_MODEL,
    MAX_FILE_BYTES,
    MAX_IMAGE_EXAMPLES,
    MAX_TRAINED_TOKENS,
    MIN_EXAMPLES,
    BaseModel,
    UnknownModelError,
    auto_epochs,
    resolve_base,
)
from ftops.dataset.findings import RULES, Finding, Severity
from ftops.dataset.findings_report import FileReport, RuleReport, TokenStats
from ftops.dataset.rules import BatchState, ExampleChecker, detect_method
from ftops.dataset.sensitive import scan
from ftops.errors import UsageError
from ftops.tokenizer import TokenCounter

CHUNK_BYTES = 1 << 20
BOM = b"\xef\xbb\xbf"
DEFAULT_TOKEN_BUDGET = 8192
DEFAULT_LINES_PER_RULE = 5

Int64s = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ValidateOptions:
    method: str | None = None  # None: detect from the first example
    base_model: str | None = None
    epochs: int | None = None  # None: what "auto" would pick
    token_budget: int = DEFAULT_TOKEN_BUDGET
    lines_per_rule: int = DEFAULT_LINES_PER_RULE
    price_per_million: float | None = None
    role: str = "training"
    workers: int = min(2, os.cpu_count() or 1)
    chunk_bytes: int = CHUNK_BYTES


@dataclass(slots=True)
class _ChunkResult:
    findings: list[Finding]
    lines: Int64s  # line number of each example
    hashes: Int64s  # hash of each example's bytes, for duplicates
    system: Int64s  # hash of each example's system prompt, 0 when it has none
    lengths: Int64s  # tokens of the longest sequence trained on
    billed: int  # tokens billed for one epoch
    image_examples: int


def iter_chunks(fh: BinaryIO, chunk_bytes: int) -> Iterator[tuple[int, bytes]]:
    """(first line number, bytes of whole lines) with the newline of the last line removed."""
    line_no = 1
    rest = b""
    first = True
    while True:
        block = fh.read(chunk_bytes)
        if first:
            first = False
            if block.startswith(BOM):
                block = block[len(BOM) :]
        if not block:
            if rest:
                yield line_no, rest
            return
        buf = rest + block if rest else block
        cut = buf.rfind(b"\n")
        if cut < 0:
            rest = buf
            continue
        whole, rest = buf[:cut], buf[cut + 1 :]
        yield line_no, whole
        line_no += whole.count(b"\n") + 1


class _Checker:
    """Checks one chunk; safe to share between threads (no mutable state but a cache)."""

    def __init__(self, method: str, base: BaseModel, counter: TokenCounter, budget: int) -> None:
        self.counter = counter
        self.base = base
        self.budget = budget
        roles = ("system", "user", "assistant", "tool", "developer", "function")
        self.examples = ExampleChecker(method, base, {r: counter.count(r) for r in roles}, counter.count)

    def __call__(self, first_line: int, chunk: bytes) -> _ChunkResult:
        st = BatchState()
        lines = chunk.split(b"\n")
        ex_lines: list[int] = []
        hashes: list[int] = []
        for i, raw in enumerate(lines):
            line = first_line + i
            body = raw.strip()
            if not body:
                st.add("blank_line", line, "the line is empty")
                continue
            try:
                obj = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                self._bad_line(body, line, exc, st)
                continue
            if not isinstance(obj, dict):
                st.add("not_an_object", line, f"the line holds a JSON {type(obj).__name__}, not an object")
                continue
            self.examples.check(obj, line, st)
            ex_lines.append(line)
            hashes.append(hash(body))

        starts = np.zeros(len(lines), dtype=np.int64)
        if len(lines) > 1:
            np.cumsum([len(x) + 1 for x in lines[:-1]], out=starts[1:])
        for index, code, message in scan(chunk, starts):
            st.add(code, first_line + index, message)

        n = len(ex_lines)
        counts = self.counter.count_many(st.texts)
        slots = np.bincount(np.asarray(st.text_slots, dtype=np.int64), weights=counts, minlength=3 * n)
        per = (np.rint(slots).astype(np.int64) + np.asarray(st.slot_overhead, dtype=np.int64)).reshape(n, 3)
        lengths = per[:, 0] + per[:, 1:].max(axis=1)
        line_arr = np.asarray(ex_lines, dtype=np.int64)
        limit = self.base.max_example_tokens
        for idx in np.flatnonzero(lengths > limit):
            st.add(
                "example_too_long",
                int(line_arr[idx]),
                f"{int(lengths[idx]):,} tokens; {self.base.id} takes at most {limit:,} per example",
            )
        for idx in np.flatnonzero((lengths > self.budget) & (lengths <= limit)):
            st.add(
                "over_token_budget",
                int(line_arr[idx]),
                f"{int(lengths[idx]):,} tokens, over the budget of {self.budget:,}",
            )
        system = np.fromiter(
            ((hash(p) or 1) if p is not None else 0 for p in st.system_prompts), dtype=np.int64, count=n
        )
        st.findings.sort(key=lambda f: f.line)
        return _ChunkResult(
            st.findings,
            line_arr,
            np.asarray(hashes, dtype=np.int64),
            system,
            lengths,
            int(per.sum()),
            st.image_examples,
        )

    @staticmethod
    def _bad_line(body: bytes, line: int, exc: orjson.JSONDecodeError, st: BatchState) -> None:
        if body.startswith(BOM):
            st.add("misplaced_bom", line, "the line starts with a byte order mark")
            return
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as err:
            st.add(
                "invalid_utf8", line, f"byte 0x{body[err.start]:02x} at column {err.start + 1} is not UTF-8"
            )
            return
        st.add("invalid_json", line, f"not valid JSON ({exc.msg} at column {exc.colno})")


class _Merge:
    """Merges chunk results in file order, keeping the first few findings of each rule."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.counts: Counter[str] = Counter()
        self.first: dict[str, list[Finding]] = {}
        self.parts: list[_ChunkResult] = []
        self.billed = 0
        self.image_examples = 0

    def add_findings(self, findings: list[Finding]) -> None:
        for f in findings:
            self.counts[f.code] += 1
            kept = self.first.setdefault(f.code, [])
            if len(kept) < self.keep:
                kept.append(f)

    def add(self, result: _ChunkResult) -> None:
        self.add_findings(result.findings)
        self.billed += result.billed
        self.image_examples += result.image_examples
        result.findings = []
        self.parts.append(result)

    def column(self, name: str) -> Int64s:
        arrays: list[Int64s] = [getattr(p, name) for p in self.parts]
        return np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)


def _duplicates(lines: Int64s, hashes: Int64s) -> list[Finding]:
    order = np.argsort(hashes, kind="stable")
    sorted_h = hashes[order]
    repeat = np.flatnonzero(sorted_h[1:] == sorted_h[:-1]) + 1
    if not len(repeat):
        return []
    # The first occurrence of each hash value is its leftmost position in sorted order.
    run_start = np.searchsorted(sorted_h, sorted_h[repeat], side="left")
    found = [
        Finding("duplicate_example", int(lines[order[i]]), f"repeats line {int(lines[order[s]])}")
        for i, s in zip(repeat, run_start, strict=True)
    ]
    return sorted(found, key=lambda f: f.line)


def _system_prompts(lines: Int64s, system: Int64s) -> list[Finding]:
    if not len(system):
        return []
    values, counts = np.unique(system, return_counts=True)
    if len(values) < 2:
        return []
    common = values[np.argmax(counts)]
    shared = f"{int(counts.max())} of {len(system)} examples share the most common one"
    census = (
        f"{int(np.count_nonzero(values))} distinct, {len(system) - int(np.count_nonzero(system))} without"
    )
    out = []
    for idx in np.flatnonzero(system != common):
        if common == 0:
            what = "has a system prompt; most examples have none"
        elif system[idx] == 0:
            what = "has no system prompt"
        else:
            what = "has a different system prompt"
        out.append(Finding("inconsistent_system_prompt", int(lines[idx]), f"{what}; {shared} ({census})"))
    return out


def validate_file(
    path: Path,
    options: ValidateOptions,
    progress: Callable[[int], None] | None = None,
) -> FileReport:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file", fix="check the path") from None
    if path.is_dir():
        raise UsageError(f"{path}: is a directory", fix="pass a .jsonl file")
    try:
        base = resolve_base(options.base_model or DEFAULT_BASE_MODEL)
    except UnknownModelError as exc:
        raise UsageError(str(exc)) from None
    counter = TokenCounter(base.encoding)

    with path.open("rb") as fh:
        chunks = iter_chunks(fh, options.chunk_bytes)
        head = next(chunks, None)
        method, detected = _method(head, options.method, base)
        check = _Checker(method, base, counter, options.token_budget)
        merged = _Merge(options.lines_per_rule)
        if size >= MAX_FILE_BYTES:
            merged.add_findings([Finding("file_too_large", 0, f"the file is {size / 2**20:,.1f} MB")])
        with ThreadPoolExecutor(max(1, options.workers)) as pool:
            in_flight: deque[tuple[Future[_ChunkResult], int]] = deque()
            done = 0
            for first_line, chunk in itertools.chain([head] if head else [], chunks):
                in_flight.append((pool.submit(check, first_line, chunk), len(chunk) + 1))
                if len(in_flight) >= 2 * max(1, options.workers):
                    done = _drain_one(in_flight, merged, done, progress)
            while in_flight:
                done = _drain_one(in_flight, merged, done, progress)

    lines = merged.column("lines")
    merged.add_findings(_duplicates(lines, merged.column("hashes")))
    merged.add_findings(_system_prompts(lines, merged.column("system")))
    n = len(lines)
    training = options.role == "training"
    # Validation examples are evaluated, not trained on: no epochs, nothing billed.
    epochs = (options.epochs or auto_epochs(n)) if training else 0
    if n < MIN_EXAMPLES:
        merged.add_findings(
            [Finding("too_few_examples", 0, f"{n} example(s); Azure needs at least {MIN_EXAMPLES}")]
        )
    if merged.billed * epochs > MAX_TRAINED_TOKENS:
        merged.add_findings(
            [
                Finding(
                    "too_many_tokens",
                    0,
                    f"{merged.billed:,} tokens x {epochs} epochs = {merged.billed * epochs:,}",
                )
            ]
        )
    if merged.image_examples > MAX_IMAGE_EXAMPLES:
        merged.add_findings(
            [Finding("too_many_image_examples", 0, f"{merged.image_examples:,} examples with images")]
        )

    lengths = merged.column("lengths")
    rules = [
        RuleReport.of(RULES[code], merged.counts[code], merged.first[code])
        for code in sorted(merged.counts, key=lambda c: (RULES[c].severity != Severity.ERROR, c))
    ]
    trained = merged.billed * epochs
    cost = trained / 1e6 * options.price_per_million if options.price_per_million is not None else None
    return FileReport(
        path=str(path),
        role=options.role,
        bytes=size,
        method=method,
        method_detected=detected,
        base_model=base.id,
        encoding=base.encoding,
        examples=n,
        image_examples=merged.image_examples,
        tokens=TokenStats.of(lengths, merged.billed),
        epochs=epochs,
        epochs_auto=options.epochs is None,
        billed_tokens=trained,
        price_per_million=options.price_per_million,
        estimated_cost_usd=cost,
        errors=[r for r in rules if r.severity == Severity.ERROR],
        warnings=[r for r in rules if r.severity == Severity.WARNING],
    )


def _drain_one(
    in_flight: deque[tuple[Future[_ChunkResult], int]],
    merged: _Merge,
    done: int,
    progress: Callable[[int], None] | None,
) -> int:
    future, nbytes = in_flight.popleft()
    merged.add(future.result())
    done += nbytes
    if progress:
        progress(done)
    return done


def _method(head: tuple[int, bytes] | None, asked: str | None, base: BaseModel) -> tuple[str, bool]:
    if asked:
        method, detected = asked, False
    else:
        first_obj = None
        if head:
            for raw in head[1].split(b"\n"):
                try:
                    first_obj = orjson.loads(raw)
                    break
                except orjson.JSONDecodeError:
                    continue
        method, detected = detect_method(first_obj, base), True
    if method not in base.methods:
        allowed = ", ".join(sorted(base.methods))
        how = "detected from the data" if detected else "asked for"
        raise UsageError(
            f"{base.id} does not support {method} fine-tuning ({how}); it supports: {allowed}",
            fix="pick another --base-model or --method",
        )
    return method, detected
