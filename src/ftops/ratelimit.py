"""Deployment rate limits from SKU capacity, and the token bucket that models them.

Azure gives a Standard/GlobalStandard deployment 1,000 tokens per minute per capacity unit and
6 requests per minute per unit (1 per unit for the o-series), and enforces them over short
windows rather than whole minutes. A bucket per limit that refills continuously and holds ten
seconds' worth (Azure's evaluation window) behaves the same way: steady traffic at the limit
passes, bursts beyond ten seconds' share are refused. The emulator refuses with that bucket; the
eval runner paces itself with the same one, so it sends as fast as the deployment admits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

WINDOW_SECONDS = 10.0


def is_reasoning(model: str) -> bool:
    """The o-series: fewer requests per capacity unit, and no `temperature`."""
    return model.startswith(("o1", "o3", "o4"))


def limits_for(capacity: int, model: str) -> tuple[int, int]:
    """(tokens per minute, requests per minute) of a deployment."""
    rpm_per_unit = 1 if is_reasoning(model) else 6
    return capacity * 1000, capacity * rpm_per_unit


@dataclass
class Bucket:
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

    def take(self, amount: float) -> None:
        self.level -= min(amount, self.size)
