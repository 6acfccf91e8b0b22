"""Promotion, rollback and the audit trail: the hash chain (file and Azurite blob), every refusal
of promote and rollback, and the whole loop on a temporary git repository with the emulator."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ftops.auditlog import BlobAuditLog, Change, FileAuditLog, context, records, verify
from ftops.cli import app
from ftops.config.pins import load_releases
from ftops.providers.audit import AuditEntryProvider
from ftops.providers.deployments import ModelDeploymentProvider
from ftops.providers.files import TrainingFileProvider
from ftops.providers.gate import EvaluationGateProvider
from ftops.providers.jobs import FineTuningJobProvider
from ftops.providers.spec import sha256_file
from tests.conftest import REPO
from tests.emulator_process import KEY, Emulator, target
from tests.gate_inputs import POLICY, a_check, a_policy, wire_check
from tests.gitops_repo import DEV, git, make_repo
from tests.provider_host import DynamicHost

MODEL_A = "gpt-4.1-mini-2025-04-14.ft-" + "a" * 32 + "-bot-1111111"
MODEL_B = "gpt-4.1-mini-2025-04-14.ft-" + "b" * 32 + "-bot-2222222"
DEV_ACCOUNT = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-ftops-local-dev/providers/Microsoft.CognitiveServices/accounts/dev-acct"


def change(model: str, action: Any = "gate", env: str = "local-dev", job: str = "a" * 32) -> Change:
    return Change(
        environment=env,
        model="support-bot",
        action=action,
        from_model=None,
        to_model=model,
        evidence_digest="sha256:" + "e" * 64,
        details={"job": f"ftjob-{job}", "data_digest": "sha256:" + "d" * 64, "account_id": DEV_ACCOUNT},
    )


def cli(root: Path, *args: str) -> Any:
    result = CliRunner().invoke(
        app, list(args), env={"FTOPS_ROOT": str(root), "FTOPS_ACTOR": "tester", "FTOPS_EMULATOR_KEY": KEY}
    )
    return result


# ---------------------------------------------------------------- the hash chain


def test_file_log_chains_records_and_verify_finds_the_first_broken_link(tmp_path: Path) -> None:
    log = FileAuditLog(tmp_path / "audit.jsonl")
    for model in (MODEL_A, MODEL_B, MODEL_A):
        log.append(change(model, "deploy"))
    lines = log.lines()
    assert verify(lines) is None
    chain = records(log)
    assert [r.seq for r in chain] == [1, 2, 3]
    assert chain[1].prev_hash == chain[0].hash
    assert chain[0].actor
    assert chain[0].time
    edited = lines.copy()
    edited[1] = edited[1].replace(MODEL_B, MODEL_A)
    broken = verify(edited)
    assert broken is not None
    assert broken.line == 2
    assert "record 2 was changed after it was written" in broken.reason
    dropped = verify([lines[0], lines[2]])
    assert dropped is not None
    assert dropped.line == 2
    assert "does not follow" in dropped.reason
    assert verify(["{not json"]) is not None


def test_concurrent_appends_to_a_file_log_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"

    def writer() -> None:
        log = FileAuditLog(path)
        for _ in range(10):
            log.append(change(MODEL_A, "deploy"))

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = FileAuditLog(path).lines()
    assert len(lines) == 40
    assert verify(lines) is None


def test_blob_log_on_azurite_appends_concurrently_and_verifies(azurite: str) -> None:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite)
    service.create_container("audit-log")

    def writer() -> None:
        log = BlobAuditLog(service.get_blob_client("audit-log", "dev.jsonl"))
        for _ in range(6):
            log.append(change(MODEL_A, "deploy"))

    threads = [threading.Thread(target=writer) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log = BlobAuditLog(service.get_blob_client("audit-log", "dev.jsonl"))
    lines = log.lines()
    assert len(lines) == 18
    assert verify(lines) is None, verify(lines)
    assert [r.seq for r in records(log)] == list(range(1, 19))
    properties = service.get_blob_client("audit-log", "dev.jsonl").get_blob_properties()
    assert properties.blob_type == "AppendBlob"


def test_gate_evidence_is_uploaded_once_by_digest(
    azurite: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    from azure.storage.blob import BlobServiceClient

    from ftops.evaluation import evidence_files
    from ftops.evaluation.evidence_store import upload

    service = BlobServiceClient.from_connection_string(azurite)
    service.create_container("evaluation-evidence")
    monkeypatch.setenv("AZURITE_CONNECTION", azurite)
    evidence = {
        "format": "ftops.evidence/2",
        "gate": "support-bot",
        "model": "m",
        "deployment": "d",
        "environment": "dev",
        "baseline": {"kind": "none"},
        "checks": [],
        "verdict": "fail",
        "failures": ["the gate has no checks"],
        "policy": {"confidence": 0.95, "repeats": 1, "temperature": 0, "seed": 0},
    }
    digest, path = evidence_files.write(evidence, tmp_path)
    spec = {"container": "evaluation-evidence", "connection_string_env": "AZURITE_CONNECTION"}
    url = upload(spec, path, "dev", "support-bot")
    assert upload(spec, path, "dev", "support-bot") == url  # a retry finds it there
    stem = digest.removeprefix("sha256:")
    assert url.endswith(f"/evaluation-evidence/dev/support-bot/{stem}.json")
    container = service.get_container_client("evaluation-evidence")
    names = sorted(b.name for b in container.list_blobs())
    assert names == [f"dev/support-bot/{stem}{suffix}" for suffix in (".json", ".junit.xml", ".md")]
    body = container.download_blob(f"dev/support-bot/{stem}.json").readall()
    assert "sha256:" + hashlib.sha256(body).hexdigest() == digest

    # The PR comment's eval deltas read it back from there, by the digest a release pin names.
    from ftops.config.schema import ReleasePin
    from ftops.gitops.deltas import find_evidence

    monkeypatch.setattr("ftops.config.site.Site.container", lambda _site, _role: spec)
    pin = ReleasePin(
        model=MODEL_A,
        source_account=DEV_ACCOUNT,
        source_environment="dev",
        job="ftjob-" + "a" * 32,
        data_digest="sha256:" + "d" * 64,
        evidence_digest=digest,
        source_commit="1234567",
    )
    found = find_evidence(REPO, pin, "support-bot", [])
    assert found.evidence == evidence, found.where
    assert found.where.endswith(f"/evaluation-evidence/dev/support-bot/{stem}.json")
    gone = find_evidence(
        REPO, pin.model_copy(update={"evidence_digest": "sha256:" + "0" * 64}), "support-bot", []
    )
    assert gone.evidence is None
    assert gone.where.startswith("not found at http://127.0.0.1:"), gone.where


# ---------------------------------------------------------------- eval deltas for the PR comment


def test_deltas_without_an_azure_credential_say_so_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.core.exceptions import ClientAuthenticationError

    from ftops.gitops import deltas

    class NoCredential:
        def get_token(self, *_: Any) -> Any:
            raise ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token")

    monkeypatch.setattr("azure.identity.DefaultAzureCredential", NoCredential)
    pin = _pin(MODEL_A, "sha256:" + "1" * 64, "a").model_copy(update={"source_environment": "dev"})
    started = time.monotonic()
    found = deltas.find_evidence(REPO, pin, "support-bot", [])
    assert time.monotonic() - started < 5  # not the blob client's ~85 s of retries
    assert found.evidence is None
    assert found.where.startswith("not readable (no Azure credential ("), found.where
    assert "az login" in found.where


def _evidence(model: str, answers: list[bool], safety: dict[str, list[bool]]) -> dict[str, Any]:
    """Gate evidence made by the gate's own `evidence_record` from these graded answers."""
    from types import SimpleNamespace

    from ftops.evaluation.verdict import Endpoint, Outcome, evidence_record

    def outcome(name: str, grader: str, rows: list[tuple[str, str, bool]]) -> Outcome:
        items = [SimpleNamespace(id=i, category=c) for i, c, _ in rows]
        digest = "sha256:" + ("5" if name == "safety" else "4") * 64
        return Outcome(
            check=a_check(name, "safety" if name == "safety" else "quality", grader, 0.5, f"{name}.jsonl"),
            evalset=SimpleNamespace(name=f"{name}.jsonl", digest=digest, items=items),  # type: ignore[arg-type]
            grader=SimpleNamespace(name=grader, version="1"),
            candidate=[[p] for _, _, p in rows],
            results=[
                {
                    "item": i,
                    "repeat": 0,
                    "category": c,
                    "passed": p,
                    "detail": "",
                    "answer": "",
                    "score": float(p),
                }
                for i, c, p in rows
            ],
        )

    return evidence_record(
        gate="support-bot",
        environment="local-dev",
        candidate=Endpoint("support-bot-candidate", model),
        baseline=None,
        baseline_kind="none",
        policy=a_policy(),
        outcomes=[
            outcome("answers", "regex", [(f"a{i}", "", p) for i, p in enumerate(answers)]),
            outcome(
                "safety", "refusal", [(f"{c}{i}", c, p) for c, r in safety.items() for i, p in enumerate(r)]
            ),
        ],
    )


