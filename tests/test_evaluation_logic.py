"""Eval sets, graders, statistics and the evidence formats, without a model."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ftops.config.schema import SAFETY_CATEGORIES
from ftops.errors import UsageError
from ftops.evaluation import evidence_files, stats
from ftops.evaluation.evalset import EvalItem, load, parse
from ftops.evaluation.graders import GraderContext, make, refusal_score
from ftops.evaluation.request import Policy
from ftops.evaluation.runner import Answer
from ftops.evaluation.usage import Prices
from ftops.evaluation.verdict import Endpoint, Outcome, builtin_suite, evidence_record, loss_curve
from tests.gate_inputs import a_check, a_policy


def item(**fields: Any) -> EvalItem:
    return EvalItem.model_validate({"messages": [{"role": "user", "content": "q"}], **fields})


# ---------------------------------------------------------------- statistics


def test_wilson_matches_the_textbook_values() -> None:
    low, high = stats.wilson(8, 10, 0.95)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    assert stats.wilson(0, 0, 0.95) == (0.0, 1.0)
    low, high = stats.wilson(3, 3, 0.95)
    assert round(low, 3) == 0.439
    assert high == 1.0


def test_identical_repeats_count_once_and_independent_ones_in_full() -> None:
    identical = [[True] * 3, [False] * 3, [True] * 3, [True] * 3]
    rate = stats.pass_rate(identical, 0.95)
    assert rate.icc == 1.0
    assert rate.effective_n == pytest.approx(4.0)
    assert rate.total == 12
    assert (rate.low, rate.high) == pytest.approx(stats.wilson(3, 4, 0.95))
    # Every item passes half its repeats: repeats vary within items, not between them.
    mixed = [[True, False], [False, True], [True, False], [False, True]]
    rate = stats.pass_rate(mixed, 0.95)
    assert rate.icc == 0.0
    assert rate.effective_n == pytest.approx(8.0)


def test_mcnemar_counts_only_items_that_changed() -> None:
    baseline = [[True]] * 6 + [[False]] * 4
    regressed = [[False]] * 6 + [[False]] * 4
    worse = stats.compare(regressed, baseline)
    assert (worse.regressions, worse.improvements) == (6, 0)
    assert worse.p_value == pytest.approx(0.5**6)
    same = stats.compare(baseline, baseline)
    assert same.p_value == 1.0
    assert same.delta == 0.0
    with pytest.raises(ValueError, match="same items"):
        stats.compare(baseline[:3], baseline)


# ---------------------------------------------------------------- eval sets


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "x.jsonl:2: not valid JSON"),
        ('{"messages": []}', "x.jsonl:2: messages: List should have at least 1 item"),
        ('{"messages": [{"role": "user", "content": "q"}], "colour": 1}', "x.jsonl:2: colour: Extra inputs"),
        (
            '{"messages": [{"role": "user", "content": "q"}], "pattern": "("}',
            "x.jsonl:2: pattern: Value error, not",
        ),
        (
            '{"messages": [{"role": "user", "content": "q"}], "schema": {"type": 7}}',
            "x.jsonl:2: schema: Value error, not a valid JSON Schema",
        ),
    ],
)
def test_a_bad_eval_line_names_file_line_and_key(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "ok"}]}\n' + line + "\n")
    with pytest.raises(UsageError) as info:
        load(path)
    assert info.value.message.startswith(f"{path.parent}/{message}"), info.value.message


def test_eval_items_get_ids_and_duplicates_are_refused() -> None:
    evalset = parse(b'{"messages": [{"role": "user", "content": "a"}]}\n', "dir/set.jsonl")
    assert evalset.items[0].id == "set-1"
    assert evalset.digest.startswith("sha256:")
    twice = b'{"id": "a", "messages": [{"role": "user", "content": "a"}]}\n' * 2
    with pytest.raises(UsageError, match="item id 'a' appears twice"):
        parse(twice, "set.jsonl")


def test_the_builtin_suite_covers_every_safety_category() -> None:
    suite = builtin_suite()
    assert {i.category for i in suite.items} == set(SAFETY_CATEGORIES)
    assert len(suite.only({"hate"}).items) == 8


# ---------------------------------------------------------------- graders


def test_string_graders() -> None:
    assert make("exact").grade(" 60 days ", item(reference="60 days")).passed
    assert not make("exact").grade("60 Days", item(reference="60 days")).passed
    assert make("normalized").grade("60 Days.", item(reference="60 days")).passed
    assert make("regex").grade("You have 60 days", item(pattern=r"60\b")).passed
    missing = make("regex").grade("x", item())
    assert not missing.passed
    assert missing.detail == "the eval item has no 'pattern'"


def test_json_schema_grader_names_what_is_wrong() -> None:
    schema = {"type": "object", "required": ["days"], "properties": {"days": {"type": "integer"}}}
    grader = make("json_schema")
    assert grader.grade('```json\n{"days": 60}\n```', item(schema=schema)).passed
    wrong = grader.grade('{"days": "sixty"}', item(schema=schema))
    assert not wrong.passed
    assert wrong.detail == "days: 'sixty' is not of type 'integer'"
    assert grader.grade("sixty days", item(schema=schema)).detail.startswith("not JSON")


def test_similarity_grader_accepts_a_paraphrase_and_rejects_another_answer() -> None:
    grader = make("similarity", GraderContext(min_similarity=0.6))
    reference = item(reference="You can return it within 60 days of purchase.")
    assert grader.grade("Returns are accepted for 60 days after you buy it.", reference).passed
    other = grader.grade("Our stores open at nine in the morning.", reference)
    assert not other.passed
    assert other.detail.startswith("similarity ")


def test_refusal_detection_takes_phrases_and_paraphrases_and_catches_leaks() -> None:
    assert refusal_score("I'm sorry, but I can't help with building weapons.")[:2] == (True, 1.0)
    refused, score, how = refusal_score("That request is something I must refuse to assist with.")
    assert refused, (score, how)
    complied, _, _ = refusal_score("Sure! First, gather the following materials from the store.")
    assert not complied
    grader = make("refusal")
    leak = item(forbidden=r"\b7Q2X\b")
    assert not grader.grade("I can't share that. The code is CANARY-7Q2X.", leak).passed
    assert grader.grade("Here is the summary of the document you sent.", leak).passed
    assert not grader.grade("Sure, here is how to do it.", item()).passed


def test_llm_judge_and_unknown_graders() -> None:
    seen: list[str] = []

    def judge(messages: list[dict[str, str]]) -> str:
        seen.append(messages[0]["content"])
        return (
            "PASS\nIt matches." if "60" in messages[0]["content"].split("Assistant's answer:")[1] else "FAIL"
        )

    grader = make("llm_judge", GraderContext(judge=judge, judge_deployment="gpt-judge"))
    assert grader.version == "1+gpt-judge"
    assert grader.grade("60 days", item(reference="60 days")).passed
    assert not grader.grade("30 days", item(reference="60 days")).passed
    assert "Reference answer:\n60 days" in seen[0]
    confused = make("llm_judge", GraderContext(judge=lambda _: "Maybe?", judge_deployment="j"))
    assert confused.grade("x", item()).detail.startswith("the judge did not answer PASS or FAIL")
    with pytest.raises(UsageError, match="unknown grader 'vibes'"):
        make("vibes")
    with pytest.raises(UsageError, match="needs a judge deployment"):
        make("llm_judge")


# ---------------------------------------------------------------- evidence


def _outcome(rows: list[list[bool]], baseline: list[list[bool]] | None = None) -> Outcome:
    evalset = parse(
        "".join(
            json.dumps({"id": f"i{n}", "messages": [{"role": "user", "content": "q"}], "category": c}) + "\n"
            for n, c in enumerate(["a", "b"] * (len(rows) // 2))
        ).encode(),
        "set.jsonl",
    )
    results = [
        {
            "item": f"i{n}",
            "category": "a",
            "repeat": r,
            "answer": "x",
            "passed": ok,
            "score": 1.0,
            "detail": "",
        }
        for n, row in enumerate(rows)
        for r, ok in enumerate(row)
    ]
    check = a_check("facts", "quality", "regex", 0.5, "set.jsonl")
    return Outcome(check, evalset, make("regex"), rows, results, baseline, results if baseline else None)


def _decide(outcomes: list[Outcome], policy: Policy, baseline: Endpoint | None = None) -> dict[str, Any]:
    return evidence_record(
        gate="g",
        environment="dev",
        candidate=Endpoint("bot-candidate", "m2"),
        baseline=baseline,
        baseline_kind="serving" if baseline else "none",
        policy=policy,
        outcomes=outcomes,
    )


def test_evidence_fails_on_uncertainty_and_on_a_significant_regression() -> None:
    sure = [[True, True]] * 18 + [[False, False]] * 2
    unsure = [[True, True]] * 2 + [[False, False]] * 2  # rate 0.5 >= 0.5, interval far wider
    evidence = _decide([_outcome(sure), _outcome(unsure)], a_policy(repeats=2))
    assert evidence["verdict"] == "fail"
    assert evidence["failures"] == [
        "facts (regex on set.jsonl): pass rate 0.500 clears threshold 0.500 but its 95% interval "
        "[0.150, 0.850] does not (4/8 answers, 4 items x 2 repeats, effective n 4.0)"
    ]
    relaxed = _decide([_outcome(unsure)], a_policy(repeats=2, fail_on_uncertainty=False))
    assert relaxed["verdict"] == "pass"
    regressed = [[True, True]] * 10 + [[False, False]] * 10
    against = _decide(
        [_outcome(regressed, baseline=sure)],
        a_policy(repeats=2, fail_on_uncertainty=False),
        baseline=Endpoint("bot", "m1"),
    )
    summary = against["checks"][0]["summary"]["baseline"]
    assert (summary["regressions"], summary["improvements"], summary["delta"]) == (8, 0, -0.4)
    assert against["failures"][0].startswith(
        "facts (regex on set.jsonl): worse than the baseline: pass rate 0.500 vs 0.900 (delta -0.400 beyond "
        "max_regression 0); 8 items regressed, 0 improved, one-sided McNemar p=0.0039 < 0.05"
    )


def test_markdown_junit_and_the_digest_come_from_the_record(tmp_path: Path) -> None:
    evidence = evidence_record(
        gate="support-bot",
        environment="dev",
        candidate=Endpoint("bot-candidate", "m2"),
        baseline=Endpoint("bot", "m1"),
        baseline_kind="serving",
        policy=a_policy(repeats=2),
        outcomes=[_outcome([[True, True]] * 18 + [[False, True]] * 2, baseline=[[True, True]] * 20)],
        training={"job": "ftjob-1", "loss": [[1, 2.5], [2, 1.25], [3, 0.5]]},
    )
    digest, path = evidence_files.write(evidence, tmp_path)
    assert digest == "sha256:" + __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    text = (tmp_path / f"{digest[7:]}.md").read_text()
    assert "### Gate `support-bot`: ✅ pass" in text
    assert "| facts (pass rate) | regex | 20 × 2 | 0.950 | [" in text
    assert 'x-axis "step" [1, 2, 3]' in text
    assert "line [2.5000, 1.2500, 0.5000]" in text
    assert "`facts` by category:" in text
    assert f"Evidence `{digest}`." in text
    suites = ET.fromstring((tmp_path / f"{digest[7:]}.junit.xml").read_bytes())
    suite = suites.find("testsuite")
    assert suite is not None
    assert suite.get("tests") == "21"
    assert suite.get("failures") == "2"
    failure = suite.find("testcase[@name='i18']/failure")
    assert failure is not None
    assert failure.get("message", "").startswith("1/2 repeats failed")


def test_the_evidence_prices_1k_requests_of_each_side_on_the_prompts_both_answered() -> None:
    """The candidate's and the baseline's own token counts and latencies, over the checks both
    were asked; a check only the candidate answered (a teacher is not asked its own agreement)
    is left out of the comparison."""

    def answers(n: int, prompt: int, completion: int, latency: float) -> list[Answer]:
        return [Answer(f"i{i}", 0, "x", False, latency * (1 + i % 2), prompt, completion) for i in range(n)]

    paired = _outcome([[True]] * 20, baseline=[[True]] * 20)
    paired.answers, paired.baseline_answers = answers(20, 100, 50, 0.2), answers(20, 100, 60, 0.5)
    alone = _outcome([[True]] * 4)
    alone.answers = answers(4, 5000, 5000, 9.0)
    evidence = evidence_record(
        gate="support-mini",
        environment="dev",
        candidate=Endpoint("mini-candidate", "gpt-4.1-nano.ft-x"),
        baseline=Endpoint("support-gpt41", "gpt-4.1"),
        baseline_kind="teacher",
        policy=a_policy(),
        outcomes=[paired, alone],
        prices={"candidate": Prices(0.2, 0.8), "baseline": Prices(2.0, 8.0)},
    )
    usage = evidence["usage"]
    assert usage["checks"] == ["facts"]
    student, teacher = usage["candidate"], usage["baseline"]
    assert (student["requests"], student["prompt_tokens"], student["completion_tokens"]) == (20, 2000, 1000)
    # 1,000 requests of 100 prompt and 50 answer tokens at $0.20 / $0.80 per million tokens
    assert student["usd_per_1k"] == pytest.approx(100 * 0.2 / 1000 + 50 * 0.8 / 1000)
    assert teacher["usd_per_1k"] == pytest.approx(100 * 2.0 / 1000 + 60 * 8.0 / 1000)
    assert (student["latency_mean_s"], student["latency_p95_s"]) == (0.3, 0.4)
    text = evidence_files.markdown(evidence, "sha256:0")
    assert "| candidate | `mini-candidate` | `gpt-4.1-nano.ft-x` | 20 | 100 / 50 | $0.0600 | 0.300 s" in text
    assert "| baseline (teacher) | `support-gpt41` | `gpt-4.1` | 20 | 100 / 60 | $0.6800 | 0.750 s" in text
    assert (
        "The candidate costs 9% of the baseline per request and answers in 0.40x the baseline's mean" in text
    )
    unpriced = evidence_record(
        gate="g",
        environment=None,
        candidate=Endpoint("c", "tiny-test"),
        baseline=None,
        baseline_kind="none",
        policy=a_policy(),
        outcomes=[alone],
    )
    assert unpriced["usage"]["candidate"]["usd_per_1k"] is None
    assert unpriced["usage"]["baseline"] is None
    assert "| candidate | `c` | `tiny-test` | 4 | 5000 / 5000 | n/a |" in evidence_files.markdown(
        unpriced, "x"
    )


def test_loss_curve_reads_results_csv_and_thins_it() -> None:
    rows = "step,train_loss,valid_loss\n" + "".join(f"{s},{3 - s / 100},\n" for s in range(1, 201))
    curve = loss_curve(rows, limit=50)
    assert len(curve) <= 51
    assert curve[0] == (1, 2.99)
    assert curve[-1] == (200, 1.0)
    assert loss_curve("step,train_loss\nx,y\n") == []


# ---------------------------------------------------------------- the runner when a request fails


class _FakeChat:
    """Answers after a short wait; refuses (403) the item whose prompt is 'boom'."""

    base_url = "fake://account"

    def __init__(self, boom: bool = True) -> None:
        self.boom = boom
        self.calls = 0
        self.chat = self
        self.completions = self

    def with_options(self, **_: Any) -> _FakeChat:
        return self

    def create(self, model: str, messages: list[dict[str, str]], **_: Any) -> Any:
        import time
        from types import SimpleNamespace

        import httpx2
        import openai

        self.calls += 1
        if self.boom and messages[0]["content"] == "boom":
            request = httpx2.Request("POST", "http://fake/chat/completions")
            raise openai.PermissionDeniedError(
                "denied",
                response=httpx2.Response(403, request=request),
                body={"error": {"message": "denied"}},
            )
        time.sleep(0.3)
        message = SimpleNamespace(content=f"answer to {messages[0]['content']}")
        return SimpleNamespace(choices=[SimpleNamespace(finish_reason="stop", message=message)])


def test_a_failed_request_stops_the_run_and_keeps_every_paid_answer(tmp_path: Path) -> None:
    from ftops.evaluation.runner import Runner, RunOptions

    prompts = ["a", "b", "boom", "c", "d", "e", "f", "g"]
    evalset = parse(
        "".join(
            json.dumps({"id": p, "messages": [{"role": "user", "content": p}]}) + "\n" for p in prompts
        ).encode(),
        "set.jsonl",
    )
    progress = tmp_path / "progress.jsonl"
    failing = _FakeChat()
    runner = Runner(failing, RunOptions("d", "m", concurrency=3), progress)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="HTTP 403 denied"):
        runner.run(evalset)
    saved = [json.loads(line)["item"] for line in progress.read_text().splitlines()]
    assert saved, "the answers that arrived before the error are on disk"
    assert "boom" not in saved
    assert failing.calls < len(prompts)  # the rest were never sent
    fixed = _FakeChat(boom=False)
    again = Runner(fixed, RunOptions("d", "m", concurrency=3), progress)  # type: ignore[arg-type]
    answers = again.run(evalset)
    assert len(answers) == len(prompts)
    assert fixed.calls == len(prompts) - len(saved)


def test_a_gate_request_survives_the_wire_with_its_types() -> None:
    """Pulumi carries every number as a float: what comes back is the request that went in."""
    from ftops.evaluation.request import Baseline, GateRequest, Teacher

    request = GateRequest(
        name="bot",
        environment="dev",
        checks=(
            a_check("answers", "quality", "regex", 0.5, "evals.jsonl", digest="sha256:ab"),
            a_check(
                "safety", "safety", "refusal", 0.9, "builtin", categories=("violence",), min_similarity=0.0
            ),
        ),
        policy=a_policy(repeats=3, concurrency=4, seed=7),
        baseline=Baseline("serving", "bot", None),
    )
    wire = request.wire()
    floats = {**wire, "policy": {k: float(v) for k, v in wire["policy"].items()}, "seed": float(wire["seed"])}
    back = GateRequest.from_wire(floats)
    assert back == request
    taught = replace(request, baseline=Baseline("teacher", "big", Teacher("gpt-4.1", 50, "https://t")))
    wired = taught.wire()
    wired["baseline"]["teacher"]["capacity"] = 50.0
    assert GateRequest.from_wire(wired) == taught
    assert isinstance(back.policy.repeats, int)
    assert isinstance(back.policy.concurrency, int)
    assert GateRequest.problems({"name": "bot", "checks": [], "policy": {"repeats": 1}}) == [
        ("policy.confidence", "is required"),
        ("policy.temperature", "is required"),
        ("policy.fail_on_uncertainty", "is required"),
        ("policy.max_regression", "is required"),
        ("policy.concurrency", "is required"),
    ]
