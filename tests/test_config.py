"""Environment declarations: the repository's files are valid, and each kind of mistake gets
one line naming the file, the key path, what is allowed, and the line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ftops.config.load import load_all, load_checked, load_environment
from ftops.config.yamlfiles import environment_names
from ftops.errors import ConfigError, UsageError
from tests.conftest import REPO


def test_repository_environments_are_valid() -> None:
    envs, problems = load_all(REPO)
    assert problems == []
    assert sorted(envs) == ["dev", "local", "prod", "staging"]


def test_environment_roles() -> None:
    envs, _ = load_all(REPO)
    assert envs["dev"].models
    assert not envs["dev"].promotion
    for name in ("staging", "prod"):
        assert not envs[name].models, name
        assert envs[name].releases, name
    prod = envs["prod"]
    assert prod.network is not None
    assert prod.network.mode == "private"
    assert prod.account is not None
    assert prod.account.disable_local_auth
    assert prod.account.public_network_access == "Disabled"
    assert envs["dev"].base_of("support-bot") == "gpt-4.1-mini-2025-04-14"  # via continue_from


def _edit(root: Path, name: str, old: str, new: str) -> None:
    path = root / "environments" / f"Pulumi.{name}.yaml"
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def _problems(root: Path, name: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_environment(root, name)
    return info.value.problems


P = "environments/Pulumi.prod.yaml: ftops:environment."
D = "environments/Pulumi.dev.yaml: ftops:environment."

MISTAKES = [
    (
        "prod",
        "capacity: 50",
        "capacity: 0",
        P + "deployments.support-bot.sku.capacity: must be >= 1 (line 58)",
    ),
    (
        "prod",
        "capacity: 50",
        "capacity: lots",
        P + "deployments.support-bot.sku.capacity: must be a whole number (line 58)",
    ),
    (
        "prod",
        "name: GlobalStandard",
        "name: Global",
        P
        + "deployments.support-bot.sku.name: must be one of 'Standard', 'GlobalStandard', 'ProvisionedManaged' or "
        "'Developer' (line 57)",
    ),
    (
        "prod",
        "mode: private\n      address",
        "mode: public\n      address",
        P + "network.mode: production requires private networking (mode: private) (line 18)",
    ),
    (
        "prod",
        "public_network_access: Disabled",
        "public_network_access: Enabled",
        P + "account.public_network_access: production requires Disabled (line 24)",
    ),
    (
        "prod",
        "disable_local_auth: true",
        "disable_local_auth: false",
        P + "account.disable_local_auth: production requires keys disabled (true) (line 25)",
    ),
    (
        "prod",
        "log_retention_days: 365",
        "log_retention_days: 365\n      colour: blue",
        P + "account.colour: unknown key; allowed keys: kind, sku, custom_subdomain, public_network_access, "
        "disable_local_auth, identity, log_retention_days, rai_policy (line 28)",
    ),
    (
        "prod",
        "        max_regression: 0.0\n",
        "        max_regresion: 0.0\n",
        P
        + "gates.support-bot.max_regresion: unknown key; did you mean 'max_regression'? allowed keys: baseline, "
        "baseline_deployment, confidence, repeats, temperature, fail_on_uncertainty, max_regression, "
        "concurrency, quality, safety (line 65)",
    ),
    (
        "prod",
        "location: swedencentral\n    naming",
        "location: swedencentrl\n    naming",
        P
        + "location: 'swedencentrl' is not an Azure region; did you mean 'swedencentral'? use the ARM name, "
        "e.g. swedencentral (line 9)",
    ),
    (
        "prod",
        "rai_policy: ftops-strict",
        "rai_policy: strict-v2",
        P
        + "deployments.support-bot.rai_policy: use a Microsoft.* policy or declare it under account.rai_policy "
        "(line 59)",
    ),
    (
        "prod",
        "    promotion:\n      from: staging\n      require_approval: true\n",
        "",
        P + "promotion: production only takes promoted releases; set promotion.from",
    ),
    (
        "dev",
        "n_epochs: 3",
        "n_epochs: 0",
        D + "models.support-sft.method.hyperparameters.n_epochs: must be >= 1 (or 'auto') (line 42)",
    ),
    (
        "dev",
        "beta: 0.1",
        "beta: 9",
        D + "models.support-bot.method.hyperparameters.beta: must be <= 2.0 (or 'auto') (line 58)",
    ),
    (
        "dev",
        "type: dpo",
        "type: ppo",
        D + "models.support-bot.method: type must be one of 'supervised', 'dpo', 'reinforcement' (line 54)",
    ),
    (
        "dev",
        "training_file: data/support-bot-dpo/train.jsonl",
        "training_file: data/nope.jsonl",
        D
        + "models.support-bot.training_file: no such file 'data/nope.jsonl'; fix the path or add the file (line 59)",
    ),
    (
        "dev",
        "training_file: data/support-bot-dpo/train.jsonl",
        "training_file: ../outside.jsonl",
        D
        + "models.support-bot.training_file: '../outside.jsonl' is outside the repository; use a path inside it "
        "(line 59)",
    ),
    (
        "dev",
        "continue_from: support-sft",
        "continue_from: support-sfx",
        D
        + "models.support-bot.continue_from: no model 'support-sfx'; declared: support-sft, support-bot, support-mini (line 53)",
    ),
    (
        "dev",
        "suffix: support",
        "suffix: Support_Bot",
        D
        + "models.support-bot.suffix: must be 1-10 lowercase letters, digits or '-' (ftops appends the spec hash) "
        "(line 61)",
    ),
    (
        "dev",
        "base_model: gpt-4.1-mini-2025-04-14",
        "base_model: gpt-4.1-nano-2025-04-14",
        D
        + "models.support-bot.method.type: gpt-4.1-nano-2025-04-14 does not support dpo fine-tuning; it supports: "
        "supervised (line 55)",
    ),
    (
        "dev",
        "base_model: gpt-4.1-mini-2025-04-14",
        "base_model: gpt-5",
        D + "models.support-sft.base_model: unknown base model 'gpt-5'; use one of: gpt-4o-mini-2024-07-18, "
        "gpt-4o-2024-08-06, gpt-4.1-2025-04-14, gpt-4.1-mini-2025-04-14, gpt-4.1-nano-2025-04-14, o4-mini-2025-04-16 "
        "(or a fine-tuned id '<base>.ft-<32 hex>') (line 38)",
    ),
    (
        "dev",
        "name: dev",
        "name: develop",
        "environments/Pulumi.dev.yaml: ftops:environment.name: is 'develop' but the stack is 'dev'; make them equal",
    ),
    (
        "dev",
        "name: Developer",
        "name: ProvisionedManaged",
        D
        + "deployments.support-bot.candidate_sku.name: gpt-4.1-mini-2025-04-14 fine-tunes deploy as Developer, "
        "GlobalStandard, Standard (line 95)",
    ),
    (
        "dev",
        "      support-bot:\n        model: support-bot",
        "      support-bot:\n        model: support-bat",
        D
        + "deployments.support-bot.model: no model 'support-bat' in models; declared: support-sft, support-bot, "
        "support-mini (line 90)",
    ),
    (
        "dev",
        "    gates:\n      support-bot:",
        "    gates:\n      support-sft:",
        D
        + "deployments.support-bot.model: 'support-bot' has no gate: declare gates.support-bot (nothing is served "
        "ungated) (line 90)",
    ),
    (
        "dev",
        "    network:\n      mode: public",
        "    emulator: {}\n    network:\n      mode: public",
        D + "emulator: only a local environment has an emulator section (line 16)",
    ),
    (
        "dev",
        "          type: supervised\n",
        "          type: reinforcement\n          grader: {type: regex}\n",
        D + "models.support-sft.method.grader: type must be one of 'string_check', 'text_similarity', "
        "'score_model', 'python', 'multi' (line 41)",
    ),
]


@pytest.mark.parametrize(
    ("env", "old", "new", "expected"), MISTAKES, ids=[m[3].split(": ", 2)[1] for m in MISTAKES]
)
def test_mistake_gets_one_clear_line(repo_copy: Path, env: str, old: str, new: str, expected: str) -> None:
    _edit(repo_copy, env, old, new)
    assert _problems(repo_copy, env) == [expected]


def test_each_model_a_region_cannot_train_is_named(repo_copy: Path) -> None:
    _edit(repo_copy, "dev", "location: swedencentral  #", "location: eastus2  #")
    assert _problems(repo_copy, "dev") == [
        D + f"models.{key}.training_type: {base} trains (Standard) only in northcentralus, "
        f"swedencentral; use training_type GlobalStandard or another location (line {line})"
        for key, base, line in (
            ("support-sft", "gpt-4.1-mini-2025-04-14", 49),
            ("support-bot", "gpt-4.1-mini-2025-04-14", 63),
            ("support-mini", "gpt-4.1-nano-2025-04-14", 86),
        )
    ]


def test_pricing_refuses_an_unknown_key_and_an_unknown_base_model(repo_copy: Path) -> None:
    _edit(
        repo_copy,
        "dev",
        "training_per_million_tokens: 5.0\n",
        "training_per_million_tokens: 5.0\n      hosting_per_hours: 1.7\n",
    )
    [problem] = _problems(repo_copy, "dev")
    assert problem.startswith(
        D + "pricing.hosting_per_hours: unknown key; did you mean 'hosting_per_hour'?"
    ), problem
    _edit(repo_copy, "dev", "hosting_per_hours: 1.7", "models: {gpt-4.1-mimi: {rft_per_hour: 1}}")
    [problem] = _problems(repo_copy, "dev")
    assert "pricing.models" in problem, problem
    assert "did you mean 'gpt-4.1-mini'?" in problem, problem


def test_a_budget_override_needs_a_reason(repo_copy: Path) -> None:
    _edit(
        repo_copy,
        "dev",
        "training_per_million_tokens: 5.0\n",
        "training_per_million_tokens: 5.0\n    budget:\n      override: {up_to_usd: 50}\n",
    )
    [problem] = _problems(repo_copy, "dev")
    assert "budget.override.reason" in problem, problem


def test_several_mistakes_are_all_reported(repo_copy: Path) -> None:
    _edit(repo_copy, "prod", "capacity: 50", "capacity: 0")
    _edit(repo_copy, "prod", "repeats: 5", "repeats: 50")
    problems = _problems(repo_copy, "prod")
    assert problems == [
        P + "deployments.support-bot.sku.capacity: must be >= 1 (line 58)",
        P + "gates.support-bot.repeats: must be <= 20 (line 64)",
    ]


def test_yaml_syntax_error_names_the_line(repo_copy: Path) -> None:
    _edit(repo_copy, "staging", "    stage: staging", "    stage: [staging")
    assert _problems(repo_copy, "staging") == [
        "environments/Pulumi.staging.yaml: not valid YAML: expected ',' or ']', but got ':' (line 8)"
    ]


def test_unknown_ftops_key_and_missing_environment(repo_copy: Path) -> None:
    path = repo_copy / "environments" / "Pulumi.local.yaml"
    path.write_text("config:\n  ftops:enviroment: {}\n")
    assert _problems(repo_copy, "local") == [
        "environments/Pulumi.local.yaml: ftops:enviroment: unknown ftops key; the program reads only ftops:environment",
        "environments/Pulumi.local.yaml: ftops:environment: required key is missing",
    ]


def test_missing_stack_file_names_the_known_ones(repo_copy: Path) -> None:
    with pytest.raises(UsageError) as info:
        load_environment(repo_copy, "qa")
    assert info.value.one_line() == (
        "environments/Pulumi.qa.yaml: no such stack file; environments here: dev, local, prod, staging"
    )


def test_release_pin_errors_name_the_releases_file(repo_copy: Path) -> None:
    path = repo_copy / "environments" / "releases" / "prod.yaml"
    text = path.read_text()
    path.write_text(
        text.replace("job: ftjob-", "job: job-").replace("source_commit: 9b7e3f1", "source_commit: HEAD")
    )
    assert _problems(repo_copy, "prod") == [
        "environments/releases/prod.yaml: releases.support-bot.job: must be 'ftjob-' and 32 hex digits (line 8)",
        "environments/releases/prod.yaml: releases.support-bot.source_commit: must be a git commit sha "
        "(7-40 hex digits) (line 11)",
    ]


def test_release_pin_model_and_account_shapes(repo_copy: Path) -> None:
    path = repo_copy / "environments" / "releases" / "staging.yaml"
    text = path.read_text()
    text = text.replace("model: gpt-4.1-mini-2025-04-14.ft-", "model: gpt-4.1-mini.ft-")
    text = text.replace("/providers/Microsoft.CognitiveServices/", "/providers/Microsoft.Storage/")
    path.write_text(text)
    problems = _problems(repo_copy, "staging")
    assert problems == [
        "environments/releases/staging.yaml: releases.support-bot.model: must be a fine-tuned model id "
        "'<base>.ft-<32 hex>[-suffix]' (line 6)",
        "environments/releases/staging.yaml: releases.support-bot.source_account: must be an account ARM id "
        "'/subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.CognitiveServices/accounts/<name>' "
        "(or 'emulator://<account>' locally) (line 7)",
    ]


def test_promotion_chain_rules(repo_copy: Path) -> None:
    _edit(repo_copy, "prod", "from: staging", "from: qa")
    rel = repo_copy / "environments" / "releases" / "staging.yaml"
    rel.write_text(rel.read_text().replace("source_environment: dev", "source_environment: local"))
    _edit(
        repo_copy,
        "staging",
        "      support-bot:\n        model: support-bot",
        "      support-bot:\n        model: helpdesk",
    )
    _edit(repo_copy, "staging", "    gates:\n      support-bot:", "    gates:\n      helpdesk:")
    _, problems = load_all(repo_copy)
    assert problems == [
        "environments/Pulumi.prod.yaml: ftops:environment.promotion.from: no environment 'qa'; known: dev, local, "
        "prod, staging",
        "environments/Pulumi.staging.yaml: ftops:environment.deployments.support-bot.model: 'helpdesk' is not a "
        "model of 'dev' (has: support-bot, support-mini, support-sft)",
        "environments/releases/staging.yaml: releases.support-bot.source_environment: is 'local' but 'staging' is "
        "promoted from 'dev'; promote through each environment in order",
    ]


def test_promotion_loop_is_reported(repo_copy: Path) -> None:
    _edit(repo_copy, "staging", "from: dev", "from: prod")
    rel = repo_copy / "environments" / "releases" / "staging.yaml"
    rel.write_text(rel.read_text().replace("source_environment: dev", "source_environment: prod"))
    with pytest.raises(ConfigError) as info:
        load_checked(repo_copy, "prod")
    assert (
        "environments/Pulumi.prod.yaml: ftops:environment.promotion.from: promotion loops through 'prod'"
        in (info.value.problems)
    )


def test_promoted_environment_cannot_train(repo_copy: Path) -> None:
    _edit(
        repo_copy,
        "staging",
        "    deployments:\n",
        "    models:\n      x1:\n        base_model: gpt-4.1-mini-2025-04-14\n"
        "        training_file: data/support-bot/train.jsonl\n    deployments:\n",
    )
    assert _problems(repo_copy, "staging") == [
        "environments/Pulumi.staging.yaml: ftops:environment.models.x1: this environment takes release pins "
        "(promotion.from is set); train models in 'dev' and promote them (line 37)"
    ]


def test_environment_names() -> None:
    assert environment_names(REPO) == ["dev", "local", "prod", "staging"]


def test_gate_suites_and_a_gate_with_nothing_to_check(repo_copy: Path) -> None:
    _edit(
        repo_copy,
        "prod",
        "        safety:\n          threshold: 0.98\n",
        "        safety:\n          suite: pyrit\n",
    )
    assert load_environment(repo_copy, "prod").gates["support-bot"].safety.suite == "pyrit"  # type: ignore[union-attr]
    _edit(repo_copy, "prod", "        safety:\n          suite: pyrit\n", "        safety: null\n")
    assert _problems(repo_copy, "prod") == [
        P + "gates.support-bot: a gate with neither quality checks nor safety would let any model through; "
        "declare one (line 61)"
    ]


# ---------------------------------------------------------------- RFT graders: declared once, used twice

RFT_GRADERS = """    graders:
      digits:
        type: python
        source: |
          def grade(sample, item):
              return 1.0 if sample["output_text"].strip() == item["answer"] else 0.0
      exact:
        type: string_check
        input: "{{sample.output_text}}"
        reference: "{{item.answer}}"
        operation: eq
    models:
      adder:
        base_model: o4-mini-2025-04-16
        method:
          type: reinforcement
          grader: {ref: digits}
          hyperparameters: {n_epochs: 2, eval_interval: 1}
        training_file: data/rft-digits/train.jsonl
        validation_file: data/rft-digits/valid.jsonl
