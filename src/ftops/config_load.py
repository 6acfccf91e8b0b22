"""Load and validate an environment: its Pulumi stack file plus its release pins.

Every problem becomes one line naming the file, the key path and what is allowed, e.g.

    environments/Pulumi.prod.yaml: ftops:environment.deployments.support-bot.sku.capacity: must be >= 1

The Pulumi program validates the value the engine hands it; the CLI reads the file itself.
Either way the file is read for line numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from io import StringIO
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from ftops.config import Environment, ReleasePin, Releases
from ftops.errors import ConfigError, UsageError

CONFIG_KEY = "ftops:environment"
ENV_DIR = "environments"

_PATTERN_HELP = {
    r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$": "2-32 lowercase letters, digits or '-', starting with a letter",
    r"^sha256:[0-9a-f]{64}$": "'sha256:' and 64 lowercase hex digits",
    r"^[a-z][a-z0-9]{1,9}$": "2-10 lowercase letters or digits, starting with a letter",
    r"^[a-z0-9][a-z0-9-]{0,9}$": "1-10 lowercase letters, digits or '-' (ftops appends the spec hash)",
    r"^ftjob-[0-9a-f]{32}$": "'ftjob-' and 32 hex digits",
    r"^[0-9a-f]{7,40}$": "a git commit sha (7-40 hex digits)",
}


def stack_file(root: Path, name: str) -> Path:
    return root / ENV_DIR / f"Pulumi.{name}.yaml"


def releases_file(root: Path, name: str) -> Path:
    return root / ENV_DIR / "releases" / f"{name}.yaml"


def environment_names(root: Path) -> list[str]:
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in (root / ENV_DIR).glob("Pulumi.*.yaml"))


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    return yaml


def _read_yaml(path: Path, label: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError([f"{label}: not UTF-8 text; re-save it as UTF-8"]) from None
    try:
        return _yaml().load(StringIO(text))
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError([f"{label}: not valid YAML: {problem}{where}"]) from None


def plain(node: Any) -> Any:
    """ruamel's commented containers and scalar subclasses as plain Python values."""
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    for kind in (bool, int, float, str):
        if isinstance(node, kind):
            return kind(node)
    return node


def _line_of(tree: Any, path: Iterable[str | int]) -> int | None:
    """1-based line of the deepest node along `path` that exists in the YAML tree."""
    line = None
    node = tree
    for key in path:
        if isinstance(node, CommentedMap) and key in node:
            line = node.lc.key(key)[0] + 1
            node = node[key]
        elif isinstance(node, CommentedSeq) and isinstance(key, int) and 0 <= key < len(node):
            line = node.lc.item(key)[0] + 1
            node = node[key]
        else:
            break
    return line


_TYPE_TAGS = frozenset(
    {
        "int",
        "float",
        "str",
        "bool",
        "dict",
        "list",
        "constrained-str",
        "constrained-int",
        "constrained-float",
        "IPv4Network",
    }
)


def _clean_loc(raw: Any, loc: tuple[str | int, ...]) -> list[str | int]:
    """pydantic's error location as a key path in the data: drop union-member and validator tags."""
    out: list[str | int] = []
    node = raw
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif isinstance(part, str) and (
            "[" in part or part in _TYPE_TAGS or (isinstance(node, dict) and node.get("type") == part)
        ):
            continue
        else:
            node = None  # a missing key: name it, nothing below it exists
        out.append(part)
    return out


def _message(err: dict[str, Any]) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[
            kind
        ]
        bound = next(iter(ctx.values()))
        return f"must be {op} {bound}"
    if kind == "literal_error":
        return f"must be one of {ctx['expected']}"
    if kind == "missing":
        return "required key is missing"
    if kind == "string_pattern_mismatch":
        pattern = ctx.get("pattern", "")
        return f"must be {_PATTERN_HELP.get(pattern, f'text matching {pattern}')}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "must be a whole number"
    if kind in ("float_type", "float_parsing"):
        return "must be a number"
    if kind in ("bool_type", "bool_parsing"):
        return "must be true or false"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "must be a mapping of keys to values"
    if kind == "list_type":
        return "must be a list"
    if kind == "string_type":
        return "must be text"
    if kind == "union_tag_invalid":
        return f"type must be one of {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return "needs a 'type' key (supervised, dpo or reinforcement)"
    if kind in ("ip_v4_network", "ip_any_network"):
        return "must be an IPv4 network like 10.20.0.0/16"
    return str(err["msg"]).removeprefix("Value error, ")


# When one key fails several union members, report the most telling error.
_PRIORITY = (
    "at_path",
    "unknown_key",
    "greater_than_equal",
    "greater_than",
    "less_than_equal",
    "less_than",
    "string_pattern_mismatch",
)


