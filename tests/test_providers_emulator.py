"""The dynamic providers through `python -m pulumi.dynamic` (as the engine runs them) against the
emulator: the full chain, crash-safety at every point of create, drift, retries, diffs."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from ftops.providers.deployments import ModelDeploymentProvider
from ftops.providers.files import TrainingFileProvider
from ftops.providers.gate import EvaluationGateProvider
from ftops.providers.jobs import FineTuningJobProvider
from ftops.providers.spec import sha256_file, spec_hash
from tests.conftest import REPO
from tests.emulator_process import HOST_ENV, Emulator, deployment_props, target, wait_for
from tests.gate_inputs import POLICY, wire_check
from tests.provider_host import DynamicHost, HostError

TRAIN = REPO / "data" / "support-bot" / "train.jsonl"
VALID = REPO / "data" / "support-bot" / "valid.jsonl"


def file_props(emu: Emulator, account: str, path: Path = TRAIN) -> dict[str, Any]:
    return {
        "target": target(emu, account),
        "path": str(path),
        "digest": sha256_file(str(path)),
        "purpose": "fine-tune",
    }


def job_props(emu: Emulator, account: str, training: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "target": target(emu, account),
        "name": "support-bot",
        "base_model": "gpt-4.1-mini-2025-04-14",
        "training_file": training["file_id"],
        "training_digest": training["digest"],
        "validation_file": None,
        "validation_digest": None,
        "method": {"type": "supervised", "hyperparameters": {"n_epochs": 1, "batch_size": 8}},
        "seed": 7,
        "suffix": "bot",
        "training_type": "Standard",
        "checkpoint": "final",
        "wait_timeout_minutes": 10,
        "attempt": 0,
        "retain": True,
        "releases_dir": str(REPO / "environments" / "releases"),
        **extra,
    }


def jobs_for(emu: Emulator, account: str, spec: str) -> list[Any]:
    return [
        j
        for j in emu.v1(account=account).fine_tuning.jobs.list(limit=100)
        if (j.metadata or {}).get("ftops-spec") == spec
    ]


def files_with(emu: Emulator, account: str, digest: str) -> list[Any]:
    return [f for f in emu.v1(account=account).files.list() if digest in f.filename]


def eval_set(tmp_path: Path, pattern: str, threshold: float = 0.3) -> dict[str, Any]:
    path = tmp_path / "evals.jsonl"
    items = [
        {"messages": [{"role": "user", "content": q}], "pattern": pattern, "max_tokens": 8}
        for q in ("How long is the return window?", "Do you ship to Canada?", "Is store pickup free?")
    ]
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    return wire_check("answers", str(path), f"sha256:{sha256_file(str(path))}", "regex", threshold)


# ---------------------------------------------------------------- the chain


def test_full_chain_file_job_candidate_gate_serving(emu: Emulator, host: DynamicHost, tmp_path: Path) -> None:
    account = "chain"
    file_id, training = host.create(TrainingFileProvider(), file_props(emu, account))
    assert training["status"] == "processed"
    assert training["filename"].endswith(f".sha256-{training['digest']}.jsonl")
    job_id, job = host.create(FineTuningJobProvider(), job_props(emu, account, training))
    assert job["status"] == "succeeded"
    assert job["model"] == job["fine_tuned_model"]
    assert job["fine_tuned_model"].startswith(
        f"gpt-4.1-mini-2025-04-14.ft-{job_id.removeprefix('ftjob-')}-bot-"
    )
    assert job["trained_tokens"] > 0
    assert job["train_loss"] > 0
    assert job["spec_hash"] == spec_hash(job)
    _, candidate = host.create(
        ModelDeploymentProvider(), deployment_props(emu, account, "bot-candidate", job["model"], 5)
    )
    assert candidate["provisioning_state"] == "Succeeded"
    gate_props = {
        "target": target(emu, account),
        "name": "support-bot",
        "deployment": "bot-candidate",
        "candidate_model": job["model"],
        "job": job_id,
        "checks": [eval_set(tmp_path, ".")],
        "policy": POLICY,
        "seed": 1,
        "evidence_dir": str(tmp_path / "evidence"),
        "environment": "test",
    }
    _, gate = host.create(EvaluationGateProvider(), gate_props)
    assert gate["model"] == job["model"]
    assert gate["scores"] == {"answers": 1.0}
    # The commit this verdict belongs to, for `ftops promote` to pin (the tests run in a checkout).
    assert re.fullmatch(r"[0-9a-f]{40}", gate["commit"]), gate
    evidence = json.loads(Path(gate["evidence_path"]).read_text())
    assert evidence["verdict"] == "pass"
    assert evidence["checks"][0]["summary"]["items"] == 3
    assert evidence["training"]["job"] == job_id  # the summary's loss curve comes from the job
    assert len(evidence["training"]["loss"]) >= 2
    _, serving = host.create(ModelDeploymentProvider(), deployment_props(emu, account, "bot", gate["model"]))
    reply = emu.v1(account=account).chat.completions.create(
        model="bot", messages=[{"role": "user", "content": "Hi"}], max_tokens=5
    )
    assert reply.model == job["model"]

    # A no-change refresh and diff: nothing to do, no drift.
    for provider, id_, props in (
        (TrainingFileProvider(), file_id, training),
        (FineTuningJobProvider(), job_id, job),
        (ModelDeploymentProvider(), "bot", serving),
    ):
        read_id, refreshed = host.read(provider, id_, props)
        assert read_id == id_
        assert not refreshed.get("drift")
        diff = host.diff(provider, id_, refreshed, props)
        assert diff.changes == diff.DIFF_NONE, (id_, diff)

    # Deleting the job resource keeps the model (retain by default); the deployment is removed.
    host.delete(ModelDeploymentProvider(), "bot", serving)
    host.delete(FineTuningJobProvider(), job_id, job)
    assert emu.v1(account=account).fine_tuning.jobs.retrieve(job_id).status == "succeeded"
    assert emu.v1(account=account).models.retrieve(job["fine_tuned_model"]).id == job["fine_tuned_model"]


def gate_props(
    emu: Emulator, account: str, tmp_path: Path, check: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """A gate on the emulated deployment `base` serving the stand-in model."""
    return {
        "target": target(emu, account),
        "name": "support-bot",
        "deployment": "base",
        "candidate_model": "tiny-test",
        "checks": [check],
        "policy": POLICY,
        "seed": 1,
        "evidence_dir": str(tmp_path / "ev"),
        **extra,
    }


def test_a_failing_gate_stops_with_metric_threshold_and_value(
    emu: Emulator, host: DynamicHost, tmp_path: Path
) -> None:
    account = "gatefail"
    deployment = deployment_props(emu, account, "base", "tiny-test")
    host.create(ModelDeploymentProvider(), deployment)
    props = gate_props(emu, account, tmp_path, eval_set(tmp_path, "^60 days$"))
    with pytest.raises(HostError) as info:
        host.create(EvaluationGateProvider(), props)
    assert (
        "gate support-bot failed for model tiny-test on deployment base: answers (regex on evals.jsonl): "
        "pass rate 0.000 < threshold 0.300, 95% interval [0.000, 0.561] (0/3 answers, 3 items x 1 repeats, "
        "effective n 3.0)" in str(info.value)
    )
    assert len(list((tmp_path / "ev").glob("*.json"))) == 1  # the failed run left its evidence
    assert len(list((tmp_path / "ev").glob("*.junit.xml"))) == 1


def test_a_threshold_above_the_interval_fails_even_when_the_rate_clears_it(
    emu: Emulator, host: DynamicHost, tmp_path: Path
) -> None:
    account = "gateinterval"
    host.create(ModelDeploymentProvider(), deployment_props(emu, account, "base", "tiny-test"))
    policy: dict[str, Any] = {**POLICY, "repeats": 2, "temperature": 0, "confidence": 0.95}
    props = gate_props(emu, account, tmp_path, eval_set(tmp_path, ".", threshold=0.9), policy=policy)
    with pytest.raises(HostError) as info:
        host.create(EvaluationGateProvider(), props)
    # Three items answered twice alike are three observations, not six: the interval says so.
    assert (
        "answers (regex on evals.jsonl): pass rate 1.000 clears threshold 0.900 but its 95% interval "
        "[0.439, 1.000] does not (6/6 answers, 3 items x 2 repeats, effective n 3.0)" in str(info.value)
    )
    relaxed = {**props, "policy": {**policy, "fail_on_uncertainty": False}}
    _, gate = host.create(EvaluationGateProvider(), relaxed)
    assert gate["verdict"] == "pass"
    assert gate["scores"] == {"answers": 1.0}
    # The commit this verdict belongs to, for `ftops promote` to pin (the tests run in a checkout).
    assert re.fullmatch(r"[0-9a-f]{40}", gate["commit"]), gate


# ---------------------------------------------------------------- exactly once, whatever crashes


def _create_in_background(host: DynamicHost, provider: Any, props: dict[str, Any]) -> threading.Thread:
    def run() -> None:
        with contextlib.suppress(HostError):  # the host is killed under it: that is the point
            host.create(provider, props, timeout=300)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _until(predicate: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.05)


def test_crash_after_upload_then_rerun_uploads_once(emu: Emulator, tmp_path: Path) -> None:
    account = "crash-upload"
    path = tmp_path / "train.jsonl"
    path.write_bytes(
        TRAIN.read_bytes() + VALID.read_bytes().splitlines(keepends=True)[0]
    )  # content of its own
    props = file_props(emu, account, path)
    with emu.http() as http:  # slow the provider's wait so the kill lands after the upload, before the end
        http.put("/admin/faults", json={"latency_ms": 1500, "path_pattern": "/files/file-"})
    try:
        first = DynamicHost(HOST_ENV)
        thread = _create_in_background(first, TrainingFileProvider(), props)
        _until(lambda: files_with(emu, account, props["digest"]))
        first.kill()
        thread.join()
    finally:
        with emu.http() as http:
            http.put("/admin/faults", json={})
    second = DynamicHost(HOST_ENV)
    try:
        file_id, _ = second.create(TrainingFileProvider(), props)
    finally:
        second.close()
    assert [f.id for f in files_with(emu, account, props["digest"])] == [file_id]


@pytest.mark.parametrize("point", ["after job POST", "mid-wait"])
def test_crash_during_job_create_then_rerun_adopts_the_job(emu: Emulator, point: str) -> None:
    account = "crash-" + point.split(maxsplit=1)[0].lower()
    helper = DynamicHost(HOST_ENV)
    try:
        _, training = helper.create(TrainingFileProvider(), file_props(emu, account))
    finally:
        helper.close()
    props = job_props(
        emu, account, training, method={"type": "supervised", "hyperparameters": {"n_epochs": 4}}
    )
    spec = spec_hash(props)
    first = DynamicHost(HOST_ENV)
    thread = _create_in_background(first, FineTuningJobProvider(), props)
    _until(lambda: jobs_for(emu, account, spec))
    if point == "mid-wait":
        job_id = jobs_for(emu, account, spec)[0].id
        client = emu.v1(account=account)
        _until(lambda: any(e.type == "metrics" for e in client.fine_tuning.jobs.list_events(job_id)))
    first.kill()
    thread.join()
    second = DynamicHost(HOST_ENV)
    try:
        job_id, outs = second.create(FineTuningJobProvider(), props)
    finally:
        second.close()
    assert outs["status"] == "succeeded"
    assert [j.id for j in jobs_for(emu, account, spec)] == [job_id]  # exactly one job for the spec


def test_timeout_fails_with_still_running_and_the_rerun_adopts(emu: Emulator, host: DynamicHost) -> None:
    account = "timeout"
    _, training = host.create(TrainingFileProvider(), file_props(emu, account))
    props = job_props(
        emu,
        account,
        training,
        wait_timeout_minutes=0.05,
        method={"type": "supervised", "hyperparameters": {"n_epochs": 6}},
    )
    with pytest.raises(HostError) as info:
        host.create(FineTuningJobProvider(), props)
    assert "still running: job ftjob-" in str(info.value)
    assert "re-run `pulumi up` to continue waiting (it adopts this job, no new one is started)" in str(
        info.value
    )
    job_id, outs = host.create(FineTuningJobProvider(), {**props, "wait_timeout_minutes": 10})
    assert outs["status"] == "succeeded"
    assert [j.id for j in jobs_for(emu, account, spec_hash(props))] == [job_id]


# ---------------------------------------------------------------- drift, never a silent retrain


def test_drift_is_reported_not_retrained(emu: Emulator, host: DynamicHost) -> None:
    account = "drift"
    file_id, training = host.create(TrainingFileProvider(), file_props(emu, account))
    job_id, job = host.create(FineTuningJobProvider(), job_props(emu, account, training))
    _, serving = host.create(ModelDeploymentProvider(), deployment_props(emu, account, "bot", job["model"]))

    # The file is deleted out of band: refresh says so; the next up uploads the same bytes again, and the
    # job (identified by content, not by file id) is only updated, not replaced.
    emu.v1(account=account).files.delete(file_id)
    _, refreshed = host.read(TrainingFileProvider(), file_id, training)
    assert "was deleted out of band" in refreshed["drift"]
    assert list(host.diff(TrainingFileProvider(), file_id, refreshed, file_props(emu, account)).replaces) == [
        "digest"
    ]
    new_id, again = host.create(TrainingFileProvider(), file_props(emu, account))
    assert new_id != file_id
    news = job_props(emu, account, again)
    diff = host.diff(FineTuningJobProvider(), job_id, job, news)
    assert diff.changes == diff.DIFF_SOME
    assert list(diff.replaces) == []

    # The job record is deleted out of band but the model survives: reported, nothing blocks.
    emu.dated(account=account).delete(f"/fine_tuning/jobs/{job_id}", cast_to=type(None))
    _, refreshed = host.read(FineTuningJobProvider(), job_id, job)
    assert (
        refreshed["drift"]
        == f"job {job_id} was deleted out of band; its model {job['fine_tuned_model']} still exists"
    )
    assert host.diff(FineTuningJobProvider(), job_id, refreshed, news).replaces == []

    # A job that is no longer succeeded blocks the next up with what to do, instead of retraining.
    client = emu.v1(account=account)
    other = client.fine_tuning.jobs.create(training_file=again["file_id"], model="tiny-test")
    client.fine_tuning.jobs.cancel(other.id)
    _, broken = host.read(FineTuningJobProvider(), other.id, {**job, "job_id": other.id})
    assert broken["drift"] == f"job {other.id} is now cancelled (it was succeeded)"
    with pytest.raises(HostError) as info:
        host.diff(FineTuningJobProvider(), other.id, broken, news)
    assert (
        "ftops does not train again on its own (that costs money): to train a new job, raise `attempt`"
        in str(info.value)
    )

    # The deployment vanishes (Azure's 15-day idle clean-up): refresh drops it so up deploys it again.
    with emu.http() as http:
        time.sleep(0.6)
        assert http.delete(f"{emu.arm(account)}/deployments/bot?api-version=2024-10-01").status_code == 200
    read_id, _ = host.read(ModelDeploymentProvider(), "bot", serving)
    assert read_id == ""


def test_a_job_that_failed_is_reported_with_how_to_retrain(emu: Emulator, host: DynamicHost) -> None:
    account = "failed"
    _, training = host.create(TrainingFileProvider(), file_props(emu, account))
    props = job_props(emu, account, training)
    client = emu.v1(account=account)
    spec = spec_hash(props)
    stale = client.fine_tuning.jobs.create(
        training_file=training["file_id"], model=props["base_model"], metadata={"ftops-spec": spec}
    )
    client.fine_tuning.jobs.cancel(stale.id)  # as if a colleague cancelled it from the portal
    with pytest.raises(HostError) as info:
        host.create(FineTuningJobProvider(), props)
    assert f"model support-bot: job {stale.id} for this spec ended cancelled" in str(info.value)
    assert "raise `attempt` for this model in the environment to train a new job" in str(info.value)
    job_id, outs = host.create(FineTuningJobProvider(), {**props, "attempt": 1})  # the explicit decision
    assert job_id != stale.id
    assert outs["status"] == "succeeded"


# ---------------------------------------------------------------- check, diff, retries, serialization


def test_check_and_diff_name_exactly_what_is_wrong_and_what_replaces(
    emu: Emulator, host: DynamicHost
) -> None:
    _, failures = host.check(
        FineTuningJobProvider(),
        {},
        {
            "target": {"endpoint": "http://example.com", "auth": "key"},
            "method": {"type": "rlhf"},
            "checkpoint": "best",
            "wait_timeout_minutes": 0,
            "training_digest": "xyz",
        },
    )
    assert failures == [
        ("target.endpoint", "must be an https:// endpoint (or a local emulator on 127.0.0.1)"),
        ("target.auth", "must be 'entra' or 'env:<VARIABLE>' naming the variable that holds a key"),
        ("base_model", "is required: a base model or a fine-tuned model id"),
        ("training_digest", "must be a sha256 digest (64 hex digits)"),
        ("method.type", "must be supervised, dpo or reinforcement"),
        ("checkpoint", "must be final, best_valid_loss, best_valid_reward or best_eval"),
        ("wait_timeout_minutes", "must be a positive number of minutes"),
    ]
    base = job_props(emu, "diff", {"file_id": "file-" + "1" * 32, "digest": "a" * 64})
    for key, value, replaces in (
        ("seed", 8, ["seed"]),
        ("method", {"type": "supervised", "hyperparameters": {"n_epochs": 2}}, ["method"]),
        ("training_digest", "b" * 64, ["training_digest"]),
        ("attempt", 1, ["attempt"]),
        ("training_file", "file-" + "2" * 32, []),
        ("checkpoint", "best_valid_loss", []),
        ("wait_timeout_minutes", 120, []),
    ):
        diff = host.diff(FineTuningJobProvider(), "ftjob-x", base, {**base, key: value})
        assert (diff.changes, list(diff.replaces)) == (diff.DIFF_SOME, replaces), key
    assert host.diff(FineTuningJobProvider(), "ftjob-x", base, dict(base)).changes == 1  # DIFF_NONE


def test_injected_errors_and_conflicts_are_retried(emu: Emulator, tmp_path: Path) -> None:
    account = "flaky"
    hosts = [DynamicHost(HOST_ENV), DynamicHost(HOST_ENV)]
    try:
        with emu.http() as http:
            http.put(
                "/admin/faults",
                json={
                    "error_rate": 0.4,
                    "error_codes": [429, 500, 503],
                    "seed": 3,
                    "path_pattern": "/accounts/flaky/|/accounts/flaky$|/deployments",
                },
            )
        try:
            _, training = hosts[0].create(TrainingFileProvider(), file_props(emu, account))
            # Two deployments written at once from two provider processes: the second write meets the
            # first one's provisioning (409 RequestConflict) and the injected 429/5xx, and still lands.
            results: list[Any] = []
            threads = [
                threading.Thread(
                    target=lambda h=h, n=n: results.append(
                        h.create(ModelDeploymentProvider(), deployment_props(emu, account, n, "tiny-test", 2))
                    )
                )
                for h, n in zip(hosts, ("one", "two"), strict=True)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            with emu.http() as http:
                http.put("/admin/faults", json={})
        assert training["status"] == "processed"
        assert sorted(r[0] for r in results) == ["one", "two"]
        assert all(r[1]["provisioning_state"] == "Succeeded" for r in results)
    finally:
        for h in hosts:
            h.close()


def test_a_role_assignment_still_propagating_is_waited_out(emu: Emulator, host: DynamicHost) -> None:
    """The first `pulumi up` grants the roles and uses them at once: Azure denies until they spread."""
    account = "rbac"
    denied = {"rbac_delay_s": 4, "path_pattern": "/accounts/rbac/|/accounts/rbac$"}
    try:
        with emu.http() as http:
            http.put("/admin/faults", json=denied)
        with pytest.raises(openai.AuthenticationError, match="Principal does not have access"):
            emu.v1(account=account, max_retries=0).models.list()
        _, training = host.create(TrainingFileProvider(), file_props(emu, account))
        with emu.http() as http:  # and again for the deployment's ARM calls (403 AuthorizationFailed)
            http.put("/admin/faults", json=denied)
            assert http.get(f"{emu.arm(account)}/deployments").status_code == 403
        _, deployed = host.create(
            ModelDeploymentProvider(), deployment_props(emu, account, "one", "tiny-test", 2)
        )
    finally:
        with emu.http() as http:
            http.put("/admin/faults", json={})
    assert training["status"] == "processed"
    assert deployed["provisioning_state"] == "Succeeded"


def test_delete_keeps_pinned_models_and_deletes_only_when_asked(
    emu: Emulator, host: DynamicHost, tmp_path: Path
) -> None:
    account = "retain"
    _, training = host.create(TrainingFileProvider(), file_props(emu, account))
    releases = tmp_path / "releases"
    releases.mkdir()
    job_id, job = host.create(
        FineTuningJobProvider(), job_props(emu, account, training, retain=False, releases_dir=str(releases))
    )
    # Promoted after the last `up`: the pin is read at delete time, not from state.
    pin = (REPO / "environments" / "releases" / "prod.yaml").read_text()
    shipped = pin.split("model: ", 1)[1].split("\n", 1)[0]
    (releases / "prod.yaml").write_text(pin.replace(shipped, job["fine_tuned_model"]))
    host.delete(FineTuningJobProvider(), job_id, job)
    assert emu.v1(account=account).fine_tuning.jobs.retrieve(job_id).status == "succeeded"
    assert "release pin(s) reference it" in host.logged()
    # Unreadable, or not a valid pin (read as every other reader reads pins): refuse to delete.
    for broken in (
        "releases: {support-bot: [not, a, pin",
        f"releases:\n  support-bot:\n    model: {shipped}\n",
    ):
        (releases / "prod.yaml").write_text(broken)
        with pytest.raises(HostError) as info:
            host.delete(FineTuningJobProvider(), job_id, job)
        assert (
            f"not deleting job {job_id} and model {job['fine_tuned_model']}: the release pins cannot be read"
            in str(info.value)
        )
    (releases / "prod.yaml").write_text("releases: {}\n")
    host.delete(FineTuningJobProvider(), job_id, job)
    with pytest.raises(openai.NotFoundError):
        emu.v1(account=account).fine_tuning.jobs.retrieve(job_id)
    # Files are shared by content: deleting the resource leaves the file for whoever else uses it.
    host.delete(TrainingFileProvider(), training["file_id"], training)
    assert emu.v1(account=account).files.retrieve(training["file_id"]).status == "processed"


def test_raising_attempt_after_blocking_drift_trains_a_new_job(emu: Emulator, host: DynamicHost) -> None:
    account = "redo"
    _, training = host.create(TrainingFileProvider(), file_props(emu, account))
    props = job_props(emu, account, training)
    job_id, job = host.create(FineTuningJobProvider(), props)
    blocked = {**job, "drift": f"job {job_id} and its model were deleted out of band", "drift_blocking": True}
    with pytest.raises(HostError):
        host.diff(FineTuningJobProvider(), job_id, blocked, props)
    diff = host.diff(FineTuningJobProvider(), job_id, blocked, {**props, "attempt": 1})
    assert list(diff.replaces) == ["attempt"]
    # The job record is gone but the model kept: an update (here: another checkpoint policy) carries on.
    emu.dated(account=account).delete(f"/fine_tuning/jobs/{job_id}", cast_to=type(None))
    updated = host.update(FineTuningJobProvider(), job_id, job, {**props, "checkpoint": "best_valid_loss"})
    assert updated["fine_tuned_model"] == job["fine_tuned_model"]
    assert updated["checkpoint"] == "best_valid_loss"


def test_how_a_resource_authenticates_is_not_what_it_is(emu: Emulator, host: DynamicHost) -> None:
    props = job_props(emu, "auth", {"file_id": "file-" + "1" * 32, "digest": "a" * 64})
    other_auth = {**props, "target": {**props["target"], "auth": "entra"}}
    diff = host.diff(FineTuningJobProvider(), "ftjob-x", props, other_auth)
    assert list(diff.replaces) == []
    other_host = {
        **props,
        "target": {
            **props["target"],
            "endpoint": props["target"]["endpoint"].replace("127.0.0.1", "localhost"),
        },
    }
    assert list(host.diff(FineTuningJobProvider(), "ftjob-x", props, other_host).replaces) == []
    moved = {**props, "target": {**props["target"], "arm_id": emu.arm("elsewhere")}}
    assert list(host.diff(FineTuningJobProvider(), "ftjob-x", props, moved).replaces) == ["target"]


def test_a_gate_without_checks_is_refused(emu: Emulator, host: DynamicHost) -> None:
    _, failures = host.check(
        EvaluationGateProvider(),
        {},
        {
            "target": target(emu, "x"),
            "name": "bot",
            "deployment": "d",
            "candidate_model": "m",
            "checks": [],
            "policy": POLICY,
        },
    )
    assert failures == [
        ("checks", "a gate needs at least one check: one with nothing to check would let any model through")
    ]


def test_missing_key_is_one_clear_line(emu: Emulator) -> None:
    bare = DynamicHost({"FTOPS_EMULATOR_KEY": ""})
    try:
        with pytest.raises(HostError) as info:
            bare.create(TrainingFileProvider(), file_props(emu, "nokey"))
    finally:
        bare.close()
    assert "the environment variable FTOPS_EMULATOR_KEY holding the API key is not set" in str(info.value)


def wait_job(emu: Emulator, account: str, job_id: str) -> Any:
    return wait_for(emu.v1(account=account), job_id, ("succeeded", "failed", "cancelled"))
