"""`ftops promote` and `ftops rollback`: move a release pin by commit, never by hand.

Promotion copies an artifact that passed its gates (the fine-tuned model id, the account that
holds it, the job, the data and evidence digests) into the next environment's release file.
Rollback writes an earlier pin back as a new commit. Neither trains, neither rewrites history;
`pulumi up` of the target environment then deploys the pin (cross-account, `model.source`)
behind that environment's own gate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftops.auditlog import AuditLog, context, records, verify
from ftops.config.load import load_environment
from ftops.config.pins import load_releases, parse_pins, write_pin
from ftops.config.schema import Environment, ReleasePin
from ftops.config.yamlfiles import releases_file
from ftops.errors import FtopsError, RefusedError
from ftops.gitops import git
from ftops.gitops.logs import audit_log, stack_outputs


@dataclass(frozen=True)
class Outcome:
    path: Path
    key: str
    env: str
    old: ReleasePin | None
    new: ReleasePin
    commit: str | None
    branch: str | None
    pr_opened: bool
    pr_commands: list[str]


def _passed_result(root: Path, source: Environment, key: str) -> tuple[ReleasePin, str]:
    """The artifact MODEL became in the source environment, and where that was read from.

    Stack outputs when the Pulumi CLI can read them, else the environment's audit log: a `gate`
    record exists only once the gate passed (the record depends on the gate resource)."""
    outputs = stack_outputs(root, source.name)
    gated = (outputs or {}).get("gated", {}).get(key)
    # A gate that ran before gates recorded their commit has no `commit`: the audit log has it.
    if gated and gated.get("commit"):
        return (
            ReleasePin(
                **_artifact(gated["model"], gated),
                source_account=gated["account_id"],
                source_environment=source.name,
                job=gated["job"],
                data_digest=gated["data_digest"],
                evidence_digest=gated["evidence_digest"],
                source_commit=str(gated["commit"])[:7],
            ),
            f"stack {source.name} outputs",
        )
    log = audit_log(root, source)
    lines = log.lines()
    broken = verify(lines)
    if broken is not None:
        raise RefusedError(
            f"{log.where()}: line {broken.line}: {broken.reason}; a broken audit chain proves nothing, "
            "promote from the stack outputs (install the Pulumi CLI) or restore the log"
        )
    passed = [
        r for r in records(log) if r.action == "gate" and r.model == key and r.environment == source.name
    ]
    if not passed:
        raise RefusedError(
            f"{key} has not passed its gates in {source.name} (no gate record in {log.where()}); "
            f"run `pulumi up --stack {source.name}` until its gate passes, then promote"
        )
    last = passed[-1]
    details = last.details
    if key in source.releases and key not in source.models:
        # A promoted environment passes on the pin it took; the artifact's origin stays the same.
        pin = source.releases.get(key)
        if pin is None or pin.artifact != last.to_model:
            raise RefusedError(
                f"{key} in {source.name}: the last passing gate was for {last.to_model}, but the pin is "
                f"{pin.model if pin else 'absent'}; run `pulumi up --stack {source.name}` first"
            )
    if not all(
        (
            last.to_model,
            last.evidence_digest,
            last.commit,
            *(details.get(k) for k in ("job", "account_id", "data_digest")),
        )
    ):
        raise RefusedError(
            f"{log.where()}: record {last.seq} lacks the model, commit, evidence or provenance to pin"
        )
    return (
        ReleasePin(
            **_artifact(str(last.to_model), details),
            source_account=str(details["account_id"]),
            source_environment=source.name,
            job=str(details["job"]),
            data_digest=str(details["data_digest"]),
            evidence_digest=last.evidence_digest,
            source_commit=str(last.commit)[:7],
        ),
        f"{_where(root, log)} record {last.seq}",
    )


def promote(root: Path, key: str, source_name: str, target_name: str, *, pr: bool) -> Outcome:
    target = load_environment(root, target_name)
    if target.promotion is None:
        raise RefusedError(
            f"{target_name} takes no release pins (it trains its own models; no promotion.from)"
        )
    if target.promotion.from_ != source_name:
        raise RefusedError(
            f"{target_name} takes releases from {target.promotion.from_} only (promotion.from); "
            f"promote {key} to {target.promotion.from_} first"
        )
    if key not in {d.model for d in target.deployments.values()}:
        raise RefusedError(f"{target_name} has no deployment of {key}; declare one under deployments first")
    source = load_environment(root, source_name)
    if key not in source.models and key not in source.releases:
        raise RefusedError(f"{source_name} neither trains nor serves {key}")
    new, origin = _passed_result(root, source, key)
    path = releases_file(root, target_name)
    if git.is_dirty(root, path):
        raise RefusedError(f"{path.relative_to(root)} has uncommitted changes; commit or discard them first")
    old = load_releases(root, target_name).get(key)
    if old is not None and old.artifact == new.artifact and old.evidence_digest == new.evidence_digest:
        raise RefusedError(f"{target_name} already pins {key} to {new.artifact}; nothing to promote")
    actor = context()["actor"]
    message = (
        f"promote({target_name}): {key} {_short(old.artifact if old else None)} -> {_short(new.artifact)}\n\n"
        f"From {source_name} ({origin}).\nModel: {new.model}\n"
        + (f"Checkpoint: {new.checkpoint}\n" if new.checkpoint else "")
        + f"Job: {new.job}\nData: {new.data_digest}\n"
        f"Evidence: {new.evidence_digest}\nActor: {actor}\n"
    )
    return _apply(root, path, key, target_name, old, new, message, "promote", pr=pr, commit=pr)


def rollback(root: Path, key: str, env_name: str, *, to: str | None, reason: str, pr: bool) -> Outcome:
    if not reason.strip():
        raise RefusedError('say why: --reason "..." is recorded in the commit and the audit trail')
    env = load_environment(root, env_name)  # the environment must be valid before anything is written
    if env.promotion is not None and env.promotion.require_approval and not pr:
        raise RefusedError(f"{env_name} requires approval (promotion.require_approval): roll back with --pr")
    path = releases_file(root, env_name)
    if git.is_dirty(root, path):
        raise RefusedError(f"{path.relative_to(root)} has uncommitted changes; commit or discard them first")
    current = load_releases(root, env_name).get(key)
    if current is None:
        raise RefusedError(f"{env_name} has no release pin for {key}; nothing to roll back")
    history = _pin_history(root, path, key)
    if to is None:
        # Never back to a model that was itself rolled back from (a rollback of a rollback).
        rejected = _rolled_back_from(root, path, key)
        older = [(c, p) for c, p in history if p.artifact != current.artifact]
        earlier = [(c, p) for c, p in older if p.artifact not in rejected]
        if not earlier and older:
            raise RefusedError(
                f"{key} in {env_name}: the earlier pin {older[0][1].artifact} was rolled back from, so it is "
                "never the default target",
                fix="pass --to MODEL or --to REF to restore a pin on purpose",
            )
        if not earlier:
            raise RefusedError(
                f"{key} in {env_name} has no earlier pin in git history than {current.artifact}"
            )
        source_commit, target = earlier[0]
    else:
        named = [(c, p) for c, p in history if to in (p.artifact, p.model)]
        commit = git.resolve(root, to) if not named else None
        if named:
            source_commit, target = named[0]
        elif commit is not None:
            pins = parse_pins(git.show(root, commit, path) or "", f"{to}:{path.relative_to(root)}")
            if key not in pins:
                raise RefusedError(f"{to} has no pin for {key} in {path.relative_to(root)}")
            source_commit, target = commit, pins[key]
        else:
            raise RefusedError(f"--to {to}: neither a model pinned for {key} in the history nor a git ref")
        if target.artifact == current.artifact:
            raise RefusedError(f"{env_name} already pins {key} to {target.artifact}; nothing to roll back")
    actor = context()["actor"]
    message = (
        f"rollback({env_name}): {key} {_short(current.artifact)} -> {_short(target.artifact)}\n\n"
        f"Reason: {reason.strip()}\nActor: {actor}\nFrom: {current.artifact}\nTo: {target.artifact}\n"
        f"Restores the pin of commit {source_commit[:12]}; the model was retained, nothing is retrained.\n"
    )
    return _apply(root, path, key, env_name, current, target, message, "rollback", pr=pr, commit=True)


def _rolled_back_from(root: Path, path: Path, key: str) -> set[str]:
    out = git.git(root, "log", "--format=%B%x00", "--", str(path.relative_to(root)))
    models: set[str] = set()
    for message in out.split("\x00"):
        if message.strip().startswith("rollback(") and f" {key} " in message.splitlines()[0]:
            models.update(
                line.removeprefix("From: ").strip()
                for line in message.splitlines()
                if line.startswith("From: ")
            )
    return models


def _pin_history(root: Path, path: Path, key: str) -> list[tuple[str, ReleasePin]]:
    """(commit, pin of `key`) for each commit that changed the release file, newest first."""
    out = []
    for commit in git.file_history(root, path):
        text = git.show(root, commit, path)
        if text is None:
            continue
        try:
            pins = parse_pins(text, f"{commit[:12]}:{path.relative_to(root)}")
        except FtopsError:
            continue  # an old, invalid revision of the file is no rollback target
        if key in pins:
            out.append((commit, pins[key]))
    return out


def _apply(
    root: Path,
    path: Path,
    key: str,
    env: str,
    old: ReleasePin | None,
    new: ReleasePin,
    message: str,
    verb: str,
    *,
    pr: bool,
    commit: bool,
) -> Outcome:
    """Write the pin (on a new branch first with `pr`), commit it if asked, open the PR."""
    started_on = (git.current_branch(root) or git.head(root)) if pr else None
    branch = _branch(root, f"{verb}/{env}/{key}", new) if pr else None
    write_pin(root, env, key, new)
    try:
        sha = git.commit(root, [path], message) if commit else None
    except FtopsError:
        # Nothing half-done: the pin file as HEAD has it, back where we started, no new branch.
        git.restore(root, path)
        if branch is not None and started_on is not None:
            git.switch_back(root, started_on, branch)
        raise
    opened, commands = False, list[str]()
    if branch is not None:
        opened, commands = git.open_pr(root, branch, message.splitlines()[0], message)
    return Outcome(path, key, env, old, new, sha, branch, opened, commands)


def _branch(root: Path, prefix: str, pin: ReleasePin) -> str:
    """A new branch for the change, created before the file is touched."""
    branch = f"{prefix}-{pin.model.rsplit('-', 1)[-1][:12]}-{git.head(root, short=True)}"
    git.switch_new(root, branch)
    return branch


def _where(root: Path, log: AuditLog) -> str:
    """Where the log is, as a commit message may say it: a file inside the repository by its
    repository path (an absolute path names one person's checkout), a blob by its URL."""
    where = log.where()
    if "://" in where:
        return where
    try:
        return Path(where).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return where


def _artifact(served: str, provenance: Mapping[str, Any]) -> dict[str, str | None]:
    """The pin's model and checkpoint from what passed the gate: a checkpoint id when `best_eval`
    chose an earlier epoch (the provenance then names its job's model), else the model itself."""
    checkpoint = str(provenance.get("checkpoint") or "") or None
    if checkpoint is None or served != checkpoint:
        return {"model": served, "checkpoint": None}
    return {"model": str(provenance.get("fine_tuned_model") or ""), "checkpoint": checkpoint}


def _short(model: str | None) -> str:
    if model is None:
        return "(none)"
    return model.split(".ft-", 1)[-1][:24] if ".ft-" in model else model
