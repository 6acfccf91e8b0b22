"""The real Pulumi engine against the emulator: `ftops up / preview / refresh / destroy` run as users
run them (a separate process driving the Pulumi CLI through the Automation API), on a throwaway
GitOps repository whose stacks train the tiny stand-in. Each test checks what the engine reported
and what the emulator holds.

In CI these tests fail when the engine cannot be had; elsewhere they skip with the reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from ftops.engine import install
from ftops.engine.stack import read_outputs
from tests.conftest import REPO
from tests.emulator_process import KEY, Emulator
from tests.gitops_repo import git, make_repo

pytestmark = pytest.mark.slow

# The salt of the passphrase secrets provider for the empty passphrase, as environments/Pulumi.local.yaml
# carries it: the engine then never rewrites a stack file on first use.
SALT = "encryptionsalt: v1:/bITiIOmxa8=:v1:pF7uKiBCpxtornyj:CxIU0b2NkTKc7T+9JtPxeuAX4ifdMQ==\n"
DEV_FILE = "environments/Pulumi.local-dev.yaml"
GATE_SETTINGS = """\
        repeats: 1
        temperature: 0
        fail_on_uncertainty: false
        safety: null
"""


@pytest.fixture(scope="module")
def engine() -> install.Engine:
    found = install.find(REPO)
    if found is None:
        reason = f"no Pulumi CLI (PATH, ~/.pulumi/bin, {install.built_dir(REPO)}); `ftops engine install`"
        if os.environ.get("CI"):
            pytest.fail(f"the engine tests need the engine in CI: {reason}")
        pytest.skip(reason)
    return found


@pytest.fixture(scope="module")
def pulumi_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pulumi-home")


@dataclass
class Repo:
    """A throwaway repository: local-dev trains on `account`, local-staging takes its pins."""

    root: Path
    emu: Emulator
    home: Path
    account: str

    def ftops(
        self, *args: str, timeout: float = 600, extra: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
        env.update(
            FTOPS_EMULATOR_KEY=KEY,
            FTOPS_ACTOR="tester",
            PULUMI_HOME=str(self.home),
            HF_HUB_OFFLINE="1",
            COLUMNS="250",
        )
        env.pop("FTOPS_ROOT", None)
        env.update(extra or {})
        return subprocess.run(
            [sys.executable, "-m", "ftops", *args],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def popen(self, *args: str, extra: dict[str, str] | None = None) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
        env.update(
            FTOPS_EMULATOR_KEY=KEY, FTOPS_ACTOR="tester", PULUMI_HOME=str(self.home), HF_HUB_OFFLINE="1"
        )
        env.update(extra or {})
        return subprocess.Popen(
            [sys.executable, "-m", "ftops", *args],
            cwd=self.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, as a shell would start it
        )

    def edit(self, relative: str, old: str, new: str) -> None:
        path = self.root / relative
        text = path.read_text()
        assert old in text, f"{relative} has no {old!r}"
        path.write_text(text.replace(old, new))

    def client(self, account: str | None = None) -> Any:
        return self.emu.v1(account or self.account)

    def jobs(self) -> list[Any]:
        return list(self.client().fine_tuning.jobs.list())

    def deployments(self, account: str | None = None) -> dict[str, str]:
        """name -> model of every deployment on the account, as ARM lists them."""
        with self.emu.http() as http:
            listed = http.get(f"{self.emu.arm(account or self.account)}/deployments?api-version=2024-10-01")
        assert listed.status_code == 200, listed.text
        return {d["name"]: d["properties"]["model"]["name"] for d in listed.json()["value"]}

    def state(self, stack: str = "local-dev") -> list[dict[str, Any]]:
        """The resources in the engine's state file (the file backend `ftops up` uses by default)."""
        path = self.root / ".ftops" / "pulumi-state" / ".pulumi" / "stacks" / "ftops" / f"{stack}.json"
        if not path.exists():
            return []
        return list(json.loads(path.read_text())["checkpoint"].get("latest", {}).get("resources") or [])

    def dynamic(self, stack: str = "local-dev") -> list[dict[str, Any]]:
        return [r for r in self.state(stack) if r["type"] == "pulumi-python:dynamic:Resource"]


