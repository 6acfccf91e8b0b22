"""Benchmark the emulator's LoRA trainer against a plain transformers + peft loop, in one run.

    python bench/bench_training.py [--model smollm2-135m-instruct] [--data data/support-bot/train.jsonl]
                                   [--epochs 1] [--steps N] [--batch-size 8] [--seed 7]

(0) emulator: a fine-tuning job through `ftops emulator`'s HTTP API with the openai SDK, timed
    from `jobs.create` until the job reports succeeded (queueing, the worker process, data
    validation, model load, training, checkpoints, results.csv, the fine-tuned model);
(1) trainer: `ftops.emulator.ml.train.train()`, the function the emulator's training worker
    runs (model load, tokenization, training, per-epoch checkpoint, final adapter);
(2) plain: the loop people write with transformers + peft: same LoRA config (r=8, alpha 16,
    q/k/v/o, dropout 0), same seed, same tokenized examples, same batches in the same order,
    same AdamW, learning rate and gradient clipping; padded batches, `model(..., labels=...)`;
    no checkpoints or metrics.
Both are timed from model load to the last optimizer step and measured in non-padding tokens per
second. `--steps N` keeps the first N x batch-size examples (N steps per epoch). The figures are
appended to bench/RESULTS.md (never rewritten).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from _common import KEY, OUT, REPO, append_section, arg_parser, emulator, machine

TARGET = 0.9  # emulator tokens/s over plain tokens/s


class _Quiet:
    """A Reporter that records the losses and nothing else."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def event(self, message: str, level: str = "info") -> None:
        pass

    def metrics(
        self,
        step: int,
        total_steps: int,
        train_loss: float,
        train_mean_token_accuracy: float,
        valid_loss: float | None,
        valid_mean_token_accuracy: float | None,
    ) -> None:
        self.losses.append(train_loss)

    def checkpoint(self, epoch: int, step: int, path: Path, metrics: dict[str, float]) -> None:
        pass

    def control(self) -> str | None:
        return None


def _note(args: argparse.Namespace, line: str) -> None:
    print(line, flush=True)
    args.notes.append(line)


def training_file(args: argparse.Namespace) -> Path:
    """The data both sides train on: the whole file, or its first steps x batch-size examples."""
    if args.steps is None:
        return Path(str(args.data))
    lines = [line for line in Path(args.data).read_text(encoding="utf-8").splitlines() if line.strip()]
    subset: Path = args.out / f"bench-training-{args.steps * args.batch_size}.jsonl"
    subset.write_text("\n".join(lines[: args.steps * args.batch_size]) + "\n", encoding="utf-8")
    return subset


def run_emulator(args: argparse.Namespace) -> tuple[int, float]:
    """The emulator's trainer on the data; (non-padding tokens trained, seconds)."""
    from ftops.emulator.ml.train import Hyper, TrainRequest, train

    work_dir = args.out / f"bench-training-job-{os.getpid()}-{time.time_ns()}"
    request = TrainRequest(
        base=args.model,
        method="supervised",
        training_file=training_file(args),
        validation_file=None,
        hyper=Hyper(n_epochs=args.epochs, batch_size=args.batch_size),
        seed=args.seed,
        work_dir=work_dir,
        cache_dir=args.cache_dir,
    )
    reporter = _Quiet()
    start = time.perf_counter()
    try:
        result = train(request, reporter)
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)  # checkpoints of a benchmark are of no use
    if result.status != "succeeded":
        raise RuntimeError(f"emulator training ended {result.status}")
    first, last = reporter.losses[0], reporter.losses[-1]
    _note(args, f"emulator: {result.steps} steps, losses first/last {first:.4f}/{last:.4f}")
    return result.trained_tokens, seconds


def run_emulator_api(args: argparse.Namespace) -> tuple[int, float]:
    """A job through the running emulator; (trained tokens as the job reports them, seconds)."""
    import openai

    data_dir = args.out / f"bench-emulator-{os.getpid()}-{time.time_ns()}"
    # Unwound in reverse: the emulator stops, then its data goes. It may take more than the usual 60 s
    # to stop: a job still training (after a failure here) gets up to 60 s to pause first.
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, data_dir, ignore_errors=True)
        url = cleanup.enter_context(emulator(data_dir, args.cache_dir, stand_in=args.model, stop_timeout=120))
        client = openai.OpenAI(base_url=f"{url}/openai/v1", api_key=KEY)
        with training_file(args).open("rb") as fh:
            uploaded = client.files.create(file=fh, purpose="fine-tune")
        while client.files.retrieve(uploaded.id).status != "processed":
            time.sleep(0.1)
        start = time.perf_counter()
        job = client.fine_tuning.jobs.create(
            training_file=uploaded.id,
            model="gpt-4o-mini-2024-07-18",
            seed=args.seed,
            method={
                "type": "supervised",
                "supervised": {"hyperparameters": {"n_epochs": args.epochs, "batch_size": args.batch_size}},
            },
        )
        while (job := client.fine_tuning.jobs.retrieve(job.id)).status not in (
            "succeeded",
            "failed",
            "cancelled",
        ):
            time.sleep(0.2)
        seconds = time.perf_counter() - start
        if job.status != "succeeded" or job.trained_tokens is None:
            raise RuntimeError(f"emulator job ended {job.status}: {job.error}")
        _note(
            args,
            f"emulator job {job.id}: {job.trained_tokens:,} trained tokens in {seconds:.1f} s end to end",
        )
        return job.trained_tokens, seconds


