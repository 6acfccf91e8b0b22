"""The canary: the gate's checks against what serves, compared item by item with the gate's
evidence. The verdict's logic on hand-made evidence, then the whole command on the emulator with
a model trained for real: unchanged it passes, and when the serving model drifts (the `drift`
fault) it fails with the numbers, the rollback command and an audit record, changing nothing."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ftops.auditlog import FileAuditLog, records
from ftops.cli import app
from ftops.evaluation.canary import judge
from ftops.providers.deployments import ModelDeploymentProvider
from tests.conftest import REPO
from tests.emulator_process import KEY, Emulator, deployment_props, wait_file, wait_for

BASE = "gpt-4.1-mini-2025-04-14"  # the tiny stand-in on the session's emulator
ANSWER = "Refunds are accepted within 30 days."


def _evidence(passed: list[list[bool]], digest: str = "sha256:" + "a" * 64) -> dict[str, Any]:
    rows = [
        {"item": f"q{i}", "repeat": r, "passed": ok, "category": "c", "answer": "", "score": 0, "detail": ""}
        for i, repeats in enumerate(passed)
        for r, ok in enumerate(repeats)
    ]
    rate = sum(map(sum, passed)) / sum(map(len, passed))
    return {
        "policy": {
            "confidence": 0.95,
            "repeats": len(passed[0]),
            "temperature": 0.0,
            "seed": 3,
            "fail_on_uncertainty": True,
            "max_regression": 0.0,
        },
        "checks": [
            {
                "name": "facts",
                "eval_set_digest": digest,
                "threshold": 0.5,
                "results": rows,
                "summary": {
                    "metric": "pass rate",
                    "pass_rate": rate,
                    "low": 0.0,
                    "high": 1.0,
                    "passed": True,
                },
            }
        ],
        "failures": [],
    }


def test_same_answers_pass_and_a_significant_drop_on_the_same_items_is_a_regression() -> None:
    gate = _evidence([[True]] * 10)
    same = judge(_evidence([[True]] * 10), gate)
    assert (same[0].regressed, same[0].regressions, same[0].p_value) == (False, 0, 1.0)
    # 8 of 10 items the gate passed now fail: one-sided exact McNemar p = 0.5^8 = 0.0039.
    drop = judge(_evidence([[False]] * 8 + [[True]] * 2), gate)
    assert drop[0].regressed
    assert drop[0].regressions == 8
    assert drop[0].p_value == pytest.approx(0.5**8, abs=1e-6)
    # Two items lost is not evidence of drift at 95% (p = 0.25): not called a regression.
    noise = judge(_evidence([[False]] * 2 + [[True]] * 8), gate)
    assert not noise[0].regressed
    assert noise[0].p_value == pytest.approx(0.25)


def test_a_check_whose_eval_set_changed_is_not_compared_and_says_why() -> None:
    verdicts = judge(_evidence([[False]] * 10, digest="sha256:" + "b" * 64), _evidence([[True]] * 10))
    assert verdicts[0].then is None
    assert not verdicts[0].regressed
    assert verdicts[0].note == "its eval set changed since the gate ran"
    assert judge(_evidence([[True]]), None)[0].note == "no gate evidence to compare with"


# ---------------------------------------------------------------- on the emulator

ENV = """\
config:
  ftops:environment:
    name: canary
    stage: staging
    target: local
    location: swedencentral
    naming:
      prefix: ftops
    emulator:
      endpoint: {endpoint}
      account: canary-acct
    promotion:
      from: local
      require_approval: true
    deployments:
      support-bot:
        model: support-bot
        sku: {{name: GlobalStandard, capacity: 50}}
    gates:
      support-bot:
        repeats: 1
        temperature: 0
        quality:
          - {{name: refunds, eval_set: data/evals.jsonl, grader: regex, threshold: 0.5}}
        safety: null
