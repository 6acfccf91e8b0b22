"""`experiments:` on the emulator with the tiny stand-in, through the provider host as the engine
runs it: a 2 x 2 grid (two learning rates x two data fractions) trains four jobs on nested,
content-addressed subsets; the Experiment scores each with the gate's quality check on a
held-out eval set (each on a deployment that lives for its evaluation only), writes the report
(JSON, markdown, learning curve and loss charts), and the chosen variant goes through the
candidate deployment and the gate to the serving deployment. Run again, nothing trains."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ftops.config.experiments import method_for, variants
from ftops.config.schema import Experiments
from ftops.dataset.subsets import write_subset
from ftops.providers.deployments import ModelDeploymentProvider
from ftops.providers.experiment import ExperimentProvider
from ftops.providers.files import TrainingFileProvider
from ftops.providers.gate import EvaluationGateProvider
from ftops.providers.jobs import FineTuningJobProvider
from ftops.providers.spec import sha256_file
from tests.conftest import write_jsonl
from tests.emulator_process import Emulator, deployment_props, start, target
from tests.gate_inputs import POLICY, wire_check
from tests.provider_host import DynamicHost

WORDS = "tent boot rope lamp sock map cup pan axe net kite bag hat rod jar fan pot mat box pen".split()
PROMPTS = [f"question number {i} about item {w}" for i, w in enumerate(WORDS + [w + "s" for w in WORDS])]
GRID = Experiments.model_validate(
    {"grid": {"learning_rate_multiplier": [1.0, 3.0]}, "fractions": [0.5, 1.0], "subset_seed": 3}
)


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    server = start(tmp_path_factory.mktemp("emulator"), tmp_path_factory.mktemp("models"))
    yield server
    assert server.stop() == 0


def chat(question: str, answer: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def run_grid(host: DynamicHost, emu: Emulator, account: str, folder: Path) -> dict[str, Any]:
    """What the program declares for the grid: a file per subset, a job per variant, the Experiment."""
    tgt = target(emu, account)
    train = folder / "train.jsonl"
    valid = folder / "valid.jsonl"

    def upload(path: Path) -> dict[str, Any]:
        _, out = host.create(
            TrainingFileProvider(),
            {"target": tgt, "path": str(path), "digest": sha256_file(str(path)), "purpose": "fine-tune"},
        )
        return out

    validation = upload(valid)
    method = {"type": "supervised", "hyperparameters": {"n_epochs": 3, "batch_size": 2}}
    wired = []
    for plan in variants(GRID):
        data = upload(write_subset(train, plan.fraction, GRID.subset_seed, folder / "subsets"))
        job_id, job = host.create(
            FineTuningJobProvider(),
            {
                "target": tgt,
                "name": "bot",
                "base_model": "gpt-4.1-mini-2025-04-14",
                "training_file": data["file_id"],
                "training_digest": data["digest"],
                "validation_file": validation["file_id"],
                "validation_digest": validation["digest"],
                "method": method_for(method, plan),
                "seed": 7,
                "suffix": "bot",
                "training_type": "Standard",
                "checkpoint": "final",
                "wait_timeout_minutes": 10,
                "attempt": 0,
                "retain": True,
                "releases_dir": str(folder),
            },
        )
        wired.append(
            {
                "label": plan.label,
                "setting": plan.label.rsplit("-", 1)[0],
                "fraction": plan.fraction,
                "epochs": 3,
                "hyperparameters": plan.hyperparameters,
                "job": job_id,
                "model": job["fine_tuned_model"],
                "billed_tokens": job["trained_tokens"],
                "data_digest": f"sha256:{data['digest']}",
            }
        )
    held_out = folder / "evals.jsonl"
    check = wire_check("held-out", str(held_out), f"sha256:{sha256_file(str(held_out))}", "regex", 0.3)
    return {
        "target": tgt,
        "name": "bot",
        "checks": [check],
        "policy": POLICY,
        "baseline": {"kind": "none", "deployment": None},
        "environment": "test",
        "seed": 1,
        "variants": wired,
        "sku": {"name": "GlobalStandard", "capacity": 10},
        "select": "cheapest_not_worse",
        "usd_per_million": 5.0,
        "evidence_dir": str(folder / "evidence"),
    }


def test_a_2x2_grid_trains_four_jobs_reports_curves_and_the_winner_goes_through_the_gate(
    emu: Emulator, host: DynamicHost, tmp_path: Path
) -> None:
    account = "grid"
    # Azure takes no file of fewer than 10 examples: 20 to train (10 in the half), 10 to validate.
    write_jsonl(tmp_path / "train.jsonl", [chat(q, "ok") for q in PROMPTS[:20]])
    write_jsonl(tmp_path / "valid.jsonl", [chat(q, "ok") for q in PROMPTS[20:30]])
    write_jsonl(
        tmp_path / "evals.jsonl",
        [
            {"messages": [{"role": "user", "content": q}], "pattern": "^ok", "max_tokens": 6}
            for q in PROMPTS[30:]
        ],
    )
    props = run_grid(host, emu, account, tmp_path)
    client = emu.v1(account=account)
    assert len(list(client.fine_tuning.jobs.list(limit=100))) == 4
    # Nested subsets: the 50 % file's examples are all in the full file.
    half = next((tmp_path / "subsets").glob("train.50pct.*.jsonl")).read_text().splitlines()
    assert len(half) == 10
    assert set(half) <= set((tmp_path / "train.jsonl").read_text().splitlines())

    _, out = host.create(ExperimentProvider(), props)
    record = json.loads(Path(out["report"]["json"]).read_text())
    labels = [v["label"] for v in record["variants"]]
    assert labels == ["lr1-f50", "lr1-f100", "lr3-f50", "lr3-f100"]
    assert out["label"] == record["chosen"]
    chosen = next(v for v in props["variants"] if v["label"] == out["label"])
    assert (out["model"], out["job_id"], out["data_digest"]) == (
        chosen["model"],
        chosen["job"],
        chosen["data_digest"],
    )
    for row in record["variants"]:
        assert row["items"] == 10
        assert row["billed_tokens"] > 0
        assert row["usd"] == pytest.approx(row["billed_tokens"] * 5.0 / 1e6, abs=1e-4)
        assert row["overfitting"]["flag"] in (True, False), row  # a validation file: the flag is decided
    # Every variant of the cheaper half of the data bills fewer tokens than its full-data twin.
    billed = {v["label"]: v["billed_tokens"] for v in record["variants"]}
    assert billed["lr1-f50"] < billed["lr1-f100"]
    curves = {c["setting"]: c for c in record["learning_curves"]}
    assert sorted(curves) == ["lr1", "lr3"]
    assert [p["fraction"] for p in curves["lr1"]["points"]] == [0.5, 1.0]
    assert all(c["doubling_gain"] is not None for c in curves.values())
    assert sorted(record["losses"]) == sorted(labels)
    assert all(len(rows) >= 2 for rows in record["losses"].values())
    for chart in ("learning curve", "loss curves"):
        assert Path(out["report"][chart]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = Path(out["report"]["markdown"]).read_text()
    assert f"`{out['label']}` chosen (cheapest_not_worse)" in summary
    assert "![learning curve](" in summary
    # The evaluation deployments lived for their evaluation only: none is left.
    http = emu.http()
    arm = f"{emu.arm(account)}/deployments/bot-exp-0"
    assert http.get(arm, params={"api-version": "2024-10-01"}).status_code == 404

    # The winner goes on exactly as a single model: candidate deployment, gate, serving deployment.
    host.create(ModelDeploymentProvider(), deployment_props(emu, account, "bot-candidate", out["model"], 10))
    gate_props = {
        **{k: props[k] for k in ("target", "name", "checks", "policy", "baseline", "environment", "seed")},
        "deployment": "bot-candidate",
        "candidate_model": out["model"],
        "job": out["job_id"],
        "evidence_dir": str(tmp_path / "evidence"),
    }
    _, gate = host.create(EvaluationGateProvider(), gate_props)
    assert gate["model"] == out["model"]
    host.create(ModelDeploymentProvider(), deployment_props(emu, account, "bot", gate["model"]))
    reply = client.chat.completions.create(
        model="bot", messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    assert reply.model == out["model"]

    # Run again with nothing changed: every upload and job is adopted, nothing trains, and the
    # Experiment sees no change (so nothing is evaluated again either).
    again = run_grid(host, emu, account, tmp_path)
    assert len(list(client.fine_tuning.jobs.list(limit=100))) == 4
    assert [v["job"] for v in again["variants"]] == [v["job"] for v in props["variants"]]
    diff = host.diff(ExperimentProvider(), "bot-experiment", {**props, **out}, again)
    assert diff.changes == diff.DIFF_NONE
