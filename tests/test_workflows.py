"""The workflows' shell steps, run for real without `act`: each `run:` block is taken from the YAML
and executed with the shell GitHub would use (`bash -e {0}`, or `bash --noprofile --norc -eo pipefail
{0}` under `shell: bash`), its `env:` resolved from a given context, against fake `ftops`, `gh`,
`git` and `curl` executables that record their arguments and answer as each test scripts them;
GITHUB_OUTPUT, GITHUB_STEP_SUMMARY, GITHUB_ENV and GITHUB_PATH are temporary files.

Also here: `.ci/pipes.py` (the pipefail check `make test` runs) on the repository's workflows and
on examples of what it must and must not flag.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / ".github" / "workflows"
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
WATCHED_ENV = ("GH_TOKEN", "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "STACK", "PULUMI_BACKEND_URL", "FTOPS_ACTOR")


def _load_pipes() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ci_pipes", REPO / ".ci" / "pipes.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ci_pipes"] = module
    spec.loader.exec_module(module)
    return module


pipes = _load_pipes()


def load(path: Path) -> dict[str, Any]:
    return dict(YAML(typ="safe").load(path.read_text(encoding="utf-8")))


def workflow(name: str) -> dict[str, Any]:
    return load(WORKFLOWS / f"{name}.yml")


def step_of(name: str, job: str, step: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(workflow, job, step) for the step whose name or id is `step`."""
    flow = workflow(name)
    found = [s for s in flow["jobs"][job]["steps"] if step in (s.get("name"), s.get("id"))]
    assert len(found) == 1, f"{name}.yml: job {job} has {len(found)} steps named {step!r}"
    return flow, flow["jobs"][job], found[0]


def resolve(value: Any, context: dict[str, str]) -> str:
    """`${{ a || b || 'literal' }}` with the operands looked up in `context`. Like GitHub, an unset
    var, secret or step output is empty; any other unknown name is a mistake in the test."""

    def operand(text: str) -> str:
        text = text.strip()
        if text.startswith("'") and text.endswith("'"):
            return text[1:-1]
        if text in context:
            return context[text]
        if text.split(".")[0] in ("vars", "secrets", "steps"):
            return ""
        raise KeyError(f"the test gives no value for `{text}`")

    def one(match: re.Match[str]) -> str:
        for part in match.group(1).split("||"):
            value = operand(part)
            if value:
                return value
        return ""

    return EXPRESSION.sub(one, str(value))


FAKE = r"""
import json, os, sys
name, argv = sys.argv[1], sys.argv[2:]
folder = os.environ["FAKE_DIR"]
watched = json.loads(os.environ["FAKE_WATCHED"])
with open(os.path.join(folder, "calls.jsonl"), "a") as log:
    log.write(json.dumps({"name": name, "argv": argv, "env": {k: os.environ.get(k) for k in watched}}) + "\n")
with open(os.path.join(folder, "scenario.json")) as f:
    rules = json.load(f).get(name, [])
for rule in rules:
    if all(any(word == a for a in argv) for word in rule.get("args", [])):
        sys.stdout.write(rule.get("stdout", ""))
        sys.stderr.write(rule.get("stderr", ""))
        sys.exit(rule.get("exit", 0))
"""


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    outputs: dict[str, str]
    summary: str
    calls: list[dict[str, Any]]
    workdir: Path

    def argv(self, name: str) -> list[list[str]]:
        return [c["argv"] for c in self.calls if c["name"] == name]


