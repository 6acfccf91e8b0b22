"""The alert rules of a serving deployment, as declared from `alerts:` (see components/alerts.py
for the metric names and their sources): read by the component that creates them and by the cost
model, which prices them by the metric time series they monitor."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ftops.catalog import base_of
from ftops.config.schema import Alerts as AlertsSpec
from ftops.ratelimit import limits_for

SERVER_ERRORS = ["500", "502", "503", "504"]


@dataclass(frozen=True)
class Rule:
    """One alert on one deployment, as declared (also what the tests and the README check)."""

    kind: str
    metric: str
    aggregation: str
    threshold: float
    status_codes: tuple[str, ...] = ()
    description: str = ""

    @property
    def series(self) -> int:
        """Metric time series it monitors (what Azure bills alerts by): one per status code."""
        return max(1, len(self.status_codes))


def rules_for(spec: AlertsSpec, model: str, sku: str, capacity: int) -> list[Rule]:
    """The rules of a deployment of `model` (a base or fine-tuned id) at `capacity` of `sku`."""
    window = spec.window_minutes
    provisioned = sku.lower().startswith("provisioned")
    tpm, rpm = limits_for(capacity, base_of(model))
    allowed = rpm * window  # requests the deployment admits in one window

    def share(percent: float) -> float:
        return float(max(1, math.ceil(allowed * percent / 100)))

    rules = [
        Rule(
            "throttled",
            "AzureOpenAIRequests",
            "Total",
            share(spec.throttled_percent),
            ("429",),
            f"more than {spec.throttled_percent:g}% of the requests it admits in {window} min answered 429",
        ),
        Rule(
            "server-errors",
            "AzureOpenAIRequests",
            "Total",
            float(spec.server_errors),
            tuple(SERVER_ERRORS),
            f"more than {spec.server_errors} server errors (5xx) in {window} min",
        ),
        Rule(
            "latency",
            "AzureOpenAITimeToResponse",
            "Average",
            float(spec.latency_ms),
            description=f"average time to response above {spec.latency_ms} ms over {window} min",
        ),
        Rule(
            "content-filter",
            "RAIRejectedRequests",
            "Total",
            share(spec.content_filter_percent),
            description=f"the content filter blocked more than {spec.content_filter_percent:g}% of "
            "the requests it admits",
        ),
    ]
    if provisioned:  # PTU capacity is not tokens per minute: Azure reports the utilisation itself
        rules.append(
            Rule(
                "capacity",
                "AzureOpenAIProvisionedManagedUtilizationV2",
                "Average",
                spec.token_usage_percent,
                description=f"provisioned utilisation above {spec.token_usage_percent:g}%",
            )
        )
    else:
        rules.append(
            Rule(
                "capacity",
                "TokenTransaction",
                "Total",
                float(math.ceil(tpm * window * spec.token_usage_percent / 100)),
                description=f"tokens above {spec.token_usage_percent:g}% of its capacity over {window} min",
            )
        )
    return rules
