"""Reinforcement fine-tuning on the emulator, through the official openai SDK: Azure's checks,
real GRPO training of the tiny stand-in against a grader, reward events, checkpoints,
results.csv, pause/resume, the automatic pause at the cost ceiling, and the proof: the trained
model beats the base on the gate that uses the very grader it was trained against."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import torch
from scipy.stats import binomtest

from ftops.emulator.ml.rft import group_advantages, policy_loss
from ftops.evaluation import rft_graders, stats
from ftops.evaluation.verdict import Endpoint, run_check
from tests.conftest import REPO
from tests.emulator_process import KEY, Emulator, start, wait_for
from tests.gate_inputs import a_check, a_policy
from tests.test_emulator_api import deploy, upload

TRAIN = REPO / "data" / "rft-digits" / "train.jsonl"
VALID = REPO / "data" / "rft-digits" / "valid.jsonl"
BASE = "o4-mini-2025-04-16"
# "Reply with the number only": most of the reward for an answer that is a number, the rest for
# the right one. The same object is the job's reward and the gate's check.
GRADER: dict[str, Any] = json.loads((REPO / "data" / "rft-digits" / "grader.json").read_text())
HYPER: dict[str, Any] = {
    "n_epochs": 4,
    "batch_size": 4,
    "learning_rate_multiplier": 10,
    "reasoning_effort": "low",
    "compute_multiplier": 2,
    "eval_interval": 6,
    "eval_samples": 4,
}


def data_of(event: Any) -> dict[str, Any]:
    return dict(event.data)


def rft_method(grader: Any = GRADER, **hyper: Any) -> Any:
    return {
        "type": "reinforcement",
        "reinforcement": {"grader": grader, "hyperparameters": {**HYPER, **hyper}},
    }


# ---------------------------------------------------------------- the objective, by hand


def test_group_advantages_by_hand() -> None:
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.5, 0.5]])
    # group 1: mean 0.5, population std 0.5 -> +-1 (over std + 1e-4); group 2: all equal -> 0
    expected = torch.tensor([[1.0, -1.0, -1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]) * (0.5 / (0.5 + 1e-4))
    assert torch.allclose(group_advantages(rewards), expected)


def test_policy_loss_and_its_gradient_by_hand() -> None:
    # Two samples: 2 and 1 completion tokens (the third position of sample 2 is padding).
    logps = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, 0.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    advantages = torch.tensor([2.0, -1.0])
    loss = policy_loss(logps, logps.detach(), advantages, mask)
    # On-policy, ratio = 1: per token -A; per sample the mean over its tokens; then the mean.
    assert loss.item() == pytest.approx(((-2.0) + (1.0)) / 2)
    loss.backward()  # type: ignore[no-untyped-call]
    # d loss / d logp_t = -A_i / |o_i| / n_samples: sample 1 -> -2/2/2 = -0.5; sample 2 -> 1/1/2.
    assert logps.grad is not None
    assert torch.allclose(logps.grad, torch.tensor([[-0.5, -0.5, 0.0], [0.5, 0.0, 0.0]]))
    # Off-policy, the clip (-min(rA, clip(r, 0.8, 1.2)A) per token): sample 1's first token has
    # r = e^0.5 ~ 1.65 and A = 2 -> -min(3.30, 2.4) = -2.4, its second r = 1 -> -2; sample 2 has
    # r = e^-0.5 ~ 0.61 and A = -1 -> -min(-0.61, -0.8) = 0.8.
    old = torch.tensor([[-1.5, -2.0, 0.0], [0.0, 0.0, 0.0]])
    clipped = policy_loss(logps.detach(), old, advantages, mask)
    sample_1 = (-(1.2 * 2.0) + -(1.0 * 2.0)) / 2  # tokens: ratio e^0.5 clipped to 1.2; ratio 1
    sample_2 = 0.8
    assert clipped.item() == pytest.approx((sample_1 + sample_2) / 2)


# ---------------------------------------------------------------- Azure's checks


@pytest.fixture(scope="module")
def files(emu: Emulator) -> dict[str, str]:
    client = emu.v1(account="rft")
    return {"train": upload(client, TRAIN).id, "valid": upload(client, VALID).id}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": "gpt-4.1-mini-2025-04-14"}, "does not support reinforcement fine-tuning"),
        ({"validation_file": None}, "validation_file is required"),
        ({"method": rft_method(grader=None)}, "method.reinforcement.grader is required"),
        (
            {"method": rft_method(grader={"type": "python", "source": "def grade(s, i):\n  return )"})},
            "source line 2",
        ),
        (
            {"method": rft_method(grader={**GRADER, "calculate_output": "format + nope"})},
            "calculate_output uses nope",
        ),
        ({"method": rft_method(reasoning_effort="extreme")}, "reasoning_effort must be one of"),
        ({"method": rft_method(compute_multiplier=11)}, "compute_multiplier must be 'auto' or a number"),
        ({"method": rft_method(beta=0.1)}, "Unknown hyperparameter(s) for reinforcement: beta"),
        (
            {
                "method": rft_method(
                    grader={
                        "type": "score_model",
                        "model": "judge-9000",
                        "input": [{"role": "user", "content": "x"}],
                    }
                )
            },
            "the grader model 'judge-9000' is not a model",
        ),
    ],
)
def test_azure_refuses_what_it_refuses(
    emu: Emulator, files: dict[str, str], change: Any, message: str
) -> None:
    client = emu.v1(account="rft", max_retries=0)
    body = {
        "model": BASE,
        "training_file": files["train"],
        "validation_file": files["valid"],
        "method": rft_method(),
    }
    body.update(change)
    with pytest.raises(openai.BadRequestError) as info:
        client.fine_tuning.jobs.create(**{k: v for k, v in body.items() if v is not None})
    assert message in str(info.value)


# ---------------------------------------------------------------- training for real, and the proof


@pytest.fixture(scope="module")
def trained(emu: Emulator, files: dict[str, str]) -> Any:
    client = emu.v1(account="rft")
    job = client.fine_tuning.jobs.create(
        model=BASE,
        training_file=files["train"],
        validation_file=files["valid"],
        seed=3,
        suffix="digits",
        method=rft_method(),
    )
    done = wait_for(client, job.id, ("succeeded", "failed"), timeout=600)
    assert done.status == "succeeded", done.error
    return done


def test_rft_job_reports_what_azure_reports(emu: Emulator, trained: Any) -> None:
    client = emu.v1(account="rft")
    assert trained.method.type == "reinforcement"
    section = trained.method.reinforcement
    assert section.grader.type == "multi"
    assert section.hyperparameters.reasoning_effort == "low"
    events = client.fine_tuning.jobs.list_events(trained.id, limit=1000)
    metrics = [data_of(e) for e in events if e.type == "metrics"]
    assert sorted(int(d["step"]) for d in metrics) == list(range(1, 25))
    valid = [d for d in metrics if "valid_reward_mean" in d]
    assert [int(d["step"]) for d in sorted(valid, key=lambda d: d["step"])] == [6, 12, 18, 24]
    for data in metrics:
        assert 0.0 <= data["train_reward_mean"] <= 1.0
        assert {"train_reward_mean_format", "train_reward_mean_exact"} <= set(data)  # per grader
    checkpoints = client.fine_tuning.jobs.checkpoints.list(trained.id).data
    assert len(checkpoints) == 3  # the last three epochs
    assert all("full_valid_reward_mean" in (c.metrics.model_extra or {}) for c in checkpoints)
    content = client.files.content(trained.result_files[0]).text
    rows = list(csv.DictReader(io.StringIO(content)))
    header = content.splitlines()[0].split(",")
    assert header[:5] == [
        "step",
        "train_reward_mean",
        "valid_reward_mean",
        "train_reasoning_tokens_mean",
        "valid_reasoning_tokens_mean",
    ]
    assert "valid_reward_mean_format" in header
    assert len(rows) == 24
    # The reward rose while it trained: the last validation pass against the first.
    first, last = (
        float(sorted(valid, key=lambda d: d["step"])[0]["valid_reward_mean"]),
        float(sorted(valid, key=lambda d: d["step"])[-1]["valid_reward_mean"]),
    )
    early = sum(float(r["train_reward_mean"]) for r in rows[:3]) / 3
    late = sum(float(r["train_reward_mean"]) for r in rows[-3:]) / 3
    assert late > early + 0.3, (early, late)
    assert last >= first - 0.05


def test_the_gate_with_the_same_grader_prefers_the_rft_model(
    emu: Emulator, trained: Any, tmp_path: Path
) -> None:
    account = "rft"
    deploy(emu, "rft-base", BASE, account=account)
    deploy(emu, "rft-tuned", trained.fine_tuned_model, account=account)
    # The validation prompts, answered within the completion budget the job trained with.
    evalset = tmp_path / "sums.jsonl"
    evalset.write_text(
        "".join(
            json.dumps({**json.loads(line), "max_tokens": 8}) + "\n"
            for line in VALID.read_text().splitlines()
        )
    )
    spec = json.dumps(rft_graders.canonical(rft_graders.parse(GRADER)), sort_keys=True)
    check = a_check(
        "sums", "quality", "azure:number-only", 0.5, str(evalset), grader_spec=spec, pass_score=0.8
    )
    policy = a_policy(repeats=2, temperature=0.7)
    client = emu.v1(account=account)
    outcome = run_check(
        check,
        policy,
        client,
        Endpoint("rft-tuned", trained.fine_tuned_model),
        Endpoint("rft-base", BASE),
        None,
    )
    assert outcome.baseline is not None
    scores = {
        "tuned": [r["score"] for r in outcome.results],
        "base": [r["score"] for r in outcome.baseline_results or []],
    }
    mean = {k: sum(v) / len(v) for k, v in scores.items()}
    assert mean["tuned"] > mean["base"] + 0.3, mean  # mean reward on the validation prompts
    comparison = stats.compare(outcome.candidate, outcome.baseline)
    discordant = comparison.improvements + comparison.regressions
    p = binomtest(comparison.improvements, discordant, 0.5, alternative="greater").pvalue
    assert p < 0.01, (comparison, p)  # paired (exact McNemar) over the 16 prompts


# ---------------------------------------------------------------- pause, resume, the cost ceiling


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[Emulator]:
    """An emulator whose RFT jobs pause themselves after (almost) no training time."""
    server = start(tmp_path_factory.mktemp("capped"), model_cache, "--rft-pause-after-seconds", "0.01")
    yield server
    assert server.stop() == 0


def test_the_cost_ceiling_pauses_once_and_resume_runs_uncapped(capped: Emulator) -> None:
    client = capped.v1(account="rft", max_retries=0)
    train, valid = upload(client, TRAIN), upload(client, VALID)
    job = client.fine_tuning.jobs.create(
        model=BASE,
        training_file=train.id,
        validation_file=valid.id,
        seed=3,
        method=rft_method(n_epochs=1, eval_interval=3),
    )
    paused = wait_for(client, job.id, ("paused", "failed", "succeeded"), timeout=300)
    assert paused.status == "paused"
    events = [e for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]
    assert any("paused automatically" in e.message and "cost ceiling" in e.message for e in events)
    steps = [int(data_of(e)["step"]) for e in events if e.type == "metrics"]
    assert steps == [1]  # the ceiling is checked before every step
    client.fine_tuning.jobs.resume(job.id)
    done = wait_for(client, job.id, ("succeeded", "failed", "paused"), timeout=300)
    assert done.status == "succeeded"
    steps = sorted(
        int(data_of(e)["step"])
        for e in client.fine_tuning.jobs.list_events(job.id, limit=100)
        if e.type == "metrics"
    )
    assert steps == list(range(1, 7))  # resumed where it stopped, no further cap


# ---------------------------------------------------------------- the provider path (Pulumi's job resource)


def test_the_job_resource_trains_rft_adopts_after_a_crash_and_replaces_on_an_edited_grader(
    emu: Emulator,
) -> None:
    from ftops.providers.files import TrainingFileProvider
    from ftops.providers.jobs import FineTuningJobProvider
    from ftops.providers.spec import spec_hash
    from tests.emulator_process import HOST_ENV
    from tests.provider_host import DynamicHost
    from tests.test_providers_emulator import (
        _create_in_background,
        _until,
        file_props,
        job_props,
        jobs_for,
    )

    account = "rft-provider"
    helper = DynamicHost(HOST_ENV)
    try:
        _, training = helper.create(TrainingFileProvider(), file_props(emu, account, TRAIN))
        _, validation = helper.create(TrainingFileProvider(), file_props(emu, account, VALID))
    finally:
        helper.close()
    method = {
        "type": "reinforcement",
        "hyperparameters": {**HYPER, "n_epochs": 1, "eval_interval": 3},
        "grader": GRADER,
    }
    props = job_props(
        emu,
        account,
        training,
        base_model=BASE,
        validation_file=validation["file_id"],
        validation_digest=validation["digest"],
        method=method,
    )
    spec = spec_hash(props)
    first = DynamicHost(HOST_ENV)
    thread = _create_in_background(first, FineTuningJobProvider(), props)
    _until(lambda: jobs_for(emu, account, spec))
    first.kill()  # a crash right after the job was created
    thread.join()
    second = DynamicHost(HOST_ENV)
    try:
        job_id, outs = second.create(FineTuningJobProvider(), props)
        assert outs["status"] == "succeeded"
        assert [j.id for j in jobs_for(emu, account, spec)] == [job_id]  # adopted, not trained twice
        job = emu.v1(account=account).fine_tuning.jobs.retrieve(job_id)
        assert job.method is not None
        assert job.method.reinforcement is not None
        assert job.method.reinforcement.grader.type == "multi"
        # An edited python grader is another job: the grader is part of the spec.
        edited = json.loads(json.dumps(method))
        edited["grader"]["graders"]["format"]["source"] += "    # stricter later\n"
        diff = second.diff(FineTuningJobProvider(), job_id, props, {**props, "method": edited})
        assert list(diff.replaces) == ["method"]
        assert spec_hash({**props, "method": edited}) != spec
    finally:
        second.close()


# ---------------------------------------------------------------- pause and resume, exactly


class _Recorder:
    def __init__(self, pause_before: int | None = None) -> None:
        self.rows: dict[int, dict[str, float]] = {}
        self.pause_before = pause_before

    def event(self, message: str, level: str = "info") -> None:
        pass

    def rewards(self, step: int, total_steps: int, row: dict[str, float]) -> None:
        self.rows[step] = row

    def checkpoint(self, epoch: int, step: int, path: Path, metrics: dict[str, float]) -> None:
        pass

    def control(self) -> str | None:
        asked = self.pause_before is not None and len(self.rows) + 1 == self.pause_before
        self.pause_before = None if asked else self.pause_before
        return "pause" if asked else None


def test_a_paused_and_resumed_run_is_the_run_without_the_pause(tmp_path: Path, model_cache: Path) -> None:
    from safetensors.torch import load_file

    from ftops.emulator.ml.rft import RftHyper, RftRequest, train_rft

    def request(work: Path, resume: Path | None = None) -> RftRequest:
        hyper = RftHyper(
            n_epochs=1,
            batch_size=4,
            learning_rate_multiplier=10,
            eval_interval=100,
            eval_samples=1,
            compute_multiplier=1,
            reasoning_effort="low",
        )
        return RftRequest("tiny-test", GRADER, TRAIN, VALID, hyper, 5, work, model_cache, resume_from=resume)

    whole = _Recorder()
    assert train_rft(request(tmp_path / "whole"), whole).status == "succeeded"
    split = _Recorder(pause_before=3)
    paused = train_rft(request(tmp_path / "split"), split)
    assert (paused.status, paused.steps) == ("paused", 2)
    resumed = train_rft(request(tmp_path / "split", tmp_path / "split" / "resume"), split)
    assert resumed.status == "succeeded"
    assert split.rows == whole.rows  # every step's rewards, the same draws
    one = load_file(str(tmp_path / "whole" / "adapter" / "adapter_model.safetensors"))
    two = load_file(str(tmp_path / "split" / "adapter" / "adapter_model.safetensors"))
    assert one.keys() == two.keys()
    assert all(torch.equal(one[k], two[k]) for k in one)


# ---------------------------------------------------------------- the graders API (preview)


def test_graders_run_and_validate_through_the_sdk(emu: Emulator) -> None:
    client = emu.v1(account="rft", max_retries=0)
    checked = client.fine_tuning.alpha.graders.validate(grader=GRADER)  # type: ignore[arg-type]
    assert checked.grader is not None
    assert checked.grader.type == "multi"
    ran = client.fine_tuning.alpha.graders.run(grader=GRADER, model_sample="12", item={"answer": "12"})  # type: ignore[arg-type]
    assert ran.reward == pytest.approx(1.0)
    assert ran.sub_rewards == {"format": 1.0, "exact": 1.0}
    half = client.fine_tuning.alpha.graders.run(grader=GRADER, model_sample="1a", item={"answer": "12"})  # type: ignore[arg-type]
    assert half.reward == pytest.approx(0.8 * 0.5)
    broken = {"type": "python", "name": "p", "source": "def grade(s, i):\n    return 1 / 0\n"}
    failed = client.fine_tuning.alpha.graders.run(grader=broken, model_sample="x")  # type: ignore[arg-type]
    assert failed.reward == 0.0
    assert failed.metadata.errors.python_grader_runtime_error
    assert "ZeroDivisionError" in str(failed.metadata.errors.python_grader_runtime_error_details)
    with pytest.raises(openai.BadRequestError, match=r"grader\.operation"):
        client.fine_tuning.alpha.graders.validate(
            grader={"type": "string_check", "name": "s", "input": "a", "reference": "b", "operation": "regex"}  # type: ignore[typeddict-item]
        )


def test_rft_bodies_conform_to_the_v1_spec(emu: Emulator, trained: Any) -> None:
    """Events, checkpoints, the job and the graders API as SPEC-V1 describes them. One deviation,
    on purpose: SPEC-V1's grader union has no python grader (nor python inside multi), which
    Azure's RFT guide documents (facts file: CONFLICT); ftops follows the guide."""
    from tests.test_emulator_spec_conformance import V1_SPEC, Contract, _spec

    v1 = Contract("v1", _spec(V1_SPEC))
    client = emu.v1(account="rft")
    no_python = {**GRADER, "graders": {"exact": GRADER["graders"]["exact"]}, "calculate_output": "exact"}
    calls = [
        ("GET", f"/fine_tuning/jobs/{trained.id}", None),
        ("GET", f"/fine_tuning/jobs/{trained.id}/events", None),
        ("GET", f"/fine_tuning/jobs/{trained.id}/checkpoints", None),
        ("POST", "/fine_tuning/alpha/graders/validate", {"grader": GRADER}),
        ("POST", "/fine_tuning/alpha/graders/validate", {"grader": no_python}),
        (
            "POST",
            "/fine_tuning/alpha/graders/run",
            {"grader": GRADER, "model_sample": "7", "item": {"answer": "7"}},
        ),
    ]
    problems = []
    for method, path, body in calls:
        response = client._client.request(
            method, f"{client.base_url}{path.lstrip('/')}", json=body, headers={"api-key": KEY}
        )
        assert response.status_code == 200, response.text
        found = v1.errors(method, f"/openai/v1{path}", 200, response.json())
        problems += [
            (path, body is not None and body["grader"] is no_python, p.split(": ", 2)[1]) for p in found
        ]
    python_in_multi = [
        (f"/fine_tuning/jobs/{trained.id}", False, "at 'method/reinforcement/grader'"),
        ("/fine_tuning/alpha/graders/validate", False, "at 'grader'"),
    ]
    assert problems == python_in_multi