"""
RFT_GATE = """    gates:
      adder:
        baseline: none
        safety: null
        quality:
          - name: sums
            eval_set: data/rft-digits/valid.jsonl
            grader: {ref: digits}
            threshold: 0.5
"""


def _rft_env(root: Path, models: str = RFT_GRADERS, gate: str = RFT_GATE) -> None:
    _edit(root, "dev", "    models:\n", models)
    _edit(root, "dev", "    gates:\n", gate)


def test_one_grader_is_the_rft_reward_and_the_gate_check(repo_copy: Path) -> None:
    from ftops.components.model import method_input
    from ftops.config.gates import gate_request
    from ftops.evaluation import rft_graders

    _rft_env(repo_copy)
    env = load_environment(repo_copy, "dev")
    method = method_input(env.models["adder"], env)
    assert method["grader"]["type"] == "python"
    assert method["grader"]["name"] == "digits"  # a ref's grader is named after its key
    assert method["hyperparameters"] == {"n_epochs": 2, "eval_interval": 1}
    (check,) = gate_request(env, "adder", repo_copy, "", 0).checks
    assert check.grader == "azure:digits"
    assert json.loads(check.grader_spec) == method["grader"]  # the very object the job trains on
    assert rft_graders.parse(json.loads(check.grader_spec)) == rft_graders.parse(method["grader"])


def test_an_edited_python_grader_is_a_new_job(repo_copy: Path) -> None:
    from ftops.components.model import method_input
    from ftops.program import job_identity
    from ftops.providers.spec import spec_hash

    _rft_env(repo_copy)
    env = load_environment(repo_copy, "dev")
    before = spec_hash({"method": method_input(env.models["adder"], env)})
    identity = job_identity(env, "adder", repo_copy)
    _edit(repo_copy, "dev", "else 0.0", "else 0.5")
    edited = load_environment(repo_copy, "dev")
    assert spec_hash({"method": method_input(edited.models["adder"], edited)}) != before
    assert job_identity(edited, "adder", repo_copy) != identity  # the budget counts it as a new job too
    # ... while the same grader inline instead of by ref is the same job
    inline = RFT_GRADERS.replace(
        "grader: {ref: digits}",
        "grader: {type: string_check, name: exact, "
        'input: "{{sample.output_text}}", reference: "{{item.answer}}", operation: eq}',
    )
    by_ref = RFT_GRADERS.replace("grader: {ref: digits}", "grader: {ref: exact}")
    hashes: list[str] = []
    for models in (inline, by_ref):
        root = repo_copy.parent / f"copy-{len(hashes)}"
        shutil.copytree(repo_copy.parent / "repo" / "data", root / "data")
        shutil.copytree(REPO / "environments", root / "environments")
        (root / "Pulumi.yaml").write_text((REPO / "Pulumi.yaml").read_text())
        _rft_env(root, models)
        env = load_environment(root, "dev")
        hashes.append(spec_hash({"method": method_input(env.models["adder"], env)}))
    assert hashes[0] == hashes[1]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "grader: {ref: digits}\n          hyper",
            "grader: {ref: digitz}\n          hyper",
            D
            + "models.adder.method.grader.ref: no grader 'digitz' in graders; declared: digits, exact (line 52)",
        ),
        (
            '"{{item.answer}}"',
            '"{{item.answr}}"',
            None,  # not used by the model: only the gate's check is checked against its set
        ),
        (
            "            grader: {ref: digits}\n            threshold",
            "            grader: {ref: exact}\n            pass_score: 1\n            threshold",
            None,
        ),
    ],
)
def test_grader_refs(repo_copy: Path, old: str, new: str, expected: str | None) -> None:
    _rft_env(repo_copy)
    _edit(repo_copy, "dev", old, new)
    if expected is None:
        load_environment(repo_copy, "dev")
    else:
        assert _problems(repo_copy, "dev") == [expected]


def test_template_references_are_checked_against_the_data(repo_copy: Path) -> None:
    _rft_env(
        repo_copy,
        RFT_GRADERS.replace("grader: {ref: digits}", "grader: {ref: exact}"),
        RFT_GATE.replace("{ref: digits}", "{ref: exact}"),
    )
    _edit(repo_copy, "dev", '"{{item.answer}}"', '"{{item.answr}}"')
    text = (repo_copy / "environments" / "Pulumi.dev.yaml").read_text().splitlines()
    model_line, gate_line = [n for n, line in enumerate(text, 1) if "{ref: exact}" in line]
    assert _problems(repo_copy, "dev") == [
        D + "models.adder.method.grader: {{item.answr}}: the data has no field 'answr' (it has answer, "
        f"messages) at data/rft-digits/train.jsonl:1 (line {model_line})",
        D + "gates.adder.quality.0.grader: {{item.answr}}: the data has no field 'answr' (it has answer, "
        f"messages) at data/rft-digits/valid.jsonl:1 (line {gate_line})",
    ]


def test_python_grader_syntax_is_checked_with_its_line(repo_copy: Path) -> None:
    _rft_env(repo_copy)
    _edit(repo_copy, "dev", "else 0.0", "else 0.0)")
    (problem,) = _problems(repo_copy, "dev")
    assert problem.startswith(D + "graders.digits: ")
    assert "source line 2: unmatched ')'" in problem


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "        validation_file: data/rft-digits/valid.jsonl\n",
            "        validation_file: data/rft-digits/valid.jsonl\n        checkpoint: best_valid_loss\n",
            "models.adder.checkpoint: best_valid_reward is for reinforcement (its checkpoints carry rewards), "
            "best_valid_loss for supervised and dpo (line 56)",
        ),
        (
            "        checkpoint: best_valid_loss\n        wait_timeout_minutes: 120\n",
            "        checkpoint: best_valid_reward\n        wait_timeout_minutes: 120\n",
            "models.support-sft.checkpoint: best_valid_reward is for reinforcement (its checkpoints carry "
            "rewards), best_valid_loss for supervised and dpo (line 69)",
        ),
    ],
)
def test_the_checkpoint_policy_fits_the_method(repo_copy: Path, old: str, new: str, expected: str) -> None:
    _rft_env(repo_copy)
    _edit(repo_copy, "dev", old, new)
    assert _problems(repo_copy, "dev") == [D + expected]


def test_best_eval_needs_a_number_of_epochs_and_quality_checks(repo_copy: Path) -> None:
    at = "environments/Pulumi.local.yaml: ftops:environment."
    _edit(repo_copy, "local", "checkpoint: final", "checkpoint: best_eval")
    assert load_environment(repo_copy, "local").models["support-bot"].checkpoint == "best_eval"
    _edit(repo_copy, "local", "n_epochs: 6", "n_epochs: auto")
    _edit(repo_copy, "local", "        quality:\n", "        quality: []\n")
    _edit(repo_copy, "local", "          - name: policy-recall\n", "")
    for line in ("eval_set: data/evals/support-bot-recall.jsonl", "grader: regex", "threshold: 0.1"):
        _edit(repo_copy, "local", f"            {line}\n", "")
    problems = _problems(repo_copy, "local")
    assert problems == [
        at + "models.support-bot.method.hyperparameters.n_epochs: checkpoint: best_eval needs a whole number "
        "of epochs (one candidate deployment per kept checkpoint is declared before training); set n_epochs "
        "(line 24)",
        at + "models.support-bot.checkpoint: best_eval scores checkpoints with the gate's quality checks: "
        "declare a deployment of 'support-bot' and gates.support-bot.quality, or use final / best_valid_loss "
        "(line 31)",
    ], problems


def test_customer_managed_key_rules_name_the_key(repo_copy: Path) -> None:
    _edit(
        repo_copy,
        "staging",
        "      key_rotation_days: 365\n",
        "      key_rotation_days: 365\n      key_vault:\n        purge_protection: false\n        location: westeurope\n",
    )
    problems = _problems(repo_copy, "staging")
    s = "environments/Pulumi.staging.yaml: ftops:environment."
    assert any(
        p.startswith(s + "encryption.key_vault.purge_protection: Azure requires purge protection")
        for p in problems
    ), problems
    assert any(
        p.startswith(
            s + "encryption.key_vault.location: the key vault must be in the environment's region (eastus2)"
        )
        for p in problems
    ), problems
    _edit(repo_copy, "local", "    models:\n", "    encryption: {mode: platform}\n    models:\n")
    assert any(
        "encryption: a local environment has no Azure storage to encrypt" in p
        for p in _problems(repo_copy, "local")
    )
