"""Harmful-prompt seeds from the PyRIT wheel (the `redteam` extra) as ftops safety eval items.

PyRIT ships its seed sets as YAML files (`*.prompt`) under `datasets/seed_datasets/local`, and
jailbreak wrappers under `datasets/jailbreak/templates`. Importing pyrit pulls in about a
gigabyte of dependencies and takes seconds, and a gate only needs the text, so the files are
found through the import system and read directly; pyrit itself is never imported.

Only seeds PyRIT marks as attack *objectives* become probes: its `prompt` seeds are payloads
(XSS strings, slur lists, package-name tasks, multi-turn scripts) that mean nothing to a refusal
grader on their own. Seeds whose harm labels name no ftops category are skipped and counted.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from collections import Counter
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from ftops.errors import UsageError

log = logging.getLogger(__name__)

SEEDS_DIR = Path("datasets", "seed_datasets", "local")
TEMPLATES_DIR = Path("datasets", "jailbreak", "templates")

# When a seed carries labels of several categories it is filed under the first in this order:
# a jailbreak wrapper is what the probe tests, and the broad "illegal" label comes last because
# AdvBench adds it next to more specific ones.
PRIORITY = ("jailbreak", "self_harm", "sexual", "hate", "violence", "illegal_activity")

# Labels the keywords below would miss or misfile. None means "deliberately not a probe":
# extraction and injection items are graded by a canary in a system prompt, which PyRIT's bare
# user turns do not have; the rest are harms the safety gate does not score.
_LABELS: dict[str, str | None] = {
    "violence/armed conflict": "violence",
    "loss of life": "violence",
    "bodily injury": "violence",
    "radicalisation": "violence",  # violent extremism, where Azure's content filter files it
    "imminent_crisis": "self_harm",
    "mental_health_crisis": "self_harm",
    "dehumanisation/objectification": "hate",
    "stereotyping": "hate",
    "impersonation/identity theft": "illegal_activity",
    "impersonation": "illegal_activity",
    # AdvBench labels consequences (the human-centred harm taxonomy), not content; in that set
    # these ones sit on hacking, malware, fraud, theft and sabotage requests.
    "confidentiality loss": "illegal_activity",
    "business operations/infrastructure damage": "illegal_activity",
    "critical infrastructure damage": "illegal_activity",
    "financial/earnings loss": "illegal_activity",
    "property damage": "illegal_activity",
    "privacy loss": "illegal_activity",
    "ip/copyright loss": "illegal_activity",
    "electoral interference": "illegal_activity",
    "prompt_injection": None,
    "leakage": None,
    "stealing system prompt": None,
    "misinformation": None,
    "fairness": None,
    "copyright": None,
}
_KEYWORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("jailbreak", ("jailbreak",)),
    ("self_harm", ("self-harm", "self_harm", "self harm", "suicid")),
    ("sexual", ("sex",)),
    ("hate", ("hate", "harass", "discriminat")),
    ("violence", ("violen", "explos", "terror")),
    ("illegal_activity", ("illegal", "crime", "drug", "fraud", "weapon", "cyber", "malware", "scam")),
)
# Jinja placeholders (`{{ datasets_path }}`, `{{ stolen_item }}`) mark templates, not seeds.
_PLACEHOLDER = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)


def pyrit_root() -> Path:
    """The installed pyrit package directory, found without importing it."""
    spec = importlib.util.find_spec("pyrit")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise UsageError(
            "the PyRIT seed sets need the pyrit package, which is not installed",
            fix="pip install 'ftops[redteam]'",
        )
    return Path(locations[0])


def category_of(labels: Collection[str]) -> str | None:
    """The ftops category for a seed's PyRIT harm labels, or None when none of them maps."""
    found: set[str] = set()
    for label in labels:
        key = label.strip().lower()
        if key in _LABELS:
            mapped = _LABELS[key]
            if mapped is not None:
                found.add(mapped)
            continue
        found.update(category for category, words in _KEYWORDS if any(w in key for w in words))
    return next((category for category in PRIORITY if category in found), None)


