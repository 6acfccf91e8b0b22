"""Release pins in `environments/releases/<env>.yaml`, read and written with their comments and
key order kept (ruamel.yaml round trip), so a promotion or rollback PR is a minimal diff."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from ftops.config import ReleasePin
from ftops.config_load import releases_file
from ftops.errors import ConfigError

PIN_ORDER = (
    "model",
    "source_account",
    "source_environment",
    "job",
    "data_digest",
    "evidence_digest",
    "source_commit",
)


def _yaml() -> YAML:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096  # ARM ids and model ids stay on one line
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def parse_pins(text: str, label: str) -> dict[str, ReleasePin]:
    try:
        data = YAML(typ="safe").load(text) or {}
        return {k: ReleasePin.model_validate(v) for k, v in (data.get("releases") or {}).items()}
    except Exception as exc:
        raise ConfigError([f"{label}: not a valid release file ({str(exc).splitlines()[0]})"]) from None


def read_pins(root: Path, env: str) -> dict[str, ReleasePin]:
    path = releases_file(root, env)
    if not path.exists():
        return {}
    return parse_pins(path.read_text(encoding="utf-8"), str(path.relative_to(root)))


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
    entry = releases.get(key)
    if entry is None:
        releases[key] = CommentedMap((k, values[k]) for k in PIN_ORDER)
    else:
        for k in PIN_ORDER:
            entry[k] = values[k]  # in place: comments on the entry's lines stay
    out = io.StringIO()
    yaml.dump(doc, out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(out.getvalue(), encoding="utf-8")
    tmp.replace(path)  # never a half-written pin file
    return path
