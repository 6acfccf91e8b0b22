"""Chat generation with a stand-in model and a fine-tune's adapter chain, for the emulator's API.

A loaded model is a base with its adapters merged (see ``localmodels.load_chain``), so outputs are
those of the trained model. Up to ``max_loaded`` such models stay in memory (least recently used
evicted; ~520 MB each for SmolLM2); each has a lock, so one model generates for one request at a
time while different models generate in parallel. ``on_text`` is called with that lock held:
keep it quick (hand the delta to a queue), or other requests for the model wait on it.

Decoding is a plain loop over the KV cache: greedy at temperature 0, otherwise sampling (with
nucleus filtering when ``top_p`` < 1) from a ``torch.Generator`` seeded by the request's seed.
Text is detokenized incrementally; ``text`` is by construction the concatenation of the deltas
passed to ``on_text``. Text that might be the start of a stop string is held back until it is
known not to be one, so a stop string never leaks into a stream.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftops.emulator.ml.chatdata import content_text, prompt_ids
from ftops.emulator.ml.localmodels import STAND_INS, load_chain, load_tokenizer, model_dir

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" | "length"


@dataclass
class Fit:
    """A prompt fitted into a stand-in's window: what the stand-in sees, and what was left out."""

    messages: list[dict[str, Any]]
    window: int  # the stand-in's context, in its own tokens
    original: int  # stand-in tokens of the prompt as sent
    tokens: int  # stand-in tokens of the fitted prompt
    turns: int  # conversation turns as sent (system messages aside)
    kept: int  # of them, the latest ones kept
    truncated: tuple[str, ...] = ()  # roles whose text was cut to fit

    @property
    def changed(self) -> bool:
        return self.kept < self.turns or bool(self.truncated)

    def note(self) -> str:
        """One line for a response header (ASCII), saying what the stand-in was shown."""
        parts = [f"kept the system message and the latest {self.kept} of {self.turns} turns"]
        if self.truncated:
            parts.append(f"cut the text of the {' and '.join(self.truncated)} message")
        parts.append(f"{self.original} -> {self.tokens} stand-in tokens (window {self.window})")
        return "; ".join(parts)


SYSTEM_ROLES = ("system", "developer")


@dataclass
class _Slot:
    lock: threading.Lock = field(default_factory=threading.Lock)
    model: PreTrainedModel | None = None
    tokenizer: PreTrainedTokenizerBase | None = None


def _check_base(base: str) -> None:
    if base not in STAND_INS:
        raise ValueError(f"unknown stand-in model {base!r}; known: {', '.join(sorted(STAND_INS))}")


def _eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    ids: set[int] = set()
    for value in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list):
            ids.update(int(v) for v in value)
    return ids


def _held_back(text: str, stops: list[str]) -> int:
    """Length of the longest suffix of text that is a proper prefix of a stop string."""
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:n]):
                longest = n
                break
    return longest


