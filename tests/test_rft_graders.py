"""Azure's RFT graders run locally: shapes, templates, each metric against a hand computation,
the python grader's limits, multi's formula (never `eval`), and the gate adapter."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from ftops.errors import UsageError
from ftops.evaluation import rft_graders as rg
from ftops.evaluation.evalset import parse

ITEM = {
    "messages": [{"role": "user", "content": "2+2?"}],
    "answer": "4",
    "meta": {"unit": "kg", "ok": [1, 2]},
}


def check(op: str, inp: str = "{{sample.output_text}}", ref: str = "{{item.answer}}") -> rg.StringCheck:
    return rg.StringCheck(type="string_check", name="c", input=inp, reference=ref, operation=op)


def test_templates_resolve_item_paths_and_sample_json() -> None:
    sample = rg.Sample.of('{"value": 4, "unit": "kg"}')
    assert sample.output_json == {"value": 4, "unit": "kg"}
    assert rg.render("{{ item.answer }}/{{item.meta.unit}}", sample, ITEM) == "4/kg"
    assert rg.render("{{item.meta.ok.1}} {{item.meta}}", sample, ITEM) == '2 {"unit":"kg","ok":[1,2]}'
    assert rg.render("{{sample.output_json.value}}|{{item.missing}}|", sample, ITEM) == "4||"
    assert rg.Sample.of("four").output_json is None


@pytest.mark.parametrize(
    ("op", "answer", "expected"),
    [("eq", "4", 1.0), ("eq", "4 ", 0.0), ("ne", "5", 1.0), ("like", "it is 4", 1.0), ("ilike", "X", 0.0)],
)
def test_string_check(op: str, answer: str, expected: float) -> None:
    assert rg.grade(check(op), rg.Sample.of(answer), ITEM).value == expected


def test_ilike_folds_case_and_like_does_not() -> None:
    item = {**ITEM, "answer": "Paris"}
    assert rg.grade(check("like"), rg.Sample.of("it is paris"), item).value == 0.0
    assert rg.grade(check("ilike"), rg.Sample.of("it is paris"), item).value == 1.0


def test_similarity_metrics_against_hand_computations() -> None:
    # rouge_1 F: hypothesis "the cat sat", reference "the cat sat down": P=3/3, R=3/4, F=2PR/(P+R)=6/7.
    assert rg.similarity("rouge_1", "the cat sat", "the cat sat down") == pytest.approx(6 / 7)
    # rouge_2 F: bigrams hyp {the cat, cat sat}, ref {the cat, cat sat, sat down}: P=1, R=2/3 -> 0.8.
    assert rg.similarity("rouge_2", "the cat sat", "the cat sat down") == pytest.approx(0.8)
    assert rg.similarity("rouge_l", "a b c d", "a b c d") == pytest.approx(1.0)
    assert rg.similarity("fuzzy_match", "hello", "hello") == 1.0
    assert rg.similarity("fuzzy_match", "abc", "xyz") == 0.0
    assert rg.similarity("bleu", "the cat sat on the mat", "the cat sat on the mat") == pytest.approx(1.0)
    # GLEU = min(precision, recall) over 1..4-grams: hyp "a b c" vs ref "a b c d" -> 6 matches of
    # 6 hyp n-grams, 10 ref n-grams: min(6/6, 6/10) = 0.6.
    assert rg.similarity("gleu", "a b c", "a b c d") == pytest.approx(0.6)
    identical = rg.similarity("meteor", "the cat sat on the mat", "the cat sat on the mat")
    assert identical > 0.99
    assert rg.similarity("meteor", "dogs bark", "the cat sat on the mat") == 0.0


def test_text_similarity_grader_renders_before_scoring() -> None:
    grader = rg.parse(
        {
            "type": "text_similarity",
            "name": "t",
            "input": "{{sample.output_text}}",
            "reference": "the cat sat {{item.answer}}",
            "evaluation_metric": "rouge_1",
            "pass_threshold": 0.8,
        }
    )
    assert rg.grade(grader, rg.Sample.of("the cat sat"), {"answer": "down"}).value == pytest.approx(6 / 7)


def test_shapes_refuse_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="operation"):
        rg.parse({"type": "string_check", "input": "a", "reference": "b", "operation": "regex"})
    with pytest.raises(ValidationError, match="extra"):
        rg.parse({"type": "string_check", "input": "a", "reference": "b", "operation": "eq", "x": 1})
    with pytest.raises(ValidationError, match="range"):
        rg.parse(
            {
                "type": "score_model",
                "model": "m",
                "input": [{"role": "user", "content": "x"}],
                "range": [1, 0],
            }
        )
    with pytest.raises(ValidationError, match="source line 2"):
        rg.parse({"type": "python", "source": "def grade(sample, item):\n  return )"})
    with pytest.raises(ValidationError, match="defines no"):
        rg.parse({"type": "python", "source": "x = 1"})
    with pytest.raises(ValidationError, match="256"):
        rg.parse({"type": "python", "source": "def grade(sample, item):\n  return 1\n#" + "x" * 262_144})


def test_multi_formula_is_arithmetic_over_named_graders() -> None:
    grader = rg.parse(
        {
            "type": "multi",
            "graders": {
                "exact": {
                    "type": "string_check",
                    "input": "{{sample.output_text}}",
                    "reference": "{{item.answer}}",
                    "operation": "eq",
                },
                "has": {
                    "type": "string_check",
                    "input": "{{sample.output_text}}",
                    "reference": "{{item.answer}}",
                    "operation": "like",
                },
            },
            "calculate_output": "0.25 * exact + 0.75 * has ^ 2 + min(exact, 0)",
        }
    )
    score = rg.grade(grader, rg.Sample.of("it is 4"), ITEM)
    assert score.value == pytest.approx(0.75)
    assert score.by_grader == {"exact": 0.0, "has": 1.0}
    assert rg.calculate("sqrt(a) + floor(2.7) - -b / 2", {"a": 9.0, "b": 1.0}) == pytest.approx(5.5)
    with pytest.raises(ValueError, match="not"):
        rg.formula_names("__import__('os').system('true')")
    with pytest.raises(ValueError, match="not"):
        rg.formula_names("a.__class__")
    with pytest.raises(ValidationError, match="uses zz"):
        rg.parse(
            {
                "type": "multi",
                "graders": {"a": {"type": "python", "source": "def grade(s, i):\n return 1"}},
                "calculate_output": "a + zz",
            }
        )


PY = """
import json
def grade(sample, item):
    text = sample["output_text"].strip()
    return 1.0 if text == item["answer"] else len(set(text) & set("0123456789")) / 10