def make(root: Path, emu: Emulator, home: Path, account: str) -> Repo:
    make_repo(root, endpoint=emu.url)
    shutil.copytree(REPO / "infra", root / "infra")
    (root / "engine").mkdir()
    shutil.copy(REPO / "engine" / "go.mod", root / "engine" / "go.mod")
    for env in ("local-dev", "local-staging"):
        path = root / "environments" / f"Pulumi.{env}.yaml"
        text = path.read_text().replace("account: dev-acct", f"account: {account}")
        # One deterministic pass and no safety suite: the tiny stand-in knows no language, and the
        # gate's statistics are tested elsewhere; here the point is how the engine carries a verdict.
        text = text.replace("        quality:\n", GATE_SETTINGS + "        quality:\n")
        path.write_text(SALT + text)
    repo = Repo(root, emu, home, account)
    repo.edit("environments/Pulumi.local-staging.yaml", "account: staging-acct", f"account: {account}-stg")
    git(root, "add", ".")
    git(root, "commit", "--quiet", "-m", "engine test repo")
    return repo


def ok(run: subprocess.CompletedProcess[str]) -> str:
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stdout}\n{run.stderr}"
    assert "Traceback" not in run.stdout + run.stderr
    return run.stdout


def last_line(run: subprocess.CompletedProcess[str]) -> str:
    return run.stdout.strip().splitlines()[-1]


