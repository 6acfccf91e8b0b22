"""One fixture per `ftops validate` rule: the exact message and the line it points at.

Each case writes ten valid examples with the case's line as line 5 (or its own layout) and
checks that the rule fires there with exactly the expected message.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from ftops.dataset.findings import RULES
from tests.conftest import SYSTEM, findings, good_dpo, good_example, good_rft, line_of, validate, write_lines

TOOLS = [{"type": "function", "function": {"name": "lookup_order", "parameters": {"type": "object"}}}]


def png_uri(
    mode: str = "RGB", size: tuple[int, int] = (32, 32), fmt: str = "PNG", declared: str = "png"
) -> str:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format=fmt)
    return f"data:image/{declared};base64," + base64.b64encode(buf.getvalue()).decode()


def chat(*messages: Any, **top: Any) -> bytes:
    return line_of({"messages": list(messages), **top})


def sys_(text: str = SYSTEM) -> dict[str, Any]:
    return {"role": "system", "content": text}


def user(content: Any = "Where is my order?") -> dict[str, Any]:
    return {"role": "user", "content": content}


def asst(content: Any = "It shipped yesterday.", **extra: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content, **extra}


def image_part(url: str, detail: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"url": url}
    if detail:
        spec["detail"] = detail
    return {"type": "image_url", "image_url": spec}


def call(call_id: str = "call_1", name: str = "lookup_order", arguments: str = '{"order_id": "CO-1"}') -> Any:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


@dataclass
class Case:
    code: str
    line: bytes | None  # the line placed at line 5; None: only `lines` is used
    message: str
    at: int = 5
    options: dict[str, Any] = field(default_factory=dict)
    lines: Callable[[], list[bytes]] | None = None  # a whole custom file
    patch: dict[str, Any] = field(default_factory=dict)  # module attribute -> value
    good: Callable[[int], Any] = good_example


def file_lines(case: Case) -> list[bytes]:
    if case.lines is not None:
        return case.lines()
    lines = [line_of(case.good(i)) for i in range(10)]
    assert case.line is not None
    lines.insert(case.at - 1, case.line)
    return lines


VISION = {"base_model": "gpt-4o-2024-08-06"}
DPO = {"method": "dpo"}
RFT = {"method": "reinforcement", "base_model": "o4-mini-2025-04-16"}

CASES = [
    # --- the file
    Case(
        "file_too_large",
        b"",
        "the file is 0.0 MB",
        at=0,
        lines=lambda: [line_of(good_example(i)) for i in range(10)],
        patch={"ftops.dataset.validate.MAX_FILE_BYTES": 100},
    ),
    Case(
        "too_few_examples",
        None,
        "3 example(s); Azure needs at least 10",
        at=0,
        lines=lambda: [line_of(good_example(i)) for i in range(3)],
    ),
    Case(
        "too_many_tokens",
        None,
        "480 tokens x 10 epochs = 4,800",
        at=0,
        lines=lambda: [line_of(good_example(i)) for i in range(10)],
        patch={"ftops.dataset.validate.MAX_TRAINED_TOKENS": 1000},
    ),
    Case(
        "too_many_image_examples",
        chat(user([image_part("https://example.com/a.png")]), asst()),
        "1 examples with images",
        at=0,
        options=VISION,
        patch={"ftops.dataset.validate.MAX_IMAGE_EXAMPLES": 0},
    ),
    # --- the line
    Case("invalid_utf8", b'{"messages": "caf\xe9"}', "byte 0xe9 at column 18 is not UTF-8"),
    Case(
        "misplaced_bom", b"\xef\xbb\xbf" + line_of(good_example(99)), "the line starts with a byte order mark"
    ),
    Case("blank_line", b"   ", "the line is empty"),
    Case("invalid_json", b'{"messages": [', "not valid JSON (unexpected end of data at column 15)"),
    Case("not_an_object", b"[1, 2]", "the line holds a JSON list, not an object"),
    Case(
        "unknown_key",
        chat(user(), asst(), source="crm"),
        "unknown key 'source' (allowed: functions, messages, parallel_tool_calls, tools)",
    ),
    # --- chat messages
    Case("missing_messages", line_of({"tools": TOOLS}), 'no "messages" key'),
    Case("invalid_messages", line_of({"messages": []}), '"messages" must be a non-empty list'),
    Case("invalid_message", chat(user(), "hello", asst()), "messages[1] is not an object"),
    Case(
        "invalid_role",
        chat({"role": "bot", "content": "hi"}, user(), asst()),
        "messages[0].role is 'bot'; use system, user, assistant, tool",
    ),
    Case("unknown_message_key", chat(user(), asst(mood="cheerful")), "messages[1] has unknown key 'mood'"),
    Case("missing_content", chat({"role": "user"}, asst()), "messages[0] has no content"),
    Case(
        "invalid_content",
        chat(user(42), asst()),
        "messages[0].content is a number, not a string or a list of parts",
    ),
    Case(
        "system_not_first",
        chat(user(), sys_(), asst()),
        "messages[1] is a system message after the conversation started",
    ),
    Case("no_assistant_message", chat(sys_(), user()), "the conversation has no assistant message"),
    Case("no_trainable_assistant", chat(user(), asst(weight=0)), 'every assistant message has "weight": 0'),
    Case(
        "invalid_weight", chat(user(), asst(weight=0.5)), "messages[1].weight is 0.5; only 0 or 1 are allowed"
    ),
    Case(
        "weight_not_on_assistant",
        chat({"role": "user", "content": "hi", "weight": 1}, asst()),
        'messages[0] is a user message with "weight"',
    ),
    # --- tools
    Case("invalid_tools", chat(user(), asst(), tools="lookup_order"), '"tools" must be a list'),
    Case(
        "tool_calls_without_tools",
        chat(user(), asst(None, tool_calls=[call()])),
        'messages[1] calls tools but the example declares no "tools"',
    ),
    Case(
        "invalid_tool_call",
        chat(user(), asst(None, tool_calls=[{"id": 7}]), tools=TOOLS),
        'messages[1].tool_calls[0] needs "id", "type": "function" and "function.name"',
    ),
    Case(
        "unknown_tool",
        chat(user(), asst(None, tool_calls=[call(name="refund")]), tools=TOOLS),
        "messages[1].tool_calls[0] calls 'refund', which \"tools\" does not declare",
    ),
    Case(
        "invalid_tool_arguments",
        chat(user(), asst(None, tool_calls=[call(arguments="order CO-1")]), tools=TOOLS),
        "messages[1].tool_calls[0].function.arguments is not a JSON object string",
    ),
    Case(
        "tool_reply_without_call",
        chat(user(), {"role": "tool", "tool_call_id": "call_9", "content": "{}"}, asst()),
        "messages[1].tool_call_id 'call_9' answers no open call",
    ),
    Case(
        "tool_call_unanswered",
        chat(user(), asst(None, tool_calls=[call()]), user("And?"), asst(), tools=TOOLS),
        "messages[2] follows tool call(s) call_1 that got no tool reply",
    ),
    # --- preference and reinforcement data
    Case(
        "dpo_missing_field",
        line_of({k: v for k, v in good_dpo(99).items() if k != "non_preferred_output"}),
        'no "non_preferred_output"',
        options=DPO,
        good=good_dpo,
    ),
    Case(
        "dpo_invalid_input",
        line_of({**good_dpo(99), "input": {"messages": [sys_(), asst()]}}),
        "input.messages ends with 'assistant', not 'user'",
        options=DPO,
        good=good_dpo,
    ),
    Case(
        "dpo_invalid_output",
        line_of({**good_dpo(99), "preferred_output": [{"role": "tool", "content": "x"}]}),
        '"preferred_output" has no assistant message',
        options=DPO,
        good=good_dpo,
    ),
    Case(
        "rft_last_not_user",
        chat(user(), asst()),
        "the last message is from 'assistant', not 'user'",
        options=RFT,
        good=good_rft,
    ),
    # --- images
    Case(
        "vision_not_supported",
        chat(user([image_part("https://example.com/tent.png")]), asst()),
        "messages[0].content[0]: gpt-4.1-mini-2025-04-14 does not fine-tune on images",
    ),
    Case(
        "image_in_assistant",
        chat(user(), asst([image_part("https://example.com/a.png")])),
        "messages[1].content[0] puts an image in an assistant message",
        options=VISION,
    ),
    Case(
        "invalid_image_url",
        chat(user([image_part("http://example.com/tent.png")]), asst()),
        "messages[0].content[0]: image_url.url 'http://example.com/tent.png' is neither https:// nor a base64 "
        "data URI",
        options=VISION,
    ),
    Case(
        "invalid_image",
        chat(user([image_part(png_uri(mode="CMYK", fmt="JPEG", declared="jpeg"))]), asst()),
        "messages[0].content[0]: image mode is CMYK, not RGB or RGBA",
        options=VISION,
    ),
    Case(
        "image_too_large",
        chat(user([image_part(png_uri(size=(64, 64)))]), asst()),
        "messages[0].content[0]: image is about 0.0 MB",
        options=VISION,
        patch={"ftops.dataset.images.MAX_IMAGE_BYTES": 10},
    ),
    Case(
        "too_many_images",
        chat(user([image_part(f"https://example.com/{i}.png") for i in range(65)]), asst()),
        "65 images in one example (at most 64)",
        options=VISION,
    ),
    # --- tokens
    Case(
        "example_too_long",
        chat(user("tent " * 33_000), asst()),
        "33,016 tokens; gpt-4.1-nano-2025-04-14 takes at most 32,768 per example",
        options={"base_model": "gpt-4.1-nano-2025-04-14"},
    ),
    # --- warnings
    Case("duplicate_example", line_of(good_example(2)), "repeats line 3"),
    Case(
        "inconsistent_system_prompt",
        chat(sys_("You are a pirate."), user(), asst()),
        "has a different system prompt; 10 of 11 examples share the most common one (2 distinct, 0 without)",
    ),
    Case("empty_assistant_reply", chat(user(), asst("  ")), "messages[1] is an empty assistant reply"),
    Case("short_assistant_reply", chat(user(), asst("ok")), "messages[1] is only 'ok'"),
    Case("ends_without_assistant", chat(user(), asst(), user("Thanks!")), "the last message is from 'user'"),
    Case("no_user_message", chat(sys_(), asst()), "the conversation has no user message"),
    Case(
        "over_token_budget",
        chat(user("tent " * 200), asst()),
        "216 tokens, over the budget of 100",
        options={"token_budget": 100},
    ),
    Case(
        "dpo_identical_outputs",
        line_of({**good_dpo(99), "non_preferred_output": good_dpo(99)["preferred_output"]}),
        "preferred and non-preferred outputs are identical",
        options=DPO,
        good=good_dpo,
    ),
    Case(
        "deprecated_functions",
        chat(user(), asst(), functions=[{"name": "lookup_order"}]),
        '"functions" is deprecated',
    ),
    Case(
        "many_images",
        chat(user([image_part(f"https://example.com/{i}.png") for i in range(11)]), asst()),
        "11 images in one example",
        options=VISION,
    ),
    Case(
        "likely_secret",
        chat(user("My key is AKIAIOSFODNN7EXAMPLE"), asst()),
        "looks like an AWS access key id ('AKIA***LE')",
    ),
    Case(
        "pii_email",
        chat(user("Write to jane.doe@example.com"), asst()),
        "looks like an e-mail address ('jane***om')",
    ),
    Case(
        "pii_phone",
        chat(user("Call me on (425) 555-0199 today"), asst()),
        "looks like a phone number ('(425***99')",
    ),
]


def test_every_rule_has_a_fixture() -> None:
    assert {c.code for c in CASES} == set(RULES)


@pytest.mark.parametrize("case", CASES, ids=[c.code for c in CASES])
def test_rule(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for target, value in case.patch.items():
        monkeypatch.setattr(target, value)
    path = write_lines(tmp_path / f"{case.code}.jsonl", file_lines(case))
    report = validate(path, **case.options)
    assert (case.code, case.at, case.message) in findings(report), findings(report)
    rule = RULES[case.code]
    expected_valid = rule.severity == "warning"
    assert report.valid is expected_valid, [e.code for e in report.errors]
    text = report.finding_lines()
    where = f"{path}:{case.at}" if case.at else str(path)
    assert f"{where}: {rule.severity.value} [{case.code}] {case.message}; fix: {rule.fix}" in text


def test_bom_at_start_is_allowed(tmp_path: Path) -> None:
    lines = [line_of(good_example(i)) for i in range(10)]
    lines[0] = b"\xef\xbb\xbf" + lines[0]
    report = validate(write_lines(tmp_path / "bom.jsonl", lines))
    assert report.valid, findings(report)
    assert report.examples == 10


def test_crlf_and_missing_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(b"\r\n".join(line_of(good_example(i)) for i in range(10)))
    report = validate(path)
    assert report.valid, findings(report)
    assert report.examples == 10


def test_valid_tool_conversation_and_weights(tmp_path: Path) -> None:
    convo = chat(
        sys_(),
        user("Where is CO-1?"),
        asst("Let me check.", weight=0),
        asst(None, tool_calls=[call()]),
        {"role": "tool", "tool_call_id": "call_1", "content": json.dumps({"status": "shipped"})},
        asst("CO-1 shipped on Monday."),
        tools=TOOLS,
    )
    lines = [line_of(good_example(i)) for i in range(10)] + [convo]
    report = validate(write_lines(tmp_path / "tools.jsonl", lines))
    assert report.valid, findings(report)
    assert not report.warnings, findings(report)


def test_valid_images_count_vision_tokens(tmp_path: Path) -> None:
    lines = [line_of(good_example(i)) for i in range(10)]
    lines.append(
        chat(
            user([{"type": "text", "text": "Is this tent torn?"}, image_part(png_uri(size=(1024, 1024)))]),
            asst("Yes, the fly has a tear near the zipper."),
        )
    )
    report = validate(write_lines(tmp_path / "vision.jsonl", lines), base_model="gpt-4o-2024-08-06")
    assert report.valid, findings(report)
    assert report.image_examples == 1
    # 1024x1024 at auto detail: scaled to 768x768 = 4 tiles -> 85 + 4 * 170 = 765 tokens
    assert report.tokens.max >= 765


def test_error_lines_are_capped_with_a_count(tmp_path: Path) -> None:
    lines = [line_of(good_example(i)) for i in range(10)] + [b"not json"] * 12
    report = validate(write_lines(tmp_path / "many.jsonl", lines), lines_per_rule=3)
    rule = next(r for r in report.errors if r.code == "invalid_json")
    assert rule.count == 12
    assert [f.line for f in rule.first] == [11, 12, 13]
    assert f"{tmp_path / 'many.jsonl'}: ... 9 more [invalid_json]" in report.finding_lines()