"""


def test_python_grader_runs_in_a_subprocess_in_one_batch() -> None:
    grader = rg.parse({"type": "python", "name": "p", "source": PY})
    scores = rg.grade_batch(
        grader, [(rg.Sample.of("4"), ITEM), (rg.Sample.of("12"), ITEM), (rg.Sample.of("no"), ITEM)]
    )
    assert [s.value for s in scores] == [1.0, 0.2, 0.0]


def test_python_grader_has_no_network_nor_processes_and_errors_score_zero() -> None:
    source = """
def grade(sample, item):
    kind = item["kind"]
    if kind == "net":
        import socket
        socket.create_connection(("127.0.0.1", 9))
    if kind == "proc":
        import subprocess
        subprocess.run(["true"])
    if kind == "raise":
        raise KeyError("boom")
    return 0.5
"""
    grader = rg.parse({"type": "python", "name": "p", "source": source})
    scores = rg.grade_batch(
        grader, [(rg.Sample.of("x"), {"kind": k}) for k in ("net", "proc", "raise", "ok")]
    )
    assert [s.value for s in scores] == [0.0, 0.0, 0.0, 0.5]
    assert "no network" in scores[0].error
    assert "no network" in scores[1].error
    assert "KeyError" in scores[2].error


def test_python_grader_time_limit() -> None:
    grader = rg.Python(type="python", name="slow", source="def grade(s, i):\n    while True: pass")
    scores = rg.run_python(grader, [(rg.Sample.of("x"), {})], timeout=1.0)
    assert scores[0].value == 0.0
    assert "ran over 1 s" in scores[0].error


def test_score_model_parses_and_clamps_the_grader_models_number() -> None:
    grader = rg.parse(
        {
            "type": "score_model",
            "name": "judge",
            "model": "grader-deployment",
            "input": [{"role": "user", "content": "Answer {{sample.output_text}}; expected {{item.answer}}"}],
            "range": [0, 10],
            "pass_threshold": 7,
            "sampling_params": {"temperature": 0, "seed": 1},
        }
    )
    seen: list[tuple[str, list[dict[str, str]], dict[str, object]]] = []

    def judge(model: str, messages: list[dict[str, str]], params: dict[str, object]) -> str:
        seen.append((model, messages, params))
        return "Score: 12"

    assert rg.grade(grader, rg.Sample.of("4"), ITEM, judge).value == 10.0
    assert seen == [
        (
            "grader-deployment",
            [{"role": "user", "content": "Answer 4; expected 4"}],
            {"temperature": 0.0, "seed": 1},
        )
    ]
    assert rg.grade(grader, rg.Sample.of("4"), ITEM, lambda *_: "no idea").error.startswith(
        "the grader model"
    )
    with pytest.raises(UsageError, match="grader-deployment"):
        rg.grade(grader, rg.Sample.of("4"), ITEM)
    assert rg.pass_threshold(grader) == 7


def test_references_and_their_problems() -> None:
    grader = rg.parse(
        {
            "type": "string_check",
            "input": "{{sample.output_text}}",
            "reference": "{{ item.answr }}",
            "operation": "eq",
        }
    )
    assert rg.references(grader) == ["sample.output_text", "item.answr"]
    assert rg.reference_problem("item.answr", ITEM) == (
        "{{item.answr}}: the data has no field 'answr' (it has answer, messages, meta)"
    )
    assert rg.reference_problem("sample.output_txt", ITEM) is not None
    assert rg.reference_problem("sample.output_json.x", ITEM) is None


def test_digest_changes_with_the_source_and_ignores_key_order() -> None:
    one = rg.parse({"type": "python", "source": "def grade(s, i):\n    return 1", "name": "p"})
    same = rg.parse({"name": "p", "source": "def grade(s, i):\n    return 1", "type": "python"})
    edited = rg.parse({"type": "python", "source": "def grade(s, i):\n    return 0", "name": "p"})
    assert rg.digest(one) == rg.digest(same) != rg.digest(edited)
    assert rg.canonical(one) == {"type": "python", "source": "def grade(s, i):\n    return 1", "name": "p"}


def test_gate_grader_grades_rft_shaped_eval_items() -> None:
    data = b'{"messages":[{"role":"user","content":"2+2?"}],"answer":"4"}\n'
    item = parse(data, "set.jsonl", fields=True).items[0]
    assert item.fields["answer"] == "4"
    gate = rg.GateGrader(check("eq"), None)
    assert gate.grade("4", item).passed
    assert not gate.grade("5", item).passed
    assert gate.version.startswith("azure+")
    assert math.isclose(gate.grade("4", item).score, 1.0)


def test_gate_grader_grades_a_set_in_one_batch() -> None:
    data = b"".join(b'{"messages":[{"role":"user","content":"?"}],"answer":"%d"}\n' % n for n in (4, 12))
    items = parse(data, "set.jsonl", fields=True).items
    gate = rg.GateGrader(rg.parse({"type": "python", "name": "p", "source": PY}), 0.5)
    grades = gate.grade_many([("4", items[0]), ("12", items[1]), ("x12", items[0])])
    assert [(g.passed, g.score) for g in grades] == [(True, 1.0), (True, 1.0), (False, 0.2)]
    assert grades[2].detail == "score 0.200 < 0.5"
