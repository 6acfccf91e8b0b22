"""Requests per deployment, as Azure Monitor's AzureOpenAIRequests metric serves them: the emulator
counts what its limiter admits or refuses, and `ftops.azure.connection.requests_by_deployment`
reads them back through the metrics API, as `ftops status` does to flag idle deployments."""

from __future__ import annotations

import openai
import pytest

from ftops.azure.connection import Target, requests_by_deployment
from tests.emulator_process import KEY, Emulator
from tests.test_emulator_api import deploy

ACCOUNT = "usage"


def target(emu: Emulator) -> Target:
    return Target(
        endpoint=f"{emu.url}/accounts/{ACCOUNT}",
        auth="env:FTOPS_EMULATOR_KEY",
        arm_id=emu.arm(ACCOUNT),
        arm_endpoint=emu.url,
    )


def test_requests_are_counted_per_deployment_and_status(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FTOPS_EMULATOR_KEY", KEY)
    deploy(emu, "busy", "gpt-4o-mini", version="2024-07-18", account=ACCOUNT, capacity=1)
    deploy(emu, "idle", "gpt-4o-mini", version="2024-07-18", account=ACCOUNT)
    assert requests_by_deployment(target(emu), days=7) == {}

    client = emu.v1(account=ACCOUNT, max_retries=0)
    client.chat.completions.create(model="busy", messages=[{"role": "user", "content": "Hi"}], max_tokens=3)
    with pytest.raises(openai.RateLimitError):  # capacity 1 = 1,000 tokens per minute
        client.chat.completions.create(
            model="busy", messages=[{"role": "user", "content": "Hi"}], max_tokens=4000
        )
    assert requests_by_deployment(target(emu), days=7) == {"busy": 2}  # the 429 is a request too

    with emu.http() as http:
        response = http.get(
            f"{emu.arm(ACCOUNT)}/providers/Microsoft.Insights/metrics",
            params={
                "api-version": "2023-10-01",
                "metricnames": "AzureOpenAIRequests",
                "interval": "P1D",
                "aggregation": "Total",
                "$filter": "ModelDeploymentName eq '*' and StatusCode eq '*'",
            },
        )
        assert response.status_code == 200, response.text
        [metric] = response.json()["value"]
        by_status = {
            tuple(m["value"] for m in s["metadatavalues"]): sum(p["total"] for p in s["data"])
            for s in metric["timeseries"]
        }
        assert by_status == {("busy", "200"): 1.0, ("busy", "429"): 1.0}
        unknown = http.get(
            f"{emu.arm(ACCOUNT)}/providers/Microsoft.Insights/metrics",
            params={"api-version": "2023-10-01", "metricnames": "TokensPerSecondd"},
        )
        assert unknown.status_code == 400
        assert "Valid metrics: AzureOpenAIRequests" in unknown.text