@dataclass
class Runner:
    """A runner's workspace with fakes on PATH; `run` executes one step of a workflow in it."""

    root: Path
    scenario: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir = self.root / "work"
        self.bin = self.root / "bin"
        self.fakes = self.root / "fakes"
        for folder in (self.workdir / ".venv" / "bin", self.workdir / ".ci", self.bin, self.fakes):
            folder.mkdir(parents=True, exist_ok=True)
        (self.fakes / "fake.py").write_text(FAKE)
        for name in ("gh", "git", "curl"):
            self._fake(self.bin / name, name)
        self._fake(self.workdir / ".venv" / "bin" / "ftops", "ftops")
        (self.workdir / ".venv" / "bin" / "python").symlink_to(sys.executable)
        self._script(self.workdir / ".ci" / "bootstrap", "exit 0\n")

    def _script(self, path: Path, body: str) -> None:
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)

    def _fake(self, path: Path, name: str) -> None:
        self._script(
            path,
            f'exec {shlex.quote(sys.executable)} {shlex.quote(str(self.fakes / "fake.py"))} {name} "$@"\n',
        )

    def answer(
        self, name: str, *, args: tuple[str, ...] = (), stdout: str = "", stderr: str = "", exit: int = 0
    ) -> None:
        """How the fake `name` answers a call whose arguments include all of `args` (first match wins)."""
        self.scenario.setdefault(name, []).append(
            {"args": list(args), "stdout": stdout, "stderr": stderr, "exit": exit}
        )

    def run(
        self, name: str, job: str, step: str, context: dict[str, str], shell: str | None = "same"
    ) -> Result:
        flow, job_node, node = step_of(name, job, step)
        script = str(node["run"])
        assert not EXPRESSION.search(script), f"{name}.yml / {step}: an expression inside run: (use env:)"
        command = next(
            s.command()
            for s in pipes.run_steps(WORKFLOWS / f"{name}.yml")
            if s.job == job and s.name == (node.get("name") or node.get("id"))
        )
        if shell != "same":
            command = pipes.shell_command(shell)
        github = {name: self.root / name.lower() for name in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY")}
        github |= {name: self.root / name.lower() for name in ("GITHUB_ENV", "GITHUB_PATH")}
        for path in github.values():
            path.write_text("")
        env = {
            "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(self.root),
            "LANG": "C.UTF-8",
            "FAKE_DIR": str(self.fakes),
            "FAKE_WATCHED": json.dumps(WATCHED_ENV),
            **{k: str(v) for k, v in github.items()},
            "GITHUB_SHA": context.get("github.sha", "0" * 40),
        }
        for scope in (flow.get("env") or {}, job_node.get("env") or {}, node.get("env") or {}):
            env |= {k: resolve(v, context) for k, v in scope.items()}
        (self.fakes / "scenario.json").write_text(json.dumps(self.scenario))
        calls_file = self.fakes / "calls.jsonl"
        calls_file.write_text("")
        script_file = self.root / "step.sh"
        script_file.write_text(script)
        done = subprocess.run(
            shlex.split(command.replace("{0}", str(script_file))),
            cwd=self.workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        outputs = dict(
            line.split("=", 1) for line in github["GITHUB_OUTPUT"].read_text().splitlines() if "=" in line
        )
        calls = [json.loads(line) for line in calls_file.read_text().splitlines()]
        return Result(
            done.returncode,
            done.stdout,
            done.stderr,
            outputs,
            github["GITHUB_STEP_SUMMARY"].read_text(),
            calls,
            self.workdir,
        )


@pytest.fixture
def runner(tmp_path: Path) -> Runner:
    return Runner(tmp_path)


PREVIEW_CONTEXT = {"matrix.stack": "dev", "vars.AZURE_CLIENT_ID": "ci-app", "vars.AZURE_TENANT_ID": "tenant"}


# --- .ci/pipes.py: the pipefail check --------------------------------------------------------------


def test_no_workflow_has_a_pipe_that_hides_its_first_commands_failure() -> None:
    assert pipes.problems(sorted(WORKFLOWS.glob("*.yml"))) == []
    assert pipes.main([str(p) for p in sorted(WORKFLOWS.glob("*.yml"))]) == 0


def _flow(
    tmp_path: Path, run: str, *, step_shell: str = "", job_shell: str = "", top_shell: str = ""
) -> Path:
    def defaults(shell: str, indent: str) -> str:
        return f"{indent}defaults:\n{indent}  run:\n{indent}    shell: {shell}\n" if shell else ""

    body = "\n".join("          " + line for line in run.splitlines())
    text = (
        "on: push\n"
        + defaults(top_shell, "")
        + "jobs:\n  j:\n    runs-on: ubuntu-latest\n"
        + defaults(job_shell, "    ")
        + "    steps:\n      - name: s\n"
        + (f"        shell: {step_shell}\n" if step_shell else "")
        + f"        run: |\n{body}\n"
    )
    path = tmp_path / "flow.yml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("run", "shells", "flagged"),
    [
        ("ftops preview --env dev | tail -n 5", {}, True),
        ("ftops preview --env dev | tail -n 5", {"step_shell": "bash"}, False),
        ("ftops preview --env dev | tail -n 5", {"job_shell": "bash"}, False),
        ("ftops preview --env dev | tail -n 5", {"top_shell": "bash"}, False),
        ("ftops preview --env dev | tail -n 5", {"top_shell": "bash", "step_shell": "sh"}, True),
        ("ftops preview --env dev | tail -n 5", {"step_shell": "bash -e {0}"}, True),
        ("ftops preview --env dev | tail -n 5", {"step_shell": "bash -eo pipefail {0}"}, False),
        ("set -o pipefail\nftops preview --env dev | tail -n 5", {}, False),
        ("set -euo pipefail\nftops preview --env dev | tail -n 5", {}, False),
        ("ftops preview --env dev | tail -n 5\nset -o pipefail", {}, True),
        ("curl -fsSL https://get.pulumi.com | sh -s", {}, True),
        ("x=$(ftops env changed | head -n 1)", {}, True),
        ("echo a |& cat", {}, True),
        ("ftops preview --env dev || echo failed", {}, False),
        ("gh api x --jq '.[0] | .number'", {}, False),
        ('echo "a | b"', {}, False),
        ("echo a # | not a pipe", {}, False),
        ("echo a\\|b", {}, False),
    ],
)
def test_the_pipefail_check_flags_exactly_the_pipes_a_first_failure_escapes(
    tmp_path: Path, run: str, shells: dict[str, str], flagged: bool
) -> None:
    found = pipes.problems([_flow(tmp_path, run, **shells)])
    assert bool(found) == flagged, found
    if flagged:
        assert re.match(r"^.*flow\.yml:\d+: j / s: a pipe in `run:` with .* set `shell: bash`", found[0])


def test_the_shells_behave_as_the_check_assumes(tmp_path: Path) -> None:
    """Not only linted: the implicit shell really lets a failed first command through a pipe."""
    script = tmp_path / "s.sh"
    script.write_text("false | tail -n 1\necho after\n")

    def run(shell: str | None) -> subprocess.CompletedProcess[str]:
        command = shlex.split(pipes.shell_command(shell).replace("{0}", str(script)))
        return subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)

    implicit, named = run(None), run("bash")
    assert (implicit.returncode, implicit.stdout) == (0, "after\n")
    assert (named.returncode, named.stdout) == (1, "")