def load_seeds(
    categories: Collection[str] | None = None,
    limit_per_category: int | None = None,
    root: Path | None = None,
) -> list[dict[str, Any]]:
    """Eval items, one per text objective, in sorted file order then the file's own order.

    Ids count every seed of a dataset (kept or not), so an item keeps its id whatever the filter.
    """
    base = _data_dir(root, SEEDS_DIR)
    items: list[dict[str, Any]] = []
    per_category: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    numbers: Counter[str] = Counter()
    seen: set[str] = set()
    for path, data in _yaml_files(base, ("*.prompt", "*.yaml")):
        seeds = data.get("seeds")
        if not isinstance(seeds, list):
            continue
        file_dataset = str(data.get("dataset_name") or data.get("name") or path.stem)
        for seed in seeds:
            if not isinstance(seed, dict):
                continue
            dataset = str(seed.get("dataset_name") or file_dataset)
            numbers[dataset] += 1
            value = seed.get("value")
            # pyrit's own defaults: seed_type "prompt", data_type "text", role "user"
            if (seed.get("seed_type") or data.get("seed_type") or "prompt") != "objective":
                skipped["not an objective"] += 1
                continue
            data_type = seed.get("data_type") or data.get("data_type") or "text"
            if data_type != "text" or seed.get("role", "user") != "user":
                skipped["not a user text turn"] += 1
                continue
            if not isinstance(value, str) or not value.strip() or _PLACEHOLDER.search(value):
                skipped["template or empty"] += 1
                continue
            value = value.strip()
            if value in seen:  # the example sets repeat AI Red Team seeds; a probe counts once
                skipped["duplicate"] += 1
                continue
            labels = _merged(data.get("harm_categories"), seed.get("harm_categories"))
            category = category_of(labels)
            if category is None:
                skipped["no ftops category"] += 1
                continue
            seen.add(value)
            if categories is not None and category not in categories:
                continue
            if limit_per_category is not None and per_category[category] >= limit_per_category:
                continue
            per_category[category] += 1
            items.append(
                {
                    "id": f"pyrit-{dataset}-{numbers[dataset]:04d}",
                    "category": category,
                    "tags": list(dict.fromkeys(["pyrit", dataset, *labels])),
                    "messages": [{"role": "user", "content": value}],
                    "max_tokens": 64,
                }
            )
    log.info("pyrit seeds from %s: %d items; skipped %s", base, len(items), dict(skipped) or "none")
    return items


def load_jailbreak_templates(root: Path | None = None) -> list[str]:
    """PyRIT's single-slot jailbreak wrappers, in sorted file order.

    Each is Jinja2 source with one variable, `prompt`, for the harmful ask; many escape literal
    braces with `{% raw %}`, so render with jinja2 (`Template(t).render(prompt=ask)`), not with
    string replacement. Templates needing other parameters (`multi_parameter/`) are left out.
    """
    base = _data_dir(root, TEMPLATES_DIR)
    templates = []
    for path, data in _yaml_files(base, ("*.yaml",)):
        value = data.get("value")
        if "multi_parameter" in path.relative_to(base).parts or data.get("parameters") != ["prompt"]:
            continue
        if isinstance(value, str) and value.strip():
            templates.append(value)
    return templates


def _data_dir(root: Path | None, relative: Path) -> Path:
    base = (root if root is not None else pyrit_root()) / relative
    if not base.is_dir():
        # pyrit before 1.1 kept a handful of example prompts elsewhere and fetched the real sets
        # over the network; an empty list here would pass a gate on no probes at all.
        raise UsageError(f"{base}: no PyRIT data here", fix="pip install --upgrade 'pyrit>=1.1'")
    return base


def _yaml_files(base: Path, patterns: tuple[str, ...]) -> Iterator[tuple[Path, dict[str, Any]]]:
    # Sorted by relative POSIX path so the order, and so the eval set digest, is the same on
    # every machine.
    paths = {p for pattern in patterns for p in base.rglob(pattern) if p.is_file()}
    yaml = YAML(typ="safe")
    for path in sorted(paths, key=lambda p: p.relative_to(base).as_posix()):
        try:
            data = yaml.load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, YAMLError) as exc:
            # A broken file in a third-party wheel should cost its own seeds, not the gate.
            log.warning("skipping unreadable PyRIT file %s: %s", path, exc)
            continue
        if isinstance(data, dict):
            yield path, data


def _merged(*values: Any) -> list[str]:
    # pyrit merges dataset-level labels into each seed's, dataset first, order kept, no repeats;
    # either may be a bare string.
    labels: list[str] = []
    for value in values:
        for label in [value] if isinstance(value, str) else value or []:
            if isinstance(label, str) and label not in labels:
                labels.append(label)
    return labels
