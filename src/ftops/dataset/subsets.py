"""Nested training-data subsets for experiments: the examples a fraction keeps are those whose
seeded hash ranks lowest, so the 25 % subset is inside the 50 % one, the same seed always picks the
same examples, and an edit to one example moves only that example. Each subset is written under
its content's sha256, so a re-run writes the same bytes to the same name and the upload (a
content-addressed TrainingFile) adopts what is already there.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

from ftops.errors import UsageError


def _rank(seed: int, line: bytes) -> bytes:
    return hashlib.blake2b(line, digest_size=16, key=seed.to_bytes(8, "big")).digest()


def subset_lines(lines: list[bytes], fraction: float, seed: int) -> list[bytes]:
    """The examples of `fraction` (at least one), in their original order."""
    if not 0 < fraction <= 1:
        raise UsageError(f"fraction {fraction}: must be in (0, 1]")
    keep = max(1, math.ceil(len(lines) * fraction - 1e-9))
    chosen = set(sorted(range(len(lines)), key=lambda i: (_rank(seed, lines[i]), i))[:keep])
    return [line for i, line in enumerate(lines) if i in chosen]


def write_subset(path: Path, fraction: float, seed: int, out_dir: Path) -> Path:
    """The subset of the JSONL file `path` as a file of its own (the file itself when the fraction
    is 1); its name carries its sha256, written atomically, never rewritten when it exists."""
    if fraction >= 1:
        return path
    try:
        lines = [line.strip() for line in path.read_bytes().splitlines() if line.strip()]
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the training file ({exc.strerror})") from None
    if not lines:
        raise UsageError(f"{path}: no examples to take a subset of")
    body = b"".join(line + b"\n" for line in subset_lines(lines, fraction, seed))
    digest = hashlib.sha256(body).hexdigest()
    stem = path.name.removesuffix(".jsonl")
    target = out_dir / f"{stem}.{round(fraction * 100):g}pct.{digest[:16]}.jsonl"
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == digest:
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_bytes(body)
    tmp.replace(target)
    return target
