"""Load and validate an environment: its Pulumi stack file plus its release pins.

Every problem becomes one line naming the file, the key path and what is allowed, e.g.

    environments/Pulumi.prod.yaml: ftops:environment.deployments.support-bot.sku.capacity: must be >= 1

The Pulumi program validates the value the engine hands it; the CLI reads the file itself.
Either way the file is read for line numbers.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ftops.config.pins import load_releases
from ftops.config.schema import Environment, GraderRef, Reinforcement
from ftops.config.yamlfiles import (
    CONFIG_KEY,
    environment_names,
    format_errors,
    line_of,
    plain,
    read_yaml,
    relative_label,
    releases_file,
    stack_file,
)
from ftops.errors import ConfigError, UsageError
from ftops.evaluation import rft_graders


def _stack_tree(root: Path, name: str) -> tuple[Any, str]:
    path = stack_file(root, name)
    label = relative_label(path, root)
    if not path.is_file():
        known = ", ".join(environment_names(root)) or "none"
        raise UsageError(f"{label}: no such stack file", fix=f"environments here: {known}")
    return read_yaml(path, label), label


def _environment_node(tree: Any, label: str) -> Any:
    if not isinstance(tree, dict) or not isinstance(tree.get("config"), dict):
        raise ConfigError([f"{label}: needs a top-level 'config:' mapping (a Pulumi stack file)"])
    config = tree["config"]
    problems = []
    for key in config:
        if str(key).startswith("ftops:") and key != CONFIG_KEY:
            problems.append(f"{label}: {key}: unknown ftops key; the program reads only {CONFIG_KEY}")
    if CONFIG_KEY not in config:
        problems.append(f"{label}: {CONFIG_KEY}: required key is missing")
    if problems:
        raise ConfigError(problems)
    return config[CONFIG_KEY]


def validate_environment(root: Path, name: str, raw: Any, tree: Any = None) -> Environment:
    """Validate the value of `ftops:environment` for stack `name`, with its release pins."""
    label = relative_label(stack_file(root, name), root)
    node = tree if tree is not None else raw
    releases = load_releases(root, name)
    if not isinstance(raw, dict):
        raise ConfigError([f"{label}: {CONFIG_KEY}: must be a mapping of keys to values"])
    try:
        env = Environment.model_validate({**raw, "releases": releases})
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, raw, label, CONFIG_KEY, node)) from None
    problems = []
    if env.name != name:
        problems.append(
            f"{label}: {CONFIG_KEY}.name: is '{env.name}' but the stack is '{name}'; make them equal"
        )
    problems += _missing_paths(root, env, label, node)
    if not problems:
        problems += _grader_data_problems(root, env, label, node)
    if problems:
        raise ConfigError(problems)
    return env


def _missing_paths(root: Path, env: Environment, label: str, tree: Any) -> list[str]:
    wanted: list[tuple[list[str | int], str]] = []
    for key, model in env.models.items():
        if model.training_file is not None:
            wanted.append((["models", key, "training_file"], model.training_file))
        if model.distill_from is not None and model.distill_from.prompts is not None:
            wanted.append((["models", key, "distill_from", "prompts"], model.distill_from.prompts))
        if model.validation_file:
            wanted.append((["models", key, "validation_file"], model.validation_file))
    for key, gate in env.gates.items():
        for i, check in enumerate(gate.quality):
            wanted.append((["gates", key, "quality", i, "eval_set"], check.eval_set))
        if gate.safety is not None and gate.safety.suite not in ("builtin", "pyrit"):
            wanted.append((["gates", key, "safety", "suite"], gate.safety.suite))
    problems = []
    resolved_root = root.resolve()
    for path, value in wanted:
        target = (root / value).resolve()
        where = f"{CONFIG_KEY}." + ".".join(str(p) for p in path)
        line = line_of(tree, path)
        suffix = f" (line {line})" if line else ""
        if not target.is_relative_to(resolved_root):
            problems.append(
                f"{label}: {where}: '{value}' is outside the repository; use a path inside it{suffix}"
            )
        elif not target.is_file():
            problems.append(f"{label}: {where}: no such file '{value}'; fix the path or add the file{suffix}")
    return problems


GRADER_DATA_LINES = 20  # lines of each data file a grader's `{{item.*}}` references are checked on


def _data_lines(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """The first lines of a JSONL file that parse as objects (the data validators report the rest)."""
    out: list[tuple[int, dict[str, Any]]] = []
    with path.open(encoding="utf-8-sig") as fh:
        for number, line in enumerate(fh, 1):
            if len(out) >= GRADER_DATA_LINES:
                break
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                out.append((number, value))
    return out


def _grader_data_problems(root: Path, env: Environment, label: str, tree: Any) -> list[str]:
    """Each `{{item.x}}` a grader reads must be a field of the data it grades: an RFT model's
    training and validation lines, a gate check's eval set."""
    uses: list[tuple[list[str | int], BaseModel, list[str]]] = []
    for key, model in env.models.items():
        if isinstance(model.method, Reinforcement):
            files = [f for f in (model.training_file, model.validation_file) if f]  # RFT is never distilled
            uses.append((["models", key, "method", "grader"], env.grader(model.method.grader), files))
    for key, gate in env.gates.items():
        for i, check in enumerate(gate.quality):
            if isinstance(check.grader, GraderRef):
                uses.append(
                    (["gates", key, "quality", i, "grader"], env.grader(check.grader), [check.eval_set])
                )
    problems = []
    for path, grader, files in uses:
        line = line_of(tree, path)
        where = f"{label}: {CONFIG_KEY}." + ".".join(str(p) for p in path)
        suffix = f" (line {line})" if line else ""
        for ref in dict.fromkeys(rft_graders.references(grader)):
            for file in files:
                for number, item in _data_lines(root / file):
                    problem = rft_graders.reference_problem(ref, item)
                    if problem:
                        problems.append(f"{where}: {problem} at {file}:{number}{suffix}")
                        break
                else:
                    continue
                break
    return problems


