"""Exact BPE token counts with tiktoken, offline, fast.

Counting many short texts one call at a time is dominated by per-call overhead and the GIL.
Instead the texts are joined with a special token and encoded in one call: tiktoken encodes
the text between special tokens independently, so the ids between two separators are exactly
the ids of that text alone (tests/test_tokenizer.py checks this on random text). Texts that
contain the separator string are counted one by one.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
import tiktoken

from ftops.errors import UsageError

SEPARATOR = "<|endofprompt|>"  # a special token in both o200k_base and cl100k_base

# Where `make` provisions the encoding files when tiktoken cannot download them.
VENV_CACHE = Path(sys.prefix) / "share" / "ftops" / "tiktoken"


def _point_tiktoken_at_local_cache() -> None:
    if "TIKTOKEN_CACHE_DIR" not in os.environ and VENV_CACHE.is_dir():
        os.environ["TIKTOKEN_CACHE_DIR"] = str(VENV_CACHE)


@lru_cache(maxsize=4)
def encoding(name: str) -> tiktoken.Encoding:
    _point_tiktoken_at_local_cache()
    try:
        return tiktoken.get_encoding(name)
    except Exception as exc:  # tiktoken raises requests/OS errors when offline and uncached
        raise UsageError(
            f"tokenizer '{name}' is not available ({type(exc).__name__}: {exc})",
            fix=f"run `make test` once (it provisions the tokenizer files into {VENV_CACHE}) "
            "or set TIKTOKEN_CACHE_DIR to a directory that holds them",
        ) from None


class TokenCounter:
    """Counts tokens of many texts in one tokenizer call; releases the GIL while encoding."""

    def __init__(self, encoding_name: str) -> None:
        self.encoding = encoding(encoding_name)
        self._separator_id = self.encoding.encode_single_token(SEPARATOR)
        self._allowed = {SEPARATOR}

    def count(self, text: str) -> int:
        return len(self.encoding.encode_ordinary(text))

    def count_many(self, texts: list[str]) -> npt.NDArray[np.int64]:
        """Token counts of `texts`, each exactly `len(encode_ordinary(text))`."""
        counts = np.zeros(len(texts), dtype=np.int64)
        if not texts:
            return counts
        joined_idx = [i for i, t in enumerate(texts) if SEPARATOR not in t]
        if len(joined_idx) < len(texts):
            for i in set(range(len(texts))).difference(joined_idx):
                counts[i] = self.count(texts[i])
        if joined_idx:
            joined = SEPARATOR.join(texts[i] for i in joined_idx)
            ids = self.encoding.encode_to_numpy(joined, allowed_special=self._allowed, disallowed_special=())
            seps = np.flatnonzero(ids == self._separator_id)
            bounds = np.concatenate(([-1], seps, [len(ids)]))
            counts[joined_idx] = np.diff(bounds) - 1
        return counts
