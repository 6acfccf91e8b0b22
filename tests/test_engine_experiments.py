"""`experiments:` through the real Pulumi engine (`ftops up` as users run it) against the emulator:
a 2 x 2 grid trains four jobs, the chosen variant's model is the only one that reaches a lasting
deployment (the candidate, through the gate, then serving), the report and its charts are written,
and a second `up` with nothing changed trains, uploads and evaluates nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftops.engine import install
from tests.emulator_process import Emulator
from tests.gitops_repo import git
from tests.test_engine import DEV_FILE, engine, make, ok, pulumi_home

pytestmark = pytest.mark.slow
__all__ = ["engine", "pulumi_home"]  # the engine tests' fixtures, used here by name

GRID = """\
        experiments:
          grid: {learning_rate_multiplier: [1, 2]}
          fractions: [0.5, 1]
"""


def test_a_grid_trains_four_jobs_serves_the_chosen_one_and_a_rerun_trains_nothing(
    engine: install.Engine, emu: Emulator, pulumi_home: Path, tmp_path: Path
) -> None:
    repo = make(tmp_path / "repo", emu, pulumi_home, "grid-engine")
    repo.edit(DEV_FILE, "        suffix: bot\n", "        suffix: bot\n" + GRID)
    git(repo.root, "commit", "--quiet", "-am", "a 2 x 2 grid")
    first = repo.ftops("up", "--env", "local-dev", "--json")
    ok(first)
    result = json.loads(first.stdout)
    jobs = repo.jobs()
    assert sorted(j.status for j in jobs) == ["succeeded"] * 4
    lrs = sorted(
        (j.method.supervised.hyperparameters.learning_rate_multiplier, j.trained_tokens) for j in jobs
    )
    assert [lr for lr, _ in lrs] == [1, 1, 2, 2]
    chosen = result["outputs"]["models"]["support-bot"]
    assert chosen in {j.fine_tuned_model for j in jobs}
    assert result["outputs"]["deployments"]["support-bot"] == chosen
    # The variants' evaluation deployments are gone; only the chosen model is deployed.
    assert repo.deployments() == {"support-bot-candidate": chosen, "support-bot": chosen}
    reports = repo.root / ".ftops" / "evidence" / "local-dev" / "experiments"
    assert len(list(reports.glob("*.json"))) == 1
    assert len(list(reports.glob("*.png"))) == 2
    record = json.loads(next(reports.glob("*.json")).read_text())
    assert sorted(v["label"] for v in record["variants"]) == ["lr1-f100", "lr1-f50", "lr2-f100", "lr2-f50"]
    assert next(v for v in record["variants"] if v["decision"] == "chosen")["model"] == chosen

    with repo.emu.http() as http:
        http.delete("/admin/requests")
        second = repo.ftops("up", "--env", "local-dev", "--json")
        counted = http.get("/admin/requests").json()["requests"]
    ok(second)
    assert set(json.loads(second.stdout)["changes"]) == {"same"}, second.stdout
    assert not [k for k in counted if k.startswith(("POST", "PUT", "DELETE"))], counted
    assert len(repo.jobs()) == 4