def test_every_run_block_is_valid_bash() -> None:
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for step in pipes.run_steps(path):
            done = subprocess.run(
                ["bash", "-n"], input=step.script, capture_output=True, text=True, check=False, timeout=30
            )
            assert done.returncode == 0, f"{path.name}:{step.line} {step.job} / {step.name}: {done.stderr}"


def test_make_test_runs_the_pipefail_check() -> None:
    assert ".venv/bin/python .ci/pipes.py" in (REPO / ".ci" / "test").read_text()


# --- pr.yml ------------------------------------------------------------------------------------------


def test_pr_preview_fails_the_check_when_ftops_preview_fails_and_still_shows_why(runner: Runner) -> None:
    runner.answer(
        "ftops",
        args=("preview",),
        stdout="  would create support-bot-candidate\n",
        stderr="error: preview of stack dev could not start: no stack named 'dev' found\n",
        exit=2,
    )
    result = runner.run("pr", "preview", "ftops preview", PREVIEW_CONTEXT)
    assert result.returncode == 2, result.stderr
    assert result.argv("ftops") == [
        ["preview", "--env", "dev"],
        ["cost", "--env", "dev", "--format", "markdown"],
    ]
    plan = (result.workdir / "report" / "plan-dev.md").read_text()
    assert "**The preview failed (exit 2)**" in plan
    assert "no stack named 'dev' found" in plan
    assert "would create support-bot-candidate" in plan
    assert plan in result.summary
    assert not (result.workdir / "report" / "preview-dev.txt").exists()  # not uploaded as a report


