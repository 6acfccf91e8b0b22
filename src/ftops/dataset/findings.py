"""The rules `ftops validate` applies: a stable code, a severity and the fix, in one table."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Rule:
    code: str
    severity: Severity
    fix: str


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    line: int  # 1-based; 0 for findings about the whole file
    message: str


_E, _W = Severity.ERROR, Severity.WARNING

RULES: dict[str, Rule] = {
    r.code: r
    for r in (
        # --- the file
        Rule(
            "file_too_large",
            _E,
            "split the data or import it from blob storage; Azure takes files under 512 MB",
        ),
        Rule("too_few_examples", _E, "add examples; Azure needs at least 10 (hundreds are recommended)"),
        Rule("too_many_tokens", _E, "use fewer examples or epochs; Azure caps a job at 2B tokens x epochs"),
        Rule(
            "too_many_image_examples", _E, "split the data; Azure takes at most 50,000 examples with images"
        ),
        # --- the line
        Rule("invalid_utf8", _E, "re-save the file as UTF-8"),
        Rule("misplaced_bom", _E, "remove the byte order mark; it may only start the file"),
        Rule("blank_line", _E, "remove empty lines; JSONL holds one JSON object per line"),
        Rule("invalid_json", _E, "write one complete JSON object per line"),
        Rule("not_an_object", _E, 'make each line a JSON object, e.g. {"messages": [...]}'),
        Rule("unknown_key", _E, "remove the key or fix its spelling"),
        # --- chat messages
        Rule("missing_messages", _E, 'add a "messages" list of {"role", "content"} objects'),
        Rule("invalid_messages", _E, 'make "messages" a non-empty list of message objects'),
        Rule("invalid_message", _E, 'make each message an object with "role" and "content"'),
        Rule("invalid_role", _E, "use one of the roles listed in the message"),
        Rule("unknown_message_key", _E, "remove the key or fix its spelling"),
        Rule(
            "missing_content", _E, 'give the message a "content" string (null only on an assistant tool call)'
        ),
        Rule("invalid_content", _E, 'use a string or a list of {"type": "text"|"image_url"} parts'),
        Rule("system_not_first", _E, "put system messages before every other message"),
        Rule("no_assistant_message", _E, "add an assistant reply for the model to learn from"),
        Rule("no_trainable_assistant", _E, 'leave at least one assistant message without "weight": 0'),
        Rule("invalid_weight", _E, 'use "weight": 0 (skip this reply) or 1 (train on it)'),
        Rule("weight_not_on_assistant", _E, 'only assistant messages take "weight"; remove it'),
        # --- tools
        Rule("invalid_tools", _E, 'use "tools": [{"type": "function", "function": {"name", ...}}]'),
        Rule("tool_calls_without_tools", _E, 'declare the called functions in a top-level "tools" list'),
        Rule("invalid_tool_call", _E, 'use {"id", "type": "function", "function": {"name", "arguments"}}'),
        Rule("unknown_tool", _E, 'call only functions declared in "tools", or declare this one'),
        Rule("invalid_tool_arguments", _E, 'make "arguments" a string holding a JSON object'),
        Rule(
            "tool_reply_without_call",
            _E,
            'give the tool message the "tool_call_id" of an earlier assistant call',
        ),
        Rule(
            "tool_call_unanswered",
            _E,
            "answer each tool call with a tool message before the conversation goes on",
        ),
        # --- preference (DPO) and reinforcement (RFT) data
        Rule(
            "dpo_missing_field", _E, 'give each line "input", "preferred_output" and "non_preferred_output"'
        ),
        Rule("dpo_invalid_input", _E, 'use "input": {"messages": [...]} ending with a user message'),
        Rule(
            "dpo_invalid_output", _E, "use a list of assistant (or tool) messages with at least one assistant"
        ),
        Rule(
            "rft_last_not_user", _E, "end each reinforcement example with the user message the model answers"
        ),
        # --- images
        Rule("vision_not_supported", _E, "use a base model with vision (gpt-4o, gpt-4.1) or drop the images"),
        Rule("image_in_assistant", _E, "put images in user or system messages only"),
        Rule("invalid_image_url", _E, "use an https:// URL or a data:image/jpeg|png|webp;base64,... URI"),
        Rule("invalid_image", _E, "use a JPEG, PNG or WEBP image in RGB or RGBA"),
        Rule("image_too_large", _E, "shrink the image below 10 MB"),
        Rule("too_many_images", _E, "use at most 64 images in one example"),
        # --- tokens
        Rule("example_too_long", _E, "shorten or split the example; the model's limit is in the message"),
        # --- warnings
        Rule("duplicate_example", _W, "remove the repeat; duplicates over-weight one example"),
        Rule("inconsistent_system_prompt", _W, "use the system prompt you will serve with in every example"),
        Rule("empty_assistant_reply", _W, 'write the reply, or mark the message "weight": 0'),
        Rule("short_assistant_reply", _W, "check the reply; under 5 characters teaches little"),
        Rule("ends_without_assistant", _W, "end with the assistant reply; trailing turns are not learned"),
        Rule("no_user_message", _W, "add the user turn the assistant answers"),
        Rule("over_token_budget", _W, "shorten the example or raise --token-budget"),
        Rule("dpo_identical_outputs", _W, "make the preferred and non-preferred outputs differ"),
        Rule(
            "deprecated_functions", _W, 'use "tools" / "tool_calls" instead of "functions" / "function_call"'
        ),
        Rule("many_images", _W, "Azure's docs also say 10 or fewer images per example; check yours"),
        Rule("likely_secret", _W, "remove the credential from the data and rotate it"),
        Rule("pii_email", _W, "remove or pseudonymize e-mail addresses"),
        Rule("pii_phone", _W, "remove or pseudonymize phone numbers"),
    )
}


def rule(code: str) -> Rule:
    return RULES[code]


# Found by `ftops validate --safety` (ftops.evaluation.screening), not by the line rules above:
# reported among a file's errors and warnings like them, so a JSON or markdown report holds every
# finding that decides the exit code.
HARMFUL_CONTENT = "harmful_content"
HARM_VOCABULARY = "harm_vocabulary"
SCREENING_RULES: dict[str, Rule] = {
    r.code: r
    for r in (
        Rule(
            HARMFUL_CONTENT,
            _E,
            "remove or rewrite those examples; the model would learn to comply with harmful requests",
        ),
        Rule(HARM_VOCABULARY, _W, "check those assistant turns; the words alone may be harmless"),
    )
}

# Decided by `ftops validate` from its arguments, not by a line of the file: an error of the
# training file's report, so the file's own findings are still shown beside it.
MISSING_VALIDATION_FILE = Rule(
    "missing_validation_file", _E, "pass --validation-file PATH; Azure requires one for reinforcement"
)
