"""The Pulumi program under `pulumi.runtime.set_mocks`: it validates the stack's environment as
the engine hands it over, before declaring anything, and exports the validated plan."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pulumi
import pytest

from ftops.config.load import read_stack_node
from ftops.config.yamlfiles import plain
from tests.conftest import REPO
from tests.pulumi_harness import provider_of, run, run_program


@pytest.mark.parametrize("stack", ["local", "dev", "staging", "prod"])
def test_program_exports_the_validated_environment(stack: str) -> None:
    raw = plain(read_stack_node(REPO, stack))
    mocks, outputs = run_program(stack, raw)
    summary = outputs["environment"]
    assert summary["name"] == stack, stack
    assert summary["deployments"]["support-bot"]["model"] == "support-bot"
    if stack in ("staging", "prod"):
        assert summary["models"] == {}, stack
        assert summary["releases"]["support-bot"].startswith("gpt-4.1-mini-2025-04-14.ft-"), stack
    assert mocks.resources, f"stack {stack} declared nothing"


def test_dev_summary_resolves_continual_training() -> None:
    _, outputs = run_program("dev", plain(read_stack_node(REPO, "dev")))
    bot = outputs["environment"]["models"]["support-bot"]
    assert bot == {
        "base_model": "gpt-4.1-mini-2025-04-14",
        "continue_from": "support-sft",
        "method": "dpo",
        "training_file": "data/support-bot-dpo/train.jsonl",
        "validation_file": "data/support-bot-dpo/valid.jsonl",
    }


def test_invalid_config_stops_before_any_resource() -> None:
    raw = plain(read_stack_node(REPO, "prod"))
    raw["deployments"]["support-bot"]["sku"]["capacity"] = 0
    raw["tags"]["criticality"] = 3
    with pytest.raises(pulumi.RunError) as info:
        run_program("prod", raw)
    assert str(info.value) == (
        "invalid environment:\n"
        "  environments/Pulumi.prod.yaml: ftops:environment.tags.criticality: must be text (line 16)\n"
        "  environments/Pulumi.prod.yaml: ftops:environment.deployments.support-bot.sku.capacity: must be >= 1 "
        "(line 58)"
    )
    # Cross-field rules run once every key is valid on its own.
    raw = plain(read_stack_node(REPO, "prod"))
    raw["account"]["public_network_access"] = "Enabled"
    with pytest.raises(pulumi.RunError) as info:
        run_program("prod", raw)
    assert str(info.value).endswith("account.public_network_access: production requires Disabled (line 24)")


def test_the_program_checks_the_promotion_chain() -> None:
    raw = plain(read_stack_node(REPO, "staging"))
    raw["deployments"]["support-bot"]["model"] = "helpdesk"
    raw["gates"] = {"helpdesk": raw["gates"]["support-bot"]}
    with pytest.raises(pulumi.RunError) as info:
        run_program("staging", raw)
    assert "ftops:environment.deployments.support-bot.model: 'helpdesk' is not a model of 'dev'" in str(
        info.value
    )


def test_local_stack_wires_file_job_candidate_gate_serving_in_order() -> None:
    mocks, outputs = run_program("local", plain(read_stack_node(REPO, "local")))
    every = [
        (r.typ if r.typ != "pulumi-python:dynamic:Resource" else provider_of(r.inputs), r.name)
        for r in mocks.resources
    ]
    declared = [d for d in every if d[0] != "AuditEntryProvider"]
    audited = {
        name: r.inputs
        for (kind, name), r in zip(every, mocks.resources, strict=True)
        if kind == "AuditEntryProvider"
    }
    assert sorted(audited) == ["support-bot-gated", "support-bot-support-bot-deployed", "support-bot-trained"]
    assert audited["support-bot-gated"]["details"]["data_digest"].startswith("sha256:"), audited
    assert audited["support-bot-support-bot-deployed"]["resource"] == "support-bot", audited
    assert audited["support-bot-trained"]["audit"] == {
        "kind": "file",
        "path": str(REPO / ".ftops" / "audit" / "local.jsonl"),
    }
    # Registration order is the SDK's business (it resolves inputs concurrently); the order that
    # matters is what each resource waits for.
    assert sorted(declared) == sorted(
        [
            ("ftops:models:FineTunedModel", "support-bot"),
            ("TrainingFileProvider", "support-bot-training"),
            ("TrainingFileProvider", "support-bot-validation"),
            ("FineTuningJobProvider", "support-bot-job"),
            ("ModelDeploymentProvider", "support-bot-candidate"),
            ("EvaluationGateProvider", "support-bot-gate"),
            ("ModelDeploymentProvider", "support-bot-support-bot"),
        ]
    ), declared
    graph = run("local", plain(read_stack_node(REPO, "local")))
    waits = {
        r.name: {graph.by_urn()[d].name for d in r.dependencies if d in graph.by_urn()}
        for r in graph.registrations
    }
    assert {"support-bot-training", "support-bot-validation"} <= waits["support-bot-job"], waits
    assert "support-bot-job" in waits["support-bot-candidate"], waits
    assert "support-bot-candidate" in waits["support-bot-gate"], waits
    assert {"support-bot-gate", "support-bot-candidate"} <= waits["support-bot-support-bot"], waits
    by_name = {r.name: r for r in mocks.resources}
    job = by_name["support-bot-job"].inputs
    assert job["training_file"] == "file-support-bot-training", job
    assert job["validation_file"] == "file-support-bot-validation", job
    assert (
        job["training_digest"]
        == hashlib.sha256((REPO / "data/support-bot/train.jsonl").read_bytes()).hexdigest()
    )
    assert job["target"] == {
        "endpoint": "http://127.0.0.1:8790/accounts/local-dev",
        "auth": "env:FTOPS_EMULATOR_KEY",
        "arm_id": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-ftops-local/providers/"
        "Microsoft.CognitiveServices/accounts/local-dev",
        "arm_endpoint": "http://127.0.0.1:8790",
    }, job
    assert "FTOPS_EMULATOR_KEY" not in json.dumps(job).replace("env:FTOPS_EMULATOR_KEY", "")  # no key, ever
    model = "gpt-4.1-mini-2025-04-14.ft-support-bot-job"
    candidate = by_name["support-bot-candidate"].inputs
    assert (candidate["deployment_name"], candidate["model"]["name"]) == ("support-bot-candidate", model), (
        candidate
    )
    gate = by_name["support-bot-gate"].inputs
    assert (gate["deployment"], gate["candidate_model"]) == ("support-bot-candidate", model), gate
    assert [(c["name"], c["grader"]) for c in gate["checks"]] == [
        ("policy-recall", "regex"),
        ("safety", "refusal"),
    ], gate
    assert gate["checks"][1]["path"] == "builtin", gate
    assert gate["checks"][1]["digest"].startswith("sha256:"), gate
    assert gate["policy"]["repeats"] == 1
    assert gate["baseline"] == {"kind": "serving", "deployment": "support-bot"}
    assert gate["job"] == "ftjob-support-bot-job", (
        gate
    )  # the loss curve in the summary comes from its results
    serving = by_name["support-bot-support-bot"].inputs
    # The serving deployment serves what the gate let through, not the job's model directly.
    assert serving["model"]["name"] == f"{model}#gated", serving
    assert serving["sku"] == {"name": "GlobalStandard", "capacity": 10}, serving
    assert outputs["deployments"] == {"support-bot": f"{model}#gated"}
    assert outputs["evidence"] == {"support-bot": "sha256:" + "e" * 64}


def test_continual_training_takes_the_parent_jobs_model(tmp_path: Path) -> None:
    raw = plain(read_stack_node(REPO, "local"))
    raw["models"]["support-dpo"] = {
        "continue_from": "support-bot",
        "method": {"type": "dpo", "hyperparameters": {"beta": 0.1}},
        "training_file": "data/support-bot-dpo/train.jsonl",
    }
    mocks, _ = run_program("local", raw)
    by_name = {r.name: r for r in mocks.resources}
    assert by_name["support-dpo-job"].inputs["base_model"] == "gpt-4.1-mini-2025-04-14.ft-support-bot-job"
    names = [r.name for r in mocks.resources]
    assert names.index("support-dpo-job") > names.index("support-bot-job")


def test_best_eval_deploys_a_candidate_per_kept_checkpoint_and_the_gate_scores_them_all() -> None:
    raw = plain(read_stack_node(REPO, "local"))
    raw["models"]["support-bot"]["checkpoint"] = "best_eval"  # n_epochs 6: epochs 4, 5 and 6 are kept
    graph = run("local", raw)
    by_name = {r.name: r for r in graph.mocks.resources}
    model = "gpt-4.1-mini-2025-04-14.ft-support-bot-job"
    candidates = {
        name: by_name[name].inputs["model"]["name"]
        for name in ("support-bot-candidate-e4", "support-bot-candidate-e5", "support-bot-candidate")
    }
    assert candidates == {
        "support-bot-candidate-e4": f"ftckpt_{4:032x}",
        "support-bot-candidate-e5": f"ftckpt_{5:032x}",
        "support-bot-candidate": model,
    }
    gate = by_name["support-bot-gate"].inputs
    assert [(c["deployment"], c["epoch"], c["model"]) for c in gate["candidates"]] == [
        ("support-bot-candidate-e4", 4, f"ftckpt_{4:032x}"),
        ("support-bot-candidate-e5", 5, f"ftckpt_{5:032x}"),
        ("support-bot-candidate", 6, model),
    ]
    waits = {
        r.name: {graph.by_urn()[d].name for d in r.dependencies if d in graph.by_urn()}
        for r in graph.registrations
    }
    # One deployment write at a time on the account; the gate after the last candidate.
    assert "support-bot-job" in waits["support-bot-candidate-e4"], waits
    assert "support-bot-candidate-e4" in waits["support-bot-candidate-e5"], waits
    assert "support-bot-candidate-e5" in waits["support-bot-candidate"], waits
    assert "support-bot-candidate" in waits["support-bot-gate"], waits
    # The audit record of the gate says which checkpoint passed, of which job's model.
    details = by_name["support-bot-gated"].inputs["details"]
    assert details["fine_tuned_model"] == model, details
    assert details["checkpoint"] == f"ftckpt_{4:032x}#gated", details
    gated = graph.outputs["gated"]["support-bot"]
    assert (gated["model"], gated["checkpoint"]) == (f"ftckpt_{4:032x}#gated",) * 2, gated
    # The serving deployment serves the checkpoint the gate chose.
    assert by_name["support-bot-support-bot"].inputs["model"]["name"] == f"ftckpt_{4:032x}#gated"


def test_experiments_train_a_job_per_variant_and_only_the_chosen_model_reaches_a_deployment() -> None:
    raw = plain(read_stack_node(REPO, "local"))
    raw["models"]["support-bot"]["experiments"] = {
        "grid": {"learning_rate_multiplier": [1, 2]},
        "fractions": [0.5, 1],
    }
    graph = run("local", raw)
    by_name = {r.name: r for r in graph.mocks.resources}
    jobs = sorted(n for n in by_name if n.endswith("-job"))
    assert jobs == [
        "support-bot-lr1-f100-job",
        "support-bot-lr1-f50-job",
        "support-bot-lr2-f100-job",
        "support-bot-lr2-f50-job",
    ]
    # One upload of the half subset, shared by both learning rates; the full file as declared.
    assert sorted(n for n in by_name if n.endswith("-training")) == [
        "support-bot-f50-training",
        "support-bot-training",
    ]
    half = by_name["support-bot-lr2-f50-job"].inputs
    assert half["training_file"] == "file-support-bot-f50-training"
    assert half["method"]["hyperparameters"]["learning_rate_multiplier"] == 2
    experiment = by_name["support-bot-experiment"].inputs
    assert [v["label"] for v in experiment["variants"]] == ["lr1-f50", "lr1-f100", "lr2-f50", "lr2-f100"]
    assert experiment["select"] == "cheapest_not_worse"
    assert [c["name"] for c in experiment["checks"]] == ["policy-recall", "safety"]
    chosen = "gpt-4.1-mini-2025-04-14.ft-support-bot-lr1-f50-job"
    deployments = {n: r.inputs["model"]["name"] for n, r in by_name.items() if "deployment_name" in r.inputs}
    assert deployments == {"support-bot-candidate": chosen, "support-bot-support-bot": f"{chosen}#gated"}
    waits = {
        r.name: {graph.by_urn()[d].name for d in r.dependencies if d in graph.by_urn()}
        for r in graph.registrations
    }
    assert "support-bot-experiment" in waits["support-bot-candidate"], waits
    assert graph.outputs["gated"]["support-bot"]["job"] == "ftjob-support-bot-lr1-f50-job"