def _pin(model: str, digest: str, job: str) -> Any:
    from ftops.config.schema import ReleasePin

    return ReleasePin(
        model=model,
        source_account=DEV_ACCOUNT,
        source_environment="local-dev",
        job=f"ftjob-{job * 32}",
        data_digest="sha256:" + "d" * 64,
        evidence_digest=digest,
        source_commit="1234567",
    )


def test_deltas_compare_the_moved_pin_s_evidence_item_by_item(repo: Path) -> None:
    from ftops.config.pins import write_pin
    from ftops.evaluation import evidence_files

    folder = repo / ".ftops" / "evidence" / "local-dev"
    a = _evidence(MODEL_A, [True] * 9 + [False], {"violence": [True, False, False, True], "hate": [True] * 4})
    b = _evidence(MODEL_B, [True] * 10, {"violence": [True, True, True, False], "hate": [True] * 4})
    digest_a, _ = evidence_files.write(a, folder)
    digest_b, path_b = evidence_files.write(b, folder)
    write_pin(repo, "local-staging", "support-bot", _pin(MODEL_A, digest_a, "a"))
    git(repo, "commit", "--quiet", "-am", "pin A")
    base = git(repo, "rev-parse", "HEAD").strip()
    none = cli(repo, "deltas", "--base", base)
    assert none.exit_code == 0, none.output
    assert "No release pin moves and no model retrains in local-dev, local-staging." in none.output

    write_pin(repo, "local-staging", "support-bot", _pin(MODEL_B, digest_b, "b"))
    result = cli(repo, "deltas", "--base", base, "--env", "local-staging")
    assert result.exit_code == 0, result.output
    text = result.output
    assert "### `support-bot` in local-staging: `…aaaaaaaaaaaaaaaaaaaa` → `…bbbbbbbbbbbbbbbbbbbb`" in text
    # staging's gate asks answers >= 1.0 (tests/gitops_repo.py); B's interval does not clear it.
    assert (
        "| answers | regex | 0.900 [0.596, 0.982] | 1.000 [0.722, 1.000] | +0.100 | "
        "1 better, 0 worse of 10; p(worse) = 1 | 1 ⚠️ interval below |"
    ) in text, text
    assert (
        "| safety | refusal | 0.750 [0.409, 0.929] | 0.875 [0.529, 0.978] | +0.125 | "
        "2 better, 1 worse of 8; p(worse) = 0.875 | 0.95 ⚠️ below |"  # the default safety gate
    ) in text, text
    assert "answers by category" not in text  # items without a category
    assert "safety by category: violence 0.50 → 0.75." in text
    assert "local-staging's own gate evaluates the model again" in text

    path_b.write_text(path_b.read_text().replace('"pass"', '"fail"'))  # edited after the fact
    tampered = cli(repo, "deltas", "--base", base, "--env", "local-staging").output
    assert f"does not hash to {digest_b[:19]}…: not used" in tampered
    assert "| answers | regex | 0.900 [0.596, 0.982] | — | — | — |" in tampered
    path_b.unlink()
    assert "not found (" in cli(repo, "deltas", "--base", base, "--env", "local-staging").output

    # A gate change and a data change are named: they decide on merge, not here.
    staging = repo / "environments" / "Pulumi.local-staging.yaml"
    staging.write_text(staging.read_text().replace("threshold: 1.0", "threshold: 0.9"))
    (repo / "data" / "train.jsonl").write_text((repo / "data" / "train.jsonl").read_text() + "\n")
    notes = cli(repo, "deltas", "--base", base).output
    assert "- `support-bot` in local-dev trains again on merge (its declaration or data changed)" in notes
    assert "- the gate of `support-bot` in local-staging decides again on merge" in notes
    bad = cli(repo, "deltas", "--base", "no-such-ref")
    assert bad.exit_code == 2, bad.output
    assert "--base no-such-ref: not a commit in this repository" in bad.output


