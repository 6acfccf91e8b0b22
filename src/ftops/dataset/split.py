"""A deterministic train/validation split that streams the file twice.

Each example gets a key: a keyed BLAKE2 hash of the seed and its bytes. The examples with the
smallest keys, round(n x fraction) of them, go to validation. So the split depends only on the
seed and the content: reordering the file changes nothing, adding examples moves almost none,
and byte-identical duplicates land on the same side (no train/validation leakage).
"""

from __future__ import annotations

import hashlib
import os
from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ftops.dataset.validate import CHUNK_BYTES, iter_chunks
from ftops.errors import UsageError


@dataclass(frozen=True)
class SplitResult:
    train_path: Path
    valid_path: Path
    train_examples: int
    valid_examples: int


def _keys(path: Path, seed: int) -> array[int]:
    salt = seed.to_bytes(8, "little", signed=True)
    keys: array[int] = array("Q")
    with path.open("rb") as fh:
        for _, chunk in iter_chunks(fh, CHUNK_BYTES):
            for raw in chunk.split(b"\n"):
                body = raw.strip()
                if body:
                    digest = hashlib.blake2b(body, digest_size=8, key=salt).digest()
                    keys.append(int.from_bytes(digest, "little"))
    return keys


def split_paths(path: Path, fraction: float, out_dir: Path | None, overwrite: bool) -> tuple[Path, Path]:
    """Where the split of `path` goes; refused before anything is read or written: a fraction
    outside (0, 1), a folder whose parent does not exist (a typo), or files already there
    (an earlier split) unless `overwrite`."""
    if not 0 < fraction < 1:
        raise UsageError(f"--split {fraction}: must be between 0 and 1", fix="e.g. --split 0.1")
    out = out_dir or path.parent
    if not out.is_dir() and not out.parent.is_dir():
        raise UsageError(
            f"--out-dir {out}: neither it nor its parent folder exists", fix="create the parent folder first"
        )
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out-dir {out}: is not a folder", fix="pass a folder")
    stem = path.name.removesuffix(".jsonl")
    train_path, valid_path = out / f"{stem}.train.jsonl", out / f"{stem}.valid.jsonl"
    if path.resolve() in (train_path.resolve(), valid_path.resolve()):
        raise UsageError(f"{path}: the split would overwrite its own input", fix="pass --out-dir")
    there = [p for p in (train_path, valid_path) if p.exists()]
    if there and not overwrite:
        raise UsageError(
            f"{there[0]} exists (an earlier split?)",
            fix="pass --overwrite to replace it, or another --out-dir",
        )
    return train_path, valid_path


def split_file(
    path: Path, fraction: float, seed: int, out_dir: Path | None = None, overwrite: bool = False
) -> SplitResult:
    train_path, valid_path = split_paths(path, fraction, out_dir, overwrite)
    out = train_path.parent
    keys = _keys(path, seed)
    if not keys:
        raise UsageError(f"{path}: no examples to split")
    arr = np.frombuffer(keys, dtype=np.uint64)
    k = max(1, round(len(arr) * fraction))
    threshold = np.partition(arr, k - 1)[k - 1]

    out.mkdir(exist_ok=True)
    tmp_train = train_path.with_name(f".{train_path.name}.{os.getpid()}.tmp")
    tmp_valid = valid_path.with_name(f".{valid_path.name}.{os.getpid()}.tmp")
    n_train = n_valid = 0
    index = 0
    try:
        with path.open("rb") as fh, tmp_train.open("wb") as ft, tmp_valid.open("wb") as fv:
            for _, chunk in iter_chunks(fh, CHUNK_BYTES):
                for raw in chunk.split(b"\n"):
                    body = raw.strip()
                    if not body:
                        continue
                    if arr[index] <= threshold:
                        fv.write(body + b"\n")
                        n_valid += 1
                    else:
                        ft.write(body + b"\n")
                        n_train += 1
                    index += 1
        os.replace(tmp_train, train_path)
        os.replace(tmp_valid, valid_path)
    finally:
        tmp_train.unlink(missing_ok=True)
        tmp_valid.unlink(missing_ok=True)
    return SplitResult(train_path, valid_path, n_train, n_valid)
