"""Per-example rules for supervised (SFT), preference (DPO) and reinforcement (RFT) data.

A checker walks one decoded example, records findings, and queues every text whose tokens
count (contents, names, tool calls, tool definitions) into token "slots": slot 3*i is the
prompt/conversation of example i, 3*i+1 and 3*i+2 the preferred and non-preferred outputs of a
DPO example. The caller counts all queued texts of a batch in one tokenizer call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from ftops.catalog import DPO, REINFORCEMENT, SUPERVISED, BaseModel
from ftops.dataset.findings import Finding
from ftops.dataset.images import DETAILS, check_image_url

# Tokens the chat format adds around each message, and to prime the reply (OpenAI's
# "counting tokens for chat" recipe for the gpt-4o / gpt-4.1 family).
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
TOKENS_REPLY_PRIMING = 3

SHORT_REPLY_CHARS = 5
MAX_IMAGES = 64
MANY_IMAGES = 10

_MESSAGE_KEYS = frozenset(
    {"role", "content", "name", "weight", "tool_calls", "tool_call_id", "function_call"}
)
_SFT_KEYS = frozenset({"messages", "tools", "functions", "parallel_tool_calls"})
_DPO_KEYS = frozenset({"input", "preferred_output", "non_preferred_output"})
_DPO_INPUT_KEYS = frozenset({"messages", "tools", "parallel_tool_calls"})
_CHAT_ROLES = ("system", "user", "assistant", "tool")
_RFT_ROLES = ("developer", "system", "user", "assistant", "tool")
_OUTPUT_ROLES = ("assistant", "tool")


@dataclass(slots=True)
class BatchState:
    """What checking a batch of examples accumulates."""

    findings: list[Finding] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    text_slots: list[int] = field(default_factory=list)
    slot_overhead: list[int] = field(default_factory=list)  # 3 per example
    system_prompts: list[str | None] = field(default_factory=list)  # per example
    image_examples: int = 0

    def add(self, code: str, line: int, message: str) -> None:
        self.findings.append(Finding(code, line, message))

    def text(self, slot: int, text: str) -> None:
        self.texts.append(text)
        self.text_slots.append(slot)


@dataclass(slots=True)
class _Walk:
    """Facts gathered while walking one message list."""

    roles: list[str] = field(default_factory=list)
    assistants: int = 0
    trainable: int = 0
    images: int = 0
    system_prompt: str | None = None


class ExampleChecker:
    def __init__(self, method: str, base: BaseModel, role_tokens: dict[str, int], count: Any) -> None:
        self.method = method
        self.base = base
        self.role_tokens = role_tokens
        self._count = count  # TokenCounter.count, for the rare role name not in role_tokens

    # ------------------------------------------------------------------ entry point
    def check(self, obj: dict[str, Any], line: int, st: BatchState) -> None:
        example = len(st.system_prompts)
        st.slot_overhead.extend((TOKENS_REPLY_PRIMING, 0, 0))
        st.system_prompts.append(None)
        if self.method == DPO:
            images = self._dpo(obj, line, example, st)
        else:
            images = self._chat(obj, line, example, st)
        if images:
            st.image_examples += 1
            if images > MAX_IMAGES:
                st.add("too_many_images", line, f"{images} images in one example (at most {MAX_IMAGES})")
            elif images > MANY_IMAGES:
                st.add("many_images", line, f"{images} images in one example")

    # ------------------------------------------------------------------ SFT and RFT
    def _chat(self, obj: dict[str, Any], line: int, example: int, st: BatchState) -> int:
        rft = self.method == REINFORCEMENT
        if not rft:
            for key in obj:
                if key not in _SFT_KEYS:
                    st.add(
                        "unknown_key", line, f"unknown key '{key}' (allowed: {', '.join(sorted(_SFT_KEYS))})"
                    )
        if "functions" in obj:
            st.add("deprecated_functions", line, '"functions" is deprecated')
        tools = self._tools(obj, line, "", example * 3, st)
        messages = obj.get("messages")
        if messages is None:
            st.add("missing_messages", line, 'no "messages" key')
            return 0
        if not isinstance(messages, list) or not messages:
            st.add("invalid_messages", line, '"messages" must be a non-empty list')
            return 0
        walk = self._messages(
            messages, line, "messages", example * 3, tools, _RFT_ROLES if rft else _CHAT_ROLES, st
        )
        st.system_prompts[example] = walk.system_prompt
        if rft:
            if walk.roles and walk.roles[-1] != "user":
                st.add("rft_last_not_user", line, f"the last message is from '{walk.roles[-1]}', not 'user'")
            return walk.images
        if walk.assistants == 0:
            st.add("no_assistant_message", line, "the conversation has no assistant message")
        elif walk.trainable == 0:
            st.add("no_trainable_assistant", line, 'every assistant message has "weight": 0')
        else:
            if "user" not in walk.roles:
                st.add("no_user_message", line, "the conversation has no user message")
            if walk.roles and walk.roles[-1] != "assistant":
                st.add("ends_without_assistant", line, f"the last message is from '{walk.roles[-1]}'")
        return walk.images

    # ------------------------------------------------------------------ DPO
    def _dpo(self, obj: dict[str, Any], line: int, example: int, st: BatchState) -> int:
        for key in obj:
            if key not in _DPO_KEYS:
                st.add("unknown_key", line, f"unknown key '{key}' (allowed: {', '.join(sorted(_DPO_KEYS))})")
        missing = [k for k in ("input", "preferred_output", "non_preferred_output") if k not in obj]
        for key in missing:
            st.add("dpo_missing_field", line, f'no "{key}"')
        images = 0
        inp = obj.get("input")
        tools: set[str] | None = None
        if "input" in obj:
            if not isinstance(inp, dict) or not isinstance(inp.get("messages"), list) or not inp["messages"]:
                st.add(
                    "dpo_invalid_input", line, '"input" must be an object with a non-empty "messages" list'
                )
                inp = None
            else:
                for key in inp:
                    if key not in _DPO_INPUT_KEYS:
                        st.add("unknown_key", line, f"unknown key 'input.{key}'")
                tools = self._tools(inp, line, "input.", example * 3, st)
                walk = self._messages(
                    inp["messages"], line, "input.messages", example * 3, tools, _CHAT_ROLES, st
                )
                st.system_prompts[example] = walk.system_prompt
                images += walk.images
                if walk.roles and walk.roles[-1] not in ("user", "tool"):
                    st.add(
                        "dpo_invalid_input", line, f"input.messages ends with '{walk.roles[-1]}', not 'user'"
                    )
        outputs = []
        for part, key in ((1, "preferred_output"), (2, "non_preferred_output")):
            if key not in obj:
                continue
            out = obj[key]
            if not isinstance(out, list) or not out:
                st.add("dpo_invalid_output", line, f'"{key}" must be a non-empty list of messages')
                continue
            walk = self._messages(out, line, key, example * 3 + part, tools, _OUTPUT_ROLES, st)
            images += walk.images
            if walk.assistants == 0:
                st.add("dpo_invalid_output", line, f'"{key}" has no assistant message')
            outputs.append(out)
        if len(outputs) == 2 and outputs[0] == outputs[1]:
            st.add("dpo_identical_outputs", line, "preferred and non-preferred outputs are identical")
        return images

    # ------------------------------------------------------------------ shared pieces
    def _tools(
        self, obj: dict[str, Any], line: int, prefix: str, slot: int, st: BatchState
    ) -> set[str] | None:
        """Names of the declared functions (None when the example declares none)."""
        names: set[str] | None = None
        for key in ("tools", "functions"):
            if key not in obj:
                continue
            declared = obj[key]
            names = names or set()
            if not isinstance(declared, list):
                st.add("invalid_tools", line, f'"{prefix}{key}" must be a list')
                continue
            for i, tool in enumerate(declared):
                fn = tool.get("function") if isinstance(tool, dict) and key == "tools" else tool
                if key == "tools" and isinstance(tool, dict) and tool.get("type") != "function":
                    st.add("invalid_tools", line, f'{prefix}{key}[{i}].type must be "function"')
                    continue
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
                    st.add("invalid_tools", line, f"{prefix}{key}[{i}] has no function name")
                    continue
                params = fn.get("parameters")
                if params is not None and not isinstance(params, dict):
                    st.add(
                        "invalid_tools", line, f"{prefix}{key}[{i}].parameters must be a JSON schema object"
                    )
                names.add(fn["name"])
            st.text(slot, orjson.dumps(declared).decode())
        return names

    def _messages(
        self,
        messages: list[Any],
        line: int,
        where: str,
        slot: int,
        tools: set[str] | None,
        roles: tuple[str, ...],
        st: BatchState,
    ) -> _Walk:
        walk = _Walk()
        pending: dict[str, int] = {}  # tool_call id -> index of the assistant message
        seen_non_system = False
        unanswered_reported = False
        overhead = 0
        for i, msg in enumerate(messages):
            at = f"{where}[{i}]"
            if not isinstance(msg, dict):
                st.add("invalid_message", line, f"{at} is not an object")
                continue
            role = msg.get("role")
            if role not in roles:
                if role == "function" and where == "messages":
                    st.add("deprecated_functions", line, f"{at} uses the deprecated 'function' role")
                else:
                    st.add("invalid_role", line, f"{at}.role is {_show(role)}; use {', '.join(roles)}")
                    continue
            for key in msg:
                if key not in _MESSAGE_KEYS:
                    st.add("unknown_message_key", line, f"{at} has unknown key '{key}'")
            walk.roles.append(role)
            overhead += TOKENS_PER_MESSAGE + self._role_tokens(role)
            name = msg.get("name")
            if isinstance(name, str):
                overhead += TOKENS_PER_NAME
                st.text(slot, name)

            if role in ("system", "developer"):
                if seen_non_system:
                    st.add(
                        "system_not_first", line, f"{at} is a {role} message after the conversation started"
                    )
            else:
                seen_non_system = True

            if pending and role in ("user", "assistant") and not unanswered_reported:
                ids = ", ".join(sorted(pending))
                st.add(
                    "tool_call_unanswered", line, f"{at} follows tool call(s) {ids} that got no tool reply"
                )
                unanswered_reported = True
                pending.clear()

            weight = msg.get("weight", 1)
            if "weight" in msg:
                if role != "assistant":
                    st.add("weight_not_on_assistant", line, f'{at} is a {role} message with "weight"')
                elif type(weight) is not int or weight not in (0, 1):
                    st.add("invalid_weight", line, f"{at}.weight is {_show(weight)}; only 0 or 1 are allowed")
                    weight = 1

            calls = msg.get("tool_calls")
            has_call = calls is not None or msg.get("function_call") is not None
            if role == "assistant":
                walk.assistants += 1
                if weight != 0:
                    walk.trainable += 1
                if calls is not None:
                    self._tool_calls(calls, at, line, slot, tools, pending, st)
                if msg.get("function_call") is not None:
                    st.add("deprecated_functions", line, f'{at} uses the deprecated "function_call"')
            elif calls is not None:
                st.add("invalid_tool_call", line, f'{at} is a {role} message with "tool_calls"')
            if role == "tool":
                call_id = msg.get("tool_call_id")
                if not isinstance(call_id, str) or call_id not in pending:
                    st.add(
                        "tool_reply_without_call",
                        line,
                        f"{at}.tool_call_id {_show(call_id)} answers no open call",
                    )
                else:
                    del pending[call_id]

            text = self._content(msg, role, at, line, slot, has_call, walk, st)
            if text is not None:
                if role == "system" and walk.system_prompt is None and i == 0:
                    walk.system_prompt = text
                if role == "assistant" and weight != 0 and not has_call and where != "input.messages":
                    stripped = text.strip()
                    if not stripped:
                        st.add("empty_assistant_reply", line, f"{at} is an empty assistant reply")
                    elif len(stripped) < SHORT_REPLY_CHARS:
                        st.add("short_assistant_reply", line, f"{at} is only {_show(stripped)}")
        st.slot_overhead[slot] += overhead
        return walk

    def _content(
        self,
        msg: dict[str, Any],
        role: str,
        at: str,
        line: int,
        slot: int,
        has_call: bool,
        walk: _Walk,
        st: BatchState,
    ) -> str | None:
        """Queue the message's text for counting; return its plain text (None if absent)."""
        content = msg.get("content")
        if content is None:
            if not (role == "assistant" and has_call):
                st.add("missing_content", line, f"{at} has no content")
            return None
        if isinstance(content, str):
            st.text(slot, content)
            return content
        if not isinstance(content, list):
            st.add(
                "invalid_content", line, f"{at}.content is {_kind(content)}, not a string or a list of parts"
            )
            return None
        texts: list[str] = []
        for j, part in enumerate(content):
            pat = f"{at}.content[{j}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                st.text(slot, part["text"])
                texts.append(part["text"])
            elif kind == "image_url":
                walk.images += 1
                self._image(part.get("image_url"), role, pat, line, slot, walk.images == 1, st)
            else:
                st.add("invalid_content", line, f'{pat} is not a {{"type": "text"|"image_url"}} part')
        return "".join(texts)

    def _image(
        self, spec: Any, role: str, at: str, line: int, slot: int, first: bool, st: BatchState
    ) -> None:
        if role == "assistant":
            st.add("image_in_assistant", line, f"{at} puts an image in an assistant message")
            return
        if first and not self.base.vision:
            st.add("vision_not_supported", line, f"{at}: {self.base.id} does not fine-tune on images")
        if not isinstance(spec, dict):
            st.add("invalid_image_url", line, f'{at}.image_url must be an object with "url"')
            return
        detail = spec.get("detail", "auto")
        if detail not in DETAILS:
            st.add(
                "invalid_content", line, f"{at}.image_url.detail is {_show(detail)}; use low, high or auto"
            )
            detail = "auto"
        result = check_image_url(spec.get("url"), detail)
        if result.problem:
            st.add(result.problem, line, f"{at}: {result.detail}")
        st.slot_overhead[slot] += result.tokens

    def _tool_calls(
        self,
        calls: Any,
        at: str,
        line: int,
        slot: int,
        tools: set[str] | None,
        pending: dict[str, int],
        st: BatchState,
    ) -> None:
        if not isinstance(calls, list) or not calls:
            st.add("invalid_tool_call", line, f"{at}.tool_calls must be a non-empty list")
            return
        if tools is None:
            st.add("tool_calls_without_tools", line, f'{at} calls tools but the example declares no "tools"')
        for k, call in enumerate(calls):
            cat = f"{at}.tool_calls[{k}]"
            fn = call.get("function") if isinstance(call, dict) else None
            if (
                not isinstance(call, dict)
                or not isinstance(call.get("id"), str)
                or call.get("type", "function") != "function"
                or not isinstance(fn, dict)
                or not isinstance(fn.get("name"), str)
            ):
                st.add("invalid_tool_call", line, f'{cat} needs "id", "type": "function" and "function.name"')
                continue
            if tools is not None and fn["name"] not in tools:
                st.add("unknown_tool", line, f"{cat} calls '{fn['name']}', which \"tools\" does not declare")
            args = fn.get("arguments")
            parsed: Any = None
            if isinstance(args, str):
                try:
                    parsed = orjson.loads(args)
                except orjson.JSONDecodeError:
                    parsed = None
                st.text(slot, args)
            if not isinstance(parsed, dict):
                st.add(
                    "invalid_tool_arguments", line, f"{cat}.function.arguments is not a JSON object string"
                )
            st.text(slot, fn["name"])
            pending[call["id"]] = k

    def _role_tokens(self, role: str) -> int:
        tokens = self.role_tokens.get(role)
        if tokens is None:
            tokens = self.role_tokens[role] = int(self._count(role))
        return tokens


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _show(value: Any) -> str:
    if value is None:
        return "missing"
    text = repr(value) if not isinstance(value, str) else f"'{value}'"
    return text if len(text) <= 40 else text[:37] + "..."


def detect_method(obj: Any, base: BaseModel) -> str:
    """Guess the method from the first example: DPO has its own keys; RFT-only bases get RFT."""
    if isinstance(obj, dict) and ("preferred_output" in obj or "non_preferred_output" in obj):
        return DPO
    if base.methods == frozenset({REINFORCEMENT}):
        return REINFORCEMENT
    return SUPERVISED