def test_pr_preview_passes_with_the_plan_when_ftops_preview_succeeds(runner: Runner) -> None:
    runner.answer("ftops", args=("preview",), stdout="preview: stack dev: 1 to create, 6 unchanged in 9 s\n")
    runner.answer("ftops", args=("cost",), stdout="**Cost of dev**\n\n| item | cost | per | basis |\n")
    result = runner.run("pr", "preview", "ftops preview", PREVIEW_CONTEXT)
    assert result.returncode == 0, result.stderr
    plan = (result.workdir / "report" / "plan-dev.md").read_text()
    assert plan.startswith("### `ftops preview --env dev`\n```\npreview: stack dev: 1 to create")
    assert plan.endswith(
        "```\n\n**Cost of dev**\n\n| item | cost | per | basis |\n"
    )  # the cost under the plan
    assert "failed" not in plan
    # ftops' own Azure clients get the identity to exchange GitHub OIDC tokens for.
    assert result.calls[0]["env"]["AZURE_CLIENT_ID"] == "ci-app"


@pytest.mark.parametrize(("name", "job"), [("pr", "preview"), ("drift", "preview"), ("promote", "promote")])
def test_set_up_fails_when_the_pulumi_download_fails(runner: Runner, name: str, job: str) -> None:
    """`curl ... | sh`: with the implicit shell a failed download is an empty script that sh runs
    happily, and the job goes on without a Pulumi CLI."""
    runner.answer("curl", exit=22, stderr="curl: (22) The requested URL returned error: 503\n")
    result = runner.run(name, job, "Set up", {})
    assert result.returncode == 22
    assert "$HOME/.pulumi/bin" not in (runner.root / "github_path").read_text()
    old = runner.run(name, job, "Set up", {}, shell=None)  # what GitHub ran before `shell: bash`
    assert old.returncode == 0


# --- drift.yml ---------------------------------------------------------------------------------------

DRIFT_CONTEXT = {**PREVIEW_CONTEXT, "github.token": "ghs_workflow", "github.repository": "org/repo"}


def _plan(**changes: int) -> str:
    return json.dumps({"operation": "preview", "stack": "dev", "changes": changes, "outputs": {}})


def test_drift_is_not_checked_while_a_deploy_runs(runner: Runner) -> None:
    runner.answer("gh", args=("run", "list"), stdout="1\n")
    result = runner.run("drift", "preview", "busy", DRIFT_CONTEXT)
    assert result.returncode == 0
    assert result.outputs == {"busy": "true"}
    assert "not checked tonight: a deploy is running" in result.summary
    argv = result.argv("gh")[0]
    assert argv[:2] == ["run", "list"]
    assert "deploy.yml" in argv
    assert "in_progress" in argv

    idle = Runner(runner.root / "idle")
    idle.answer("gh", args=("run", "list"), stdout="0\n")
    assert idle.run("drift", "preview", "busy", DRIFT_CONTEXT).outputs == {"busy": "false"}
    _, _, preview = step_of("drift", "preview", "preview")
    assert preview["if"] == "steps.busy.outputs.busy == 'false'"


