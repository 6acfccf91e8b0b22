"""Property tests: random valid data passes; a random corruption is caught at its line."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ftops.tokenizer import SEPARATOR, TokenCounter
from tests.conftest import SYSTEM, validate

# Printable text without surrogates; long enough that a reply is never "short".
words = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40)
sentences = st.lists(words, min_size=2, max_size=12).map(lambda ws: "Reply: " + " ".join(ws))


@st.composite
def sft_examples(draw: st.DrawFn) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": SYSTEM})
    for _ in range(draw(st.integers(1, 3))):
        messages.append({"role": "user", "content": draw(sentences)})
        reply: dict[str, Any] = {"role": "assistant", "content": draw(sentences)}
        if draw(st.booleans()):
            reply["weight"] = 1
        messages.append(reply)
    return {"messages": messages}


datasets = st.lists(sft_examples(), min_size=10, max_size=25)


def _dump(example: Any) -> bytes:
    return json.dumps(example, ensure_ascii=False).encode()


def _cut(line: bytes) -> bytes:
    text = line.decode()  # cut between characters, not inside one
    return text[: len(text) // 2].encode()


def _first_assistant(ex: dict[str, Any]) -> dict[str, Any]:
    return next(m for m in ex["messages"] if m["role"] == "assistant")


def _set(ex: dict[str, Any], fn: Callable[[dict[str, Any]], None]) -> bytes:
    fn(ex)
    return _dump(ex)


# corruption name -> (make the bad line from a valid example, the rule that must fire)
CORRUPTIONS: dict[str, tuple[Callable[[dict[str, Any]], bytes], str]] = {
    "truncated": (lambda ex: _cut(_dump(ex)), "invalid_json"),
    "not utf-8": (lambda ex: _dump(ex).replace(b'"messages"', b'"mess\xffages"', 1), "invalid_utf8"),
    "a list": (lambda ex: _dump([ex]), "not_an_object"),
    "blank": (lambda ex: b"", "blank_line"),
    "unknown role": (lambda ex: _set(ex, lambda e: e["messages"][-1].update(role="robot")), "invalid_role"),
    "no assistant": (
        lambda ex: _dump({"messages": [m for m in ex["messages"] if m["role"] != "assistant"]}),
        "no_assistant_message",
    ),
    "weight 2": (lambda ex: _set(ex, lambda e: _first_assistant(e).update(weight=2)), "invalid_weight"),
    "numeric content": (
        lambda ex: _set(ex, lambda e: e["messages"][-1].update(content=5)),
        "invalid_content",
    ),
    "extra key": (lambda ex: _set(ex, lambda e: e.update(extra=True)), "unknown_key"),
    "late system": (
        lambda ex: _set(ex, lambda e: e["messages"].append({"role": "system", "content": "x"})),
        "system_not_first",
    ),
}


def _run(lines: list[bytes]) -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.jsonl"
        path.write_bytes(b"".join(line + b"\n" for line in lines))
        return validate(path)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets)
def test_random_valid_examples_pass(examples: list[dict[str, Any]]) -> None:
    report = _run([_dump(ex) for ex in examples])
    assert report.valid, [(e.code, e.first) for e in report.errors]
    assert report.examples == len(examples)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets, st.data())
def test_random_corruptions_are_caught(examples: list[dict[str, Any]], data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(examples) - 1), label="line index")
    name = data.draw(st.sampled_from(sorted(CORRUPTIONS)), label="corruption")
    corrupt, code = CORRUPTIONS[name]
    lines = [_dump(ex) for ex in examples]
    lines[index] = corrupt(json.loads(lines[index]))
    report = _run(lines)
    assert not report.valid
    hits = {f.line for r in report.errors if r.code == code for f in r.first}
    assert index + 1 in hits, (name, [(r.code, [f.line for f in r.first]) for r in report.errors])


texts = st.lists(
    st.one_of(
        st.text(max_size=60),
        st.text(max_size=20).map(lambda t: t + SEPARATOR + t),
        st.text(max_size=20).map(lambda t: f"{t}<|endoftext|> {t}\n"),
        st.sampled_from(["", " ", "\n\n", "  tent  ", "😀 café", "CO-48213 $14.95"]),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(texts)
def test_joined_counting_equals_one_by_one(batch: list[str]) -> None:
    counter = TokenCounter("o200k_base")
    expected = [len(counter.encoding.encode_ordinary(t)) for t in batch]
    assert counter.count_many(batch).tolist() == expected
