"""Training examples (Azure/OpenAI JSONL) -> token ids and loss masks for a stand-in's chat template.

Stand-in templates know only plain system/user/assistant turns with string content, so richer
chat features are rendered as text first:

- content given as a list of parts keeps its text parts (joined with newlines); images are dropped;
- an assistant turn with ``tool_calls`` becomes the JSON ``{"tool_calls": [...]}`` (after any text);
- a ``tool`` message becomes a user turn ``Tool result: <content>``;
- a top-level ``tools`` list is appended to the system prompt as JSON.

The loss covers the tokens of trainable assistant turns only (Azure semantics: every assistant
turn unless it has ``"weight": 0``), including the template's end-of-turn token so the model
learns to stop. Spans are found by rendering growing prefixes of the conversation with the
template, so the mask is exact for whatever template the stand-in has.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

DEFAULT_MAX_TOKENS = 512
TOOLS_HEADER = "You can call these tools. To call one, reply with JSON of the form "
TOOLS_FORMAT = (
    '{"tool_calls": [{"id": "...", "type": "function", "function": {"name": "...", "arguments": "..."}}]}'
)
TOOL_RESULT_PREFIX = "Tool result: "


@dataclass(frozen=True)
class Tokenized:
    """One conversation: ids, and for each id whether the loss covers it (1) or not (0)."""

    ids: list[int]
    mask: list[int]

    @property
    def trained(self) -> int:
        return sum(self.mask)


@dataclass(frozen=True)
class DPOPair:
    """A DPO example: the shared prompt and the two continuations with their loss masks."""

    prompt_ids: list[int]
    chosen_ids: list[int]
    chosen_mask: list[int]
    rejected_ids: list[int]
    rejected_mask: list[int]

    @property
    def chosen(self) -> Tokenized:
        return Tokenized(self.prompt_ids + self.chosen_ids, [0] * len(self.prompt_ids) + self.chosen_mask)

    @property
    def rejected(self) -> Tokenized:
        return Tokenized(self.prompt_ids + self.rejected_ids, [0] * len(self.prompt_ids) + self.rejected_mask)


def content_text(content: Any) -> str:
    """The text of a message's content: a string, None, or a list of parts (text kept, images skipped)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type", "text") == "text":
                texts.append(str(part.get("text", "")))
        return "\n".join(texts)
    return str(content)


def _tool_calls_text(calls: list[Any]) -> str:
    rendered = []
    for call in calls:
        if not isinstance(call, dict):
            continue
        function = call.get("function") or {}
        arguments = function.get("arguments", "")
        rendered.append(
            {
                "id": call.get("id", ""),
                "type": call.get("type", "function"),
                "function": {
                    "name": function.get("name", ""),
                    "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
                },
            }
        )
    return json.dumps({"tool_calls": rendered}, ensure_ascii=False)


def parse_tool_calls(text: str) -> list[dict[str, Any]] | None:
    """The tool calls in a generated reply rendered the way training renders them, else None."""
    start = text.find('{"tool_calls"')
    if start < 0:
        return None
    try:
        obj, _ = json.JSONDecoder().raw_decode(text[start:])
    except ValueError:
        return None
    calls = obj.get("tool_calls") if isinstance(obj, dict) else None
    if not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls):
        return None
    return calls


def render_messages(
    messages: list[dict[str, Any]], tools: list[Any] | None = None
) -> tuple[list[dict[str, str]], list[bool]]:
    """Plain {role, content} turns the chat template accepts, and which of them are trained on."""
    turns: list[dict[str, str]] = []
    trainable: list[bool] = []
    for message in messages:
        role = message.get("role", "user")
        text = content_text(message.get("content"))
        if role == "assistant":
            calls = message.get("tool_calls") or []
            if calls:
                text = f"{text}\n{_tool_calls_text(calls)}" if text else _tool_calls_text(calls)
            turns.append({"role": "assistant", "content": text})
            trainable.append(message.get("weight", 1) != 0)
            continue
        if role == "tool":
            turns.append({"role": "user", "content": TOOL_RESULT_PREFIX + text})
        elif role in ("system", "developer"):
            turns.append({"role": "system", "content": text})
        else:
            turns.append({"role": "user", "content": text})
        trainable.append(False)
    if tools:
        listing = f"{TOOLS_HEADER}{TOOLS_FORMAT}\n{json.dumps(tools, ensure_ascii=False)}"
        if turns and turns[0]["role"] == "system":
            turns[0] = {"role": "system", "content": f"{turns[0]['content']}\n\n{listing}"}
        else:
            turns.insert(0, {"role": "system", "content": listing})
            trainable.insert(0, False)
    return turns, trainable