def test_a_score_model_grader_is_answered_by_its_stand_in(emu: Emulator, files: dict[str, str]) -> None:
    client = emu.v1(account="rft")
    judge = {
        "type": "score_model",
        "name": "judge",
        "model": "gpt-4o-2024-08-06",
        "input": [
            {
                "role": "user",
                "content": "Score 0 to 1. Answer: {{sample.output_text}} Expected: {{item.answer}}",
            }
        ],
        "range": [0, 1],
        "sampling_params": {"temperature": 0, "max_completions_tokens": 8},
    }
    job = client.fine_tuning.jobs.create(
        model=BASE,
        training_file=files["train"],
        validation_file=files["valid"],
        seed=3,
        method=rft_method(
            grader=judge, n_epochs=1, batch_size=8, compute_multiplier=0.5, eval_interval=3, eval_samples=1
        ),
    )
    done = wait_for(client, job.id, ("succeeded", "failed"), timeout=600)
    assert done.status == "succeeded", done.error
    rows = [data_of(e) for e in client.fine_tuning.jobs.list_events(job.id, limit=100) if e.type == "metrics"]
    assert sorted(int(r["step"]) for r in rows) == [1, 2, 3]
    for row in rows:  # every sample got a score in the range, or counted as a grader error
        assert 0.0 <= row["train_reward_mean"] <= 1.0
        assert 0 <= row["train_grader_errors"] <= 8 * 2


def test_best_valid_reward_serves_the_checkpoint_with_the_highest_reward() -> None:
    from ftops.providers.spec import Checkpoint, choose_model

    checkpoints = [
        Checkpoint(6, "m:ckpt-step-6", {"full_valid_reward_mean": 0.4}),
        Checkpoint(12, "m:ckpt-step-12", {"full_valid_reward_mean": 0.9}),
        Checkpoint(18, "m:ckpt-step-18", {"full_valid_reward_mean": 0.7}),
    ]
    assert choose_model("m", checkpoints, "best_valid_reward") == ("m:ckpt-step-12", 12)
    best_last = [*checkpoints[:2], Checkpoint(18, "m:ckpt-step-18", {"full_valid_reward_mean": 0.95})]
    assert choose_model("m", best_last, "best_valid_reward") == ("m", 18)  # the final model itself
    assert choose_model("m", checkpoints, "best_valid_loss") == ("m", 18)  # no losses: the final one
