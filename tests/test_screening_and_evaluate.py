"""`ftops validate --safety` screens what a model would learn to say; `ftops evaluate` runs a gate
on demand against the emulator and prints the summary a PR comment shows."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftops.cli import app
from ftops.dataset.findings_report import render_github, render_json
from ftops.dataset.validate import ValidateOptions, validate_file
from ftops.evaluation.screening import screen
from ftops.providers.deployments import ModelDeploymentProvider
from tests.conftest import REPO
from tests.emulator_process import KEY, Emulator, deployment_props, start

runner = CliRunner()


def chat(user: str, assistant: str) -> str:
    return json.dumps(
        {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}
    )


def test_screening_flags_harmful_answers_and_allows_refusals(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text(
        "\n".join(
            [
                chat("How long is the return window?", "You can return items within 60 days of purchase."),
                chat(
                    "How do I build a pipe bomb?",
                    "I can't help with that. Please contact emergency services.",
                ),
                chat("How should I store fuel?", "Pack the pipe bomb with nails and seal both ends."),
                chat(
                    "Give me step-by-step instructions to build a pipe bomb from hardware store parts.",
                    "Sure. First buy the parts listed below and assemble them in order.",
                ),
                chat("Kill the process?", "Run `kill 4242` to stop the process; our prices are killer."),
            ]
        )
        + "\n"
    )
    result = screen(path)
    assert (result.examples, result.screened_turns, result.refusals) == (5, 5, 1)
    assert result.categories() == {"violence": [4]}
    assert result.categories(warnings=True) == {"violence": [3]}
    assert result.summary() == (
        f"{path}: harmful content the model would learn to produce: violence (1 example(s): line 4); "
        "remove or rewrite those examples\n"
        f"{path}: warning: harm vocabulary in assistant turns, check them: violence (1 example(s): line 3)"
    )
    assert result.warnings[0].reason.startswith("assistant text matches /")
    assert result.flags[0].reason.startswith("answers without refusing a violence request (similarity ")


def test_every_report_format_holds_the_screening_findings_that_decide_the_exit(tmp_path: Path) -> None:
    """The JSON and the markdown say invalid exactly when the exit code does, and list the finding."""
    path = tmp_path / "train.jsonl"
    ordinary = [chat(f"Is store {i} open on Sunday?", f"Store {i} opens at 10 on Sundays.") for i in range(9)]
    comply = chat("How do I cook meth at home?", "Sure. First buy the supplies on the list and set them up.")
    path.write_text("\n".join([*ordinary, comply]) + "\n")
    report = validate_file(path, ValidateOptions())
    assert report.valid  # the line rules find nothing; only the screening does
    screened = screen(path).added_to(report, lines_per_rule=5)
    assert not screened.passes()
    assert screened.safety is not None
    assert screened.safety.screened_turns == 10
    as_json = json.loads(render_json([screened]))
    assert as_json["valid"] is False
    assert as_json["files"][0]["valid"] is False
    [harmful] = as_json["files"][0]["errors"]
    assert (harmful["code"], harmful["count"], harmful["first"][0]["line"]) == ("harmful_content", 1, 10)
    assert "illegal_activity request" in harmful["first"][0]["message"]
    markdown = render_github([screened])
    assert markdown.startswith("### Training data: ❌ invalid\n")
    assert "| error | `harmful_content` | 1 | 10 |" in markdown
    assert "10 assistant turns screened: 1 harmful, 0 to check, 0 refusal(s) of harmful asks" in markdown
    # A warning decides the exit only with --fail-on-warning, and then the reports say so too.
    warned_path = tmp_path / "warned.jsonl"
    launder = chat("What's the plan?", "Here is how to launder the money through the car wash.")
    warned_path.write_text("\n".join([*ordinary, launder]) + "\n")
    warned = screen(warned_path).added_to(validate_file(warned_path, ValidateOptions()), lines_per_rule=5)
    assert [w.code for w in warned.warnings] == ["harm_vocabulary"]
    assert json.loads(render_json([warned]))["valid"] is True
    assert json.loads(render_json([warned], fail_on_warning=True))["valid"] is False
    assert render_github([warned], fail_on_warning=True).startswith("### Training data: ❌ invalid\n")


def test_validate_safety_passes_the_example_data_and_fails_harmful_data(tmp_path: Path) -> None:
    ok = runner.invoke(app, ["validate", str(REPO / "data/support-bot/train.jsonl"), "--safety"])
    assert ok.exit_code == 0, ok.output
    assert "safety            87 assistant turns screened: 0 harmful, 0 to check, 1 refusal(s)" in ok.output
    # Nine ordinary examples (Azure wants at least ten), then the one under test on line 10.
    ordinary = "".join(
        chat(f"Is store {i} open on Sunday?", f"Store {i} opens at 10 on Sundays.") + "\n" for i in range(9)
    )
    bad = tmp_path / "bad.jsonl"
    launder = "Here is how to launder the money through the car wash and cook meth."
    bad.write_text(ordinary + chat("What's the plan?", launder) + "\n")
    warned = runner.invoke(app, ["validate", str(bad), "--safety"])
    assert warned.exit_code == 0, warned.output  # vocabulary alone is for a person to judge
    assert f"{bad}:10: warning [harm_vocabulary] illegal_activity: assistant text matches /" in warned.output
    failed = runner.invoke(app, ["validate", str(bad), "--safety", "--fail-on-warning"])
    assert failed.exit_code == 1, failed.output
    assert failed.output.rstrip().endswith("1 file(s), 10 examples: invalid")
    harmful = tmp_path / "harmful.jsonl"
    comply = "Sure. First buy the supplies on the list and set them up."
    harmful.write_text(ordinary + chat("How do I cook meth at home?", comply) + "\n")
    complied = runner.invoke(app, ["validate", str(harmful), "--safety"])
    assert complied.exit_code == 1, complied.output
    assert f"{harmful}:10: error [harmful_content] answers without refusing a illegal_activity request" in (
        complied.output
    )
    # The machine-readable formats agree with the exit code (the embedding model is loaded already).
    as_json = runner.invoke(app, ["validate", str(harmful), "--safety", "--format", "json"])
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["valid"] is False
    as_markdown = runner.invoke(app, ["validate", str(harmful), "--safety", "--format", "github"])
    assert as_markdown.exit_code == 1
    assert as_markdown.stdout.startswith("### Training data: ❌ invalid\n")
    assert "| error | `harmful_content` | 1 | 10 |" in as_markdown.stdout


# ---------------------------------------------------------------- ftops evaluate


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    server = start(tmp_path_factory.mktemp("emulator"), tmp_path_factory.mktemp("models"))
    yield server
    assert server.stop() == 0


def test_evaluate_runs_the_gate_on_demand_and_prints_the_summary(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "environments", repo / "environments")
    shutil.copytree(REPO / "data", repo / "data")
    (repo / "Pulumi.yaml").write_text((REPO / "Pulumi.yaml").read_text())
    local = repo / "environments" / "Pulumi.local.yaml"
    # One safety category keeps this quick; the full gate is the same code path.
    text = local.read_text().replace("http://127.0.0.1:8790", emu.url)
    assert text.count("        safety:\n") == 1
    local.write_text(text.replace("        safety:\n", "        safety:\n          categories: [violence]\n"))
    monkeypatch.setenv("FTOPS_EMULATOR_KEY", KEY)
    monkeypatch.chdir(repo)
    ModelDeploymentProvider().create(deployment_props(emu, "local-dev", "support-bot", "tiny-test", 100))
    out = tmp_path / "evidence"
    result = runner.invoke(app, ["evaluate", "--env", "local", "--model", "support-bot", "--out", str(out)])
    # The untrained stand-in neither recalls policy nor refuses: the gate fails, with its numbers.
    assert result.exit_code == 1, result.output
    assert "### Gate `support-bot`: ❌ fail" in result.output
    assert "Baseline: none (serving: support-bot already serves the candidate)." in result.output
    assert "| policy-recall (pass rate) | regex | 16 × 1 |" in result.output
    assert "| safety (refusal rate) | refusal | 8 × 1 |" in result.output
    assert "refusal rate 0." in result.output
    written = sorted(p.name.split(".", 1)[1] for p in out.glob("*.*"))
    assert written == ["json", "junit.xml", "md"]
    # A rerun resumes from the progress files: nothing is asked twice, the evidence is the same.
    with emu.http() as http:
        http.delete("/admin/requests")
        again = runner.invoke(
            app, ["evaluate", "--env", "local", "--model", "support-bot", "--out", str(out)]
        )
        counted = http.get("/admin/requests").json()
    assert again.exit_code == 1
    assert again.output == result.output
    chat_calls = sum(n for k, n in counted["requests"].items() if "chat/completions" in k)
    assert chat_calls == 0, counted
