"""`checkpoint: best_eval` on the emulator, through the provider host as the engine runs it: the
kept checkpoints are each deployed and scored with the gate's quality checks, the best one is gated
against the baseline and serves, and the promotion pin names that checkpoint.

The training run is built so that its last epoch goes wrong: ten prompts all answered "ok", a
learning rate far too high for the tiny stand-in (7 x its base rate, batch 2, seed 7). Epoch 2
answers held-out prompts with "ok..."; in epoch 3 the training loss rises again and every
held-out answer starts with blank lines. The test asserts that shape from the gate's own record
before it asserts the choice, so a stand-in that trained differently fails loudly, not vacuously.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ftops.config.schema import ReleasePin
from ftops.gitops.release import _artifact
from ftops.providers.deployments import ModelDeploymentProvider
from ftops.providers.files import TrainingFileProvider
from ftops.providers.gate import EvaluationGateProvider
from ftops.providers.jobs import FineTuningJobProvider
from ftops.providers.spec import sha256_file
from tests.conftest import write_jsonl
from tests.emulator_process import Emulator, deployment_props, start, target
from tests.gate_inputs import POLICY, wire_check
from tests.provider_host import DynamicHost

WORDS = "tent boot rope lamp sock map cup pan axe net kite bag hat".split()
PROMPTS = [f"question number {i} about item {w}" for i, w in enumerate(WORDS)]


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    # Its own stand-in cache: the tiny model's seeded weights depend on the process that builds them
    # first, and this test's expected answers come from one built by an emulator process.
    server = start(tmp_path_factory.mktemp("emulator"), tmp_path_factory.mktemp("models"))
    yield server
    assert server.stop() == 0


def test_best_eval_serves_the_earlier_checkpoint_when_the_last_epoch_goes_wrong(
    emu: Emulator, host: DynamicHost, tmp_path: Path
) -> None:
    account = "bestev"
    train = write_jsonl(
        tmp_path / "train.jsonl",
        [
            {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "ok"}]}
            for q in PROMPTS[:10]
        ],
    )
    held_out = write_jsonl(
        tmp_path / "evals.jsonl",
        [
            {"messages": [{"role": "user", "content": q}], "pattern": "^ok", "max_tokens": 6}
            for q in PROMPTS[10:] + PROMPTS[:3]
        ],
    )
    tgt = target(emu, account)
    _, training = host.create(
        TrainingFileProvider(),
        {"target": tgt, "path": str(train), "digest": sha256_file(str(train)), "purpose": "fine-tune"},
    )
    job_props = {
        "target": tgt,
        "name": "bot",
        "base_model": "gpt-4.1-mini-2025-04-14",
        "training_file": training["file_id"],
        "training_digest": training["digest"],
        "validation_file": None,
        "validation_digest": None,
        "method": {
            "type": "supervised",
            "hyperparameters": {"n_epochs": 3, "batch_size": 2, "learning_rate_multiplier": 7.0},
        },
        "seed": 7,
        "suffix": "bot",
        "training_type": "Standard",
        "checkpoint": "best_eval",
        "wait_timeout_minutes": 10,
        "attempt": 0,
        "retain": True,
        "releases_dir": str(tmp_path),
    }
    job_id, job = host.create(FineTuningJobProvider(), job_props)
    kept = job["checkpoints"]
    assert [c["step"] for c in kept] == [5, 10, 15]
    assert [c["final"] for c in kept] == [False, False, True]
    assert kept[-1]["deploy"] == job["fine_tuned_model"] == job["model"]  # the gate decides, not the job
    assert all(c["deploy"] == c["id"] and c["id"].startswith("ftckpt_") for c in kept[:2])

    # One candidate deployment per kept checkpoint (what FineTunedModel declares), then the gate.
    names = ["bot-candidate-e1", "bot-candidate-e2", "bot-candidate"]
    for name, checkpoint in zip(names, kept, strict=True):
        host.create(ModelDeploymentProvider(), deployment_props(emu, account, name, checkpoint["deploy"], 10))
    candidates = [
        {**c, "deployment": name, "epoch": epoch, "model": c["deploy"]}
        for c, name, epoch in zip(kept, names, (1, 2, 3), strict=True)
    ]
    check = wire_check("held-out", str(held_out), f"sha256:{sha256_file(str(held_out))}", "regex", 0.5)
    gate_props = {
        "target": tgt,
        "name": "bot",
        "deployment": "bot-candidate",
        "candidate_model": job["model"],
        "job": job_id,
        "checks": [check],
        "policy": POLICY,
        "baseline": {"kind": "none", "deployment": None},
        "seed": 1,
        "evidence_dir": str(tmp_path / "evidence"),
        "environment": "test",
        "candidates": candidates,
    }
    _, gate = host.create(EvaluationGateProvider(), gate_props)

    selection = gate["selection"]
    scores = [row["score"] for row in selection["candidates"]]
    losses = [row["train_loss"] for row in selection["candidates"]]
    # The run went wrong in its last epoch, as built: loss up again, held-out answers gone.
    assert losses[2] > losses[1], losses
    assert scores[1:] == [1.0, 0.0], scores
    assert selection["chosen"] == {
        "id": kept[1]["id"],
        "step": 10,
        "epoch": 2,
        "final": False,
        "label": "epoch 2 (step 10)",
    }
    assert "significantly better (one-sided McNemar p=0.0156 < 0.05)" in selection["notes"][-1]
    assert gate["model"] == gate["checkpoint"] == kept[1]["id"]
    evidence = json.loads(Path(gate["evidence_path"]).read_text())
    assert (evidence["model"], evidence["deployment"]) == (kept[1]["id"], "bot-candidate-e2")
    assert evidence["verdict"] == "pass"
    assert evidence["checkpoints"]["chosen"]["epoch"] == 2
    summary = Path(gate["evidence_path"]).with_suffix(".md").read_text()
    assert "`epoch 2 (step 10)` chosen" in summary

    # The serving deployment takes the gate's model: it serves that checkpoint.
    host.create(ModelDeploymentProvider(), deployment_props(emu, account, "bot", gate["model"]))
    reply = emu.v1(account=account).chat.completions.create(
        model="bot", messages=[{"role": "user", "content": PROMPTS[11]}], max_tokens=6, temperature=0
    )
    assert reply.model == kept[1]["id"]
    assert str(reply.choices[0].message.content).startswith("ok")

    # What promotion pins from the gate's record: the job's model and the checkpoint that serves.
    pin = ReleasePin(
        **_artifact(
            gate["model"], {"checkpoint": gate["checkpoint"], "fine_tuned_model": job["fine_tuned_model"]}
        ),
        source_account=tgt["arm_id"],
        source_environment="dev",
        job=job_id,
        data_digest=f"sha256:{training['digest']}",
        evidence_digest=gate["evidence_digest"],
        source_commit=gate["commit"][:7],
    )
    assert (pin.model, pin.checkpoint, pin.artifact) == (
        job["fine_tuned_model"],
        kept[1]["id"],
        kept[1]["id"],
    )

    # Promoted, the pin deploys exactly that checkpoint in another account (model.source), as
    # PromotedModel does: the staging account serves epoch 2, not the job's final model.
    staging = deployment_props(emu, "bestev-staging", "bot", pin.artifact)
    staging["model"] = {**staging["model"], "source": pin.source_account}
    host.create(ModelDeploymentProvider(), staging)
    promoted = emu.v1(account="bestev-staging").chat.completions.create(
        model="bot", messages=[{"role": "user", "content": PROMPTS[11]}], max_tokens=6, temperature=0
    )
    assert promoted.model == kept[1]["id"]
    assert promoted.choices[0].message.content == reply.choices[0].message.content


def test_best_eval_needs_a_number_of_epochs(emu: Emulator, host: DynamicHost) -> None:
    props = {
        "target": target(emu, "bestev-check"),
        "base_model": "gpt-4.1-mini-2025-04-14",
        "training_digest": "a" * 64,
        "method": {"type": "supervised", "hyperparameters": {"n_epochs": "auto"}},
        "checkpoint": "best_eval",
    }
    _, failures = host.check(FineTuningJobProvider(), {}, props)
    assert failures == [("method.hyperparameters.n_epochs", "best_eval needs a whole number of epochs")]
