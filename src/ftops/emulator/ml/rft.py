"""Reinforcement fine-tuning of a stand-in model on the CPU: GRPO-style, with LoRA, pause/resume.

Each step takes `batch_size` prompts of the training file, samples a group of completions for each
(all prompts and samples in one batched `generate`), scores every completion with the job's grader
(`ftops.evaluation.rft_graders`, the same code a gate runs; a python grader runs once per step
for the whole batch), and updates the LoRA adapter with the policy gradient of group-relative
advantages (Shao et al. 2024, GRPO):

    A_i = (r_i - mean(r_group)) / (std(r_group) + 1e-4)      (population std)
    loss = mean over sequences of [ mean over its tokens of -min(ρ_t A_i, clip(ρ_t, 1-ε, 1+ε) A_i) ]

with ρ_t = π(o_t)/π_old(o_t). One optimisation pass per batch of samples makes π_old the sampling
policy itself, so ρ = 1 and the gradient is A_i ∇ log π(o_i) per token; the clipped form is kept so
the loss is GRPO's. No KL penalty (β = 0, as trl's GRPOTrainer defaults to): the LoRA's low rank and
the few steps keep the policy near the base.

Azure's hyperparameters map to the stand-in as follows: `compute_multiplier` scales the group size
(4 samples per prompt at 1.0, 2 to 16); `reasoning_effort` sets the completion budget (the stand-in
has no separate reasoning phase, so reasoning-token means are 0); `eval_interval` is the steps
between validation passes and `eval_samples` the samples per validation prompt. Validation samples
use a generator seeded by the job's seed, so every pass draws alike and the means compare.

Determinism: the LoRA init and each step's sampling draw from generators seeded by (seed, step),
and the prompt order of epoch e is `epoch_order(seed, e, n)`; a resumed run therefore continues
exactly where the paused one stopped.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ftops.catalog import auto_epochs
from ftops.emulator.ml.train import (
    BASE_LEARNING_RATE,
    DEFAULT_BASE_LEARNING_RATE,
    MAX_GRAD_NORM,
    add_lora,
    atomic_dir,
    epoch_order,
    save_adapter,
    steps_per_epoch,
)
from ftops.evaluation import rft_graders

if TYPE_CHECKING:
    import torch

REINFORCEMENT = "reinforcement"
RESUME_FORMAT = 1
CLIP_EPSILON = 0.2
ADVANTAGE_EPSILON = 1e-4
BASE_GROUP_SIZE = 4  # samples per prompt at compute_multiplier 1
COMPLETION_TOKENS = {"low": 8, "default": 16, "medium": 16, "high": 32}
AUTO_EVAL_SAMPLES = 2
# RFT updates from sampled rewards, a noisier signal than SFT's targets: a tenth of the SFT rate.
RFT_RATE_FACTOR = 0.1
# Azure's RFT columns first (fine-tuning docs), then the parts of a multi grader.
RESULT_COLUMNS = (
    "step",
    "train_reward_mean",
    "valid_reward_mean",
    "train_reasoning_tokens_mean",
    "valid_reasoning_tokens_mean",
    "full_valid_reward_mean",
    "train_sample_tokens_mean",
    "train_grader_errors",
)


@dataclass
class RftHyper:
    n_epochs: int | None = None  # None = auto
    batch_size: int | None = None
    learning_rate_multiplier: float | None = None
    eval_interval: int | None = None
    eval_samples: int | None = None
    compute_multiplier: float | None = None
    reasoning_effort: str = "default"


@dataclass
class RftRequest:
    base: str  # a STAND_INS name
    grader: dict[str, Any]  # Azure's grader object
    training_file: Path
    validation_file: Path
    hyper: RftHyper
    seed: int
    work_dir: Path
    cache_dir: Path
    parent_adapters: list[Path] = field(default_factory=list)
    resume_from: Path | None = None
    fail_at_step: int | None = None
    # Azure pauses an RFT job at a cost ceiling; the emulator at this much training time (None: no cap).
    pause_after_seconds: float | None = None
    # A score_model grader's model -> the stand-in that answers for it (as chat completions do).
    grader_stand_ins: dict[str, str] = field(default_factory=dict)


class RftReporter(Protocol):
    def event(self, message: str, level: str = "info") -> None: ...

    def rewards(self, step: int, total_steps: int, row: dict[str, float]) -> None: ...

    def checkpoint(self, epoch: int, step: int, path: Path, metrics: dict[str, float]) -> None: ...

    def control(self) -> str | None: ...


@dataclass
class RftResult:
    status: str  # "succeeded" | "cancelled" | "paused" | "ceiling" (paused at the cost ceiling)
    steps: int
    total_steps: int
    trained_tokens: int  # prompt and completion tokens of every sample trained on
    adapter: Path | None
    resolved: dict[str, Any]
    training_seconds: float


def resolve_rft_hyper(hyper: RftHyper, n_examples: int) -> dict[str, Any]:
    n_epochs = auto_epochs(n_examples) if hyper.n_epochs is None else int(hyper.n_epochs)
    batch_size = min(8, max(1, n_examples // 8)) if hyper.batch_size is None else int(hyper.batch_size)
    multiplier = 1.0 if hyper.learning_rate_multiplier is None else float(hyper.learning_rate_multiplier)
    compute = 1.0 if hyper.compute_multiplier is None else float(hyper.compute_multiplier)
    per_epoch = steps_per_epoch(n_examples, batch_size)
    if n_epochs < 1 or batch_size < 1 or not multiplier > 0 or not compute > 0:
        raise ValueError(
            "n_epochs, batch_size, learning_rate_multiplier and compute_multiplier must be positive"
        )
    if hyper.reasoning_effort not in COMPLETION_TOKENS:
        raise ValueError(f"reasoning_effort must be one of {', '.join(COMPLETION_TOKENS)}")
    return {
        "n_epochs": n_epochs,
        "batch_size": batch_size,
        "learning_rate_multiplier": multiplier,
        "eval_interval": per_epoch if hyper.eval_interval is None else int(hyper.eval_interval),
        "eval_samples": AUTO_EVAL_SAMPLES if hyper.eval_samples is None else int(hyper.eval_samples),
        "compute_multiplier": compute,
        "reasoning_effort": hyper.reasoning_effort,
    }


def group_size(compute_multiplier: float) -> int:
    return max(2, min(16, round(BASE_GROUP_SIZE * compute_multiplier)))


# --- the objective ------------------------------------------------------------------------------


def group_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """[prompts, group] rewards -> advantages relative to each prompt's group (0 where all agree)."""
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True, unbiased=False)
    return (rewards - mean) / (std + ADVANTAGE_EPSILON)