def template_ids(
    tokenizer: PreTrainedTokenizerBase, turns: list[dict[str, str]], *, add_generation_prompt: bool = False
) -> list[int]:
    """Token ids of turns rendered by the tokenizer's chat template."""
    if not turns and not add_generation_prompt:
        return []
    encoded: Any = tokenizer.apply_chat_template(
        turns, tokenize=True, add_generation_prompt=add_generation_prompt
    )
    # transformers 5 returns a BatchEncoding here; earlier versions a plain list of ids.
    ids = encoded["input_ids"] if hasattr(encoded, "keys") else encoded
    return [int(i) for i in ids]


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def encode_turns(
    tokenizer: PreTrainedTokenizerBase, turns: list[dict[str, str]], trainable: list[bool]
) -> Tokenized:
    """Ids of the whole conversation, with the trainable assistant turns masked in."""
    ids = template_ids(tokenizer, turns)
    mask = [0] * len(ids)
    for i, train_it in enumerate(trainable):
        if not train_it:
            continue
        before = template_ids(tokenizer, turns[:i], add_generation_prompt=True)
        through = template_ids(tokenizer, turns[: i + 1])
        # Templates that tokenize each turn independently make these exact prefixes of ids; the
        # common-prefix guard keeps the span inside the turn for any template that does not.
        start = _common_prefix(before, ids)
        end = _common_prefix(through, ids)
        for j in range(start, end):
            mask[j] = 1
    return Tokenized(ids, mask)


def truncate(tokenized: Tokenized, max_tokens: int) -> Tokenized:
    return Tokenized(tokenized.ids[:max_tokens], tokenized.mask[:max_tokens])


def encode_sft(
    tokenizer: PreTrainedTokenizerBase, example: dict[str, Any], max_tokens: int = DEFAULT_MAX_TOKENS
) -> Tokenized:
    """One supervised example ``{"messages": [...], "tools"?: [...]}`` -> ids and loss mask."""
    messages = example.get("messages")
    if not isinstance(messages, list):
        raise ValueError("a supervised example needs a 'messages' list")
    turns, trainable = render_messages(messages, example.get("tools"))
    return truncate(encode_turns(tokenizer, turns, trainable), max_tokens)


def encode_dpo(
    tokenizer: PreTrainedTokenizerBase, example: dict[str, Any], max_tokens: int = DEFAULT_MAX_TOKENS
) -> DPOPair:
    """One preference example -> the prompt ids and the chosen/rejected continuations.

    Each continuation is at most ``max_tokens`` minus the prompt; a prompt longer than
    ``max_tokens`` keeps its start and leaves both continuations empty.
    """
    source = example.get("input") or {}
    messages = source.get("messages") if isinstance(source, dict) else None
    preferred = example.get("preferred_output")
    rejected = example.get("non_preferred_output")
    if not isinstance(messages, list) or not isinstance(preferred, list) or not isinstance(rejected, list):
        raise ValueError(
            "a DPO example needs input.messages, preferred_output and non_preferred_output lists"
        )
    tools = source.get("tools") if isinstance(source, dict) else None
    prompt_turns, _ = render_messages(messages, tools)
    prompt = template_ids(tokenizer, prompt_turns, add_generation_prompt=True)

    def continuation(outputs: list[dict[str, Any]]) -> tuple[list[int], list[int]]:
        # Every output turn is trained on, whatever weight it carries: it is what is preferred.
        outs = [{**m, "role": "assistant", "weight": 1} for m in outputs]
        turns, trainable = render_messages([*messages, *outs], tools)
        full = encode_turns(tokenizer, turns, trainable)
        cut = _common_prefix(prompt, full.ids)
        ids, mask = full.ids[cut:], full.mask[cut:]
        room = max(0, max_tokens - len(prompt))
        return ids[:room], mask[:room]

    chosen_ids, chosen_mask = continuation(preferred)
    rejected_ids, rejected_mask = continuation(rejected)
    return DPOPair(prompt[:max_tokens], chosen_ids, chosen_mask, rejected_ids, rejected_mask)


def prompt_ids(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, Any]], tools: list[Any] | None = None
) -> list[int]:
    """Ids of a chat request's prompt, ending with the template's assistant header."""
    turns, _ = render_messages(messages, tools)
    return template_ids(tokenizer, turns, add_generation_prompt=True)


def read_jsonl(path: Any) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file, skipping blank lines."""
    examples = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError(f"{path}: line {number} is not a JSON object")
            examples.append(obj)
    return examples
