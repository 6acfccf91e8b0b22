"""The `ftops` command line, as users run it: exit codes, one-line errors, report formats."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftops.cli import app
from tests.conftest import REPO, good_example, good_rft, line_of, write_lines

runner = CliRunner()


def run(*args: str, cwd: Path = REPO) -> tuple[int, str, str]:
    import os

    old = Path.cwd()
    os.chdir(cwd)
    try:
        result = runner.invoke(app, list(args))
    finally:
        os.chdir(old)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def sft_file(tmp_path: Path) -> Path:
    return write_lines(tmp_path / "train.jsonl", [line_of(good_example(i)) for i in range(12)])


def test_valid_file_exits_0_with_a_summary(sft_file: Path) -> None:
    code, out, _ = run("validate", str(sft_file))
    assert code == 0, out
    assert "method            supervised (detected)" in out
    assert "examples          12" in out
    assert out.rstrip().endswith("1 file(s), 12 examples: valid")


def test_invalid_file_exits_1_naming_file_line_and_fix(tmp_path: Path) -> None:
    lines = [line_of(good_example(i)) for i in range(12)]
    lines[6] = b'{"messages": [{"role": "user", "content": "hi"}'
    path = write_lines(tmp_path / "bad.jsonl", lines)
    code, out, _ = run("validate", str(path))
    assert code == 1
    assert (
        f"{path}:7: error [invalid_json] not valid JSON (unexpected end of data at column 48); "
        "fix: write one complete JSON object per line"
    ) in out
    assert out.rstrip().endswith("1 file(s), 11 examples: invalid")


def test_missing_file_is_a_usage_error_on_one_line(tmp_path: Path) -> None:
    code, out, err = run("validate", str(tmp_path / "nope.jsonl"))
    assert code == 2
    assert err == f"error: {tmp_path / 'nope.jsonl'}: no such file; check the path\n"
    assert out == ""


def test_usage_errors() -> None:
    code, _, err = run("validate")
    assert (code, err) == (2, "error: nothing to validate; pass JSONL files or --env ENV\n")
    code, _, err = run("validate", "x.jsonl", "--method", "rlhf")
    assert code == 2
    assert "rlhf" in err
    code, _, err = run("validate", "--env", "staging")
    assert (code, err) == (
        2,
        "error: environment 'staging' trains no models (it takes release pins); validate the environment that "
        "trains them, e.g. --env dev\n",
    )
    code, _, err = run("validate", "--model", "support-bot")
    assert (code, err) == (2, "error: --model needs --env; ftops validate --env dev --model support-bot\n")


def test_unknown_base_model_and_unsupported_method(sft_file: Path) -> None:
    code, _, err = run("validate", str(sft_file), "--base-model", "gpt-9")
    assert code == 2
    assert err.startswith("error: unknown base model 'gpt-9'; use one of: gpt-4o-mini-2024-07-18")
    code, _, err = run("validate", str(sft_file), "--base-model", "gpt-4o-mini-2024-07-18", "--method", "dpo")
    assert (code, err) == (
        2,
        "error: gpt-4o-mini-2024-07-18 does not support dpo fine-tuning (asked for); it supports: supervised; "
        "pick another --base-model or --method\n",
    )


def test_reinforcement_needs_a_validation_file(tmp_path: Path) -> None:
    lines = [line_of(good_rft(i)) for i in range(10)]
    lines[3] = b'{"messages": [{"role": "user"'  # the file's own finding is shown beside the missing file
    train = write_lines(tmp_path / "rft.jsonl", lines)
    code, out, err = run("validate", str(train), "--base-model", "o4-mini-2025-04-16")
    assert (code, err) == (1, "")
    assert f"{train}:4: error [invalid_json] " in out
    assert (
        f"{train}: error [missing_validation_file] reinforcement fine-tuning needs a validation file; "
        "fix: pass --validation-file PATH; Azure requires one for reinforcement"
    ) in out
    code, out, _ = run("validate", str(train), "--method", "reinforcement", "--format", "json")
    assert code == 1
    [report] = json.loads(out)["files"]
    # --method reinforcement alone picks the base model that offers it.
    assert (report["base_model"], report["method"]) == ("o4-mini-2025-04-16", "reinforcement")
    assert [e["code"] for e in report["errors"]] == [
        "invalid_json",
        "too_few_examples",
        "missing_validation_file",
    ]
    train = write_lines(tmp_path / "rft.jsonl", [line_of(good_rft(i)) for i in range(10)])
    valid = write_lines(tmp_path / "rft-valid.jsonl", [line_of(good_rft(i + 50)) for i in range(10)])
    code, out, _ = run(
        "validate", str(train), "--base-model", "o4-mini-2025-04-16", "--validation-file", str(valid)
    )
    assert code == 0, out
    assert "(validation): valid" in out
    assert "method            reinforcement" in out


def test_json_format_is_machine_readable(sft_file: Path) -> None:
    code, out, _ = run(
        "validate", str(sft_file), "--format", "json", "--price-per-million", "2", "--epochs", "4"
    )
    assert code == 0
    report = json.loads(out)
    assert report["valid"] is True
    file = report["files"][0]
    assert file["examples"] == 12
    assert file["epochs"] == 4
    assert file["epochs_auto"] is False
    assert file["billed_tokens"] == file["tokens"]["total"] * 4
    assert file["estimated_cost_usd"] == pytest.approx(file["billed_tokens"] / 1e6 * 2)
    assert set(file["tokens"]) == {"total", "min", "median", "p95", "max"}


def test_github_format_is_markdown_for_a_pr_comment(tmp_path: Path) -> None:
    lines = [line_of(good_example(i)) for i in range(12)] + [line_of(good_example(3))]
    path = write_lines(tmp_path / "dup.jsonl", lines)
    code, out, _ = run("validate", str(path), "--format", "github")
    assert code == 0  # duplicates are warnings
    assert out.startswith("### Training data: ✅ valid\n")
    assert (
        "| warning | `duplicate_example` | 1 | 13 | remove the repeat; duplicates over-weight one example |"
        in out
    )


def test_fail_on_warning(tmp_path: Path) -> None:
    lines = [line_of(good_example(i)) for i in range(12)] + [line_of(good_example(3))]
    path = write_lines(tmp_path / "dup.jsonl", lines)
    assert run("validate", str(path), "--fail-on-warning")[0] == 1


def test_env_validates_the_models_data_with_its_settings() -> None:
    code, out, _ = run("validate", "--env", "dev", "--format", "json")
    assert code == 0, out
    files = json.loads(out)["files"]
    assert [(f["path"], f["role"], f["method"]) for f in files] == [
        ("data/support-bot/train.jsonl", "training", "supervised"),
        ("data/support-bot/valid.jsonl", "validation", "supervised"),
        ("data/support-bot-dpo/train.jsonl", "training", "dpo"),
        ("data/support-bot-dpo/valid.jsonl", "validation", "dpo"),
    ]
    assert files[0]["epochs"] == 3
    assert files[2]["epochs"] == 2
    assert files[0]["price_per_million"] == 5.0  # from the environment's pricing


def test_split_is_deterministic_and_complete(tmp_path: Path) -> None:
    lines = [line_of(good_example(i)) for i in range(40)]
    src = write_lines(tmp_path / "all.jsonl", lines)
    code, out, _ = run(
        "validate", str(src), "--split", "0.2", "--seed", "7", "--out-dir", str(tmp_path / "a")
    )
    assert code == 0, out
    assert f"split {src} (seed 7): 32 -> {tmp_path / 'a' / 'all.train.jsonl'}, 8 -> " in out
    run("validate", str(src), "--split", "0.2", "--seed", "7", "--out-dir", str(tmp_path / "b"))
    run("validate", str(src), "--split", "0.2", "--seed", "8", "--out-dir", str(tmp_path / "c"))
    a = (tmp_path / "a" / "all.valid.jsonl").read_bytes()
    assert a == (tmp_path / "b" / "all.valid.jsonl").read_bytes()
    assert a != (tmp_path / "c" / "all.valid.jsonl").read_bytes()
    both = (tmp_path / "a" / "all.train.jsonl").read_bytes().splitlines() + a.splitlines()
    assert sorted(both) == sorted(lines)


def test_split_refuses_a_bad_fraction_a_mistyped_folder_and_an_earlier_split_before_reading(
    tmp_path: Path,
) -> None:
    src = write_lines(tmp_path / "all.jsonl", [line_of(good_example(i)) for i in range(40)])
    for fraction in ("1.5", "0", "-0.2"):
        code, out, err = run("validate", str(src), "--split", fraction)
        assert (code, out) == (2, "")  # refused up front: no report of the file at all
        assert err == f"error: --split {float(fraction)}: must be between 0 and 1; e.g. --split 0.1\n"
    deep = tmp_path / "no" / "such" / "folder"
    code, out, err = run("validate", str(src), "--split", "0.2", "--out-dir", str(deep))
    assert (code, out) == (2, "")
    assert err.startswith(f"error: --out-dir {deep}: neither it nor its parent folder exists")
    assert not (tmp_path / "no").exists()
    code, out, _ = run("validate", str(src), "--split", "0.2", "--out-dir", str(tmp_path / "a"))
    assert code == 0, out
    assert f"{tmp_path / 'a' / 'all.valid.jsonl'} (created {tmp_path / 'a'})" in out
    written = (tmp_path / "a" / "all.train.jsonl").read_bytes()
    code, out, err = run("validate", str(src), "--split", "0.5", "--out-dir", str(tmp_path / "a"))
    assert (code, out) == (2, "")
    assert err == (
        f"error: {tmp_path / 'a' / 'all.train.jsonl'} exists (an earlier split?); pass --overwrite to "
        "replace it, or another --out-dir\n"
    )
    assert (tmp_path / "a" / "all.train.jsonl").read_bytes() == written
    code, out, _ = run(
        "validate", str(src), "--split", "0.5", "--out-dir", str(tmp_path / "a"), "--overwrite"
    )
    assert code == 0, out
    assert "20 -> " in out
    assert "(replaced the earlier split)" in out
    code, _, err = run("validate", str(src), "--out-dir", str(tmp_path / "a"))
    assert code == 2
    assert "--out-dir and --overwrite go with --split" in err


def test_split_refuses_invalid_data_and_writes_nothing(tmp_path: Path) -> None:
    lines = [line_of(good_example(i)) for i in range(12)] + [b"{oops"]
    src = write_lines(tmp_path / "bad.jsonl", lines)
    code, _, err = run("validate", str(src), "--split", "0.1", "--out-dir", str(tmp_path / "out"))
    assert code == 1
    assert "not splitting: the file is invalid" in err
    assert not (tmp_path / "out").exists()


def test_env_check_and_show_and_schema() -> None:
    code, out, _ = run("env", "check")
    assert code == 0
    assert "prod       production on azure in swedencentral, promoted from staging" in out
    assert out.rstrip().endswith("4 of 4 environment(s) valid, 0 problem(s)")
    code, out, _ = run("env", "check", "prod")  # its sources are read for the chain, not counted
    assert code == 0
    assert out.rstrip().endswith("1 of 1 environment(s) valid, 0 problem(s)")
    code, out, _ = run("env", "show", "prod")
    shown = json.loads(out)
    assert shown["promotion"] == {"from": "staging", "require_approval": True}
    assert shown["deployments"]["support-bot"]["version_upgrade_option"] == "NoAutoUpgrade"
    code, out, _ = run("env", "schema")
    schema = json.loads(out)
    assert "releases" not in schema["properties"]
    assert "deployments" in schema["properties"]


def test_env_check_reports_each_problem(repo_copy: Path) -> None:
    prod = repo_copy / "environments" / "Pulumi.prod.yaml"
    prod.write_text(prod.read_text().replace("capacity: 50", "capacity: 0"))
    code, out, err = run("env", "check", cwd=repo_copy)
    assert code == 1
    assert err == (
        "environments/Pulumi.prod.yaml: ftops:environment.deployments.support-bot.sku.capacity: must be >= 1 "
        "(line 58)\n"
    )
    assert "prod       invalid (1 problem(s))" in out
    assert out.rstrip().endswith("3 of 4 environment(s) valid, 1 problem(s)")


def test_env_check_calls_an_environment_with_a_yaml_error_invalid_down_its_chain(repo_copy: Path) -> None:
    staging = repo_copy / "environments" / "Pulumi.staging.yaml"
    staging.write_text(staging.read_text() + "  broken: [\n")
    code, out, err = run("env", "check", cwd=repo_copy)
    assert code == 1
    prod_problem = (
        "environments/Pulumi.prod.yaml: ftops:environment.promotion.from: 'staging' is invalid, so this "
        "promotion cannot be checked; fix it first (ftops env check staging)"
    )
    assert prod_problem in err.splitlines()
    assert "no environment 'staging'" not in err
    problems = err.splitlines()
    assert len(problems) == 2
    assert problems[1].startswith("environments/Pulumi.staging.yaml: not valid YAML")
    # The table and the summary count the same environments and the same problems.
    assert "prod       invalid (1 problem(s))" in out
    assert "staging    invalid (1 problem(s))" in out
    assert out.rstrip().endswith("2 of 4 environment(s) valid, 2 problem(s)")
    code, out, err = run("env", "check", "prod", cwd=repo_copy)
    assert code == 1
    assert err.splitlines() == [prod_problem]
    assert out.splitlines() == [
        "prod       invalid (1 problem(s))",
        "0 of 1 environment(s) valid, 1 problem(s)",
    ]


def test_env_check_lists_every_security_rule_an_environment_breaks(repo_copy: Path) -> None:
    prod = repo_copy / "environments" / "Pulumi.prod.yaml"
    text = prod.read_text()
    for old, new in (
        ("mode: private", "mode: public"),
        ("public_network_access: Disabled", "public_network_access: Enabled"),
        ("disable_local_auth: true", "disable_local_auth: false"),
    ):
        assert old in text
        text = text.replace(old, new, 1)
    prod.write_text(text)
    code, out, err = run("env", "check", "prod", cwd=repo_copy)
    assert code == 1
    assert [line.split(": ")[1] for line in err.splitlines()] == [
        "ftops:environment.network.mode",
        "ftops:environment.account.public_network_access",
        "ftops:environment.account.disable_local_auth",
    ]
    assert out.splitlines() == [
        "prod       invalid (3 problem(s))",
        "0 of 1 environment(s) valid, 3 problem(s)",
    ]


def test_console_script_runs_as_a_module(sft_file: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ftops", "validate", str(sft_file), "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["valid"] is True


def test_each_training_file_is_detected_on_its_own(tmp_path: Path) -> None:
    from tests.conftest import good_dpo

    sft = write_lines(tmp_path / "sft.jsonl", [line_of(good_example(i)) for i in range(10)])
    dpo = write_lines(tmp_path / "dpo.jsonl", [line_of(good_dpo(i)) for i in range(10)])
    code, out, _ = run("validate", str(sft), str(dpo), "--format", "json")
    assert code == 0, out
    assert [f["method"] for f in json.loads(out)["files"]] == ["supervised", "dpo"]


def test_version_option_and_help_without_a_type_after_flags() -> None:
    from ftops import __version__

    code, out, _ = run("--version")
    assert (code, out) == (0, f"ftops {__version__}\n")
    code, out, _ = run("--version", "validate", "no-such-file")  # eager: before anything else runs
    assert (code, out) == (0, f"ftops {__version__}\n")
    result = runner.invoke(app, ["validate", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "<bool>" not in result.stdout  # flags take no value
    flag = next(line for line in result.stdout.splitlines() if "--safety" in line)
    assert flag.split("--safety", 1)[1].split()[:3] == ["Also", "screen", "what"]
    assert "<int range>" in result.stdout  # options that take a value keep their type


def test_selftest_fails_when_training_did_not_move_the_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The decision only: no emulator, no training (that path is tests/test_emulator_api.py)."""
    from ftops.emulator import selftest

    model = "gpt-4.1-mini-2025-04-14.ft-" + "a" * 32
    worse = selftest.Outcome("ftjob-1", model, 1000, 42.0, 3.1, 2.0, 0.41, 0.30, 0, 6)
    better = selftest.Outcome("ftjob-1", model, 1000, 42.0, 3.1, 2.0, 0.30, 0.41, 4, 6)
    assert not worse.moved
    assert better.moved
    assert better.summary().startswith(f"selftest: ok: {model} trained 1,000 tokens in 42 s")
    monkeypatch.setattr(selftest, "run", lambda *args, **kwargs: worse)
    code, out, err = run("emulator", "selftest", "--api-key", "k", "--env", "local")
    assert code == 1
    assert "selftest: ok" not in out
    assert err == (
        f"error: selftest: {model} trained 1,000 tokens in 42 s (loss 3.10 -> 2.00), but answers did not "
        "move toward the training answers: closer to the training answers on 0/6 prompts (word F1 0.41 -> "
        "0.30); raise n_epochs or learning_rate_multiplier of the model, or check the stand-in\n"
    )
    monkeypatch.setattr(selftest, "run", lambda *args, **kwargs: better)
    code, out, _ = run("emulator", "selftest", "--api-key", "k", "--env", "local")
    assert code == 0
    assert out.startswith("selftest: ok: ")