def policy_loss(
    logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """GRPO's clipped surrogate: logps/old_logps/mask are [samples, tokens], advantages [samples]."""
    import torch

    ratio = torch.exp(logps - old_logps)
    adv = advantages[:, None]
    per_token = -torch.minimum(ratio * adv, torch.clamp(ratio, 1 - CLIP_EPSILON, 1 + CLIP_EPSILON) * adv)
    weights = mask.to(per_token.dtype)
    per_sample = (per_token * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
    return per_sample.mean()


# --- sampling and scoring -----------------------------------------------------------------------


@dataclass
class Samples:
    ids: torch.Tensor  # [n, prompt + completion] left-padded prompt then completion (pad after eos)
    attention: torch.Tensor  # [n, width]
    completion: torch.Tensor  # [n, width] bool: the completion's tokens up to and including eos
    texts: list[str]
    prompt_width: int


def _prompt_batch(tokenizer: Any, prompts: Sequence[list[int]], pad_id: int) -> tuple[Any, Any]:
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        attention[row, width - len(prompt) :] = 1
    return ids, attention


def sample(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[list[int]],
    per_prompt: int,
    max_new_tokens: int,
    seed: int,
    eos: set[int],
    pad_id: int,
) -> Samples:
    """`per_prompt` completions of every prompt, in one batched generation (rows prompt-major)."""
    import torch

    ids, attention = _prompt_batch(tokenizer, prompts, pad_id)
    ids = ids.repeat_interleave(per_prompt, dim=0)
    attention = attention.repeat_interleave(per_prompt, dim=0)
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=attention,
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            max_new_tokens=max_new_tokens,
            pad_token_id=pad_id,
            eos_token_id=sorted(eos),
        )
    width = ids.shape[1]
    generated = out[:, width:]
    completion = torch.zeros_like(out, dtype=torch.bool)
    texts = []
    for row in range(out.shape[0]):
        tokens = generated[row].tolist()
        end = next((i + 1 for i, t in enumerate(tokens) if t in eos), len(tokens))
        completion[row, width : width + end] = True
        texts.append(str(tokenizer.decode(tokens[:end], skip_special_tokens=True)))
    full_attention = torch.cat([attention, completion[:, width:].long()], dim=1)
    return Samples(out, full_attention, completion, texts, width)


def completion_logps(model: Any, batch: Samples) -> torch.Tensor:
    """[n, width - 1] log-probability of each completion token (position t predicts token t + 1;
    0 where no completion token is predicted), aligned with `completion[:, 1:]`."""
    import torch

    from ftops.emulator.ml.train import _inner

    lm = _inner(model)
    positions = (batch.attention.cumsum(dim=1) - 1).clamp(min=0)
    hidden = lm.get_decoder()(
        input_ids=batch.ids, attention_mask=batch.attention, position_ids=positions, use_cache=False
    ).last_hidden_state[:, :-1]
    select = batch.completion[:, 1:]
    logits = lm.get_output_embeddings()(hidden[select]).float()
    targets = batch.ids[:, 1:][select]
    token_logps = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None])[:, 0]
    out = torch.zeros(select.shape, dtype=token_logps.dtype)
    out[select] = token_logps
    return out


