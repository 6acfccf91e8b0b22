"""Where an environment's files are, and reading them as YAML with line numbers.

Every problem becomes one line naming the file, the key path and what is allowed, e.g.

    environments/Pulumi.prod.yaml: ftops:environment.deployments.support-bot.sku.capacity: must be >= 1
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

from ftops.errors import ConfigError

CONFIG_KEY = "ftops:environment"
ENV_DIR = "environments"

_PATTERN_HELP = {
    r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$": "2-32 lowercase letters, digits or '-', starting with a letter",
    r"^sha256:[0-9a-f]{64}$": "'sha256:' and 64 lowercase hex digits",
    r"^[a-z][a-z0-9]{1,9}$": "2-10 lowercase letters or digits, starting with a letter",
    r"^[a-z0-9][a-z0-9-]{0,9}$": "1-10 lowercase letters, digits or '-' (ftops appends the spec hash)",
    r"^ftjob-[0-9a-f]{32}$": "'ftjob-' and 32 hex digits",
    r"^[0-9a-f]{7,40}$": "a git commit sha (7-40 hex digits)",
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$": "a GUID in lowercase, like "
    "00000000-0000-0000-0000-000000000000",
}


def stack_file(root: Path, name: str) -> Path:
    return root / ENV_DIR / f"Pulumi.{name}.yaml"


RELEASES_DIR = f"{ENV_DIR}/releases"


def releases_file(root: Path, name: str) -> Path:
    return root / RELEASES_DIR / f"{name}.yaml"


def environment_names(root: Path) -> list[str]:
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in (root / ENV_DIR).glob("Pulumi.*.yaml"))


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    return yaml


def read_yaml(path: Path, label: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError([f"{label}: not UTF-8 text; re-save it as UTF-8"]) from None
    return parse_yaml(text, label)


def parse_yaml(text: str, label: str) -> Any:
    """YAML text (a file, or a file at a git revision) as a tree that keeps line numbers."""
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


def line_of(tree: Any, path: Iterable[str | int]) -> int | None:
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
        line = line_of(tree, path) if tree is not None else None
        suffix = f" (line {line})" if line else ""
        lines.append(f"{label}: {where}: {message}{suffix}")
    return lines


def relative_label(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