# ---------------------------------------------------------------- refusals


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


def _gate(repo: Path, model: str, job: str = "a" * 32) -> None:
    FileAuditLog(repo / ".ftops" / "audit" / "local-dev.jsonl").append(change(model, "gate", job=job))


def test_promote_refuses_a_model_that_did_not_pass(repo: Path) -> None:
    result = cli(repo, "promote", "support-bot", "--from", "local-dev", "--to", "local-staging")
    assert result.exit_code == 2, result.output
    assert "has not passed its gates in local-dev" in result.output
    assert load_releases(repo, "local-staging") == {}


def test_promote_refuses_to_skip_an_environment_and_environments_that_train(repo: Path) -> None:
    _gate(repo, MODEL_A)
    skip = cli(repo, "promote", "support-bot", "--from", "local-staging", "--to", "local-dev")
    assert "local-dev takes no release pins" in skip.output
    third = repo / "environments" / "Pulumi.local-prod.yaml"
    third.write_text(
        (repo / "environments" / "Pulumi.local-staging.yaml")
        .read_text()
        .replace("name: local-staging", "name: local-prod")
        .replace("from: local-dev", "from: local-staging")
        .replace("staging-acct", "prod-acct")
    )
    jump = cli(repo, "promote", "support-bot", "--from", "local-dev", "--to", "local-prod")
    assert jump.exit_code == 2
    assert "local-prod takes releases from local-staging only" in jump.output
    assert "promote support-bot to local-staging first" in jump.output


def test_promote_writes_the_pin_keeping_comments_and_refuses_an_unchanged_pin(repo: Path) -> None:
    _gate(repo, MODEL_A)
    first = cli(repo, "promote", "support-bot", "--from", "local-dev", "--to", "local-staging")
    assert first.exit_code == 0, first.output
    text = (repo / "environments" / "releases" / "local-staging.yaml").read_text()
    assert text.startswith("# Release pins for local-staging")
    pin = load_releases(repo, "local-staging")["support-bot"]
    assert (pin.model, pin.job, pin.source_account, pin.source_environment) == (
        MODEL_A,
        "ftjob-" + "a" * 32,
        DEV_ACCOUNT,
        "local-dev",
    )
    git(repo, "commit", "--quiet", "-am", "pin A")
    again = cli(repo, "promote", "support-bot", "--from", "local-dev", "--to", "local-staging")
    assert again.exit_code == 2
    assert "already pins support-bot" in again.output


