"""Eval deltas for a pull request: what a moved release pin changes, measured.

A PR cannot run a gate (the candidate is not deployed until the PR merges), but a promotion or
rollback moves a pin between two models that both passed a gate already, and each pin names its
evidence by digest. The evidence records hold every graded answer, so the two models compare
check by check, and where both were graded on the same eval set, item by item (McNemar on the
paired items). Evidence is looked up in folders given on the command line (downloaded
`gate-evidence-*` artifacts), the local stack's `.ftops/evidence/<env>/`, then the source
environment's evidence container, and used only if it still hashes to the digest the pin names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from ftops.catalog import short_id
from ftops.config.load import load_environment
from ftops.config.pins import load_releases, parse_pins
from ftops.config.schema import Environment, GateSpec, ReleasePin
from ftops.config.site import Site, evidence_folder
from ftops.config.yamlfiles import CONFIG_KEY, environment_names, releases_file, stack_file
from ftops.errors import FtopsError, UsageError
from ftops.evaluation import evidence_files
from ftops.evaluation.evidence_store import blob_name
from ftops.evaluation.stats import compare
from ftops.evaluation.verdict import BUILTIN_SUITE, PYRIT_SUITE
from ftops.gitops import git
from ftops.gitops.changes import promotion_order


@dataclass(frozen=True)
class PinChange:
    env: str
    key: str
    old: ReleasePin | None
    new: ReleasePin | None


@dataclass(frozen=True)
class Found:
    evidence: dict[str, Any] | None
    where: str  # where it was read, or why it was not


def pin_changes(root: Path, commit: str, envs: list[str], label: str) -> list[PinChange]:
    """Release pins that differ between `commit` (`label` as the user named it) and the working tree."""
    out = []
    for name in envs:
        path = releases_file(root, name)
        before = parse_pins(git.show(root, commit, path) or "", f"{label}:{path.relative_to(root)}")
        after = load_releases(root, name)
        for key in sorted(before.keys() | after.keys()):
            old, new = before.get(key), after.get(key)
            if (old and (old.artifact, old.evidence_digest)) != (new and (new.artifact, new.evidence_digest)):
                out.append(PinChange(name, key, old, new))
    return out


def _declared(text: str | None) -> dict[str, Any]:
    try:
        data = YAML(typ="safe").load(text or "") or {}
        node = (data.get("config") or {}).get(CONFIG_KEY) or {}
    except Exception:  # an unreadable old revision counts as "everything changed"
        return {}
    return node if isinstance(node, dict) else {}


def reruns(env: Environment, before: dict[str, Any], after: dict[str, Any], paths: set[str]) -> list[str]:
    """What merging does to this environment besides moving pins: models that train again (their
    declaration or data changed) and gates that decide again (their checks or eval sets changed).
    `before` and `after` are its declarations at the base and now, `paths` the files changed."""
    out, training = [], set()
    for key, spec in env.models.items():
        data = set(spec.data_files())
        if (before.get("models") or {}).get(key) != (after.get("models") or {}).get(key) or paths & data:
            training.add(key)
            out.append(f"`{key}` in {env.name} trains again on merge (its declaration or data changed)")
    for key, gate in env.gates.items():
        if key in training:
            continue  # a new model is gated anyway
        sets = {q.eval_set for q in gate.quality} | (
            {gate.safety.suite}
            if gate.safety and gate.safety.suite not in (BUILTIN_SUITE, PYRIT_SUITE)
            else set()
        )
        if (before.get("gates") or {}).get(key) != (after.get("gates") or {}).get(key) or paths & sets:
            out.append(
                f"the gate of `{key}` in {env.name} decides again on merge (its checks or eval sets changed)"
            )
    return out


def find_evidence(root: Path, pin: ReleasePin, key: str, folders: list[Path]) -> Found:
    return evidence_by_digest(root, pin.source_environment, key, pin.evidence_digest, folders)


def evidence_by_digest(root: Path, environment: str, key: str, digest: str, folders: list[Path]) -> Found:
    """The evidence `digest` of gate `key` in `environment`: from `folders`, the environment's
    local evidence folder, then its evidence container; only if it still hashes to `digest`."""
    stem = digest.removeprefix("sha256:")
    looked = []
    candidates = [p for folder in folders for p in sorted(folder.rglob(f"{stem}.json"))]
    candidates.append(evidence_folder(root, environment) / f"{stem}.json")
    for path in candidates:
        if path.is_file():
            return _verified(path.read_bytes(), digest, str(path))
        looked.append(str(path))
    try:
        source = load_environment(root, environment)
    except FtopsError:
        return Found(None, f"not found ({', '.join(looked)}; {environment} is not declared here)")
    site = Site(source, root)
    if site.local:
        return Found(None, f"not found ({', '.join(looked)})")
    from azure.core.exceptions import ResourceNotFoundError

    from ftops.azure.connection import container_client

    spec = site.container("evidence")
    blob = blob_name(environment, key, stem)
    where = blob
    try:
        container = container_client(spec)
        where = f"{container.url}/{blob}"
        body = container.get_blob_client(blob).download_blob().readall()
    except ResourceNotFoundError:
        return Found(None, f"not found at {where}")
    except FtopsError as exc:  # no credential, nothing listening: said once, in a line
        return Found(None, f"not readable ({exc.one_line()})")
    except Exception as exc:  # unreadable evidence is reported in the comment, not fatal to the PR
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = {
            "AuthorizationPermissionMismatch": "; the identity reading it needs Storage Blob Data Reader "
            "on the evidence container",
            "AuthorizationFailure": "; the storage firewall refused this runner: run it inside the VNet "
            "(FTOPS_RUNNER) or allow its address",
        }.get(str(getattr(exc, "error_code", "") or ""), "")
        return Found(None, f"not readable at {where} ({reason[:160]}{hint})")
    return _verified(body, digest, where)


def _verified(body: bytes, digest: str, where: str) -> Found:
    try:
        evidence = json.loads(body)
    except ValueError:
        return Found(None, f"{where} is not JSON")
    if not isinstance(evidence, dict) or evidence_files.digest_of(evidence)[0] != digest:
        return Found(None, f"{where} does not hash to {digest[:19]}…: not used")
    return Found(evidence, where)


def thresholds(gate: GateSpec | None) -> dict[str, float]:
    if gate is None:
        return {}
    out = {q.name: q.threshold for q in gate.quality}
    if gate.safety is not None:
        out["safety"] = gate.safety.threshold
    return out


def _outcomes(results: list[dict[str, Any]]) -> dict[str, list[bool]]:
    """Each item's verdicts in repeat order, as the gate's statistics take them."""
    return {
        item: [bool(r["passed"]) for r in sorted(rows, key=lambda r: int(r.get("repeat", 0)))]
        for item, rows in evidence_files.rows_by_item(results).items()
    }


def _rate(check: dict[str, Any] | None) -> str:
    if check is None:
        return "—"
    s = check["summary"]
    return f"{s['pass_rate']:.3f} [{s['low']:.3f}, {s['high']:.3f}]"


def _paired(old: dict[str, Any] | None, new: dict[str, Any] | None) -> str:
    if old is None or new is None:
        return "—"
    if old.get("eval_set_digest") != new.get("eval_set_digest"):
        return "eval sets differ: not paired"
    before, after = _outcomes(old.get("results") or []), _outcomes(new.get("results") or [])
    items = sorted(before.keys() & after.keys())
    if not items:
        return "no common items"
    c = compare([after[i] for i in items], [before[i] for i in items])
    return f"{c.improvements} better, {c.regressions} worse of {len(items)}; p(worse) = {c.p_value:.3g}"


def _flag(check: dict[str, Any] | None, threshold: float | None, strict: bool) -> str:
    if check is None or threshold is None:
        return "" if threshold is None else f"{threshold:g}"
    s = check["summary"]
    if s["pass_rate"] < threshold:
        return f"{threshold:g} ⚠️ below"
    if strict and s["low"] < threshold:
        return f"{threshold:g} ⚠️ interval below"
    return f"{threshold:g} ✅"


def _categories(old: dict[str, Any] | None, new: dict[str, Any] | None) -> str:
    if old is None or new is None:
        return ""
    a, b = old["summary"].get("by_category") or {}, new["summary"].get("by_category") or {}
    moved = [(c, a[c], b[c]) for c in sorted(a.keys() & b.keys()) if c and abs(b[c] - a[c]) >= 1e-9]
    return ", ".join(f"{c} {x:.2f} → {y:.2f}" for c, x, y in moved)


def _short(model: str | None) -> str:
    return short_id(model) if model else "(none)"


def change_markdown(root: Path, change: PinChange, target: Environment, folders: list[Path]) -> str:
    old_pin, new_pin = change.old, change.new
    before, after = (pin.artifact if pin else None for pin in (old_pin, new_pin))
    title = f"`{_short(before)}` → `{_short(after)}`"
    lines = [f"### `{change.key}` in {change.env}: {title}", ""]
    if new_pin is None:
        lines.append(f"The pin is removed: {change.env} stops serving `{change.key}` on merge.")
        return "\n".join(lines)
    found_new = find_evidence(root, new_pin, change.key, folders)
    found_old = find_evidence(root, old_pin, change.key, folders) if old_pin else Found(None, "no pin before")
    lines.append(
        f"Proposed: `{new_pin.model}`"
        + (f" at checkpoint `{new_pin.checkpoint}`" if new_pin.checkpoint else "")
        + f" from {new_pin.source_environment} (job `{new_pin.job}`, commit "
        f"`{new_pin.source_commit}`), evidence `{new_pin.evidence_digest[:19]}…`"
        + ("" if found_new.evidence else f": {found_new.where}")
        + "."
    )
    if old_pin is not None:
        lines.append(
            f"Current: `{old_pin.model}`"
            + (f" at checkpoint `{old_pin.checkpoint}`" if old_pin.checkpoint else "")
            + f" from {old_pin.source_environment}, evidence "
            f"`{old_pin.evidence_digest[:19]}…`"
            + ("" if found_old.evidence else f": {found_old.where}")
            + "."
        )
    gate = target.gates.get(change.key)
    limits = thresholds(gate)
    strict = bool(gate and gate.fail_on_uncertainty)
    new_checks = {c["name"]: c for c in (found_new.evidence or {}).get("checks", [])}
    old_checks = {c["name"]: c for c in (found_old.evidence or {}).get("checks", [])}
    names = [*new_checks, *(n for n in old_checks if n not in new_checks)]
    if names:
        lines += [
            "",
            f"| check | grader | current | proposed | Δ | paired items | {change.env} threshold |",
            "|---|---|---|---|---|---|---|",
        ]
        for name in names:
            old, new = old_checks.get(name), new_checks.get(name)
            delta = (
                f"{new['summary']['pass_rate'] - old['summary']['pass_rate']:+.3f}" if old and new else "—"
            )
            grader = (new or old or {}).get("grader", "")
            lines.append(
                f"| {name} | {grader} | {_rate(old)} | {_rate(new)} | {delta} | {_paired(old, new)} | "
                f"{_flag(new, limits.get(name), strict)} |"
            )
        by_category = [(n, _categories(old_checks.get(n), new_checks.get(n))) for n in names]
        lines += [f"\n{name} by category: {text}." for name, text in by_category if text]
    lines += [
        "",
        f"Scores are from {new_pin.source_environment}'s gate; {change.env}'s own gate evaluates the "
        "model again on its candidate deployment when this merges, before anything serves it.",
    ]
    return "\n".join(lines)


def deltas_markdown(root: Path, base: str, envs: list[str] | None, folders: list[Path]) -> str:
    declared = environment_names(root)
    unknown = [n for n in envs or [] if n not in declared]
    if unknown:
        raise UsageError(f"--env {unknown[0]}: no such environment", fix=f"one of {', '.join(declared)}")
    every = {n: load_environment(root, n) for n in declared}
    names = [n for n in promotion_order(every) if not envs or n in envs]
    sections = [f"## Eval deltas: {', '.join(names)}", ""]
    commit = git.resolve(root, base)
    if commit is None:
        raise UsageError(
            f"--base {base}: not a commit in this repository", fix="git fetch, then pass the PR's base"
        )
    for change in pin_changes(root, commit, names, base):
        sections += [change_markdown(root, change, every[change.env], folders), ""]
    paths = set(git.git(root, "diff", "--name-only", commit).split())  # committed or not
    notes = []
    for name in names:
        path = stack_file(root, name)
        before = _declared(git.show(root, commit, path))
        notes += reruns(every[name], before, _declared(path.read_text(encoding="utf-8")), paths)
    if notes:
        sections += [f"- {line}" for line in notes]
        sections.append(
            "\nThose gates' scores, with deltas against the serving model, are in the deploy run's "
            "summary and its `gate-evidence-<env>` artifact."
        )
    if len(sections) == 2:
        sections.append("No release pin moves and no model retrains in " + ", ".join(names) + ".")
    return "\n".join(sections).rstrip() + "\n"