def kill_tree(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the command and every process below it: the CLI starts each plugin in a process group
    of its own, so killing one group would leave the providers running, unlike a real crash."""
    parent = psutil.Process(proc.pid)
    tree = [parent, *parent.children(recursive=True)]
    for p in tree:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(tree, timeout=30)
    proc.wait()


# ---------------------------------------------------------------- one stack, from empty to destroyed


@pytest.fixture(scope="module")
def deployed(
    engine: install.Engine, emu: Emulator, pulumi_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Repo, subprocess.CompletedProcess[str]]:
    repo = make(tmp_path_factory.mktemp("flow") / "repo", emu, pulumi_home, "flow")
    return repo, repo.ftops("up", "--env", "local-dev")


def test_up_from_empty_trains_gates_deploys_and_audits(deployed: tuple[Repo, Any]) -> None:
    repo, run = deployed
    out = ok(run)
    model = repo.jobs()[0].fine_tuned_model
    assert re.fullmatch(
        rf"up: stack local-dev: \d+ created in \d+ s; support-bot serves {re.escape(model)}; "
        r"gate support-bot: pass: answers 1\.000 \[0\.207, 1\.000\] vs 1 \(evidence .*\.json\)",
        last_line(run),
    ), out
    for step in (
        "created support-bot-training",
        "created support-bot-job",
        "created support-bot-candidate",
        "created support-bot-gate",
        "created support-bot-support-bot (",
    ):
        assert step in out, out
    jobs = repo.jobs()
    assert [j.status for j in jobs] == ["succeeded"]
    assert [f.purpose for f in repo.client().files.list() if f.purpose == "fine-tune"] == ["fine-tune"]
    assert repo.deployments() == {"support-bot-candidate": model, "support-bot": model}
    audit = [
        json.loads(line) for line in (repo.root / ".ftops/audit/local-dev.jsonl").read_text().splitlines()
    ]
    assert [r["action"] for r in audit] == ["train", "gate", "deploy"]
    assert audit[-1]["to_model"] == model
    # Tracked files are left as they were: the stack files already carry their salt.
    assert git(repo.root, "status", "--porcelain", "--untracked-files=no") == ""


def test_a_second_up_changes_nothing_and_asks_once_per_resource(deployed: tuple[Repo, Any]) -> None:
    repo, _ = deployed
    with repo.emu.http() as http:
        http.delete("/admin/requests")
        run = repo.ftops("up", "--env", "local-dev", "--json")
        counted = http.get("/admin/requests").json()["requests"]
    ok(run)
    result = json.loads(run.stdout)
    assert set(result["changes"]) == {"same"}, result["changes"]
    assert result["outputs"]["deployments"]["support-bot"] == repo.jobs()[0].fine_tuned_model
    # The refresh reads each remote object once; nothing is trained, uploaded or evaluated again.
    assert sum(counted.values()) <= len(repo.dynamic()), counted
    assert not [k for k in counted if k.startswith(("POST", "PUT", "DELETE"))], counted
    assert len(repo.jobs()) == 1


def test_promotion_by_pin_deploys_the_same_model_without_training(deployed: tuple[Repo, Any]) -> None:
    repo, _ = deployed
    model = repo.jobs()[0].fine_tuned_model
    # Promotion reads the gated model from the stack's outputs, through the same engine and backend.
    with pytest.MonkeyPatch.context() as env:
        for name in [k for k in os.environ if k.startswith("PULUMI_")]:
            env.delenv(name)
        env.setenv("PULUMI_HOME", str(repo.home))
        outputs = read_outputs(repo.root, "local-dev")
    assert outputs is not None
    assert outputs["gated"]["support-bot"]["model"] == model
    promoted = repo.ftops("promote", "support-bot", "--from", "local-dev", "--to", "local-staging")
    ok(promoted)
    assert f"(none) -> {model}" in promoted.stdout, promoted.stdout
    git(repo.root, "commit", "--quiet", "-am", "promote support-bot to local-staging")
    run = repo.ftops("up", "--env", "local-staging")
    ok(run)
    assert f"support-bot serves {model}; gate support-bot: pass" in last_line(run), run.stdout
    staging = f"{repo.account}-stg"
    assert repo.deployments(staging) == {"support-bot-candidate": model, "support-bot": model}
    # No upload and no job of its own: the pinned artifact is deployed from dev's account.
    assert list(repo.client(staging).fine_tuning.jobs.list()) == []
    assert list(repo.client(staging).files.list()) == []


def test_drift_is_reported_and_a_vanished_deployment_comes_back_without_training(
    deployed: tuple[Repo, Any],
) -> None:
    repo, _ = deployed
    model = repo.jobs()[0].fine_tuned_model
    with repo.emu.http() as http:
        gone = http.delete(f"{repo.emu.arm(repo.account)}/deployments/support-bot?api-version=2024-10-01")
    assert gone.status_code == 200, gone.text
    preview = repo.ftops("preview", "--env", "local-dev")
    out = ok(preview)
    assert "warning: deployment support-bot no longer exists: Azure deletes a fine-tuned deployment" in out, (
        out
    )
    assert "would create support-bot-support-bot\n" in out, out
    assert "would create support-bot-job" not in out
    assert re.search(r"preview: stack local-dev: 1 to create, \d+ unchanged", last_line(preview)), out
    assert "; cost: this change trains nothing; deployments $" in last_line(
        preview
    )  # a deployment is not a job
    refreshed = repo.ftops("refresh", "--env", "local-dev")
    assert "deployment support-bot no longer exists" in ok(refreshed)
    run = repo.ftops("up", "--env", "local-dev")
    ok(run)
    assert re.match(r"up: stack local-dev: 1 created, \d+ unchanged", last_line(run)), run.stdout
    assert repo.deployments()["support-bot"] == model
    assert len(repo.jobs()) == 1


def test_destroy_removes_deployments_and_keeps_models_and_the_audit_log(deployed: tuple[Repo, Any]) -> None:
    repo, _ = deployed
    model = repo.jobs()[0].fine_tuned_model
    ok(repo.ftops("destroy", "--env", "local-staging"))
    run = repo.ftops("destroy", "--env", "local-dev")
    out = ok(run)
    assert re.match(r"destroy: stack local-dev: \d+ deleted in \d+ s", last_line(run)), out
    assert repo.deployments() == {}
    assert repo.client().models.retrieve(model).id == model  # the fine-tuned model is kept
    audit = repo.root / ".ftops/audit/local-dev.jsonl"
    assert len(audit.read_text().splitlines()) >= 3
    assert repo.state() == [] or all(r["type"] == "pulumi:pulumi:Stack" for r in repo.state())
    again = repo.ftops("destroy", "--env", "local-dev")
    assert last_line(again).startswith("destroy: stack local-dev: no changes"), again.stdout


# ---------------------------------------------------------------- failures


def test_a_failing_gate_stops_the_update_on_the_gate_and_deploys_nothing(
    engine: install.Engine, emu: Emulator, pulumi_home: Path, tmp_path: Path
) -> None:
    repo = make(tmp_path / "repo", emu, pulumi_home, "engine-gatefail")
    (repo.root / "data" / "evals.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "Return window?"}], "pattern": "^never-said$", "max_tokens": 4}\n'
    )
    run = repo.ftops("up", "--env", "local-dev")
    assert run.returncode == 1, run.stdout + run.stderr
    errors = run.stderr.strip().splitlines()
    assert "Traceback" not in run.stdout + run.stderr
    assert errors[0].startswith("error: support-bot-gate: gate support-bot failed for model "), run.stderr
    assert "answers (regex on evals.jsonl): pass rate 0.000 < threshold 1" in errors[0]
    assert errors[-1].startswith("error: up of stack local-dev failed; the gate's evidence is under "), (
        run.stderr
    )
    assert len(errors) == 2, run.stderr
    assert set(repo.deployments()) == {"support-bot-candidate"}  # the candidate, never the serving one
    assert list((repo.root / ".ftops" / "evidence" / "local-dev").glob("*.json"))


def test_an_invalid_environment_fails_with_file_and_line_and_creates_nothing(
    engine: install.Engine, emu: Emulator, pulumi_home: Path, tmp_path: Path
) -> None:
    repo = make(tmp_path / "repo", emu, pulumi_home, "invalid")
    repo.edit(DEV_FILE, "        suffix: bot\n", "        suffix: bot\n        colour: blue\n")
    run = repo.ftops("preview", "--env", "local-dev")
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert re.fullmatch(
        r"error: environments/Pulumi\.local-dev\.yaml: ftops:environment\.models\.support-bot\.colour: "
        r"unknown key; allowed keys: .* \(line \d+\)",
        lines[0],
    ), lines[0]
    assert repo.state() == []
    assert repo.jobs() == []


def test_a_failed_job_is_reported_and_not_trained_again(
    engine: install.Engine, emu: Emulator, pulumi_home: Path, tmp_path: Path
) -> None:
    repo = make(tmp_path / "repo", emu, pulumi_home, "jobfail")
    with emu.http() as http:
        assert http.put("/admin/faults", json={"fail_job_at_step": 2}).status_code == 200
        try:
            first = repo.ftops("up", "--env", "local-dev")
        finally:
            http.put("/admin/faults", json={})
    assert first.returncode == 1, first.stdout + first.stderr
    assert re.search(r"^error: support-bot-job: .*failed", first.stderr, re.MULTILINE), first.stderr
    assert "Traceback" not in first.stdout + first.stderr
    again = repo.ftops("up", "--env", "local-dev")
    assert again.returncode == 1, again.stdout + again.stderr
    assert re.search(r"^error: support-bot-job: .*failed", again.stderr, re.MULTILINE), again.stderr
    assert [j.status for j in repo.jobs()] == ["failed"]  # reported again, never retrained silently
    assert repo.deployments() == {}


def wait_for_training(repo: Repo, proc: subprocess.Popen[str]) -> None:
    """Until the update's job is training (so a crash now lands in the middle of the wait)."""
    deadline = time.monotonic() + 180
    while True:
        running = [j for j in repo.jobs() if j.status == "running"]
        if running and list(repo.client().fine_tuning.jobs.list_events(running[0].id, limit=50)):
            return
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.3)


