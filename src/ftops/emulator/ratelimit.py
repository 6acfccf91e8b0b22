"""Per-deployment rate limits from SKU capacity, as Azure applies them.

Azure gives a Standard/GlobalStandard deployment 1,000 tokens per minute per capacity unit and
6 requests per minute per unit (1 per unit for the o-series), and enforces them over short
windows rather than whole minutes. A token bucket per limit that refills continuously and holds
ten seconds' worth (Azure's evaluation window) behaves the same way: steady traffic at the limit
passes, bursts beyond ten seconds' share get 429 with the seconds to wait.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

WINDOW_SECONDS = 10.0


def limits_for(capacity: int, model: str) -> tuple[int, int]:
    """(tokens per minute, requests per minute) of a deployment."""
    rpm_per_unit = 1 if model.startswith(("o1", "o3", "o4")) else 6
    return capacity * 1000, capacity * rpm_per_unit


@dataclass
class _Bucket:
    per_minute: float
    level: float = field(init=False)
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.level = self.size

    @property
    def size(self) -> float:
        return max(1.0, self.per_minute * WINDOW_SECONDS / 60)

    def refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.stamp)  # never drain on a clock read taken before creation
        self.level = min(self.size, self.level + elapsed * self.per_minute / 60)
        self.stamp = max(self.stamp, now)

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` fits (0 when it fits now)."""
        need = min(amount, self.size) - self.level
        return 0.0 if need <= 0 else need * 60 / self.per_minute


class RateLimiter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str, int, int], tuple[_Bucket, _Bucket]] = {}

    def acquire(self, account: str, deployment: str, capacity: int, model: str, tokens: int) -> int:
        """Take one request and `tokens` tokens; 0 when admitted, else whole seconds to wait."""
        tpm, rpm = limits_for(capacity, model)
        key = (account, deployment, tpm, rpm)
        now = time.monotonic()
        with self._lock:
            if key not in self._buckets:
                self._buckets[key] = (_Bucket(tpm), _Bucket(rpm))
            token_bucket, request_bucket = self._buckets[key]
            token_bucket.refill(now)
            request_bucket.refill(now)
            wait = max(token_bucket.wait_for(tokens), request_bucket.wait_for(1))
            if wait > 0:
                return max(1, math.ceil(wait))
            token_bucket.level -= min(tokens, token_bucket.size)
            request_bucket.level -= 1
            return 0