def test_a_usage_error_raised_inside_a_command_keeps_its_own_exit_code() -> None:
    """typer vendors click: its BadParameter is not click's ClickException, and the single
    handler must still let it print as a usage error (exit 2), not as an unexpected error."""
    import typer
    from typer.testing import CliRunner

    from ftops.cli.common import one_line_errors

    demo = typer.Typer()

    @demo.command()
    @one_line_errors
    def pick(size: int = 1) -> None:
        raise typer.BadParameter("must be even", param_hint="--size")

    result = CliRunner().invoke(demo, ["--size", "3"])
    assert result.exit_code == 2, result.output
    assert "unexpected" not in result.output
    assert "must be even" in result.output


def test_env_check_refuses_a_prod_file_without_customer_managed_keys(repo_copy: Path) -> None:
    prod = repo_copy / "environments" / "Pulumi.prod.yaml"
    text = prod.read_text()
    prod.write_text(text.replace("mode: customer_managed", "mode: platform"))
    code, _out, err = run("env", "check", "prod", cwd=repo_copy)
    assert code == 1
    assert err.splitlines() == [
        "environments/Pulumi.prod.yaml: ftops:environment.encryption.mode: production requires customer-managed "
        "keys: set encryption: {mode: customer_managed} (or keep platform keys with encryption.opt_out_reason "
        f"saying why) (line {text.splitlines().index('      mode: customer_managed') + 1})"
    ]
    # Without the section at all: the same rule, at the environment.
    prod.write_text(text[: text.index("    encryption:\n")])
    code, _, err = run("env", "check", "prod", cwd=repo_copy)
    assert code == 1
    assert len(err.splitlines()) == 1
    assert "encryption: production requires customer-managed keys" in err
    # An opt-out is a reason written in the file, reviewed like any change.
    prod.write_text(
        text.replace(
            "mode: customer_managed", "mode: platform\n      opt_out_reason: regulator accepts platform keys"
        )
    )
    code, _, err = run("env", "check", "prod", cwd=repo_copy)
    assert (code, err) == (0, "")