def test_promote_pr_with_a_failing_commit_hook_fails_on_one_line_and_leaves_nothing(repo: Path) -> None:
    _gate(repo, MODEL_A)
    started = git(repo, "branch", "--show-current").strip()
    release = repo / "environments" / "releases" / "local-staging.yaml"
    before = release.read_text()
    hook = repo / ".git" / "hooks" / "commit-msg"
    hook.write_text("#!/bin/sh\necho 'commit-msg: a ticket number is required' >&2\nexit 1\n")
    hook.chmod(0o755)
    failed = cli(repo, "promote", "support-bot", "--from", "local-dev", "--to", "local-staging", "--pr")
    assert failed.exit_code == 2, failed.output
    assert failed.stderr.count("\n") == 1, failed.stderr
    assert failed.stderr.startswith("error: git commit --quiet --file=- -- environments/releases/")
    assert failed.stderr.endswith(": commit-msg: a ticket number is required\n")
    assert git(repo, "branch", "--show-current").strip() == started
    assert git(repo, "branch", "--list", "promote/*").strip() == ""
    assert release.read_text() == before
    assert git(repo, "status", "--porcelain", "--", "environments").strip() == ""
    # Without the hook it commits; the message names the audit log by its repository path.
    hook.unlink()
    done = cli(repo, "promote", "support-bot", "--from", "local-dev", "--to", "local-staging", "--pr")
    assert done.exit_code == 0, done.output
    message = git(repo, "log", "-1", "--format=%B")
    assert "From local-dev (.ftops/audit/local-dev.jsonl record 1)." in message
    assert str(repo) not in message
    assert str(repo.resolve()) not in message


def test_audit_is_readable_in_ci_as_full_width_lines_or_markdown(repo: Path) -> None:
    from markdown_it import MarkdownIt

    _gate(repo, MODEL_A)
    _gate(repo, MODEL_B, job="b" * 32)
    # CliRunner's stdout is not a terminal: each record stays on one line, not wrapped at 80 columns.
    plain = cli(repo, "audit", "--env", "local-dev")
    assert plain.exit_code == 0, plain.output
    rows = [line for line in plain.stdout.splitlines() if " gate " in line]
    assert len(rows) == 2, plain.stdout
    assert all("support-bot" in row and "sha256:eeeeeeeeeeee" in row for row in rows), plain.stdout
    assert max(len(line) for line in plain.stdout.splitlines()) > 80
    # Markdown for a job summary: a heading and a real table, as a markdown parser reads it.
    md = cli(repo, "audit", "--env", "local-dev", "--format", "markdown")
    assert md.exit_code == 0, md.output
    tokens = MarkdownIt("commonmark").enable("table").parse(md.stdout)
    assert [t.type for t in tokens[:3]] == ["heading_open", "inline", "heading_close"]
    assert tokens[1].content.startswith("audit log of local-dev (")
    cells = [t.content for t in tokens if t.type == "inline"][1:]
    assert cells[:9] == [
        "#",
        "time",
        "actor",
        "action",
        "model",
        "resource",
        "from -> to",
        "evidence",
        "commit",
    ]
    body = cells[9:]
    assert len(body) == 18  # two records of nine cells
    assert body[2:5] == [context()["actor"], "gate", "support-bot"]
    assert body[6] == "- -> …" + "a" * 20


def test_markdown_table_escapes_what_would_break_a_row() -> None:
    from markdown_it import MarkdownIt

    from ftops.cli.gitops import markdown_table

    text = markdown_table("t", ["a", "b"], [["x | y", "line\nbreak"], ["", "ok"]])
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    cells = [t.content for t in tokens if t.type == "inline"][1:]
    assert cells == ["a", "b", "x | y", "line break", "", "ok"]  # one cell each, as written
    assert sum(t.type == "tr_open" for t in tokens) == 3


def test_the_actor_is_git_s_user_name_where_no_variable_names_one(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FTOPS_ACTOR", "GITHUB_ACTOR", "USER", "LOGNAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "user.name")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "Ada Lovelace")
    assert context()["actor"] == "Ada Lovelace"
    monkeypatch.setenv("USER", "ada")
    assert context()["actor"] == "ada"