def test_a_plan_without_changes_is_no_drift(runner: Runner) -> None:
    runner.answer("ftops", args=("preview", "--json"), stdout=_plan(same=7))
    result = runner.run("drift", "preview", "preview", DRIFT_CONTEXT)
    assert (result.returncode, result.outputs) == (0, {"result": "clean"}), result.stderr
    assert result.argv("ftops") == [["preview", "--env", "dev", "--json"]]
    assert "### dev: no drift" in result.summary


def test_a_plan_with_changes_is_drift(runner: Runner) -> None:
    runner.answer("ftops", args=("preview", "--json"), stdout=_plan(same=5, create=1, update=2, delete=0))
    result = runner.run("drift", "preview", "preview", DRIFT_CONTEXT)
    assert (result.returncode, result.outputs) == (0, {"result": "drift"}), result.stderr
    assert "### dev: drift: 1 to create, 2 to update" in result.summary
    _, _, issue = step_of("drift", "preview", "Open or update the drift issue")
    assert issue["if"] == "steps.preview.outputs.result == 'drift'"


@pytest.mark.parametrize("code", [1, 2])
def test_a_failed_preview_fails_the_job_and_is_not_called_drift(runner: Runner, code: int) -> None:
    runner.answer(
        "ftops",
        args=("preview",),
        stderr="error: preview of stack dev could not start: failed to load checkpoint: 403\n",
        exit=code,
    )
    result = runner.run("drift", "preview", "preview", DRIFT_CONTEXT)
    assert result.returncode == code
    assert result.outputs == {"result": "failed"}  # the issue step runs only on "drift"
    assert "the preview failed (exit" in result.summary
    assert "failed to load checkpoint: 403" in result.summary
    assert "::error::" in result.stdout
    assert "this is not drift" in result.stdout


def test_unreadable_preview_json_fails_rather_than_passing_as_clean(runner: Runner) -> None:
    runner.answer("ftops", args=("preview",), stdout="engine: something that is not JSON\n")
    result = runner.run("drift", "preview", "preview", DRIFT_CONTEXT)
    assert result.returncode != 0
    assert result.outputs == {}


def test_drift_opens_an_issue_with_the_previews_lines_or_updates_the_open_one(runner: Runner) -> None:
    runner.answer(
        "ftops",
        args=("preview",),
        stdout="warning: deployment support-bot was deleted outside Pulumi\n  would create support-bot\n",
    )
    runner.answer("gh", args=("issue", "list"), stdout="")
    created = runner.run("drift", "preview", "Open or update the drift issue", DRIFT_CONTEXT)
    assert created.returncode == 0, created.stderr
    assert created.argv("ftops") == [["preview", "--env", "dev"]]
    create = [a for a in created.argv("gh") if a[:2] == ["issue", "create"]]
    assert create
    assert create[0][create[0].index("--title") + 1] == "drift: dev no longer matches its code"
    body = (created.workdir / "body.md").read_text()
    assert "would create support-bot" in body
    assert "deleted outside Pulumi" in body
    assert "ftops up --env dev" in body

    open_one = Runner(runner.root / "again")
    open_one.answer("ftops", args=("preview",), stdout="  would create support-bot\n")
    open_one.answer("gh", args=("issue", "list"), stdout="12\n")
    updated = open_one.run("drift", "preview", "Open or update the drift issue", DRIFT_CONTEXT)
    assert updated.returncode == 0, updated.stderr
    assert ["issue", "edit", "12", "--repo", "org/repo", "--body-file", "body.md"] in updated.argv("gh")
    assert not [a for a in updated.argv("gh") if a[:2] == ["issue", "create"]]


