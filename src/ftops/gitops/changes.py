"""Which environments a change touches, in promotion order (the source of a chain first): what
the PR workflow previews and the deploy workflow applies."""

from __future__ import annotations

from pathlib import Path

from ftops.config.load import load_environment
from ftops.config.schema import Environment
from ftops.config.yamlfiles import ENV_DIR, RELEASES_DIR, environment_names
from ftops.errors import UsageError
from ftops.gitops import git

# A change here can change every environment's plan.
SHARED = ("src/", "infra/", "Pulumi.yaml", "pyproject.toml")


def env_files(env: Environment) -> set[str]:
    """Repository paths whose content goes into the environment's plan."""
    files = {f"{ENV_DIR}/Pulumi.{env.name}.yaml", f"{RELEASES_DIR}/{env.name}.yaml"}
    for spec in env.models.values():
        files.update(spec.data_files())
    for gate in env.gates.values():
        files.update(q.eval_set for q in gate.quality)
        if gate.safety is not None and gate.safety.suite != "builtin":
            files.add(gate.safety.suite)
    return files


def promotion_order(envs: dict[str, Environment]) -> list[str]:
    def depth(name: str) -> int:
        seen, d = set(), 0
        while (p := envs[name].promotion) is not None and p.from_ in envs and name not in seen:
            seen.add(name)
            name, d = p.from_, d + 1
        return d

    return sorted(envs, key=lambda n: (depth(n), n))


def changed_environments(
    root: Path, base: str | None, include_local: bool = False, deployed_tags: str | None = None
) -> list[str]:
    """Environments the commits since `base` touch, or, with `deployed_tags`, the commits since each
    environment's own tag `<deployed_tags><env>` (moved by the deploy workflow after each successful
    `pulumi up`). Per-environment tags are what make a skipped run harmless: GitHub keeps one pending
    run per concurrency group and drops the one before it, so a push's own diff would miss that
    run's changes; the diff since the last deployed commit still has them.

    A `base` git does not know is a usage error, except all zeros (git's "no earlier commit", a
    first push). A tag git cannot compare with (no tag yet; one that is not an ancestor of HEAD
    after a force-push) means the environment changed: reconciling one that did not
    change is a no-op, skipping one that did is drift. A tag ahead of HEAD means nothing to do."""
    if base is not None and base.strip("0") and git.resolve(root, base) is None:
        # A PR's base always exists (with fetch-depth 0); one that does not is a mistake, and
        # answering "everything changed" would hide it. All zeros is git's "no earlier commit".
        raise UsageError(
            f"--base {base}: not a commit in this repository", fix="git fetch, then pass the PR's base"
        )
    envs = {n: load_environment(root, n) for n in environment_names(root)}
    diffs: dict[str, set[str] | None] = {}

    def paths_since(ref: str) -> set[str] | None:
        if ref not in diffs:
            commit = git.resolve(root, ref)
            if commit is None:
                diffs[ref] = None
            elif deployed_tags is not None and git.is_ancestor(root, "HEAD", commit):
                # Deployed past this commit already (a re-run of an older run): deploying it again
                # would roll the environment back.
                diffs[ref] = set()
            elif deployed_tags is not None and not git.is_ancestor(root, commit):
                diffs[ref] = None
            else:
                diffs[ref] = set(git.git(root, "diff", "--name-only", f"{commit}...HEAD").split())
        return diffs[ref]

    def touched(name: str, env: Environment) -> bool:
        ref = f"refs/tags/{deployed_tags}{name}" if deployed_tags is not None else str(base)
        paths = paths_since(ref)
        return paths is None or any(p.startswith(SHARED) for p in paths) or bool(paths & env_files(env))

    hit = {
        name for name, env in envs.items() if (include_local or env.target != "local") and touched(name, env)
    }
    return [n for n in promotion_order(envs) if n in hit]
