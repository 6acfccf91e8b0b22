"""Azure Monitor's metrics API on an emulated account, for the one metric ftops reads.

`GET <account ARM id>/providers/Microsoft.Insights/metrics?metricnames=AzureOpenAIRequests&
timespan=<start>/<end>&interval=P1D&aggregation=Total&$filter=ModelDeploymentName eq '*'`
answers the account's inference requests per day, split by deployment (and by StatusCode when
the filter names it), in Azure Monitor's response shape. Requests are counted by the limiter
every chat completion and response passes (chat_api.admit).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from ftops.emulator.http import ApiError, Ctx
from ftops.emulator.state import Emulator

METRIC = "AzureOpenAIRequests"
_SPLIT = re.compile(r"(\w+)\s+eq\s+'\*'", re.IGNORECASE)


def _day(text: str) -> dt.date:
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC).date()
    except ValueError:
        raise ApiError(400, "BadRequest", f"Invalid timespan '{text}': use ISO 8601 start/end") from None


async def metrics(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    query = request.query_params
    names = [n.strip() for n in (query.get("metricnames") or METRIC).split(",")]
    unknown = [n for n in names if n != METRIC]
    if unknown:
        raise ApiError(
            400,
            "BadRequest",
            f"Failed to find metric configuration for provider: Microsoft.CognitiveServices, resource "
            f"Type: accounts, metric: {unknown[0]}, Valid metrics: {METRIC}",
        )
    if (query.get("interval") or "P1D").upper() != "P1D":
        raise ApiError(400, "BadRequest", "The emulator serves interval P1D only.")
    now = dt.datetime.now(dt.UTC)
    start_text, _, end_text = (query.get("timespan") or "").partition("/")
    first = _day(start_text) if start_text else (now - dt.timedelta(days=1)).date()
    last = _day(end_text) if end_text else now.date()
    split = {m.lower() for m in _SPLIT.findall(query.get("$filter") or "")}
    by_status = "statuscode" in split
    by_deployment = "modeldeploymentname" in split or by_status
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    totals: dict[tuple[str, ...], dict[str, int]] = {}
    for deployment, day, status, requests in emu.store.requests_per_day(
        ctx.account, first.isoformat(), last.isoformat()
    ):
        key = (deployment, str(status)) if by_status else (deployment,) if by_deployment else ()
        totals.setdefault(key, {})
        totals[key][day] = totals[key].get(day, 0) + requests
    if not by_deployment and not totals:
        totals[()] = {}
    dims = ["modeldeploymentname", "statuscode"][: len(next(iter(totals), ()))]
    series = [
        {
            "metadatavalues": [
                {"name": {"value": d, "localizedValue": d}, "value": v}
                for d, v in zip(dims, key, strict=True)
            ],
            "data": [
                {"timeStamp": f"{day.isoformat()}T00:00:00Z", "total": float(counts.get(day.isoformat(), 0))}
                for day in days
            ],
        }
        for key, counts in sorted(totals.items())
    ]
    account = request.url.path.split("/providers/Microsoft.Insights/")[0]
    body: dict[str, Any] = {
        "cost": 0,
        "timespan": f"{first.isoformat()}T00:00:00Z/{(last + dt.timedelta(days=1)).isoformat()}T00:00:00Z",
        "interval": "P1D",
        "value": [
            {
                "id": f"{account}/providers/Microsoft.Insights/metrics/{METRIC}",
                "type": "Microsoft.Insights/metrics",
                "name": {"value": METRIC, "localizedValue": "Azure OpenAI Requests"},
                "unit": "Count",
                "timeseries": series,
                "errorCode": "Success",
            }
        ],
        "namespace": "Microsoft.CognitiveServices/accounts",
        "resourceregion": "swedencentral",
    }
    return JSONResponse(body)