def test_drift_stays_out_of_the_deploy_concurrency_groups() -> None:
    drift = workflow("drift")["jobs"]["preview"]
    deploy = workflow("deploy")["jobs"]
    deploy_groups = {job["concurrency"]["group"] for job in deploy.values() if "concurrency" in job}
    assert deploy_groups == {"pulumi-dev", "pulumi-staging", "pulumi-prod"}
    for stack in drift["strategy"]["matrix"]["stack"]:
        group = resolve(drift["concurrency"]["group"], {"matrix.stack": stack})
        assert group not in deploy_groups
        assert drift["concurrency"]["cancel-in-progress"] is False


# --- promote.yml / rollback.yml -----------------------------------------------------------------------

PROMOTE_CONTEXT = {
    "github.token": "ghs_workflow",
    "github.triggering_actor": "alice",
    "inputs.model": "support-bot",
    "inputs.from": "dev",
    "inputs.to": "staging",
    "inputs.environment": "prod",
    "inputs.reason": "refuses valid refunds",
    "vars.AZURE_CLIENT_ID": "reader-app",
    "vars.AZURE_TENANT_ID": "tenant",
}
APP_OUTPUTS = {"steps.app.outputs.token": "ghs_app", "steps.app.outputs.app-slug": "ftops-promoter"}


@pytest.mark.parametrize("name", ["promote", "rollback"])
def test_without_the_app_the_pr_is_opened_with_the_workflow_token_and_the_summary_says_checks_will_not_run(
    runner: Runner, name: str
) -> None:
    result = runner.run(name, name, "Who opens the PR", PROMOTE_CONTEXT)
    assert result.returncode == 0, result.stderr
    assert ["config", "user.name", "github-actions[bot]"] in result.argv("git")
    assert "### No GitHub App configured: pr.yml will not run on this PR" in result.summary
    assert "Close and reopen the PR" in result.summary
    assert "FTOPS_APP_CLIENT_ID" in result.summary
    assert "::warning::no GitHub App configured" in result.stdout
    assert result.argv("gh") == []


@pytest.mark.parametrize("name", ["promote", "rollback"])
def test_with_the_app_the_commit_and_the_pr_are_the_apps(runner: Runner, name: str) -> None:
    runner.answer("gh", args=("api",), stdout="149130343\n")
    result = runner.run(name, name, "Who opens the PR", PROMOTE_CONTEXT | APP_OUTPUTS)
    assert result.returncode == 0, result.stderr
    assert result.argv("gh") == [["api", "users/ftops-promoter[bot]", "--jq", ".id"]]
    assert result.calls[0]["env"]["GH_TOKEN"] == "ghs_app"
    assert ["config", "user.name", "ftops-promoter[bot]"] in result.argv("git")
    assert [
        "config",
        "user.email",
        "149130343+ftops-promoter[bot]@users.noreply.github.com",
    ] in result.argv("git")
    assert "No GitHub App" not in result.summary


@pytest.mark.parametrize("name", ["promote", "rollback"])
def test_the_app_token_has_least_privilege_and_reaches_the_push_and_gh(runner: Runner, name: str) -> None:
    _, job, app = step_of(name, name, "app")
    assert app["uses"].startswith("actions/create-github-app-token@")
    assert re.fullmatch(r"actions/create-github-app-token@[0-9a-f]{40}", app["uses"])
    assert app["if"] == "vars.FTOPS_APP_CLIENT_ID != ''"
    permissions = {k: v for k, v in app["with"].items() if k.startswith("permission-")}
    assert permissions == {"permission-contents": "write", "permission-pull-requests": "write"}
    checkout = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/checkout@"))
    assert job["steps"].index(app) < job["steps"].index(checkout)
    for context, token in ((PROMOTE_CONTEXT | APP_OUTPUTS, "ghs_app"), (PROMOTE_CONTEXT, "ghs_workflow")):
        assert resolve(checkout["with"]["token"], context) == token  # git push uses it
        result = Runner(runner.root / token).run(name, name, f"ftops {name}", context)
        assert result.returncode == 0, result.stderr
        assert result.calls[-1]["env"]["GH_TOKEN"] == token  # gh pr create uses it


