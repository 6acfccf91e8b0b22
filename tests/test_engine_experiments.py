"""`experiments:` and `checkpoint: best_eval` through the real Pulumi engine (`ftops up` as users run it) against the emulator:
a 2 x 2 grid trains four jobs, the chosen variant's model is the only one that reaches a lasting
deployment (the candidate, through the gate, then serving), the report and its charts are written,
and a second `up` with nothing changed trains, uploads and evaluates nothing. best_eval serves the
checkpoint that beat the final one, and promotion moves exactly that checkpoint to staging."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ftops.config.pins import load_releases
from ftops.engine import install
from tests.emulator_process import Emulator, start
from tests.gitops_repo import git
from tests.test_checkpoints_emulator import PROMPTS
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


# ---------------------------------------------------------------- checkpoint: best_eval


@pytest.fixture(scope="module")
def own_emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    # Its own stand-in cache, as in test_checkpoints_emulator: the run below is built so that its last
    # epoch goes wrong, on the tiny stand-in as an emulator process builds it.
    server = start(tmp_path_factory.mktemp("emulator"), tmp_path_factory.mktemp("models"))
    yield server
    assert server.stop() == 0


def test_best_eval_serves_pins_and_promotes_the_checkpoint_the_last_epoch_did_not_beat(
    engine: install.Engine, own_emu: Emulator, pulumi_home: Path, tmp_path: Path
) -> None:
    repo = make(tmp_path / "repo", own_emu, pulumi_home, "bestev-engine")
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "ok"}]}
        for q in PROMPTS[:10]
    ]
    (repo.root / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    held_out = [
        {"messages": [{"role": "user", "content": q}], "pattern": "^ok", "max_tokens": 6}
        for q in PROMPTS[10:] + PROMPTS[:3]
    ]
    (repo.root / "data" / "evals.jsonl").write_text("".join(json.dumps(r) + "\n" for r in held_out))
    repo.edit(
        DEV_FILE,
        "            n_epochs: 1\n",
        "            n_epochs: 3\n            batch_size: 2\n            learning_rate_multiplier: 7\n",
    )
    repo.edit(DEV_FILE, "        suffix: bot\n", "        suffix: bot\n        checkpoint: best_eval\n")
    git(repo.root, "commit", "--quiet", "-am", "best_eval on a run whose last epoch goes wrong")
    run = repo.ftops("up", "--env", "local-dev", "--json")
    ok(run)
    (job,) = repo.jobs()
    kept = sorted(repo.client().fine_tuning.jobs.checkpoints.list(job.id).data, key=lambda c: c.step_number)
    epoch2 = kept[1].id
    assert repo.deployments() == {
        "support-bot-candidate-e1": kept[0].id,
        "support-bot-candidate-e2": epoch2,
        "support-bot-candidate": job.fine_tuned_model,
        "support-bot": epoch2,
    }
    audit = [
        json.loads(line) for line in (repo.root / ".ftops/audit/local-dev.jsonl").read_text().splitlines()
    ]
    gated = next(r for r in audit if r["action"] == "gate")
    assert (gated["to_model"], gated["details"]["checkpoint"]) == (epoch2, epoch2)
    assert gated["details"]["fine_tuned_model"] == job.fine_tuned_model

    promoted = repo.ftops("promote", "support-bot", "--from", "local-dev", "--to", "local-staging")
    ok(promoted)
    pin = load_releases(repo.root, "local-staging")["support-bot"]
    assert (pin.model, pin.checkpoint) == (job.fine_tuned_model, epoch2)
    git(repo.root, "commit", "--quiet", "-am", "promote the epoch-2 checkpoint")
    staged = repo.ftops("up", "--env", "local-staging")
    ok(staged)
    staging = f"{repo.account}-stg"
    assert repo.deployments(staging) == {"support-bot-candidate": epoch2, "support-bot": epoch2}
    assert list(repo.client(staging).fine_tuning.jobs.list()) == []  # moved, not retrained
