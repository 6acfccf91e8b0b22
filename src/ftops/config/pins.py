"""Release pins: `environments/releases/<env>.yaml`, the one place they are read and written.

Every reader (the environment loader, promotion and rollback, `ftops status`, the PR comment's
deltas, and the job provider before it deletes a model) goes through `parse_pins`, so a pin is
validated the same way everywhere and a bad one names its file, key and line. Writing keeps the
file's comments and key order (ruamel.yaml round trip), so a promotion or rollback PR is a
minimal diff.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from ftops.config.schema import ReleasePin, Releases
from ftops.config.yamlfiles import format_errors, parse_yaml, plain, relative_label, releases_file
from ftops.errors import ConfigError, PinsUnreadableError

PIN_ORDER = (
    "model",
    "source_account",
    "source_environment",
    "job",
    "data_digest",
    "evidence_digest",
    "source_commit",
    "checkpoint",  # only when a checkpoint, not the final model, is pinned
)


def parse_pins(text: str, label: str) -> dict[str, ReleasePin]:
    """The pins in a release file's text; every problem names `label`, the key and the line."""
    tree = parse_yaml(text, label)
    raw = plain(tree) if tree is not None else {}
    try:
        return dict(Releases.model_validate(raw).releases)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, raw, label, "", tree)) from None


def load_releases(root: Path, env: str) -> dict[str, ReleasePin]:
    """An environment's pins ({} when it has no release file)."""
    path = releases_file(root, env)
    if not path.is_file():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError([f"{relative_label(path, root)}: not UTF-8 text; re-save it as UTF-8"]) from None
    return parse_pins(text, relative_label(path, root))


def releases_dir(path: str) -> Path:
    """`path` as given, or relative to the repository (FTOPS_ROOT, or the first directory up from
    here holding a Pulumi.yaml: a provider runs wherever `pulumi` was started)."""
    candidate = Path(path)
    if candidate.is_absolute():
        if candidate.is_dir():
            return candidate
        raise PinsUnreadableError(f"{candidate} is not a directory")
    here = Path.cwd()
    roots = [Path(os.environ["FTOPS_ROOT"])] if os.environ.get("FTOPS_ROOT") else []
    roots += [d for d in (here, *here.parents) if (d / "Pulumi.yaml").is_file()]
    for root in roots:
        if (root / candidate).is_dir():
            return root / candidate
    raise PinsUnreadableError(f"no {path} under {here} or the repository above it (set FTOPS_ROOT)")


def pinned_models(path: str) -> list[str]:
    """Every model id any environment's release pin references, read when a provider is about to
    delete a model (not from state: a model promoted since the last `up` is protected too).
    Raises PinsUnreadableError when any release file cannot be read or validated: not being
    able to read them means not deleting."""
    if not path:
        raise PinsUnreadableError("the resource does not say where the release pins are (releases_dir)")
    models: list[str] = []
    for file in sorted(releases_dir(path).glob("*.yaml")):
        try:
            pins = parse_pins(file.read_text(encoding="utf-8"), str(file))
        except (ConfigError, OSError, UnicodeDecodeError) as exc:
            reason = exc.one_line() if isinstance(exc, ConfigError) else str(exc)
            raise PinsUnreadableError(f"{file}: {reason}") from None
        models += [pin.model for pin in pins.values()]
        models += [pin.checkpoint for pin in pins.values() if pin.checkpoint]
    return models


def _yaml() -> YAML:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096  # ARM ids and model ids stay on one line
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def write_pin(root: Path, env: str, key: str, pin: ReleasePin) -> Path:
    """Set `releases.<key>` to `pin`, keeping everything else in the file as it was."""
    path = releases_file(root, env)
    yaml = _yaml()
    if path.exists():
        doc = yaml.load(path.read_text(encoding="utf-8")) or CommentedMap()
    else:
        doc = CommentedMap()
        doc.yaml_set_start_comment(
            f"Release pins for {env}. Written by `ftops promote`, restored by `ftops rollback`;\n"
            "change them only by pull request."
        )
    releases = doc.get("releases")
    if releases is None:
        releases = doc["releases"] = CommentedMap()
    values: dict[str, Any] = pin.model_dump(mode="json")
    keys = [k for k in PIN_ORDER if values.get(k) is not None]
    entry = releases.get(key)
    if entry is None:
        releases[key] = CommentedMap((k, values[k]) for k in keys)
    else:
        for k in keys:
            entry[k] = values[k]  # in place: comments on the entry's lines stay
        for k in set(PIN_ORDER) - set(keys):
            entry.pop(k, None)
    out = io.StringIO()
    yaml.dump(doc, out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(out.getvalue(), encoding="utf-8")
    tmp.replace(path)  # never a half-written pin file
    return path