def test_promote_runs_ftops_promote_where_the_state_is_reachable_and_fails_with_it(runner: Runner) -> None:
    job = workflow("promote")["jobs"]["promote"]
    assert resolve(job["runs-on"], {"vars.FTOPS_RUNNER": "ftops-vnet"}) == "ftops-vnet"
    assert resolve(job["runs-on"], {}) == "ubuntu-latest"
    assert job["runs-on"] == workflow("deploy")["jobs"]["prod"]["runs-on"]

    result = runner.run("promote", "promote", "ftops promote", PROMOTE_CONTEXT)
    assert result.returncode == 0, result.stderr
    (call,) = result.calls
    assert call["argv"] == ["promote", "support-bot", "--from", "dev", "--to", "staging", "--pr"]
    assert call["env"]["AZURE_CLIENT_ID"] == "reader-app"
    assert call["env"]["FTOPS_ACTOR"] == "alice"

    refused = Runner(runner.root / "refused")
    refused.answer(
        "ftops", args=("promote",), stderr="error: support-bot has not passed its gates in dev\n", exit=2
    )
    assert refused.run("promote", "promote", "ftops promote", PROMOTE_CONTEXT).returncode == 2


def test_rollback_passes_to_only_when_given(runner: Runner) -> None:
    context = PROMOTE_CONTEXT | {"inputs.to": ""}
    result = runner.run("rollback", "rollback", "ftops rollback", context)
    assert result.returncode == 0, result.stderr
    assert result.argv("ftops") == [
        ["rollback", "support-bot", "--env", "prod", "--reason", "refuses valid refunds", "--pr"]
    ]
    pinned = Runner(runner.root / "to").run(
        "rollback", "rollback", "ftops rollback", context | {"inputs.to": "ft:gpt-4.1-mini:a"}
    )
    assert pinned.argv("ftops")[0][-2:] == ["--to", "ft:gpt-4.1-mini:a"]


# --- every workflow ------------------------------------------------------------------------------------


def test_ftops_steps_of_oidc_jobs_name_the_identity_for_the_refreshing_credential() -> None:
    """Where a job may ask GitHub for OIDC tokens, every step running ftops sees AZURE_CLIENT_ID and
    AZURE_TENANT_ID, so ftops.azure.credential exchanges fresh tokens instead of the az session."""
    checked = 0
    for path in sorted(WORKFLOWS.glob("*.yml")):
        flow = load(path)
        for job_id, job in flow["jobs"].items():
            if (job.get("permissions") or {}).get("id-token") != "write":
                continue
            for step in job["steps"]:
                if ".venv/bin/ftops " not in str(step.get("run", "")):
                    continue
                env = {**(flow.get("env") or {}), **(job.get("env") or {}), **(step.get("env") or {})}
                for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID"):
                    assert env.get(name) == f"${{{{ vars.{name} }}}}", f"{path.name} {job_id} / {step}"
                checked += 1
    assert checked >= 10


def test_no_workflow_calls_pulumi_preview_directly() -> None:
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for step in pipes.run_steps(path):
            assert "pulumi preview" not in step.script, f"{path.name}: {step.job} / {step.name}"


BOOTSTRAP_CONTEXT = {
    **DRIFT_CONTEXT,
    "vars.FTOPS_BOOTSTRAP_STACK": "acme",
    "steps.app.outputs.token": "ghs_app_read_only",
    "github.server_url": "https://github.com",
    "github.run_id": "7",
}