def score(
    grader: Any,
    texts: Sequence[str],
    items: Sequence[dict[str, Any]],
    judge: rft_graders.Judge | None = None,
) -> tuple[list[float], dict[str, list[float]], int]:
    """Rewards, each multi part's scores, and how many samples the grader could not score."""
    pairs = [(rft_graders.Sample.of(t), i) for t, i in zip(texts, items, strict=True)]
    scores = rft_graders.grade_batch(grader, pairs, judge)
    parts: dict[str, list[float]] = {}
    for s in scores:
        for name, value in s.by_grader.items():
            parts.setdefault(name, []).append(value)
    return [s.value for s in scores], parts, sum(1 for s in scores if s.error)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


# --- the loop -----------------------------------------------------------------------------------


@dataclass
class _Setup:
    model: Any
    tokenizer: Any
    eos: set[int]
    pad_id: int
    grader: Any
    train_prompts: list[list[int]]
    train_items: list[dict[str, Any]]
    valid_prompts: list[list[int]]
    valid_items: list[dict[str, Any]]
    judge: rft_graders.Judge | None


def _load(req: RftRequest) -> _Setup:
    from ftops.emulator.ml.chatdata import prompt_ids, read_jsonl
    from ftops.emulator.ml.infer import _eos_ids
    from ftops.emulator.ml.localmodels import load_chain, load_tokenizer

    tokenizer = load_tokenizer(req.base, req.cache_dir)
    base_model, _ = load_chain(req.base, req.cache_dir, req.parent_adapters)
    model: Any = add_lora(base_model, req.seed)
    train_items, valid_items = read_jsonl(req.training_file), read_jsonl(req.validation_file)
    if not train_items or not valid_items:
        raise ValueError("RFT needs examples in both the training and the validation file")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return _Setup(
        model,
        tokenizer,
        _eos_ids(model, tokenizer),
        int(pad),
        rft_graders.parse(req.grader),
        [prompt_ids(tokenizer, i["messages"]) for i in train_items],
        train_items,
        [prompt_ids(tokenizer, i["messages"]) for i in valid_items],
        valid_items,
        _judge(req) if req.grader_stand_ins else None,
    )


