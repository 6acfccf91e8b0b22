"""Which environments a change touches, in promotion order (the source of a chain first): what
the PR workflow previews and the deploy workflow applies."""

from __future__ import annotations

from pathlib import Path

from ftops.config import Environment
from ftops.config_load import environment_names, load_environment
from ftops.gitops import git

# A change here can change every environment's plan.
SHARED = ("src/", "infra/", "Pulumi.yaml", "pyproject.toml")


def env_files(env: Environment) -> set[str]:
    """Repository paths whose content goes into the environment's plan."""
    files = {f"environments/Pulumi.{env.name}.yaml", f"environments/releases/{env.name}.yaml"}
    for spec in env.models.values():
        files.add(spec.training_file)
        if spec.validation_file:
            files.add(spec.validation_file)
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


def changed_environments(root: Path, base: str, include_local: bool = False) -> list[str]:
    """A base git cannot compare with (a first push, a force-push: all zeros or gone) means every
    environment: reconciling one that did not change is a no-op, skipping one that did is drift."""
    envs = {n: load_environment(root, n) for n in environment_names(root)}
    if git.resolve(root, base) is None:
        paths, shared = set(), True
    else:
        paths = set(git.git(root, "diff", "--name-only", f"{base}...HEAD").split())
        shared = any(p.startswith(SHARED) for p in paths)
    hit = {
        name
        for name, env in envs.items()
        if (include_local or env.target != "local") and (shared or paths & env_files(env))
    }
    return [n for n in promotion_order(envs) if n in hit]
