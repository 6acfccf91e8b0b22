"""Per-deployment rate limits as Azure applies them: one bucket for tokens and one for requests per
deployment (see `ftops.ratelimit`); a request that does not fit gets the whole seconds to wait."""

from __future__ import annotations

import math
import threading
import time

from ftops.ratelimit import Bucket, limits_for

__all__ = ["RateLimiter", "limits_for"]


class RateLimiter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str, int, int], tuple[Bucket, Bucket]] = {}

    def acquire(self, account: str, deployment: str, capacity: int, model: str, tokens: int) -> int:
        """Take one request and `tokens` tokens; 0 when admitted, else whole seconds to wait."""
        tpm, rpm = limits_for(capacity, model)
        key = (account, deployment, tpm, rpm)
        now = time.monotonic()
        with self._lock:
            if key not in self._buckets:
                self._buckets[key] = (Bucket(tpm), Bucket(rpm))
            token_bucket, request_bucket = self._buckets[key]
            token_bucket.refill(now)
            request_bucket.refill(now)
            wait = max(token_bucket.wait_for(tokens), request_bucket.wait_for(1))
            if wait > 0:
                return max(1, math.ceil(wait))
            token_bucket.take(tokens)
            request_bucket.take(1)
            return 0