def _judge(req: RftRequest) -> rft_graders.Judge:
    """A score_model's grader model, answered by its stand-in base model (no adapter)."""
    from ftops.emulator.ml.infer import ChatEngine

    engine = ChatEngine(req.cache_dir, max_loaded=1)

    def judge(model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> str:
        return engine.generate(
            req.grader_stand_ins[model],
            [],
            list(messages),
            max_tokens=int(params.get("max_completions_tokens") or 32),
            temperature=float(params.get("temperature", 1.0)),
            top_p=float(params.get("top_p", 1.0)),
            seed=params.get("seed", req.seed),
        ).text

    return judge


def validation_reward(
    setup: _Setup, per_prompt: int, max_new_tokens: int, seed: int
) -> tuple[float, dict[str, float]]:
    """Mean reward over `per_prompt` samples of every validation prompt, and of each multi part."""
    setup.model.eval()
    batch = sample(
        setup.model,
        setup.tokenizer,
        setup.valid_prompts,
        per_prompt,
        max_new_tokens,
        seed,
        setup.eos,
        setup.pad_id,
    )
    items = [item for item in setup.valid_items for _ in range(per_prompt)]
    rewards, parts, _ = score(setup.grader, batch.texts, items, setup.judge)
    return _mean(rewards), {k: _mean(v) for k, v in parts.items()}


def train_rft(req: RftRequest, reporter: RftReporter) -> RftResult:
    import torch
    from safetensors.torch import load_file, save_file

    torch.set_num_threads(os.cpu_count() or 1)
    work_dir = Path(req.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    reporter.event(f"Loading stand-in model {req.base}.")
    setup = _load(req)
    n = len(setup.train_items)
    resolved = resolve_rft_hyper(req.hyper, n)
    epochs, batch_size = int(resolved["n_epochs"]), int(resolved["batch_size"])
    per_epoch = steps_per_epoch(n, batch_size)
    total = epochs * per_epoch
    group = group_size(float(resolved["compute_multiplier"]))
    budget = COMPLETION_TOKENS[str(resolved["reasoning_effort"])]
    eval_every, eval_samples = int(resolved["eval_interval"]), int(resolved["eval_samples"])
    lr = BASE_LEARNING_RATE.get(req.base, DEFAULT_BASE_LEARNING_RATE) * RFT_RATE_FACTOR
    lr *= float(resolved["learning_rate_multiplier"])
    params = {name: p for name, p in setup.model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW(list(params.values()), lr=lr, weight_decay=0.0)

    done, trained_tokens, seconds = 0, 0, 0.0
    if req.resume_from is not None:
        state = json.loads((Path(req.resume_from) / "state.json").read_text())
        if (
            state.get("format") != RESUME_FORMAT
            or state.get("resolved") != resolved
            or state.get("seed") != req.seed
        ):
            raise ValueError(f"resume state {req.resume_from} was written for another job")
        saved = load_file(str(Path(req.resume_from) / "lora.safetensors"))
        with torch.no_grad():
            for name, tensor in saved.items():
                params[name].copy_(tensor)
        optimizer.load_state_dict(torch.load(Path(req.resume_from) / "optimizer.pt", weights_only=True))
        done, trained_tokens, seconds = (
            int(state["steps_done"]),
            int(state["trained_tokens"]),
            float(state["seconds"]),
        )
        reporter.event(f"Resuming training at step {done + 1}/{total}.")
    reporter.event(
        f"Training started: {n} prompts, {epochs} epochs, batch size {batch_size}, {group} samples per "
        f"prompt, {total} steps, learning rate {lr:g} (reinforcement, grader "
        f"{setup.grader.name or setup.grader.type})."
    )
    meta = {"base": req.base, "method": REINFORCEMENT, "parents": [str(p) for p in req.parent_adapters]}
    last_valid: tuple[float, dict[str, float]] | None = None

    def write_resume(step_done: int) -> None:
        with atomic_dir(work_dir / "resume") as tmp:
            save_file({k: v.detach().contiguous() for k, v in params.items()}, str(tmp / "lora.safetensors"))
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            state = {
                "format": RESUME_FORMAT,
                "seed": req.seed,
                "resolved": resolved,
                "steps_done": step_done,
                "trained_tokens": trained_tokens,
                "seconds": seconds,
            }
            (tmp / "state.json").write_text(json.dumps(state))

    def stopped(status: str) -> RftResult:
        return RftResult(status, done, total, trained_tokens, None, resolved, seconds)

    for epoch in range(done // per_epoch, epochs):
        order = epoch_order(req.seed, epoch, n)
        for index in range(done - epoch * per_epoch, per_epoch):
            step = epoch * per_epoch + index + 1
            wanted = reporter.control()
            if wanted == "cancel":
                reporter.event(f"Training cancelled before step {step}/{total}.")
                return stopped("cancelled")
            if wanted == "pause":
                write_resume(done)
                reporter.event(f"Training state saved at step {done}/{total}.")
                return stopped("paused")
            if req.pause_after_seconds is not None and seconds >= req.pause_after_seconds:
                write_resume(done)
                return stopped("ceiling")
            if req.fail_at_step is not None and step == req.fail_at_step:
                raise RuntimeError(f"injected failure at step {step}")
            started = time.monotonic()
            chosen = order[index * batch_size : (index + 1) * batch_size]
            setup.model.eval()  # sampling: no dropout (there is none) and no autograd
            batch = sample(
                setup.model,
                setup.tokenizer,
                [setup.train_prompts[i] for i in chosen],
                group,
                budget,
                (req.seed << 20) + step,
                setup.eos,
                setup.pad_id,
            )
            items = [setup.train_items[i] for i in chosen for _ in range(group)]
            rewards, parts, errors = score(setup.grader, batch.texts, items, setup.judge)
            advantages = group_advantages(torch.tensor(rewards).view(len(chosen), group)).flatten()
            setup.model.train()
            optimizer.zero_grad(set_to_none=True)
            logps = completion_logps(setup.model, batch)
            loss = policy_loss(logps, logps.detach(), advantages, batch.completion[:, 1:])
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(list(params.values()), MAX_GRAD_NORM)
            optimizer.step()
            trained_tokens += int(batch.attention.sum())
            seconds += time.monotonic() - started
            done = step

            row: dict[str, float] = {
                "train_reward_mean": _mean(rewards),
                "train_reasoning_tokens_mean": 0.0,
                "train_sample_tokens_mean": float(batch.completion.sum()) / len(rewards),
                "train_grader_errors": float(errors),
            }
            row.update({f"train_reward_mean_{k}": _mean(v) for k, v in parts.items()})
            if step % eval_every == 0 or step == total:
                last_valid = validation_reward(setup, eval_samples, budget, req.seed)
                row.update(valid_reward_mean=last_valid[0], valid_reasoning_tokens_mean=0.0)
                row.update({f"valid_reward_mean_{k}": v for k, v in last_valid[1].items()})
            reporter.rewards(step, total, row)

        # End of epoch: a checkpoint with its reward on the whole validation file.
        full, full_parts = validation_reward(setup, eval_samples, budget, req.seed)
        metrics = {"step": float(done), "full_valid_reward_mean": full}
        metrics.update({f"full_valid_reward_mean_{k}": v for k, v in full_parts.items()})
        if last_valid is not None:
            metrics["valid_reward_mean"] = last_valid[0]
        path = save_adapter(
            setup.model, work_dir / "checkpoints" / f"step-{done}", {**meta, "step": done, "epoch": epoch + 1}
        )
        reporter.checkpoint(epoch + 1, done, path, metrics)

    setup.model.eval()
    adapter = save_adapter(setup.model, work_dir / "adapter", {**meta, "step": done, "epoch": epochs})
    shutil.rmtree(work_dir / "resume", ignore_errors=True)
    reporter.event(
        f"Training completed: {done} steps, {trained_tokens} tokens sampled and trained on, "
        f"{math.ceil(seconds)} s of training."
    )
    return RftResult("succeeded", done, total, trained_tokens, adapter, resolved, seconds)
