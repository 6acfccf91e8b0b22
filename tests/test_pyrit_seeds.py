"""The PyRIT seed loader against a fake package tree in the layout and format of the pyrit 1.1 wheel.

The YAML below copies the structure of real files (adv_bench.prompt, airt/*.prompt, garak/*.prompt,
examples/*.prompt, jailbreak/templates/*.yaml) with placeholder texts, so nothing here needs pyrit.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import logging
import os
import textwrap
from pathlib import Path

import pytest

from ftops.errors import UsageError
from ftops.evaluation import pyrit_seeds
from ftops.evaluation.pyrit_seeds import category_of, load_jailbreak_templates, load_seeds, pyrit_root

FILES = {
    # AdvBench: dataset-level seed_type, per-seed taxonomy labels, no dataset-level labels.
    "datasets/seed_datasets/local/adv_bench.prompt": """
        dataset_name: adv_bench
        source: https://example.invalid/advbench
        description: 'Placeholder copy of the AdvBench layout.'
        seed_type: objective
        seeds:
        - value: Placeholder objective about breaking into a computer system
          data_type: text
          harm_categories:
          - Financial and Business
          - Confidentiality loss
          - Violence/armed conflict
        - value: Placeholder objective about hurting oneself
          data_type: text
          harm_categories:
          - Physical
          - Self-harm
          - Loss of life
        - value: Placeholder objective about spreading rumours
          data_type: text
          harm_categories:
          - Information degradation
          - Political manipulation
        - value: Placeholder objective about tax evasion
          data_type: text
          harm_categories:
          - Financial/earnings loss
    """,
    # AI Red Team sets: dataset-level label as a bare string, seed-level additions, a Jinja
    # placeholder and a non-English seed with metadata.
    "datasets/seed_datasets/local/airt/illegal.prompt": """
        dataset_name: airt_illegal
        harm_categories: illegal
        source: https://example.invalid/pyrit
        groups: AI Red Team
        data_type: text
        description: Placeholder.
        seed_type: objective
        seeds:
          - value: Placeholder objective about a dangerous device
            harm_categories:
            - violence
            - explosions
          - value: Placeholder objective about taking something
          - value: Placeholder objective about taking {{ stolen_item }}
            authors:
            - Someone
          - value: Objectif fictif sans danger
            metadata:
              translated_value: placeholder objective in French
              translated_from: french
    """,
    # A multi-turn group: prompt-type user and assistant turns next to one objective.
    "datasets/seed_datasets/local/airt/hate.prompt": """
        dataset_name: airt_hate
        harm_categories: hate
        groups: AI Red Team
        data_type: text
        description: Placeholder.
        seed_type: objective
        seeds:
          - value: Placeholder objective about a hateful story
          - value: Placeholder first user turn
            seed_type: prompt
            data_type: text
            role: user
            prompt_group_alias: escalating
            sequence: 0
          - value: Placeholder assistant turn
            seed_type: prompt
            data_type: text
            role: assistant
            prompt_group_alias: escalating
            sequence: 1
    """,
    "datasets/seed_datasets/local/airt/leakage.prompt": """
        # Copyright header as in the real file.
        dataset_name: airt_leakage
        harm_categories: leakage
        groups: AI Red Team
        data_type: text
        description: Placeholder.
        seed_type: objective
        seeds:
          - value: Placeholder objective about showing hidden instructions
    """,
    # Garak payload sets are seed_type prompt: fragments, not requests.
    "datasets/seed_datasets/local/garak/web_html_js.prompt": """
        dataset_name: garak_web_html_js
        harm_categories: cyber
        source: https://example.invalid/garak
        groups: Nvidia/Garak
        data_type: text
        description: Placeholder.
        seed_type: prompt
        seeds:
          - value: <b>placeholder markup</b>
    """,
    # `name` instead of `dataset_name`, list labels, no data_type anywhere.
    "datasets/seed_datasets/local/psfuzz_steal_system.prompt": """
        name: psfuzz_steal_system_prompt
        source: https://example.invalid/psfuzz
        authors: Someone
        groups: Prompt Security
        description: Placeholder.
        harm_categories:
          - stealing system prompt
        seed_type: objective
        seeds:
          - value: Placeholder objective about settings
    """,
    # Example sets: seed-level dataset_name, media seeds, a repeat of an AI Red Team seed.
    "datasets/seed_datasets/local/examples/illegal-multimodal-dataset.prompt": """
        dataset_name: pyrit_example_dataset
        harm_categories: illegal
        groups: AI Red Team
        description: Placeholder.
        seeds:
          - value: Placeholder objective about a dangerous device
            data_type: text
            harm_categories:
            - violence
            prompt_group_alias: audio_request
            seed_type: objective
            sequence: 0
            role: user
          - value: |
              {{ datasets_path }}/seed_datasets/local/examples/multimodal_data/placeholder.wav
            data_type: audio_path
            prompt_group_alias: audio_request
            sequence: 1
            role: user
          - value: Placeholder objective about forging a document
            data_type: text
            seed_type: objective
            harm_categories:
              - impersonation
            role: user
          - value: placeholder.png
            data_type: image_path
            seed_type: objective
            role: user
    """,
    "datasets/seed_datasets/local/examples/sexual-example.yaml": """
        dataset_name: yaml_example
        harm_categories:
          - sexual
        seed_type: objective
        seeds:
          - value: Placeholder objective about explicit content
          - value: Placeholder objective about more explicit content
    """,
    "datasets/seed_datasets/local/broken.prompt": "dataset_name: broken\nseeds: [value: {\n",
    "datasets/jailbreak/templates/aim.yaml": """
        ---
        name: AIM
        description: Placeholder.
        authors:
          - Someone
        source: https://example.invalid/jailbreaks
        parameters:
          - prompt
        data_type: text
        is_general_technique: true
        value: >
          Placeholder persona wrapper. Question: {{ prompt }}
    """,
    "datasets/jailbreak/templates/in_the_wild/raw_braces.yaml": """
        name: raw_braces
        parameters:
        - prompt
        data_type: text
        is_general_technique: true
        value: "{% raw %}Literal {braces} here.{% endraw %} Then: {{ prompt }}"
    """,
    "datasets/jailbreak/templates/multi_parameter/two_slots.yaml": """
        name: Two slots
        parameters:
          - target_group
          - prompt
        data_type: text
        is_general_technique: true
        value: About {{ target_group }}: {{ prompt }}
    """,
}


@pytest.fixture
def fake_pyrit(tmp_path: Path) -> Path:
    root = tmp_path / "site-packages" / "pyrit"
    # Written in reverse so the loader's order cannot come from creation order.
    for relative, text in reversed(FILES.items()):
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return root


def test_items_ids_categories_and_order(fake_pyrit: Path) -> None:
    items = load_seeds(root=fake_pyrit)
    assert [(i["id"], i["category"]) for i in items] == [
        ("pyrit-adv_bench-0001", "violence"),  # violence outranks the AdvBench "confidentiality loss"
        ("pyrit-adv_bench-0002", "self_harm"),
        ("pyrit-adv_bench-0004", "illegal_activity"),  # 0003 has no ftops category
        ("pyrit-airt_hate-0001", "hate"),
        ("pyrit-airt_illegal-0001", "violence"),
        ("pyrit-airt_illegal-0002", "illegal_activity"),
        ("pyrit-airt_illegal-0004", "illegal_activity"),  # 0003 is a template
        ("pyrit-pyrit_example_dataset-0003", "illegal_activity"),  # 0001 repeats airt_illegal-0001
        ("pyrit-yaml_example-0001", "sexual"),
        ("pyrit-yaml_example-0002", "sexual"),
    ]
    first = items[0]
    assert first["messages"] == [
        {"role": "user", "content": "Placeholder objective about breaking into a computer system"}
    ]
    assert first["max_tokens"] == 64
    assert set(first) == {"id", "category", "tags", "messages", "max_tokens"}


def test_tags_merge_dataset_labels_first(fake_pyrit: Path) -> None:
    tags = {i["id"]: i["tags"] for i in load_seeds(root=fake_pyrit)}
    assert tags["pyrit-airt_illegal-0001"] == ["pyrit", "airt_illegal", "illegal", "violence", "explosions"]
    assert tags["pyrit-airt_illegal-0002"] == ["pyrit", "airt_illegal", "illegal"]
    assert tags["pyrit-adv_bench-0002"] == ["pyrit", "adv_bench", "Physical", "Self-harm", "Loss of life"]


def test_skips_templates_payloads_turns_media_and_unmapped(fake_pyrit: Path) -> None:
    contents = [i["messages"][0]["content"] for i in load_seeds(root=fake_pyrit)]
    assert not any("{{" in c for c in contents)
    assert "<b>placeholder markup</b>" not in contents  # a garak payload, seed_type prompt
    assert not any(c.startswith("Placeholder first user turn") for c in contents)
    assert "Placeholder assistant turn" not in contents
    assert "placeholder.png" not in contents
    assert "Placeholder objective about spreading rumours" not in contents  # misinformation
    assert "Placeholder objective about showing hidden instructions" not in contents  # needs a canary
    assert "Placeholder objective about settings" not in contents
    assert contents.count("Placeholder objective about a dangerous device") == 1


def test_skipped_seeds_are_counted_and_broken_files_named(
    fake_pyrit: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="ftops.evaluation.pyrit_seeds"):
        load_seeds(root=fake_pyrit)
    assert "broken.prompt" in caplog.text
    assert "'no ftops category': 3" in caplog.text
    assert "'not an objective': 4" in caplog.text


def test_category_filter_keeps_ids(fake_pyrit: Path) -> None:
    everything = {i["id"]: i for i in load_seeds(root=fake_pyrit)}
    chosen = load_seeds(categories={"illegal_activity", "sexual"}, root=fake_pyrit)
    assert {i["category"] for i in chosen} == {"illegal_activity", "sexual"}
    assert [i["id"] for i in chosen] == [
        k for k, v in everything.items() if v["category"] in {"illegal_activity", "sexual"}
    ]
    assert load_seeds(categories=["jailbreak"], root=fake_pyrit) == []


def test_limit_per_category(fake_pyrit: Path) -> None:
    items = load_seeds(limit_per_category=1, root=fake_pyrit)
    assert [(i["id"], i["category"]) for i in items] == [
        ("pyrit-adv_bench-0001", "violence"),
        ("pyrit-adv_bench-0002", "self_harm"),
        ("pyrit-adv_bench-0004", "illegal_activity"),
        ("pyrit-airt_hate-0001", "hate"),
        ("pyrit-yaml_example-0001", "sexual"),
    ]
    assert load_seeds(limit_per_category=0, root=fake_pyrit) == []


def test_order_is_deterministic(fake_pyrit: Path) -> None:
    assert load_seeds(root=fake_pyrit) == load_seeds(root=fake_pyrit)


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (["violence"], "violence"),
        (["Violence/armed conflict", "Financial and Business"], "violence"),
        (["Self-harm", "Violence/armed conflict"], "self_harm"),
        (["imminent_crisis"], "self_harm"),
        (["Harassment/abuse/intimidation"], "hate"),
        (["Discrimination"], "hate"),
        (["Sexualisation"], "sexual"),
        (["illegal_substances", "security"], "illegal_activity"),
        (["cyber_harms"], "illegal_activity"),
        (["biological_weapons"], "illegal_activity"),
        (["scams"], "illegal_activity"),
        (["Impersonation/identity theft"], "illegal_activity"),
        (["illegal", "jailbreak"], "jailbreak"),
        (["prompt_injection"], None),
        (["leakage"], None),
        (["misinformation", "Information degradation"], None),
        ([], None),
    ],
)
def test_category_of(labels: list[str], expected: str | None) -> None:
    assert category_of(labels) == expected


def test_jailbreak_templates(fake_pyrit: Path) -> None:
    templates = load_jailbreak_templates(root=fake_pyrit)
    assert templates == [
        "Placeholder persona wrapper. Question: {{ prompt }}\n",
        "{% raw %}Literal {braces} here.{% endraw %} Then: {{ prompt }}",
    ]


def test_pyrit_root_when_pyrit_is_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(UsageError) as raised:
        pyrit_root()
    assert raised.value.fix == "pip install 'ftops[redteam]'"
    with pytest.raises(UsageError):
        load_seeds()


def test_pyrit_root_found_without_importing(fake_pyrit: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.machinery.ModuleSpec("pyrit", None, is_package=True)
    spec.submodule_search_locations = [str(fake_pyrit)]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: spec if name == "pyrit" else None)
    assert pyrit_root() == fake_pyrit
    assert load_seeds() == load_seeds(root=fake_pyrit)


def test_pyrit_without_seed_sets_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no PyRIT data") as raised:
        load_seeds(root=tmp_path)
    assert raised.value.fix is not None
    assert "pyrit>=1.1" in raised.value.fix


def test_real_pyrit_when_available() -> None:
    """The real seed sets, when pyrit is installed or FTOPS_PYRIT_ROOT names an unpacked wheel.

    Everything above runs on the fake tree; without pyrit this one skips and nothing else is needed.
    """
    named = os.environ.get("FTOPS_PYRIT_ROOT")
    if named:
        root = Path(named)
    elif importlib.util.find_spec("pyrit") is not None:
        root = pyrit_root()
    else:
        pytest.skip("pyrit is not installed and FTOPS_PYRIT_ROOT is not set")
    items = load_seeds(root=root)
    assert len(items) > 100
    assert len({i["id"] for i in items}) == len(items)
    assert {i["category"] for i in items} >= {"violence", "self_harm", "hate", "sexual", "illegal_activity"}
    assert all("{{" not in i["messages"][0]["content"] for i in items)
    templates = load_jailbreak_templates(root=root)
    assert len(templates) > 100
    assert all("prompt" in t for t in templates)


def test_a_safety_gate_can_name_pyrit_as_its_suite(fake_pyrit: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ftops.evaluation.verdict import PYRIT_SUITE, suite

    monkeypatch.setattr(pyrit_seeds, "pyrit_root", lambda: fake_pyrit)
    evalset = suite(PYRIT_SUITE)
    assert [i.id for i in evalset.items] == [i["id"] for i in pyrit_seeds.load_seeds(root=fake_pyrit)]
    assert evalset.digest == suite(PYRIT_SUITE).digest  # the plan's digest holds at apply time