"""
QUESTIONS = [f"How long do I have to return order {n}?" for n in range(1000, 1012)]


def cli(root: Path, *args: str) -> Any:
    return CliRunner().invoke(
        app, list(args), env={"FTOPS_ROOT": str(root), "FTOPS_ACTOR": "tester", "FTOPS_EMULATOR_KEY": KEY}
    )


@pytest.fixture(scope="module", autouse=True)
def _key() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FTOPS_EMULATOR_KEY", KEY)
        yield


@pytest.fixture(scope="module")
def served(emu: Emulator, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A repository whose environment serves a model trained for real, gated on a candidate
    deployment with its evidence and audit record, as `pulumi up` leaves them."""
    root = tmp_path_factory.mktemp("canary-repo")
    (root / "environments" / "releases").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "Pulumi.yaml").write_text((REPO / "Pulumi.yaml").read_text())
    (root / "environments" / "Pulumi.canary.yaml").write_text(ENV.format(endpoint=emu.url))
    (root / "environments" / "releases" / "canary.yaml").write_text("releases: {}\n")
    (root / "data" / "evals.jsonl").write_text(
        "".join(
            json.dumps(
                {
                    "id": f"q{i}",
                    "messages": [{"role": "user", "content": q}],
                    "pattern": "30 days",
                    "max_tokens": 24,
                }
            )
            + "\n"
            for i, q in enumerate(QUESTIONS)
        )
    )
    train = root / "train.jsonl"
    train.write_text(
        "".join(
            json.dumps(
                {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": ANSWER}]}
            )
            + "\n"
            for q in QUESTIONS + [f"Can I still return order {n}?" for n in range(2000, 2004)]
        )
    )
    client = emu.v1(account="canary-acct")
    with train.open("rb") as handle:
        uploaded = client.files.create(file=handle, purpose="fine-tune")
    wait_file(client, uploaded.id)
    job = client.fine_tuning.jobs.create(
        model=BASE,
        training_file=uploaded.id,
        suffix="canary",
        seed=3,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 8, "batch_size": 4}}},
    )
    done = wait_for(client, job.id, ("succeeded", "failed"), timeout=300)
    assert done.status == "succeeded", done
    model = str(done.fine_tuned_model)
    for name in ("support-bot-candidate", "support-bot"):
        ModelDeploymentProvider().create(deployment_props(emu, "canary-acct", name, model, 50))
    # The gate, as `pulumi up` runs it: on the candidate deployment, evidence by digest, a record.
    gated = cli(
        root, "evaluate", "--env", "canary", "--model", "support-bot", "--deployment", "support-bot-candidate"
    )
    assert gated.exit_code == 0, gated.output
    evidence = next((root / ".ftops" / "evidence" / "canary").glob("*.json"))
    digest = "sha256:" + evidence.name.removesuffix(".json")
    from ftops.auditlog import Change

    FileAuditLog(root / ".ftops" / "audit" / "canary.jsonl").append(
        Change("canary", "support-bot", "gate", None, model, evidence_digest=digest)
    )
    return root, model


def _deployment(emu: Emulator) -> dict[str, Any]:
    with emu.http() as http:
        path = emu.arm("canary-acct") + "/deployments/support-bot"
        response = http.get(path, params={"api-version": "2024-10-01"})
        assert response.status_code == 200, response.text
        return dict(response.json())


def test_an_unchanged_serving_model_passes_and_the_run_is_audited(
    emu: Emulator, served: tuple[Path, str]
) -> None:
    root, model = served
    before = _deployment(emu)
    result = cli(root, "canary", "--env", "canary")
    assert result.exit_code == 0, result.output
    assert "Canary `canary/support-bot`: ✅ pass" in result.output
    assert "| refunds (pass rate) | 1.000 |" in result.output, result.output
    assert "| 0 / 0 | 1.0000 | pass |" in result.output
    last = records(FileAuditLog(root / ".ftops" / "audit" / "canary.jsonl"))[-1]
    assert (last.action, last.to_model, last.resource, last.details["verdict"]) == (
        "canary",
        model,
        "support-bot",
        "pass",
    )
    assert _deployment(emu) == before  # a canary never writes a deployment


@pytest.mark.parametrize("drift", ["base", "noise"])
def test_a_drifted_serving_model_fails_with_the_numbers_and_the_rollback(
    emu: Emulator, served: tuple[Path, str], drift: str
) -> None:
    root, _model = served
    before = _deployment(emu)
    with emu.http() as http:
        # The serving deployment answers with the base model's weights; its name and model id stay.
        assert (
            http.put("/admin/faults", json={"drift": drift, "drift_deployments": ["support-bot"]}).status_code
            == 200
        )
    result = cli(root, "canary", "--env", "canary", "--issue")
    assert result.exit_code == 1, result.output
    assert "Canary `canary/support-bot`: ❌ regression" in result.output
    # base: the base weights never say "30 days"; noise: sampling at temperature 2 seldom does.
    found = re.search(
        r"refunds: pass rate ([0-9.]+) now vs 1\.000 at the gate .*?(\d+) items regressed", result.output
    )
    assert found is not None, result.output
    assert float(found[1]) <= 0.5, result.output
    assert int(found[2]) >= 6, result.output
    if drift == "base":
        assert "pass rate 0.000 now vs 1.000 at the gate (delta -1.000); 12 items regressed, 0 improved" in (
            result.output
        )
    assert 'ftops rollback support-bot --env canary --reason "canary: ' in result.output
    assert "--pr" in result.output  # the environment requires approval: the rollback is a PR
    log = records(FileAuditLog(root / ".ftops" / "audit" / "canary.jsonl"))
    assert log[-1].action == "canary"
    assert log[-1].details["verdict"] == "fail"
    assert log[-1].details["checks"]["refunds"]["regressed"] is True
    assert _deployment(emu) == before
    if shutil.which("gh") is None:  # --issue without gh: one line saying so, not a traceback
        assert "gh (the GitHub CLI) is not installed: no issue opened" in result.output