def _pick(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> int:
    import torch

    if temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        # Keep the smallest head whose mass reaches top_p (always at least the top token).
        outside = sorted_probs.cumsum(0) - sorted_probs >= top_p
        sorted_probs[outside] = 0.0
        choice = torch.multinomial(sorted_probs, 1, generator=generator)
        return int(order[choice])
    return int(torch.multinomial(probs, 1, generator=generator))


class ChatEngine:
    """Generates chat completions; safe to call from several threads."""

    def __init__(self, cache_dir: Path, max_loaded: int = 3) -> None:
        self._cache_dir = Path(cache_dir)
        self._max_loaded = max(1, max_loaded)
        self._lock = threading.Lock()
        self._slots: OrderedDict[tuple[str, tuple[str, ...]], _Slot] = OrderedDict()
        self._tokenizers: dict[str, tuple[threading.Lock, PreTrainedTokenizerBase]] = {}
        self._windows: dict[str, int] = {}
        # Concurrent first requests imported transformers' AutoConfig from several threads at once,
        # and its lazy module then answered "cannot import name 'AutoConfig'" (a 500) to some.
        self._window_lock = threading.Lock()

    def _slot(self, base: str, adapters: list[Path]) -> _Slot:
        key = (base, tuple(str(Path(a).resolve()) for a in adapters))
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = _Slot()
            self._slots.move_to_end(key)
            while len(self._slots) > self._max_loaded:
                # A request still using an evicted model keeps it alive until it finishes.
                self._slots.popitem(last=False)
        return slot

    def generate(
        self,
        base: str,
        adapters: list[Path],
        messages: list[dict[str, Any]],
        *,
        max_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: list[str] | None = None,
        on_text: Callable[[str], None] | None = None,
        tools: list[Any] | None = None,
    ) -> Generation:
        """One assistant reply to messages (roles and content as in training data).

        ``tools`` (optional, an extension) is rendered into the system prompt as training does.
        """
        import torch

        _check_base(base)
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        stops = [s for s in (stop or []) if s]
        slot = self._slot(base, adapters)
        with slot.lock, torch.inference_mode():
            if slot.model is None or slot.tokenizer is None:
                slot.model, slot.tokenizer = load_chain(base, self._cache_dir, adapters)
            model, tokenizer = slot.model, slot.tokenizer
            ids = prompt_ids(tokenizer, messages, tools)
            context = int(getattr(model.config, "max_position_embeddings", 2048))
            if len(ids) >= context:
                raise ValueError(f"the prompt has {len(ids)} tokens; the model's context is {context}")
            budget = min(max_tokens, context - len(ids))
            eos = _eos_ids(model, tokenizer)
            generator = torch.Generator().manual_seed(seed if seed is not None else secrets.randbits(63))

            produced: list[int] = []
            text = ""
            sent = 0
            # Incremental detokenization: decode from a token offset whose text is settled, so a
            # multi-byte character split across tokens is only emitted once complete.
            prefix_offset = read_offset = 0
            finish = "length"
            cut = False
            past: Any = None
            step_input = torch.tensor([ids], dtype=torch.long)
            for position in range(budget + 1):
                last = position == budget  # a last pass only flushes text held back
                if not last:
                    out = model(input_ids=step_input, past_key_values=past, use_cache=True, logits_to_keep=1)
                    past = out.past_key_values
                    token = _pick(out.logits[0, -1].float(), temperature, top_p, generator)
                    produced.append(token)
                    step_input = torch.tensor([[token]], dtype=torch.long)
                    if token in eos:
                        finish = "stop"
                        last = True
                settled = str(tokenizer.decode(produced[prefix_offset:read_offset], skip_special_tokens=True))
                current = str(tokenizer.decode(produced[prefix_offset:], skip_special_tokens=True))
                if len(current) > len(settled) and (last or not current.endswith("\ufffd")):
                    text += current[len(settled) :]
                    prefix_offset, read_offset = read_offset, len(produced)
                    found = [i for i in (text.find(s, sent) for s in stops) if i >= 0]
                    if found:
                        text = text[: min(found)]
                        finish, cut = "stop", True
                if last or cut:
                    break
                ready = len(text) - _held_back(text, stops)
                if on_text is not None and ready > sent:
                    on_text(text[sent:ready])
                    sent = ready
            if on_text is not None and len(text) > sent:
                on_text(text[sent:])
            return Generation(text, len(ids), len(produced), finish)

    def _tokenizer(self, base: str) -> tuple[threading.Lock, PreTrainedTokenizerBase]:
        _check_base(base)
        with self._lock:
            entry = self._tokenizers.get(base)
        if entry is None:
            loaded = load_tokenizer(base, self._cache_dir)
            with self._lock:
                entry = self._tokenizers.setdefault(base, (threading.Lock(), loaded))
        return entry

    def window(self, base: str) -> int:
        """The stand-in's context length in its own tokens (from its config; no weights loaded)."""
        with self._lock:
            known = self._windows.get(base)
        if known is None:
            with self._window_lock:
                from transformers import AutoConfig

                config = AutoConfig.from_pretrained(model_dir(base, self._cache_dir))
                known = int(getattr(config, "max_position_embeddings", 2048))
            with self._lock:
                self._windows[base] = known
        return known

    def count_prompt_tokens(
        self, base: str, messages: list[dict[str, Any]], tools: list[Any] | None = None
    ) -> int:
        """Tokens the prompt of a chat request takes (without loading the model's weights)."""
        # Fast tokenizers are not safe to call from two threads at once ("Already borrowed").
        lock, tokenizer = self._tokenizer(base)
        with lock:
            return len(prompt_ids(tokenizer, messages, tools))

    def fit(
        self,
        base: str,
        messages: list[dict[str, Any]],
        max_tokens: int,
        tools: list[Any] | None = None,
    ) -> Fit:
        """Fit a prompt into the stand-in's window, leaving room to answer (up to `max_tokens`, at
        most a quarter of the window): the leading system messages stay, then the latest turns
        that fit; when even the system message and the last turn are too long, the system text
        keeps its start (at most half the room) and the last turn its end."""
        window = self.window(base)
        budget = window - max(1, min(max_tokens, window // 4))
        lock, tokenizer = self._tokenizer(base)
        with lock:
            return _fit(tokenizer, messages, tools, window, budget)


def _fit(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[dict[str, Any]],
    tools: list[Any] | None,
    window: int,
    budget: int,
) -> Fit:
    def count(msgs: list[dict[str, Any]]) -> int:
        return len(prompt_ids(tokenizer, msgs, tools))

    lead = 0
    while lead < len(messages) - 1 and messages[lead].get("role") in SYSTEM_ROLES:
        lead += 1
    head, turns = list(messages[:lead]), list(messages[lead:])
    original = count(messages)
    if original <= budget:
        return Fit(list(messages), window, original, original, len(turns), len(turns))
    # The fewest dropped turns that fit (dropping more never makes the prompt longer).
    low, high = 0, len(turns) - 1
    while low < high:
        middle = (low + high) // 2
        if count(head + turns[middle:]) <= budget:
            high = middle
        else:
            low = middle + 1
    kept = turns[low:]
    fitted = head + kept
    if count(fitted) <= budget:
        return Fit(fitted, window, original, count(fitted), len(turns), len(kept))

    def tokens_of(text: str) -> list[int]:
        return [int(i) for i in tokenizer.encode(text, add_special_tokens=False)]

    def cut(message: dict[str, Any], keep: int, from_end: bool) -> dict[str, Any]:
        ids = tokens_of(content_text(message.get("content")))
        part = ids[-keep:] if from_end and keep > 0 else ids[:keep] if keep > 0 else []
        return {**message, "content": str(tokenizer.decode(part, skip_special_tokens=True))}

    truncated: list[str] = []
    last = kept[-1]
    # No token is longer than this many characters in practice: cutting the text to budget x 16
    # characters first spares tokenizing all of a huge prompt again on every pass below.
    chars = budget * 16
    text = content_text(last.get("content"))
    if len(text) > chars:
        last = {**last, "content": text[-chars:]}
    head = [
        {**m, "content": content_text(m.get("content"))[:chars]}
        if len(content_text(m.get("content"))) > chars
        else m
        for m in head
    ]
    if head and count([*head, {**last, "content": ""}]) > budget // 2:
        share = max(1, budget // 2 // len(head) - 16)
        head = [cut(m, share, from_end=False) for m in head]
        truncated.append("system")
    for _ in range(8):
        fitted = [*head, last]
        over = count(fitted) - budget
        if over <= 0:
            break
        have = len(tokens_of(content_text(last.get("content"))))
        last = cut(last, have - over - 4, from_end=True)
        if str(last.get("role")) not in truncated:
            truncated.append(str(last.get("role", "user")))
    fitted = [*head, last]
    if count(fitted) > budget:  # pathological templates: show the stand-in the last turn's end only
        fitted = [cut(last, budget // 2, from_end=True)]
    return Fit(fitted, window, original, count(fitted), len(turns), 1, tuple(truncated))
