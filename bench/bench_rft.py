"""Benchmark the emulator's RFT trainer against the loop written the obvious way, in one run.

    python bench/bench_rft.py [--steps 6] [--batch-size 4] [--compute-multiplier 2] [--seed 3]

Task: data/rft-digits (sums, "reply with the number only") on the tiny stand-in, graded by a
`multi` grader (a python grader for the number format, a string_check for the exact answer): the
grader of tests/test_emulator_rft.py.

(1) ftops: `ftops.emulator.ml.rft.train_rft`, what the emulator's worker runs: per step, every
    prompt's group sampled in one batched `generate`, the batch graded in one call (the python
    grader in one subprocess per step), one forward/backward over the batch.
(2) plain: the same model, LoRA, optimizer, prompts, group size and GRPO loss, written one thing
    at a time: each completion generated alone, graded alone (`rft_graders.grade`, so the python
    grader starts a subprocess per sample), and its loss computed and backpropagated alone.
Figures: optimisation steps per minute (wall time of the steps, model load excluded), samples
graded per second (samples over the time spent grading), and the mean training reward of the last
step (the same objective; the plain loop draws its samples from other random streams, so the two
rewards differ by chance as well). Appended to bench/RESULTS.md.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from _common import OUT, REPO, append_section, arg_parser, machine
from ftops.emulator.ml import rft
from ftops.emulator.ml.train import BASE_LEARNING_RATE, MAX_GRAD_NORM, epoch_order
from ftops.evaluation import rft_graders

# The task's grader, as the RFT tests train against it: a number is most of the reward.
GRADER: dict[str, Any] = json.loads((REPO / "data" / "rft-digits" / "grader.json").read_text())


class Quiet:
    def __init__(self) -> None:
        self.seen: list[float] = []  # each step's mean training reward
        self.started: float | None = None

    def event(self, message: str, level: str = "info") -> None:
        if message.startswith("Training started"):
            self.started = time.monotonic()  # the model is loaded; the steps start

    def rewards(self, step: int, total_steps: int, row: dict[str, float]) -> None:
        self.seen.append(row["train_reward_mean"])

    def checkpoint(self, epoch: int, step: int, path: Path, metrics: dict[str, float]) -> None:
        pass

    def control(self) -> str | None:
        return None


def request(args: Any, work: Path, train: Path) -> rft.RftRequest:
    return rft.RftRequest(
        base="tiny-test",
        grader=GRADER,
        training_file=train,
        validation_file=REPO / "data" / "rft-digits" / "valid.jsonl",
        hyper=rft.RftHyper(
            n_epochs=1,
            batch_size=args.batch_size,
            learning_rate_multiplier=10,
            eval_interval=10**6,  # no validation passes: the comparison is of the training steps
            eval_samples=1,
            compute_multiplier=args.compute_multiplier,
            reasoning_effort="low",
        ),
        seed=args.seed,
        work_dir=work,
        cache_dir=OUT / "rft-models",
    )


def run_ftops(req: rft.RftRequest) -> dict[str, float]:
    graded, grading = 0, 0.0
    real_score = rft.score

    def timed(*a: Any, **k: Any) -> Any:
        nonlocal graded, grading
        start = time.monotonic()
        out = real_score(*a, **k)
        grading += time.monotonic() - start
        graded += len(a[1])
        return out

    rft.score = timed  # the trainer's own grading call, timed where it runs
    reporter = Quiet()
    try:
        result = rft.train_rft(req, reporter)
    finally:
        rft.score = real_score
    seconds = time.monotonic() - (reporter.started or 0.0)
    return {
        "steps": result.steps,
        "seconds": seconds,
        "graded": graded,
        "grading": grading,
        "last_reward": reporter.seen[-1],
        "step_seconds": result.training_seconds,
    }


def run_plain(req: rft.RftRequest, steps: int) -> dict[str, float]:
    import torch

    setup = rft._load(req)
    resolved = rft.resolve_rft_hyper(req.hyper, len(setup.train_items))
    group = rft.group_size(float(resolved["compute_multiplier"]))
    budget = rft.COMPLETION_TOKENS["low"]
    lr = BASE_LEARNING_RATE["tiny-test"] * rft.RFT_RATE_FACTOR * 10
    params = [p for p in setup.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    grader = rft_graders.parse(GRADER)
    graded, grading, last = 0, 0.0, 0.0
    started = time.monotonic()
    order = epoch_order(req.seed, 0, len(setup.train_items))
    for step in range(1, steps + 1):
        chosen = order[(step - 1) * req.hyper.batch_size : step * req.hyper.batch_size]  # type: ignore[operator]
        optimizer.zero_grad(set_to_none=True)
        rewards_all: list[float] = []
        for index in chosen:
            samples, rewards = [], []
            for g in range(group):
                setup.model.eval()
                one = rft.sample(
                    setup.model,
                    setup.tokenizer,
                    [setup.train_prompts[index]],
                    1,
                    budget,
                    (req.seed << 20) + step * 1000 + g,
                    setup.eos,
                    setup.pad_id,
                )
                t = time.monotonic()
                answer = rft_graders.Sample.of(one.texts[0])
                score = rft_graders.grade(grader, answer, setup.train_items[index])
                grading += time.monotonic() - t
                graded += 1
                samples.append(one)
                rewards.append(score.value)
            advantages = rft.group_advantages(torch.tensor([rewards])).flatten()
            setup.model.train()
            for one, advantage in zip(samples, advantages, strict=True):
                logps = rft.completion_logps(setup.model, one)
                loss = rft.policy_loss(logps, logps.detach(), advantage[None], one.completion[:, 1:])
                (loss / (len(chosen) * group)).backward()  # type: ignore[no-untyped-call]
            rewards_all += rewards
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        optimizer.step()
        last = sum(rewards_all) / len(rewards_all)
    return {
        "steps": steps,
        "seconds": time.monotonic() - started,
        "graded": graded,
        "grading": grading,
        "last_reward": last,
    }


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--compute-multiplier", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    lines = (REPO / "data" / "rft-digits" / "train.jsonl").read_text().splitlines()
    train = OUT / "rft-train.jsonl"
    train.write_text("\n".join(lines[: args.steps * args.batch_size]) + "\n")  # one epoch = --steps steps
    req = request(args, OUT / "rft-work", train)
    ours = run_ftops(req)
    plain = run_plain(req, int(ours["steps"]))
    group = rft.group_size(args.compute_multiplier)

    def speed(r: dict[str, float]) -> float:
        return r["steps"] / r["seconds"]

    def graded(r: dict[str, float]) -> float:
        return r["graded"] / r["grading"]

    def row(name: str, r: dict[str, float]) -> str:
        per_minute = r["steps"] / r["seconds"] * 60
        return (
            f"| {name} | {int(r['steps'])} | {r['seconds']:.1f} | {per_minute:.1f} | {int(r['graded'])} | "
            f"{r['graded'] / r['grading']:.1f} | {r['last_reward']:.3f} |"
        )

    body = (
        f"Machine: {machine()}. `python bench/bench_rft.py --steps {args.steps} "
        f"--batch-size {args.batch_size} "
        f"--compute-multiplier {args.compute_multiplier:g} --seed {args.seed}`\n"
        f"Task: data/rft-digits on the tiny stand-in, {args.batch_size} prompts x {group} samples per step, "
        "8 completion tokens (reasoning_effort low), grader: multi (python format + string_check exact).\n\n"
        "| loop | steps | s | steps/min | samples graded | graded/s | last-step reward |\n"
        "|---|---:|---:|---:|---:|---:|---:|\n"
        f"{row('ftops (`rft.train_rft`: batched sampling, one grading call per step)', ours)}\n"
        f"{row('plain (one completion, one grade, one backward at a time)', plain)}\n\n"
        f"- steps/min ftops / plain = {speed(ours) / speed(plain):.1f}x; "
        f"graded/s = {graded(ours) / graded(plain):.1f}x\n"
        "- ftops' seconds include the end-of-epoch validation pass and checkpoint (the plain loop has "
        "neither); its graded samples include that pass's\n"
    )
    print(append_section(args.results, "rft: the emulator's GRPO trainer vs a one-at-a-time loop", body))
    print(json.dumps({"ftops": ours, "plain": plain}))


if __name__ == "__main__":
    main()