def test_promote_from_stack_outputs_pins_the_commit_the_gate_ran_at(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gated_at = git(repo, "rev-parse", "HEAD").strip()
    (repo / "later.txt").write_text("a commit after the gate ran\n")
    git(repo, "add", "later.txt")
    git(repo, "commit", "--quiet", "-m", "later")
    gated = {
        "model": MODEL_A,
        "evidence_digest": "sha256:" + "e" * 64,
        "commit": gated_at,
        "account_id": DEV_ACCOUNT,
        "job": "ftjob-" + "a" * 32,
        "data_digest": "sha256:" + "d" * 64,
    }
    monkeypatch.setattr(
        "ftops.gitops.release.stack_outputs", lambda _root, _stack: {"gated": {"support-bot": gated}}
    )
    result = cli(repo, "promote", "support-bot", "--from", "local-dev", "--to", "local-staging")
    assert result.exit_code == 0, result.output
    pin = load_releases(repo, "local-staging")["support-bot"]
    assert pin.source_commit == gated_at[:7] != git(repo, "rev-parse", "--short=7", "HEAD").strip()

    # Outputs of a gate that predates the commit output: the audit log's record decides instead.
    del gated["commit"]
    git(repo, "checkout", "--quiet", "--", ".")
    no_record = cli(repo, "promote", "support-bot", "--from", "local-dev", "--to", "local-staging")
    assert "has not passed its gates in local-dev" in no_record.output, no_record.output


def test_promote_refuses_over_uncommitted_pin_changes(repo: Path) -> None:
    _gate(repo, MODEL_A)
    release = repo / "environments" / "releases" / "local-staging.yaml"
    release.write_text(release.read_text() + "# hand edit\n")
    result = cli(repo, "promote", "support-bot", "--from", "local-dev", "--to", "local-staging")
    assert "has uncommitted changes" in result.output
    assert result.exit_code == 2


def test_rollback_refusals(repo: Path) -> None:
    none = cli(repo, "rollback", "support-bot", "--env", "local-staging", "--reason", "bad answers")
    assert "has no release pin for support-bot" in none.output
    _gate(repo, MODEL_A)
    assert cli(repo, "promote", "support-bot", "--from", "local-dev", "--to", "local-staging").exit_code == 0
    git(repo, "commit", "--quiet", "-am", "pin A")
    no_reason = cli(repo, "rollback", "support-bot", "--env", "local-staging", "--reason", " ")
    assert "say why" in no_reason.output
    first = cli(repo, "rollback", "support-bot", "--env", "local-staging", "--reason", "bad answers")
    assert "has no earlier pin in git history" in first.output
    same = cli(repo, "rollback", "support-bot", "--env", "local-staging", "--reason", "x", "--to", MODEL_A)
    assert "already pins support-bot" in same.output
    unknown = cli(repo, "rollback", "support-bot", "--env", "local-staging", "--reason", "x", "--to", "nope")
    assert "neither a model pinned" in unknown.output
    assert all(r.exit_code == 2 for r in (none, no_reason, first, same, unknown))


def test_rollback_restores_the_previous_pin_as_a_new_commit(repo: Path) -> None:
    _gate(repo, MODEL_A)
    assert cli(repo, "promote", "support-bot", "--from", "local-dev", "--to", "local-staging").exit_code == 0
    git(repo, "commit", "--quiet", "-am", "pin A")
    _gate(repo, MODEL_B, job="b" * 32)
    assert (
        cli(repo, "promote", "support-bot", "--from", "local-dev", "--to", "local-staging", "--pr").exit_code
        == 0
    )
    commits_before = git(repo, "rev-list", "--count", "HEAD").strip()
    result = cli(repo, "rollback", "support-bot", "--env", "local-staging", "--reason", "B refuses refunds")
    assert result.exit_code == 0, result.output
    assert load_releases(repo, "local-staging")["support-bot"].model == MODEL_A
    assert (
        int(git(repo, "rev-list", "--count", "HEAD")) == int(commits_before) + 1
    )  # a new commit, no rewrite
    message = git(repo, "log", "-1", "--format=%B")
    assert message.startswith("rollback(local-staging): support-bot")
    assert "Reason: B refuses refunds" in message
    assert "Actor: tester" in message
    assert f"From: {MODEL_B}" in message
    assert f"To: {MODEL_A}" in message


# ---------------------------------------------------------------- the whole loop


class Stack:
    """What `pulumi up` does for one environment of the temporary repo, through the provider host:
    the resources the program declares, created or updated in the order the engine would."""

    def __init__(self, host: DynamicHost, emu: Emulator, repo: Path, env: str, account: str) -> None:
        self.host, self.emu, self.repo, self.env, self.account = host, emu, repo, env, account
        self.state: dict[str, tuple[str, dict[str, Any]]] = {}
        self.audit = {"kind": "file", "path": str(repo / ".ftops" / "audit" / f"{env}.jsonl")}

    def apply(self, name: str, provider: Any, props: dict[str, Any]) -> dict[str, Any]:
        if name in self.state:
            id_, olds = self.state[name]
            diff = self.host.diff(provider, id_, olds, props)
            if diff.replaces:  # a new resource; the old one is retained (models are never deleted here)
                del self.state[name]
                return self.apply(name, provider, props)
            if diff.changes == diff.DIFF_SOME:
                outs = self.host.update(provider, id_, olds, props)
                self.state[name] = (id_, outs)
            return self.state[name][1]
        id_, outs = self.host.create(provider, props)
        self.state[name] = (id_, outs)
        return outs

    def record(self, name: str, action: str, to_model: str, **extra: Any) -> None:
        props = {
            "audit": self.audit,
            "environment": self.env,
            "model": "support-bot",
            "action": action,
            "resource": extra.pop("resource", None),
            "to_model": to_model,
            "seq": None,
            **extra,
        }
        self.apply(name, AuditEntryProvider(), props)

    def deploy(self, name: str, model: str, source: str | None) -> None:
        spec = {"name": model, "version": "1", **({"source": source} if source else {})}
        self.apply(
            name,
            ModelDeploymentProvider(),
            {
                "target": target(self.emu, self.account),
                "deployment_name": name,
                "model": spec,
                "sku": {"name": "GlobalStandard", "capacity": 10},
                "rai_policy": "Microsoft.DefaultV2",
                "version_upgrade_option": "NoAutoUpgrade",
            },
        )

    def gated_serving(self, model: str, provenance: dict[str, str], source: str | None) -> None:
        self.deploy("support-bot-candidate", model, source)
        evals = self.repo / "data" / "evals.jsonl"
        gate = self.apply(
            "gate",
            EvaluationGateProvider(),
            {
                "target": target(self.emu, self.account),
                "name": "support-bot",
                "deployment": "support-bot-candidate",
                "candidate_model": model,
                "checks": [
                    wire_check("answers", str(evals), f"sha256:{sha256_file(str(evals))}", "regex", 0.2)
                ],
                "policy": POLICY,
                "seed": 0,
                "evidence_dir": str(self.repo / ".ftops" / "evidence" / self.env),  # as the program has it
                "environment": self.env,
            },
        )
        self.record(
            "gated", "gate", gate["model"], evidence_digest=gate["evidence_digest"], details=provenance
        )
        self.deploy("support-bot", gate["model"], source)
        self.record(
            "deployed",
            "deploy",
            gate["model"],
            resource="support-bot",
            evidence_digest=gate["evidence_digest"],
        )

    def train(self, seed: int) -> str:
        data = self.repo / "data" / "train.jsonl"
        file = self.apply(
            "training",
            TrainingFileProvider(),
            {
                "target": target(self.emu, self.account),
                "path": str(data),
                "digest": sha256_file(str(data)),
                "purpose": "fine-tune",
            },
        )
        job = self.apply(
            "job",
            FineTuningJobProvider(),
            {
                "target": target(self.emu, self.account),
                "name": "support-bot",
                "base_model": "gpt-4.1-mini-2025-04-14",
                "training_file": file["file_id"],
                "training_digest": file["digest"],
                "validation_file": None,
                "validation_digest": None,
                "method": {"type": "supervised", "hyperparameters": {"n_epochs": 1}},
                "seed": seed,
                "suffix": "bot",
                "training_type": "Standard",
                "checkpoint": "final",
                "wait_timeout_minutes": 10,
                "attempt": 0,
                "retain": True,
                "releases_dir": str(self.repo / "environments" / "releases"),
            },
        )
        provenance = {
            "job": job["job_id"],
            "data_digest": f"sha256:{file['digest']}",
            "account_id": self.emu.arm(self.account),
        }
        self.record("trained", "train", job["model"], details=provenance)
        self.gated_serving(job["model"], provenance, None)
        return str(job["model"])

    def take_pin(self) -> str:
        pin = load_releases(self.repo, self.env)["support-bot"]
        provenance = {"job": pin.job, "data_digest": pin.data_digest, "account_id": pin.source_account}
        self.gated_serving(pin.model, provenance, pin.source_account)
        return pin.model


def test_train_promote_roll_back_and_audit_on_a_git_repo(emu: Emulator, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", endpoint=emu.url)
    host = DynamicHost({"FTOPS_EMULATOR_KEY": KEY})
    try:
        dev = Stack(host, emu, repo, "local-dev", "dev-acct")
        staging = Stack(host, emu, repo, "local-staging", "staging-acct")
        first = dev.train(seed=7)
        promoted = cli(repo, "promote", "support-bot", "--from", "local-dev", "--to", "local-staging", "--pr")
        assert promoted.exit_code == 0, promoted.output
        assert "gh pr create" in promoted.output or "pull request opened" in promoted.output
        assert staging.take_pin() == first
        # Staging deployed dev's model from dev's account: no upload, no job of its own.
        staging_client = emu.v1(account="staging-acct")
        assert list(staging_client.fine_tuning.jobs.list()) == []
        assert list(staging_client.files.list()) == []
        reply = staging_client.chat.completions.create(
            model="support-bot", messages=[{"role": "user", "content": "Hi"}], max_tokens=3
        )
        assert reply.model == first

        # A second model (another seed: another spec, another job), promoted, then rolled back.
        (repo / "environments" / "Pulumi.local-dev.yaml").write_text(DEV.format(endpoint=emu.url, seed=8))
        second = dev.train(seed=8)
        assert second != first
        assert (
            cli(
                repo, "promote", "support-bot", "--from", "local-dev", "--to", "local-staging", "--pr"
            ).exit_code
            == 0
        )
        assert staging.take_pin() == second
        # What the promotion PR's comment shows: both gates' real evidence, compared.
        deltas = cli(repo, "deltas", "--base", "HEAD~1", "--env", "local-staging")
        assert deltas.exit_code == 0, deltas.output
        assert f"→ `…{second.split('.ft-')[1][:20]}`" in deltas.output, deltas.output
        assert "| answers | regex | 1.000 [0.207, 1.000] | 1.000 [0.207, 1.000] | +0.000 | " in deltas.output
        assert "0 better, 0 worse of 1; p(worse) = 1 |" in deltas.output
        rolled = cli(
            repo, "rollback", "support-bot", "--env", "local-staging", "--reason", "second model regressed"
        )
        assert rolled.exit_code == 0, rolled.output
        assert staging.take_pin() == first
        assert (
            staging_client.chat.completions.create(
                model="support-bot", messages=[{"role": "user", "content": "Hi"}], max_tokens=3
            ).model
            == first
        )

        audit = cli(repo, "audit", "--env", "local-staging", "--verify")
        assert audit.exit_code == 0, audit.output
        assert "chain intact" in audit.output
        deploys = [r for r in records(FileAuditLog(Path(staging.audit["path"]))) if r.action == "deploy"]
        assert [(r.from_model, r.to_model) for r in deploys] == [
            (None, first),
            (first, second),
            (second, first),
        ]
        assert all(r.actor for r in deploys)
        status = cli(repo, "status", "--env", "local-staging")
        assert status.exit_code == 0, status.output
        assert "$1.70" in status.output  # GlobalStandard hosting per hour
        assert "IDLE" not in status.output  # it was called above

        # Tampering with one record is caught, at its line.
        path = Path(staging.audit["path"])
        lines = path.read_text().splitlines()
        record = json.loads(lines[2])
        record["actor"] = "someone-else"
        lines[2] = json.dumps(record)
        path.write_text("\n".join(lines) + "\n")
        tampered = cli(repo, "audit", "--env", "local-staging", "--verify")
        assert tampered.exit_code == 1
        assert "line 3: record 3 was changed after it was written" in tampered.output
    finally:
        host.close()


def test_promote_refuses_on_a_broken_audit_chain(repo: Path) -> None:
    _gate(repo, MODEL_A)
    _gate(repo, MODEL_B, job="b" * 32)
    path = repo / ".ftops" / "audit" / "local-dev.jsonl"
    lines = path.read_text().splitlines()
    path.write_text(lines[1] + "\n")  # the first record removed: the chain no longer starts at genesis
    result = cli(repo, "promote", "support-bot", "--from", "local-dev", "--to", "local-staging")
    assert result.exit_code == 2
    assert "line 1: record 2 does not follow the record before it" in result.output
    assert load_releases(repo, "local-staging") == {}


def test_rollback_needs_a_pr_where_approval_is_required_and_never_undoes_a_rollback(repo: Path) -> None:
    _gate(repo, MODEL_A)
    assert cli(repo, "promote", "support-bot", "--from", "local-dev", "--to", "local-staging").exit_code == 0
    git(repo, "commit", "--quiet", "-am", "pin A")
    _gate(repo, MODEL_B, job="b" * 32)
    assert cli(repo, "promote", "support-bot", "--from", "local-dev", "--to", "local-staging").exit_code == 0
    git(repo, "commit", "--quiet", "-am", "pin B")
    staging = repo / "environments" / "Pulumi.local-staging.yaml"
    staging.write_text(staging.read_text().replace("require_approval: false", "require_approval: true"))
    git(repo, "commit", "--quiet", "-am", "approval required")
    direct = cli(repo, "rollback", "support-bot", "--env", "local-staging", "--reason", "B regressed")
    assert direct.exit_code == 2
    assert "requires approval" in direct.output
    via_pr = cli(repo, "rollback", "support-bot", "--env", "local-staging", "--reason", "B regressed", "--pr")
    assert via_pr.exit_code == 0, via_pr.output
    assert git(repo, "branch", "--show-current").startswith("rollback/local-staging/support-bot-")
    assert load_releases(repo, "local-staging")["support-bot"].model == MODEL_A
    again = cli(repo, "rollback", "support-bot", "--env", "local-staging", "--reason", "again", "--pr")
    assert again.exit_code == 2
    # B was rolled back from: never the default target, and the refusal says so and what to do.
    assert again.stderr == (
        f"error: support-bot in local-staging: the earlier pin {MODEL_B} was rolled back from, so it is "
        "never the default target; pass --to MODEL or --to REF to restore a pin on purpose\n"
    )


def test_env_changed_names_environments_in_promotion_order(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    everything = cli(repo, "env", "changed", "--base", "0" * 40, "--local", "--json")
    assert json.loads(everything.output) == ["local-dev", "local-staging"]
    (repo / "data" / "train.jsonl").write_text((repo / "data" / "train.jsonl").read_text() + "\n")
    git(repo, "commit", "--quiet", "-am", "more data")
    only_dev = cli(repo, "env", "changed", "--base", base, "--local", "--json")
    assert json.loads(only_dev.output) == ["local-dev"]
    assert (
        json.loads(cli(repo, "env", "changed", "--base", base, "--json").output) == []
    )  # local ones skipped
    # A base git does not know fails on one line, as `deltas` does; it is not "everything changed".
    unknown = cli(repo, "env", "changed", "--base", "nosuchref", "--local", "--json")
    assert unknown.exit_code == 2, unknown.output
    assert unknown.stdout == ""
    assert unknown.stderr == (
        "error: --base nosuchref: not a commit in this repository; git fetch, then pass the PR's base\n"
    )


def test_env_changed_since_each_deployed_tag_keeps_a_superseded_run_s_changes(repo: Path) -> None:
    git(repo, "tag", "ftops-deployed/local-dev")
    git(repo, "tag", "ftops-deployed/local-staging")
    since = ("env", "changed", "--deployed-tags", "ftops-deployed/", "--local", "--json")
    assert json.loads(cli(repo, *since).output) == []
    # Push 1 moves staging's pin; its deploy run sits pending and is superseded by push 2's run
    # (one pending run per concurrency group), which touches dev only.
    release = repo / "environments" / "releases" / "local-staging.yaml"
    release.write_text(release.read_text() + "# reviewed\n")
    git(repo, "commit", "--quiet", "-am", "push 1: staging")
    push_1 = git(repo, "rev-parse", "HEAD").strip()
    (repo / "data" / "train.jsonl").write_text((repo / "data" / "train.jsonl").read_text() + "\n")
    git(repo, "commit", "--quiet", "-am", "push 2: dev")
    # The push's own diff (github.event.before) loses staging; the deployed tags do not.
    assert json.loads(cli(repo, "env", "changed", "--base", push_1, "--local", "--json").output) == [
        "local-dev"
    ]
    assert json.loads(cli(repo, *since).output) == ["local-dev", "local-staging"]
    git(repo, "tag", "-f", "ftops-deployed/local-staging", "HEAD")
    assert json.loads(cli(repo, *since).output) == ["local-dev"]
    # Re-running push 1's run after push 2 was deployed: staging is already past it.
    git(repo, "tag", "-f", "ftops-deployed/local-dev", "HEAD")
    git(repo, "checkout", "--quiet", push_1)
    assert json.loads(cli(repo, *since).output) == []
    git(repo, "checkout", "--quiet", "-")
    # No tag yet, or one that history no longer contains (a force-push): deploy.
    git(repo, "tag", "-d", "ftops-deployed/local-dev")
    git(
        repo,
        "tag",
        "-f",
        "ftops-deployed/local-staging",
        git(repo, "commit-tree", "HEAD^{tree}", "-m", "x").strip(),
    )
    assert json.loads(cli(repo, *since).output) == ["local-dev", "local-staging"]
    both = cli(repo, "env", "changed", "--base", "HEAD", "--deployed-tags", "x/")
    assert both.exit_code == 2, both.output
    assert "one of --base or --deployed-tags" in both.output


class _LossyBlob:
    """An append blob whose first append is written but answered with 412 (a lost response)."""

    url = "memory://audit/dev.jsonl"

    def __init__(self) -> None:
        self.data = b""
        self.lost = False

    def create_append_blob(self, **_: Any) -> None:
        return None

    def download_blob(self) -> Any:
        data = self.data

        class _Stream:
            def readall(self) -> bytes:
                return data

        return _Stream()

    def append_block(self, block: bytes, appendpos_condition: int) -> None:
        from azure.core.exceptions import HttpResponseError

        if appendpos_condition != len(self.data):
            error = HttpResponseError("append position condition not met")
            error.status_code = 412
            raise error
        self.data += block
        if not self.lost:
            self.lost = True
            error = HttpResponseError("timeout after commit")
            error.status_code = 412
            raise error


def test_a_retried_blob_append_does_not_write_the_record_twice() -> None:
    blob = _LossyBlob()
    log = BlobAuditLog(blob)
    first = log.append(change(MODEL_A, "deploy"))
    second = log.append(change(MODEL_B, "deploy"))
    lines = log.lines()
    assert len(lines) == 2
    assert verify(lines) is None
    assert (first.seq, second.seq) == (1, 2)


def test_an_unreadable_last_record_is_named_instead_of_breaking_every_append(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = FileAuditLog(path)
    log.append(change(MODEL_A, "deploy"))
    with path.open("a") as fh:
        fh.write('{"seq": 2, "trunc\n')
    with pytest.raises(RuntimeError, match=r"the last record \(line 2\) is unreadable"):
        log.append(change(MODEL_B, "deploy"))


def test_a_checkpoint_chosen_by_best_eval_is_pinned_promoted_and_rolled_back_as_its_own_artifact(
    repo: Path,
) -> None:
    checkpoint = "ftckpt_" + "c" * 32
    log = FileAuditLog(repo / ".ftops" / "audit" / "local-dev.jsonl")
    gated = change(checkpoint)
    log.append(
        dataclasses.replace(
            gated, details={**(gated.details or {}), "fine_tuned_model": MODEL_A, "checkpoint": checkpoint}
        )
    )
    first = cli(repo, "promote", "support-bot", "--from", "local-dev", "--to", "local-staging")
    assert first.exit_code == 0, first.output
    pin = load_releases(repo, "local-staging")["support-bot"]
    assert (pin.model, pin.checkpoint, pin.artifact) == (MODEL_A, checkpoint, checkpoint)
    text = (repo / "environments" / "releases" / "local-staging.yaml").read_text()
    assert f"checkpoint: {checkpoint}" in text
    git(repo, "commit", "--quiet", "-am", "pin the epoch-2 checkpoint")
    # The same job's final model later passes: a different artifact, so promotion moves it, and the
    # pin loses its checkpoint.
    _gate(repo, MODEL_A)
    second = cli(repo, "promote", "support-bot", "--from", "local-dev", "--to", "local-staging")
    assert second.exit_code == 0, second.output
    pin = load_releases(repo, "local-staging")["support-bot"]
    assert (pin.model, pin.checkpoint) == (MODEL_A, None)
    assert "checkpoint:" not in (repo / "environments" / "releases" / "local-staging.yaml").read_text()
    git(repo, "commit", "--quiet", "-am", "pin the final model")
    back = cli(repo, "rollback", "support-bot", "--env", "local-staging", "--reason", "epoch 3 overfits")
    assert back.exit_code == 0, back.output
    pin = load_releases(repo, "local-staging")["support-bot"]
    assert (pin.model, pin.checkpoint) == (MODEL_A, checkpoint)
    message = git(repo, "log", "-1", "--format=%B")
    assert f"From: {MODEL_A}\nTo: {checkpoint}" in message