def format_errors(exc: ValidationError, raw: Any, label: str, prefix: str, tree: Any) -> list[str]:
    grouped: dict[str, list[tuple[dict[str, Any], list[str | int]]]] = {}
    for details in exc.errors(include_url=False):
        err: dict[str, Any] = dict(details)
        path = _clean_loc(raw, tuple(err["loc"]))
        ctx = err.get("ctx") or {}
        if err["type"] == "unknown_key":
            path.append(ctx["key"])
        elif err["type"] == "at_path":
            path.extend(ctx["path"].split("."))
        key = ".".join(str(p) for p in path)
        grouped.setdefault(key, []).append((err, path))
    lines = []
    for key, errs in grouped.items():
        errs.sort(
            key=lambda e: _PRIORITY.index(e[0]["type"]) if e[0]["type"] in _PRIORITY else len(_PRIORITY)
        )
        first, path = errs[0]
        message = _message(first)
        also_auto = any(
            e["type"] == "literal_error" and "'auto'" in str(e.get("ctx", {}).get("expected"))
            for e, _ in errs
        )
        if also_auto and first["type"] != "literal_error":
            message += " (or 'auto')"
        where = ".".join(part for part in (prefix, key) if part)
        line = _line_of(tree, path) if tree is not None else None
        suffix = f" (line {line})" if line else ""
        lines.append(f"{label}: {where}: {message}{suffix}")
    return lines


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _stack_tree(root: Path, name: str) -> tuple[Any, str]:
    path = stack_file(root, name)
    label = _relative(path, root)
    if not path.is_file():
        known = ", ".join(environment_names(root)) or "none"
        raise UsageError(f"{label}: no such stack file", fix=f"environments here: {known}")
    return _read_yaml(path, label), label


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


def load_releases(root: Path, name: str) -> dict[str, ReleasePin]:
    path = releases_file(root, name)
    if not path.is_file():
        return {}
    label = _relative(path, root)
    tree = _read_yaml(path, label)
    raw = plain(tree) if tree is not None else {}
    try:
        return dict(Releases.model_validate(raw).releases)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, raw, label, "", tree)) from None


def validate_environment(root: Path, name: str, raw: Any, tree: Any = None) -> Environment:
    """Validate the value of `ftops:environment` for stack `name`, with its release pins."""
    label = _relative(stack_file(root, name), root)
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
    if problems:
        raise ConfigError(problems)
    return env


def _missing_paths(root: Path, env: Environment, label: str, tree: Any) -> list[str]:
    wanted: list[tuple[list[str | int], str]] = []
    for key, model in env.models.items():
        wanted.append((["models", key, "training_file"], model.training_file))
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
        line = _line_of(tree, path)
        suffix = f" (line {line})" if line else ""
        if not target.is_relative_to(resolved_root):
            problems.append(
                f"{label}: {where}: '{value}' is outside the repository; use a path inside it{suffix}"
            )
        elif not target.is_file():
            problems.append(f"{label}: {where}: no such file '{value}'; fix the path or add the file{suffix}")
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


def check_promotion_chain(root: Path, envs: dict[str, Environment], only: str | None = None) -> list[str]:
    """Cross-file rules: promotion sources exist and do not loop, deployments and pins name models
    the source environment has, pins come from the source environment. `only`: check one."""
    problems = []
    for name, env in envs.items():
        if env.promotion is None or (only is not None and name != only):
            continue
        label = _relative(stack_file(root, name), root)
        source = env.promotion.from_
        if source not in envs:
            problems.append(
                f"{label}: {CONFIG_KEY}.promotion.from: no environment '{source}'; "
                f"known: {', '.join(sorted(envs))}"
            )
            continue
        seen = {name}
        cursor: str | None = source
        while cursor is not None and cursor in envs:
            if cursor in seen:
                problems.append(f"{label}: {CONFIG_KEY}.promotion.from: promotion loops through '{cursor}'")
                break
            seen.add(cursor)
            nxt = envs[cursor].promotion
            cursor = nxt.from_ if nxt else None
        available = _served_models(envs[source])
        for key, dep in env.deployments.items():
            if dep.model not in available:
                problems.append(
                    f"{label}: {CONFIG_KEY}.deployments.{key}.model: '{dep.model}' is not a model of "
                    f"'{source}' (has: {', '.join(sorted(available)) or 'none'})"
                )
        rel_label = _relative(releases_file(root, name), root)
        for key, pin in env.releases.items():
            if pin.source_environment != source:
                problems.append(
                    f"{rel_label}: releases.{key}.source_environment: is '{pin.source_environment}' but "
                    f"'{name}' is promoted from '{source}'; promote through each environment in order"
                )
    return problems


def load_all(root: Path, names: list[str] | None = None) -> tuple[dict[str, Environment], list[str]]:
    """Every environment (or the named ones plus their promotion sources) and every problem found."""
    wanted = names or environment_names(root)
    envs: dict[str, Environment] = {}
    problems: list[str] = []
    queue = list(wanted)
    while queue:
        name = queue.pop(0)
        if name in envs or any(p.startswith(f"{ENV_DIR}/Pulumi.{name}.yaml") for p in problems):
            continue
        try:
            envs[name] = load_environment(root, name)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        promo = envs[name].promotion
        if promo and promo.from_ not in envs and stack_file(root, promo.from_).is_file():
            queue.append(promo.from_)
    problems += check_promotion_chain(root, envs)
    return envs, problems


def load_checked(root: Path, name: str) -> Environment:
    """One environment, validated with the environments it is promoted from."""
    envs, problems = load_all(root, [name])
    if problems:
        raise ConfigError(problems)
    return envs[name]
