"""The release pins of every environment, read when a provider is about to delete a model.

Reading them at delete time (not from state) means a model promoted since the last `up` is
protected too; not being able to read them means not deleting.
"""

from __future__ import annotations

import os
from pathlib import Path

from ruamel.yaml import YAML


class PinsUnreadableError(Exception):
    pass


def releases_dir(path: str) -> Path:
    """`path` as given, or relative to the repository (FTOPS_ROOT, or the first directory up from
    here holding a Pulumi.yaml: the provider runs wherever `pulumi` was started)."""
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
    """Every model id a release pin references; raises when any release file cannot be read."""
    if not path:
        raise PinsUnreadableError("the resource does not say where the release pins are (releases_dir)")
    models: list[str] = []
    yaml = YAML(typ="safe")
    for file in sorted(releases_dir(path).glob("*.yaml")):
        try:
            data = yaml.load(file.read_text(encoding="utf-8")) or {}
            pins = data.get("releases") or {}
            models += [str(pin["model"]) for pin in pins.values()]
        except Exception as exc:  # any unreadable pin file means: do not delete
            raise PinsUnreadableError(f"{file}: {exc}") from None
    return models