def read_stack_node(root: Path, name: str) -> Any:
    """The YAML node of `ftops:environment` in the stack file (with line information)."""
    tree, label = _stack_tree(root, name)
    return _environment_node(tree, label)


def load_environment(root: Path, name: str) -> Environment:
    node = read_stack_node(root, name)
    return validate_environment(root, name, plain(node), node)


def _served_models(env: Environment) -> set[str]:
    return set(env.models) | {d.model for d in env.deployments.values()} | set(env.releases)


def check_promotion_chain(
    root: Path, envs: dict[str, Environment], only: str | None = None, invalid: Collection[str] = ()
) -> list[str]:
    """Cross-file rules: promotion sources exist and do not loop, deployments and pins name models
    the source environment has, pins come from the source environment. `only`: check one.
    `invalid`: environments whose files exist but do not validate (their own problems say why)."""
    return [p for found in _chain_problems(root, envs, only, invalid).values() for p in found]


def _chain_problems(
    root: Path, envs: dict[str, Environment], only: str | None, invalid: Collection[str]
) -> dict[str, list[str]]:
    problems: dict[str, list[str]] = {}
    for name, env in envs.items():
        if env.promotion is None or (only is not None and name != only):
            continue
        found = problems.setdefault(name, [])
        label = relative_label(stack_file(root, name), root)
        source = env.promotion.from_
        if source in invalid:
            # It exists but does not validate: nothing of the chain can be checked against it.
            found.append(
                f"{label}: {CONFIG_KEY}.promotion.from: '{source}' is invalid, so this promotion "
                f"cannot be checked; fix it first (ftops env check {source})"
            )
            continue
        if source not in envs:
            found.append(
                f"{label}: {CONFIG_KEY}.promotion.from: no environment '{source}'; "
                f"known: {', '.join(sorted({*envs, *invalid}))}"
            )
            continue
        seen = {name}
        cursor: str | None = source
        while cursor is not None and cursor in envs:
            if cursor in seen:
                found.append(f"{label}: {CONFIG_KEY}.promotion.from: promotion loops through '{cursor}'")
                break
            seen.add(cursor)
            nxt = envs[cursor].promotion
            cursor = nxt.from_ if nxt else None
        available = _served_models(envs[source])
        for key, dep in env.deployments.items():
            if dep.model not in available:
                found.append(
                    f"{label}: {CONFIG_KEY}.deployments.{key}.model: '{dep.model}' is not a model of "
                    f"'{source}' (has: {', '.join(sorted(available)) or 'none'})"
                )
        rel_label = relative_label(releases_file(root, name), root)
        for key, pin in env.releases.items():
            if pin.source_environment != source:
                found.append(
                    f"{rel_label}: releases.{key}.source_environment: is '{pin.source_environment}' but "
                    f"'{name}' is promoted from '{source}'; promote through each environment in order"
                )
    return {name: found for name, found in problems.items() if found}


@dataclass
class Checked:
    """What `ftops env check` found: the environments asked about, each valid or with its problems."""

    names: list[str]  # the environments asked about, in order
    envs: dict[str, Environment]  # every environment that validated on its own (sources included)
    problems: dict[str, list[str]]  # name -> its problems: its own files, then its promotion chain
    in_order: list[str]  # every problem, of the named environments and of their sources

    def valid(self, name: str) -> bool:
        return name in self.envs and not self.problems.get(name)


def check_environments(root: Path, names: list[str] | None = None) -> Checked:
    """Every environment (or the named ones, with their promotion sources loaded to check the
    chain), each with its problems. An environment whose files do not validate is invalid, never
    unknown: the environments promoted from it say so."""
    wanted = names or environment_names(root)
    envs: dict[str, Environment] = {}
    own: dict[str, list[str]] = {}
    queue = list(wanted)
    while queue:
        name = queue.pop(0)
        if name in envs or name in own:
            continue
        try:
            envs[name] = load_environment(root, name)
        except ConfigError as exc:
            own[name] = exc.problems
            continue
        promo = envs[name].promotion
        if promo and promo.from_ not in envs and stack_file(root, promo.from_).is_file():
            queue.append(promo.from_)
    chain = _chain_problems(root, envs, None, set(own))
    problems = {n: [*own.get(n, []), *chain.get(n, [])] for n in [*own, *chain]}
    in_order = [p for found in own.values() for p in found] + [p for found in chain.values() for p in found]
    return Checked(list(wanted), envs, problems, in_order)


def load_all(root: Path, names: list[str] | None = None) -> tuple[dict[str, Environment], list[str]]:
    """Every environment that validated on its own (the named ones plus their promotion sources)
    and every problem found."""
    checked = check_environments(root, names)
    return checked.envs, checked.in_order


def load_checked(root: Path, name: str) -> Environment:
    """One environment, validated with the environments it is promoted from."""
    envs, problems = load_all(root, [name])
    if problems:
        raise ConfigError(problems)
    return envs[name]
