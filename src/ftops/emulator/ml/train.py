"""LoRA fine-tuning of a stand-in model on the CPU: supervised (SFT) and DPO, with pause/resume.

Learning rate: ``BASE_LEARNING_RATE[base] * learning_rate_multiplier``; "auto" resolves the
multiplier to 1.0. The bases are calibrated per stand-in so that auto hyperparameters visibly
lower the loss within a few epochs of ~60 examples: 1e-3 for SmolLM2 (the upper end of usual LoRA
rates: 3 epochs of data/support-bot take the full validation loss from 2.74 after epoch 1 to 2.59;
2e-4 barely moves it in 24 steps) and 1e-2 for tiny-test, whose random frozen weights need large
adapter updates before anything is learned.

Determinism: the LoRA initialisation draws from ``torch.manual_seed(seed)`` and the example order
of epoch ``e`` is a permutation drawn from a generator seeded with ``(seed, e)``; nothing else is
random (dropout is 0), so the same request gives the same losses, and a resumed run (adapter,
optimizer state and position restored) continues exactly where the paused one stopped.

Loss: mean cross-entropy over the trained tokens of the batch. Logits are computed only at those
positions (the hidden states of the others never reach the vocabulary projection), which is the
same loss as the full-logits computation at a fraction of the projection cost.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ftops.catalog import auto_epochs
from ftops.emulator.ml.chatdata import DEFAULT_MAX_TOKENS, DPOPair, Tokenized

if TYPE_CHECKING:
    import torch
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

SUPERVISED = "supervised"
DPO = "dpo"

BASE_LEARNING_RATE: dict[str, float] = {"smollm2-135m-instruct": 1e-3, "tiny-test": 1e-2}
DEFAULT_BASE_LEARNING_RATE = 2e-4
AUTO_LEARNING_RATE_MULTIPLIER = 1.0
AUTO_BETA = 0.1
MAX_GRAD_NORM = 1.0
# Padded tokens per forward pass; batches are split into micro-batches of about this size.
MICRO_BATCH_TOKENS = 1024

LORA_R = 8
LORA_ALPHA = 16
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")

RESUME_FORMAT = 1
ADAPTER_META = "ftops_adapter.json"


@dataclass
class Hyper:
    n_epochs: int | None = None  # None = auto
    batch_size: int | None = None  # None = auto
    learning_rate_multiplier: float | None = None  # None = auto
    beta: float | None = None  # DPO only; None = auto (0.1)


@dataclass
class TrainRequest:
    base: str  # a STAND_INS name
    method: str  # "supervised" | "dpo"
    training_file: Path
    validation_file: Path | None
    hyper: Hyper
    seed: int
    work_dir: Path  # everything this job writes goes under here
    cache_dir: Path  # passed to load_base
    # Continual training: adapters of earlier fine-tunes, merged in order before the new LoRA.
    parent_adapters: list[Path] = field(default_factory=list)
    resume_from: Path | None = None  # a resume state written by an earlier pause
    # Fault injection: raise RuntimeError(f"injected failure at step {n}") when step n starts.
    fail_at_step: int | None = None


class Reporter(Protocol):
    def event(self, message: str, level: str = "info") -> None: ...

    def metrics(
        self,
        step: int,
        total_steps: int,
        train_loss: float,
        train_mean_token_accuracy: float,
        valid_loss: float | None,
        valid_mean_token_accuracy: float | None,
    ) -> None: ...

    def checkpoint(self, epoch: int, step: int, path: Path, metrics: dict[str, float]) -> None: ...

    def control(self) -> str | None: ...  # polled before every step: "cancel", "pause" or None


@dataclass
class TrainResult:
    status: str  # "succeeded" | "cancelled" | "paused"
    steps: int  # steps done in total (including before a resume)
    total_steps: int
    trained_tokens: int  # non-padding tokens processed, summed over all epochs
    adapter: Path | None  # final LoRA adapter dir when succeeded
    resolved: dict[str, float | int]  # the hyperparameters actually used (auto resolved)


def resolve_hyper(hyper: Hyper, n_examples: int, method: str) -> dict[str, float | int]:
    """The hyperparameters a job runs with: given values checked, "auto" (None) ones filled in."""
    if method not in (SUPERVISED, DPO):
        raise ValueError(f"unsupported training method {method!r}; supported: {SUPERVISED}, {DPO}")
    n_epochs = auto_epochs(n_examples) if hyper.n_epochs is None else int(hyper.n_epochs)
    batch_size = min(8, max(1, n_examples // 8)) if hyper.batch_size is None else int(hyper.batch_size)
    multiplier = (
        AUTO_LEARNING_RATE_MULTIPLIER
        if hyper.learning_rate_multiplier is None
        else float(hyper.learning_rate_multiplier)
    )
    if n_epochs < 1:
        raise ValueError(f"n_epochs must be at least 1, got {n_epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if not multiplier > 0 or math.isinf(multiplier):
        raise ValueError(f"learning_rate_multiplier must be a positive number, got {multiplier}")
    resolved: dict[str, float | int] = {
        "n_epochs": n_epochs,
        "batch_size": batch_size,
        "learning_rate_multiplier": multiplier,
    }
    if method == DPO:
        beta = AUTO_BETA if hyper.beta is None else float(hyper.beta)
        if not beta > 0 or math.isinf(beta):
            raise ValueError(f"beta must be a positive number, got {beta}")
        resolved["beta"] = beta
    return resolved


def learning_rate(base: str, multiplier: float) -> float:
    return BASE_LEARNING_RATE.get(base, DEFAULT_BASE_LEARNING_RATE) * multiplier


def epoch_order(seed: int, epoch: int, n: int) -> list[int]:
    """The example order of one epoch: a function of (seed, epoch) only, so it needs no saved state."""
    import torch

    generator = torch.Generator().manual_seed(((seed & 0xFFFFFFFF) << 20) + epoch)
    return [int(i) for i in torch.randperm(n, generator=generator)]


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    return max(1, math.ceil(n_examples / batch_size))


# --- batches and losses -------------------------------------------------------------------------


@dataclass
class Batch:
    ids: torch.Tensor  # [B, T] long, right-padded
    attention: torch.Tensor  # [B, T] long, 1 on real tokens
    mask: torch.Tensor  # [B, T] bool, True on trained tokens

    @property
    def tokens(self) -> int:
        return int(self.attention.sum())


def collate(seqs: Sequence[Tokenized], pad_id: int) -> Batch:
    import torch

    width = max(1, *(len(s.ids) for s in seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(seqs), width), dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.bool)
    for row, seq in enumerate(seqs):
        n = len(seq.ids)
        if n:
            ids[row, :n] = torch.tensor(seq.ids, dtype=torch.long)
            attention[row, :n] = 1
            mask[row, :n] = torch.tensor(seq.mask, dtype=torch.bool)
    return Batch(ids, attention, mask)


def _inner(model: Any) -> Any:
    """The transformers model under a peft wrapper (LoRA layers are injected in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def target_logits(model: Any, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits at the positions that predict trained tokens, those tokens, and each one's row."""
    lm = _inner(model)
    hidden = lm.get_decoder()(input_ids=batch.ids, attention_mask=batch.attention, use_cache=False)
    states = hidden.last_hidden_state[:, :-1]
    select = batch.mask[:, 1:]
    logits = lm.get_output_embeddings()(states[select]).float()
    targets = batch.ids[:, 1:][select]
    rows = select.nonzero()[:, 0]
    return logits, targets, rows


def sft_loss(model: Any, batch: Batch) -> tuple[torch.Tensor, int, int]:
    """Mean cross-entropy over the trained tokens, with the count of correct argmaxes and tokens."""
    import torch.nn.functional as F  # noqa: N812

    logits, targets, _ = target_logits(model, batch)
    n = int(targets.numel())
    if n == 0:
        # Nothing trainable survived truncation: a zero loss that still connects to the graph.
        return logits.sum() * 0.0, 0, 0
    loss = F.cross_entropy(logits, targets)
    hits = int((logits.detach().argmax(-1) == targets).sum())
    return loss, hits, n


def sequence_logps(model: Any, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row: summed log-probability of the trained tokens, correct argmaxes, trained tokens."""
    import torch

    logits, targets, rows = target_logits(model, batch)
    rows_n = batch.ids.shape[0]
    token_logp = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None])[:, 0]
    logp = torch.zeros(rows_n, dtype=token_logp.dtype).index_add(0, rows, token_logp)
    hits = torch.zeros(rows_n, dtype=torch.long).index_add(
        0, rows, (logits.detach().argmax(-1) == targets).long()
    )
    counts = torch.zeros(rows_n, dtype=torch.long).index_add(0, rows, torch.ones_like(targets))
    return logp, hits, counts


@dataclass
class DPOOut:
    loss: torch.Tensor
    margins: torch.Tensor  # per pair: policy-vs-reference log-ratio of chosen minus that of rejected
    hits: int  # correct argmaxes on the chosen outputs
    tokens: int  # trained tokens of the chosen outputs
    seq_tokens: int  # non-padding tokens of both sequences of every pair


def dpo_loss(model: Any, pairs: Sequence[DPOPair], beta: float, pad_id: int) -> DPOOut:
    import torch
    import torch.nn.functional as F  # noqa: N812

    batch = collate([p.chosen for p in pairs] + [p.rejected for p in pairs], pad_id)
    n = len(pairs)
    with torch.no_grad(), model.disable_adapter():
        ref_logp, _, _ = sequence_logps(model, batch)
    logp, hits, counts = sequence_logps(model, batch)
    margins = (logp[:n] - ref_logp[:n]) - (logp[n:] - ref_logp[n:])
    loss = -F.logsigmoid(beta * margins).mean()
    return DPOOut(loss, margins.detach(), int(hits[:n].sum()), int(counts[:n].sum()), batch.tokens)


# --- model assembly -----------------------------------------------------------------------------


def add_lora(model: PreTrainedModel | Any, seed: int) -> PeftModel:
    import torch
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=LORA_R,
        lora_alpha=LORA_ALPHA,
        target_modules=list(LORA_TARGETS),
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        # peft calls a transformers API that transformers 5 deprecates; not ours to act on.
        warnings.filterwarnings("ignore", category=FutureWarning)
        peft_model: PeftModel = get_peft_model(model, config)
    return peft_model


def _trainable(model: Any) -> dict[str, torch.Tensor]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """A temporary sibling directory that replaces ``target`` once the block completes."""
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        yield tmp
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        if target.exists():
            os.rename(target, old)
        os.rename(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_adapter(model: Any, target: Path, meta: dict[str, Any]) -> Path:
    with atomic_dir(target) as tmp:
        model.save_pretrained(str(tmp))
        (tmp / ADAPTER_META).write_text(json.dumps(meta, indent=2))
    return target


def _file_digest(path: Path | None) -> str | None:
    if path is None:
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- the training loop --------------------------------------------------------------------------


@dataclass
class _Data:
    method: str
    train: list[Tokenized] | list[DPOPair]
    valid: list[Tokenized] | list[DPOPair]
    pad_id: int


def _encode(req: TrainRequest, tokenizer: PreTrainedTokenizerBase) -> _Data:
    from ftops.emulator.ml.chatdata import encode_dpo, encode_sft, read_jsonl

    encode = encode_sft if req.method == SUPERVISED else encode_dpo

    def load(path: Path | None) -> Any:
        if path is None:
            return []
        return [encode(tokenizer, example, DEFAULT_MAX_TOKENS) for example in read_jsonl(path)]

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return _Data(req.method, load(req.training_file), load(req.validation_file), int(pad))


def micro_batches(items: Sequence[Any], lengths: Sequence[int], budget: int) -> list[list[Any]]:
    """Items grouped by length so each group pads to at most ``budget`` tokens (one item at least).

    On a CPU a padded position costs as much as a real one, and a batch of chat examples of mixed
    lengths is mostly padding; short groups of similar length cut that waste.
    """
    ordered = sorted(range(len(items)), key=lambda i: lengths[i])
    groups: list[list[Any]] = []
    current: list[Any] = []
    for i in ordered:
        if current and (len(current) + 1) * lengths[i] > budget:
            groups.append(current)
            current = []
        current.append(items[i])
    if current:
        groups.append(current)
    return groups


class _Runner:
    """A batch's loss, gradient and metrics for either method, so the loop below is shared.

    A batch is processed as micro-batches (see ``micro_batches``) whose gradients accumulate;
    each micro-batch's loss is weighted by its share of the batch, so the gradient and the
    reported loss are those of the whole batch at once.
    """

    def __init__(self, model: Any, data: _Data, beta: float, budget: int = MICRO_BATCH_TOKENS) -> None:
        self.model = model
        self.data = data
        self.beta = beta
        self.budget = budget

    def _groups(self, items: Sequence[Any]) -> list[list[Any]]:
        if self.data.method == SUPERVISED:
            lengths = [len(s.ids) for s in items]
        else:
            # A pair is two rows (chosen and rejected) padded to the longer one.
            lengths = [2 * max(len(p.chosen_ids), len(p.rejected_ids)) + 2 * len(p.prompt_ids) for p in items]
        return micro_batches(items, lengths, self.budget)

    def run(self, items: Sequence[Any], backward: bool) -> tuple[float, int, int, int, int]:
        """Loss sum, its weight, correct argmaxes, tokens they are counted over, non-padding tokens.

        SFT weights the loss by trained token; DPO by pair, with accuracy over chosen tokens.
        With ``backward``, gradients of the batch's mean loss accumulate into the parameters.
        """
        import torch

        sft = self.data.method == SUPERVISED
        # Tokens each SFT item has a loss on: its trained tokens but the first (nothing predicts it).
        weight = sum(sum(s.mask[1:]) for s in items) if sft else len(items)
        loss_sum, hits, counted, seen = 0.0, 0, 0, 0
        with torch.set_grad_enabled(backward):
            for group in self._groups(items):
                if sft:
                    batch = collate(group, self.data.pad_id)
                    loss, group_hits, n = sft_loss(self.model, batch)
                    group_sum, group_counted, group_seen = loss * n, n, batch.tokens
                else:
                    out = dpo_loss(self.model, group, self.beta, self.data.pad_id)
                    group_sum, group_hits, group_counted, group_seen = (
                        out.loss * len(group),
                        out.hits,
                        out.tokens,
                        out.seq_tokens,
                    )
                if backward and weight:
                    (group_sum / weight).backward()  # type: ignore[no-untyped-call]
                loss_sum += float(group_sum.detach())
                hits += group_hits
                counted += group_counted
                seen += group_seen
        return loss_sum, weight, hits, counted, seen

    def train_step(self, items: Sequence[Any]) -> tuple[float, float, int]:
        """Accumulate the batch's gradient; its mean loss, token accuracy and non-padding tokens."""
        loss_sum, weight, hits, counted, seen = self.run(items, backward=True)
        return (loss_sum / weight if weight else 0.0), (hits / counted if counted else 0.0), seen

    def evaluate_all(self, items: Sequence[Any], batch_size: int) -> tuple[float, float]:
        """Mean loss and token accuracy over items, with no gradient."""
        loss_sum, weight, hits, counted = 0.0, 0, 0, 0
        for start in range(0, len(items), batch_size):
            batch_loss, batch_weight, batch_hits, batch_counted, _ = self.run(
                items[start : start + batch_size], backward=False
            )
            loss_sum += batch_loss
            weight += batch_weight
            hits += batch_hits
            counted += batch_counted
        return (loss_sum / weight if weight else 0.0), (hits / counted if counted else 0.0)


def _restore_rng(state: Any) -> None:
    import torch

    torch.set_rng_state(state)


def train(req: TrainRequest, reporter: Reporter) -> TrainResult:
    """Fine-tune ``req.base`` with a new LoRA adapter; see the module docstring."""
    import torch
    from safetensors.torch import load_file, save_file

    from ftops.emulator.ml.localmodels import STAND_INS, load_chain, load_tokenizer

    if req.base not in STAND_INS:
        raise ValueError(f"unknown stand-in model {req.base!r}; known: {', '.join(sorted(STAND_INS))}")
    torch.set_num_threads(os.cpu_count() or 1)
    work_dir = Path(req.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = load_tokenizer(req.base, req.cache_dir)
    data = _encode(req, tokenizer)
    n = len(data.train)
    if n == 0:
        raise ValueError("the training file has no examples")
    resolved = resolve_hyper(req.hyper, n, req.method)
    epochs, batch_size = int(resolved["n_epochs"]), int(resolved["batch_size"])
    lr = learning_rate(req.base, float(resolved["learning_rate_multiplier"]))
    beta = float(resolved.get("beta", AUTO_BETA))
    per_epoch = steps_per_epoch(n, batch_size)
    total = epochs * per_epoch
    digest = _file_digest(req.training_file)

    state: dict[str, Any] | None = None
    if req.resume_from is not None:
        state = json.loads((Path(req.resume_from) / "state.json").read_text())
        expected = {"format": RESUME_FORMAT, "base": req.base, "method": req.method, "seed": req.seed}
        for key, value in expected.items():
            if state.get(key) != value:
                raise ValueError(f"resume state {req.resume_from} does not match the job ({key})")
        if state.get("training_digest") != digest or state.get("resolved") != resolved:
            raise ValueError(f"resume state {req.resume_from} was written for other data or hyperparameters")

    reporter.event(f"Loading stand-in model {req.base}.")
    base_model, _ = load_chain(req.base, req.cache_dir, req.parent_adapters)
    # Any: peft and transformers type train()/eval() and the wrapped forward only partially.
    model: Any = add_lora(base_model, req.seed)
    params = _trainable(model)
    optimizer = torch.optim.AdamW(list(params.values()), lr=lr, weight_decay=0.0)

    done = 0
    trained_tokens = 0
    if state is not None and req.resume_from is not None:
        saved = load_file(str(Path(req.resume_from) / "lora.safetensors"))
        with torch.no_grad():
            for name, tensor in saved.items():
                params[name].copy_(tensor)
        optimizer.load_state_dict(torch.load(Path(req.resume_from) / "optimizer.pt", weights_only=True))
        _restore_rng(torch.load(Path(req.resume_from) / "rng.pt", weights_only=True))
        done = int(state["steps_done"])
        trained_tokens = int(state["trained_tokens"])
        reporter.event(f"Resuming training at step {done + 1}/{total}.")
    reporter.event(
        f"Training started: {n} examples, {epochs} epochs, batch size {batch_size}, {total} steps, "
        f"learning rate {lr:g} ({req.method})."
    )

    runner = _Runner(model, data, beta)
    valid_every = max(1, total // 20)
    log_every = max(1, total // 10)
    valid_batches = [data.valid[i : i + batch_size] for i in range(0, len(data.valid), batch_size)]
    meta = {"base": req.base, "method": req.method, "parents": [str(p) for p in req.parent_adapters]}
    last: dict[str, float] = {}

    def write_resume(step_done: int, epoch: int, order: list[int]) -> Path:
        target = work_dir / "resume"
        with atomic_dir(target) as tmp:
            save_file({k: v.detach().contiguous() for k, v in params.items()}, str(tmp / "lora.safetensors"))
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save(torch.get_rng_state(), tmp / "rng.pt")
            model.save_pretrained(str(tmp / "adapter"))
            (tmp / "state.json").write_text(
                json.dumps(
                    {
                        "format": RESUME_FORMAT,
                        "base": req.base,
                        "method": req.method,
                        "seed": req.seed,
                        "training_digest": digest,
                        "resolved": resolved,
                        "steps_done": step_done,
                        "total_steps": total,
                        "epoch": epoch,
                        "trained_tokens": trained_tokens,
                        "order": order,
                    }
                )
            )
        return target

    model.train()
    for epoch in range(done // per_epoch, epochs):
        order = epoch_order(req.seed, epoch, n)
        for index in range(done - epoch * per_epoch, per_epoch):
            step = epoch * per_epoch + index + 1
            wanted = reporter.control()
            if wanted == "cancel":
                reporter.event(f"Training cancelled before step {step}/{total}.")
                return TrainResult("cancelled", step - 1, total, trained_tokens, None, resolved)
            if wanted == "pause":
                where = write_resume(step - 1, epoch, order)
                reporter.event(f"Training state saved at step {step - 1}/{total} to {where}.")
                return TrainResult("paused", step - 1, total, trained_tokens, None, resolved)
            if req.fail_at_step is not None and step == req.fail_at_step:
                raise RuntimeError(f"injected failure at step {step}")

            items = [data.train[i] for i in order[index * batch_size : (index + 1) * batch_size]]
            optimizer.zero_grad(set_to_none=True)
            train_loss, accuracy, tokens = runner.train_step(items)
            torch.nn.utils.clip_grad_norm_(list(params.values()), MAX_GRAD_NORM)
            optimizer.step()
            trained_tokens += tokens
            done = step

            valid_loss: float | None = None
            valid_accuracy: float | None = None
            if valid_batches and (step % valid_every == 0 or step in (1, total)):
                model.eval()
                chunk = valid_batches[(step // valid_every) % len(valid_batches)]
                valid_loss, valid_accuracy = runner.evaluate_all(chunk, len(chunk))
                model.train()
            reporter.metrics(step, total, train_loss, accuracy, valid_loss, valid_accuracy)
            last = {"train_loss": train_loss, "train_mean_token_accuracy": accuracy}
            if valid_loss is not None and valid_accuracy is not None:
                last.update(valid_loss=valid_loss, valid_mean_token_accuracy=valid_accuracy)
            if step % log_every == 0 or step in (total, 1):
                extra = f", validation loss={valid_loss:.4f}" if valid_loss is not None else ""
                reporter.event(f"Step {step}/{total}: training loss={train_loss:.4f}{extra}")

        # End of epoch: an adapter checkpoint with the metrics Azure attaches to one.
        metrics: dict[str, float] = {"step": float(done), **last}
        if valid_batches:
            model.eval()
            full_loss, full_accuracy = runner.evaluate_all(data.valid, batch_size)
            model.train()
            metrics["full_valid_loss"] = full_loss
            metrics["full_valid_mean_token_accuracy"] = full_accuracy
            metrics.setdefault("valid_loss", full_loss)
            metrics.setdefault("valid_mean_token_accuracy", full_accuracy)
        else:
            metrics["valid_loss"] = last["train_loss"]
            metrics["valid_mean_token_accuracy"] = last["train_mean_token_accuracy"]
        path = save_adapter(
            model, work_dir / "checkpoints" / f"step-{done}", {**meta, "step": done, "epoch": epoch + 1}
        )
        reporter.checkpoint(epoch + 1, done, path, metrics)  # the reporter says so in the job's events

    model.eval()
    adapter = save_adapter(model, work_dir / "adapter", {**meta, "step": done, "epoch": epochs})
    # A finished job has nothing to resume; its optimizer state is dead weight.
    shutil.rmtree(work_dir / "resume", ignore_errors=True)
    reporter.event(f"Training completed: {done} steps, {trained_tokens} trained tokens.")
    return TrainResult("succeeded", done, total, trained_tokens, adapter, resolved)