def providers_left(repo: Repo) -> list[int]:
    """`python -m pulumi.dynamic` processes still running in the repository."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "cwd"]):
        cwd = Path(p.info["cwd"] or "/")
        if "pulumi.dynamic" in (p.info["cmdline"] or []) and (cwd == repo.root or repo.root in cwd.parents):
            found.append(p.info["pid"])
    return found


@pytest.mark.parametrize("kill", ["tree", "group"])
def test_a_crash_mid_training_is_recovered_by_running_up_again(
    kill: str, engine: install.Engine, emu: Emulator, pulumi_home: Path, tmp_path: Path
) -> None:
    """`tree`: every process of the update dies (a lost machine, a CI runner killed). `group`: the
    process group of `ftops up` dies (Ctrl+\\, a killed shell), and the providers the CLI started in
    groups of their own go on waiting on the job until the next `ftops up` stops them."""
    repo = make(tmp_path / "repo", emu, pulumi_home, f"crash-{kill}")
    # Long enough to be killed in the middle of the wait (tiny trains ~10 steps a second).
    repo.edit(DEV_FILE, "n_epochs: 1", "n_epochs: 30")
    git(repo.root, "commit", "--quiet", "-am", "longer training")
    proc = repo.popen("up", "--env", "local-dev")
    wait_for_training(repo, proc)
    if kill == "tree":
        kill_tree(proc)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert providers_left(repo), "no provider outlived its CLI: the test does not show what it is for"
    locks = list((repo.root / ".ftops/pulumi-state/.pulumi/locks").rglob("*.json"))
    assert len(locks) == 1, "the killed update left no lock: the test did not crash it mid-update"

    run = repo.ftops("up", "--env", "local-dev")
    out = ok(run)
    assert re.search(
        r"engine: cleared the lock of a crashed update of local-dev \(\S+@\S+ pid \d+, \d+ s old\): "
        r"its process is gone from this host",
        out,
    ), out
    assert "adopting job" in out, out
    if kill == "group":
        assert re.search(
            r"^engine: stopped [12] provider process group\(s\) that crashed updates left running", out, re.M
        ), out
    assert providers_left(repo) == []
    jobs = repo.jobs()
    assert [j.status for j in jobs] == ["succeeded"], jobs
    events = [e.message for e in repo.client().fine_tuning.jobs.list_events(jobs[0].id, limit=1000)]
    assert sum(m == "Job started." for m in events) == 1, events
    assert repo.deployments() == {
        "support-bot-candidate": jobs[0].fine_tuned_model,
        "support-bot": jobs[0].fine_tuned_model,
    }
    assert not list((repo.root / ".ftops/pulumi-state/.pulumi/locks").rglob("*.json"))


def test_state_in_an_azure_blob_container_survives_a_crash(
    engine: install.Engine, emu: Emulator, pulumi_home: Path, tmp_path: Path, azurite_server: Any
) -> None:
    """The backend CI keeps its state in (azblob://, here on Azurite through the URL form the CLI
    itself uses): the crashed update's lock is a blob, read and cleared there, and the next up
    adopts the running job."""
    from azure.storage.blob import BlobServiceClient

    from tests.azurite import ACCOUNT, ACCOUNT_KEY

    container = BlobServiceClient.from_connection_string(azurite_server.connection_string).create_container(
        "pulumi-state"
    )
    backend = {
        "PULUMI_BACKEND_URL": azurite_server.backend_url("pulumi-state"),
        "AZURE_STORAGE_ACCOUNT": ACCOUNT,
        "AZURE_STORAGE_KEY": ACCOUNT_KEY,
    }
    repo = make(tmp_path / "repo", emu, pulumi_home, "blob-state")
    repo.edit(DEV_FILE, "n_epochs: 1", "n_epochs: 30")
    git(repo.root, "commit", "--quiet", "-am", "longer training")
    proc = repo.popen("up", "--env", "local-dev", extra=backend)
    wait_for_training(repo, proc)
    kill_tree(proc)

    def lock_blobs() -> list[str]:
        return [b.name for b in container.list_blobs(name_starts_with=".pulumi/locks/")]

    assert len(lock_blobs()) == 1, "the killed update left no lock blob: it was not crashed mid-update"
    assert not (repo.root / ".ftops" / "pulumi-state").exists()  # nothing went to the file backend

    out = ok(repo.ftops("up", "--env", "local-dev", extra=backend))
    assert re.search(
        r"engine: cleared the lock of a crashed update of local-dev \(\S+@\S+ pid \d+, \d+ s old\): "
        r"its process is gone from this host",
        out,
    ), out
    assert "adopting job" in out, out
    assert [j.status for j in repo.jobs()] == ["succeeded"]
    assert lock_blobs() == []
    assert ".pulumi/stacks/ftops/local-dev.json" in [b.name for b in container.list_blobs()]
    again = repo.ftops("up", "--env", "local-dev", extra=backend)
    assert "no changes" in last_line(again), again.stdout


def test_a_lock_held_by_a_live_update_is_never_cleared_unless_asked(
    engine: install.Engine, emu: Emulator, pulumi_home: Path, tmp_path: Path
) -> None:
    repo = make(tmp_path / "repo", emu, pulumi_home, "live")
    ok(repo.ftops("preview", "--env", "local-dev"))  # creates the stack
    folder = repo.root / ".ftops/pulumi-state/.pulumi/locks/organization/ftops/local-dev"
    folder.mkdir(parents=True, exist_ok=True)
    # This test's own process: alive, on this host, taken 2026-01-01.
    lock = folder / "11111111-2222-3333-4444-555555555555.json"
    host = socket.gethostname()
    lock.write_text(
        json.dumps(
            {"pid": os.getpid(), "username": "someone", "hostname": host, "timestamp": "2026-01-01T00:00:00Z"}
        )
    )
    run = repo.ftops("up", "--env", "local-dev")
    assert run.returncode == 2, run.stdout + run.stderr
    assert re.fullmatch(
        rf"error: stack local-dev is locked by someone@{re.escape(host)} pid {os.getpid()}, \d+ h old, which may "
        r"still be running; when no other update of local-dev runs, `ftops up --env local-dev --break-lock` "
        r"\(or `pulumi cancel --stack local-dev --yes`\) clears it\n",
        run.stderr,
    ), run.stderr
    assert lock.exists()
    assert repo.jobs() == []

    # A wrong passphrase is one line saying which one the local stack takes.
    wrong = repo.ftops("up", "--env", "local-dev", extra={"PULUMI_CONFIG_PASSPHRASE": "not-the-one"})
    assert wrong.returncode == 2, wrong.stdout + wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1, wrong.stderr
    assert "incorrect passphrase" in wrong.stderr
    assert wrong.stderr.strip().endswith(
        "the local stack's committed encryptionsalt is for the empty passphrase: unset PULUMI_CONFIG_PASSPHRASE"
    )

    # Asked in so many words (the deploy workflow, inside its concurrency group): cleared and said.
    broken = repo.ftops("up", "--env", "local-dev", "--break-lock")
    out = ok(broken)
    assert re.search(
        rf"^engine: cleared the lock of a crashed update of local-dev \(someone@{re.escape(host)} pid "
        rf"{os.getpid()}, \d+ h old\): as asked \(--break-lock\)$",
        out,
        re.M,
    ), out
    assert not lock.exists()
    assert [j.status for j in repo.jobs()] == ["succeeded"]


def test_ctrl_c_stops_the_update_with_one_line_and_the_next_up_finishes_it(
    engine: install.Engine, emu: Emulator, pulumi_home: Path, tmp_path: Path
) -> None:
    repo = make(tmp_path / "repo", emu, pulumi_home, "ctrl-c")
    repo.edit(DEV_FILE, "n_epochs: 1", "n_epochs: 30")
    git(repo.root, "commit", "--quiet", "-am", "longer training")
    proc = repo.popen("up", "--env", "local-dev")
    wait_for_training(repo, proc)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends to the foreground group
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert "Traceback" not in output, output
    assert output.strip().splitlines()[-1] == (
        "error: up of stack local-dev interrupted; run `ftops up --env local-dev` again: it clears the lock "
        "once this update's processes are gone and adopts a job that was started"
    ), output
    # The CLI finishes cancelling on its own; then the next up takes over the job.
    deadline = time.monotonic() + 120
    while any(
        "pulumi" in (p.info["name"] or "") and p.info["cwd"] == str(repo.root)
        for p in psutil.process_iter(["name", "cwd"])
    ):
        assert time.monotonic() < deadline, "the CLI never finished cancelling"
        time.sleep(0.5)
    run = repo.ftops("up", "--env", "local-dev")
    ok(run)
    jobs = repo.jobs()
    assert [j.status for j in jobs] == ["succeeded"], jobs
    assert set(repo.deployments()) == {"support-bot-candidate", "support-bot"}


def test_a_budget_too_small_fails_up_before_any_upload_with_the_numbers(
    engine: install.Engine, emu: Emulator, pulumi_home: Path, tmp_path: Path
) -> None:
    repo = make(tmp_path / "repo", emu, pulumi_home, "budget")
    repo.edit(DEV_FILE, "    models:\n", "    budget:\n      training_usd_per_change: 0.0001\n    models:\n")
    run = repo.ftops("up", "--env", "local-dev")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    found = re.search(
        r"training this change costs \$([\d.,]+), over budget\.training_usd_per_change \$0\.00: "
        r"support-bot \$[\d.,]+ \([\d,]+ tokens x \d+ epochs",
        run.stderr,
    )
    assert found, run.stderr
    assert float(found.group(1)) > 0
    assert list(repo.client().files.list()) == []
    assert repo.jobs() == []
    # An override in the change lets it through (preview: nothing is created, the check passes).
    repo.edit(
        DEV_FILE,
        "      training_usd_per_change: 0.0001\n",
        "      training_usd_per_change: 0.0001\n      override: {reason: the first training of this model, up_to_usd: 5}\n",
    )
    preview = ok(repo.ftops("preview", "--env", "local-dev"))
    assert re.search(
        r"; cost: this change trains support-bot for \$\d+\.\d\d; deployments \$[\d,.]+/month", preview
    )