def run_plain_loop(args: argparse.Namespace) -> tuple[int, float]:
    """A plain transformers + peft loop on the same batches; (non-padding tokens trained, seconds)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftops.emulator.ml.chatdata import encode_sft, read_jsonl
    from ftops.emulator.ml.localmodels import model_dir
    from ftops.emulator.ml.train import (
        LORA_ALPHA,
        LORA_R,
        LORA_TARGETS,
        MAX_GRAD_NORM,
        collate,
        epoch_order,
        learning_rate,
        steps_per_epoch,
    )

    torch.set_num_threads(os.cpu_count() or 1)
    path = model_dir(args.model, args.cache_dir)
    data = training_file(args)
    start = time.perf_counter()
    model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tokenizer: Any = AutoTokenizer.from_pretrained(path)
    examples = [encode_sft(tokenizer, example) for example in read_jsonl(data)]
    torch.manual_seed(args.seed)
    config = LoraConfig(
        r=LORA_R,
        lora_alpha=LORA_ALPHA,
        target_modules=list(LORA_TARGETS),
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, config)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=learning_rate(args.model, 1.0), weight_decay=0.0)
    loop_start = time.perf_counter()
    tokens = 0
    losses: list[float] = []
    per_epoch = steps_per_epoch(len(examples), args.batch_size)
    for epoch in range(args.epochs):
        order = epoch_order(args.seed, epoch, len(examples))
        for index in range(per_epoch):
            batch = collate(
                [examples[i] for i in order[index * args.batch_size : (index + 1) * args.batch_size]],
                tokenizer.pad_token_id,
            )
            labels = batch.ids.masked_fill(~batch.mask, -100)
            loss = model(input_ids=batch.ids, attention_mask=batch.attention, labels=labels).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
            optimizer.step()
            tokens += batch.tokens
            losses.append(float(loss.detach()))
    end = time.perf_counter()
    _note(
        args,
        f"plain: {len(losses)} steps, losses first/last {losses[0]:.4f}/{losses[-1]:.4f}; "
        f"training loop alone {tokens / (end - loop_start):.1f} tokens/s",
    )
    return tokens, end - start


def main(argv: list[str] | None = None) -> int:
    parser = arg_parser(__doc__)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--data", type=Path, default=REPO / "data" / "support-bot" / "train.jsonl")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--steps", type=int, default=None, help="steps per epoch (default: the whole file)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cache-dir", type=Path, default=OUT / "models")
    args = parser.parse_args(argv)
    args.out = OUT
    args.out.mkdir(parents=True, exist_ok=True)
    args.notes = []
    os.environ["HF_HUB_OFFLINE"] = "1"

    import peft
    import torch
    import transformers

    from ftops.emulator.ml.localmodels import model_dir

    print(f"preparing {args.model} under {args.cache_dir} (first time: de-quantizes, ~30 s)", flush=True)
    model_dir(args.model, args.cache_dir)
    load_before = os.getloadavg()[0]

    plain_tokens, plain_seconds = run_plain_loop(args)
    emu_tokens, emu_seconds = run_emulator(args)
    api_tokens, api_seconds = run_emulator_api(args)
    plain_rate, emu_rate, api_rate = (
        plain_tokens / plain_seconds,
        emu_tokens / emu_seconds,
        api_tokens / api_seconds,
    )
    ratio = api_rate / plain_rate
    met = "met" if ratio >= TARGET else "NOT met"

    data = training_file(args)
    n_examples = sum(1 for line in data.read_text(encoding="utf-8").splitlines() if line.strip())
    data_name = (
        args.data.resolve().relative_to(REPO) if args.data.resolve().is_relative_to(REPO) else args.data
    )
    body = "\n".join(
        [
            f"Machine: {machine()}, "
            f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}; "
            f"load average {load_before:.2f} at start (other processes share the cores).",
            f"Data: `{data_name}`, {n_examples} examples, {args.epochs} epoch(s), "
            f"batch size {args.batch_size}, seed {args.seed}; LoRA r=8 alpha 16 on q/k/v/o.",
            "",
            "| run | what | tokens | seconds | tokens/s |",
            "|---|---|---:|---:|---:|",
            f"| (0) | emulator: a job through the HTTP API, `jobs.create` to succeeded "
            f"| {api_tokens:,} | {api_seconds:.1f} | {api_rate:.1f} |",
            f"| (1) | trainer alone: `ftops.emulator.ml.train.train()` (load, tokenize, train, checkpoint) "
            f"| {emu_tokens:,} | {emu_seconds:.1f} | {emu_rate:.1f} |",
            f"| (2) | plain transformers + peft loop, padded batches, `labels=` loss "
            f"| {plain_tokens:,} | {plain_seconds:.1f} | {plain_rate:.1f} |",
            "",
            f"- emulator (0) / plain (2) = {ratio:.2f} (target >= {TARGET}: {met}); "
            f"trainer (1) / plain (2) = {emu_rate / plain_rate:.2f}",
            *(f"- {note}" for note in args.notes),
            "- tokens are non-padding tokens of the training batches; both sides run the same batches "
            "in the same order from the same LoRA initialisation. The emulator splits each batch into "
            "length-sorted micro-batches (<= 1024 padded tokens, gradients accumulated) and projects "
            "only the trained positions onto the vocabulary; the plain loop pads each batch to its "
            "longest example and computes logits everywhere.",
            "",
        ]
    )
    print(append_section(args.results, f"training: {args.model}, LoRA SFT", body))
    json.dump(
        {
            "emulator_tokens_per_s": api_rate,
            "trainer_tokens_per_s": emu_rate,
            "plain_tokens_per_s": plain_rate,
            "ratio": ratio,
        },
        sys.stdout,
    )
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