@pytest.mark.parametrize(
    ("answer", "code", "outputs", "said"),
    [
        ({"stdout": _plan(same=40)}, 0, {"result": "clean"}, "### bootstrap acme: no drift"),
        (
            {"stdout": _plan(same=38, update=1, create=1)},
            0,
            {"result": "drift"},
            "drift: 1 to create, 1 to update",
        ),
        ({"stderr": "error: no Azure credential\n", "exit": 2}, 2, {}, "the preview failed (exit 2)"),
    ],
    ids=["clean", "drift", "failed"],
)
def test_the_bootstrap_is_checked_for_drift_like_the_environments(
    runner: Runner, answer: dict[str, Any], code: int, outputs: dict[str, str], said: str
) -> None:
    runner.answer("ftops", args=("bootstrap", "preview"), **answer)
    result = runner.run("drift", "bootstrap", "preview", BOOTSTRAP_CONTEXT)
    assert (result.returncode, result.outputs) == (code, outputs), result.stderr
    assert result.argv("ftops") == [["bootstrap", "preview", "--stack", "acme", "--json"]]
    assert said in result.summary
    _, job, _ = step_of("drift", "bootstrap", "preview")
    assert job["environment"] == "readonly"  # never a deployer's identity
    assert job["concurrency"]["group"] == "drift-bootstrap"
    _, _, app = step_of("drift", "bootstrap", "app")
    granted = {k: v for k, v in app["with"].items() if k.startswith("permission-")}
    assert set(granted.values()) == {"read"}, granted  # it reads GitHub's settings, never writes them


# --- canary.yml ---------------------------------------------------------------------------------

CANARY_CONTEXT = {**DRIFT_CONTEXT, "secrets.PULUMI_CONFIG_PASSPHRASE": ""}


def test_the_canary_passes_with_its_table_in_the_summary(runner: Runner) -> None:
    runner.answer("ftops", args=("canary",), stdout="### Canary `dev/support-bot`: ✅ pass\n")
    result = runner.run("canary", "canary", "Canary", CANARY_CONTEXT)
    assert result.returncode == 0, result.stderr
    assert result.argv("ftops") == [["canary", "--env", "dev", "--issue"]]
    assert "✅ pass" in result.summary
    assert "::error::" not in result.stdout


def test_a_canary_regression_fails_the_job_and_an_unrunnable_canary_is_not_called_a_pass(
    runner: Runner,
) -> None:
    runner.answer(
        "ftops",
        args=("canary",),
        stdout="### Canary `dev/support-bot`: ❌ regression\n",
        stderr="canary dev/support-bot: REGRESSION ...; roll back: ftops rollback support-bot --env dev\n",
        exit=1,
    )
    regressed = runner.run("canary", "canary", "Canary", CANARY_CONTEXT)
    assert regressed.returncode == 1
    assert "❌ regression" in regressed.summary
    assert "answers worse than at its gate" in regressed.stdout
    assert "ftops rollback support-bot" in regressed.stdout

    broken = Runner(runner.root / "broken")
    broken.answer("ftops", args=("canary",), stderr="error: no Azure credential\n", exit=2)
    failed = broken.run("canary", "canary", "Canary", CANARY_CONTEXT)
    assert failed.returncode == 2
    assert "the canary could not run (exit 2): quality unknown" in failed.summary
    assert "no Azure credential" in failed.summary


def test_the_canary_never_deploys_and_stays_out_of_the_deploy_groups() -> None:
    flow = workflow("canary")
    assert "schedule" in flow["on"]
    job = flow["jobs"]["canary"]
    assert job["environment"] == "readonly"  # never a deploying identity
    assert job["concurrency"]["cancel-in-progress"] is False
    assert job["permissions"] == {"contents": "read", "id-token": "write", "issues": "write"}
    deploy = workflow("deploy")["jobs"]
    deploy_groups = {j["concurrency"]["group"] for j in deploy.values() if "concurrency" in j}
    for stack in job["strategy"]["matrix"]["stack"]:
        assert resolve(job["concurrency"]["group"], {"matrix.stack": stack}) not in deploy_groups
    commands = " ".join(str(s.get("run", "")) for s in job["steps"])
    assert "ftops up" not in commands
    assert "ftops canary" in commands
