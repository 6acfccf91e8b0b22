"""Benchmark an experiment grid against running its four jobs one after another by hand, in one run.

    python bench/bench_experiments.py [--runs 1]

The grid: two learning rates x two data fractions (the tiny stand-in, 20 training examples, 3
epochs, batch 2), each variant scored on 10 held-out prompts with a regex check.

(A) ftops: what `pulumi up` runs for `experiments:`, through the provider host as the engine
    runs it: the uploads (the full file and the 50 % subset), the four FineTuningJob creates at
    once (the engine creates independent resources in parallel; the emulator, like Azure, trains
    one job per account at a time and queues the others), then the Experiment (each variant
    deployed, scored, the deployment deleted; the report with its charts).
(B) by hand: the same four variants one after another with the openai SDK and ARM calls, as a
    notebook does it: upload, create the job, poll every 2 s until it ends, deploy, ask the 10
    prompts, grade, delete the deployment; no report.
Each run uses fresh accounts, so nothing is adopted. The figures are appended to bench/RESULTS.md.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from _common import KEY, OUT, append_section, arg_parser, emulator, machine, target

WORDS = "tent boot rope lamp sock map cup pan axe net kite bag hat rod jar fan pot mat box pen".split()
PROMPTS = [f"question number {i} about item {w}" for i, w in enumerate(WORDS + [w + "s" for w in WORDS])]
LRS = (1.0, 3.0)
WHAT = {
    "A": "ftops: uploads, 4 job creates at once, the Experiment (scores, report, charts)",
    "B": "by hand: 4 variants one after another (upload, job, poll 2 s, deploy, ask, grade, delete)",
}
FRACTIONS = (0.5, 1.0)


def write(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)

    def rows(questions: list[str], answer: str | None) -> str:
        out = []
        for q in questions:
            if answer is None:
                out.append({"messages": [{"role": "user", "content": q}], "pattern": "^ok", "max_tokens": 6})
            else:
                out.append(
                    {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": answer}]}
                )
        return "".join(json.dumps(r) + "\n" for r in out)

    paths = {
        "train": folder / "train.jsonl",
        "valid": folder / "valid.jsonl",
        "evals": folder / "evals.jsonl",
    }
    paths["train"].write_text(rows(PROMPTS[:20], "ok"))
    paths["valid"].write_text(rows(PROMPTS[20:30], "ok"))
    paths["evals"].write_text(rows(PROMPTS[30:], None))
    return paths


def run_ftops(url: str, account: str, paths: dict[str, Path], folder: Path) -> tuple[float, dict[str, Any]]:
    from tests.gate_inputs import POLICY, wire_check
    from tests.provider_host import DynamicHost

    from ftops.config.experiments import method_for, variants
    from ftops.config.schema import Experiments
    from ftops.dataset.subsets import write_subset
    from ftops.providers.experiment import ExperimentProvider
    from ftops.providers.files import TrainingFileProvider
    from ftops.providers.jobs import FineTuningJobProvider
    from ftops.providers.spec import sha256_file

    grid = Experiments.model_validate(
        {"grid": {"learning_rate_multiplier": list(LRS)}, "fractions": list(FRACTIONS)}
    )
    tgt = target(url, account, "rg-bench")
    env = {"FTOPS_EMULATOR_KEY": KEY}
    hosts = [DynamicHost(env) for _ in range(4)]
    try:
        started = time.perf_counter()

        def upload(host: DynamicHost, path: Path) -> dict[str, Any]:
            props = {
                "target": tgt,
                "path": str(path),
                "digest": sha256_file(str(path)),
                "purpose": "fine-tune",
            }
            return host.create(TrainingFileProvider(), props)[1]

        plans = variants(grid)
        subsets = {p.fraction: write_subset(paths["train"], p.fraction, 0, folder / "subsets") for p in plans}
        files: dict[Path, dict[str, Any]] = {}
        threads = [
            threading.Thread(target=lambda p=p, h=h: files.__setitem__(p, upload(h, p)))
            for h, p in zip(hosts, {*subsets.values(), paths["valid"]}, strict=False)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        jobs: dict[str, tuple[str, dict[str, Any]]] = {}

        def train(host: DynamicHost, plan: Any) -> None:
            data, valid = files[subsets[plan.fraction]], files[paths["valid"]]
            props = {
                "target": tgt,
                "name": "bench",
                "base_model": "gpt-4.1-mini-2025-04-14",
                "training_file": data["file_id"],
                "training_digest": data["digest"],
                "validation_file": valid["file_id"],
                "validation_digest": valid["digest"],
                "method": method_for(
                    {"type": "supervised", "hyperparameters": {"n_epochs": 3, "batch_size": 2}}, plan
                ),
                "seed": 7,
                "suffix": "bench",
                "training_type": "Standard",
                "checkpoint": "final",
                "wait_timeout_minutes": 30,
                "attempt": 0,
                "retain": True,
                "releases_dir": str(folder),
            }
            jobs[plan.label] = host.create(FineTuningJobProvider(), props)

        threads = [threading.Thread(target=train, args=(h, p)) for h, p in zip(hosts, plans, strict=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        trained = time.perf_counter() - started
        check = wire_check(
            "held-out", str(paths["evals"]), f"sha256:{sha256_file(str(paths['evals']))}", "regex", 0.3
        )
        wired = [
            {
                "label": p.label,
                "setting": p.label.rsplit("-", 1)[0],
                "fraction": p.fraction,
                "epochs": 3,
                "hyperparameters": p.hyperparameters,
                "job": jobs[p.label][0],
                "model": jobs[p.label][1]["fine_tuned_model"],
                "billed_tokens": jobs[p.label][1]["trained_tokens"],
                "data_digest": "sha256:" + files[subsets[p.fraction]]["digest"],
            }
            for p in plans
        ]
        _, out = hosts[0].create(
            ExperimentProvider(),
            {
                "target": tgt,
                "name": "bench",
                "checks": [check],
                "policy": POLICY,
                "baseline": {"kind": "none", "deployment": None},
                "environment": "bench",
                "seed": 1,
                "variants": wired,
                "sku": {"name": "GlobalStandard", "capacity": 10},
                "select": "cheapest_not_worse",
                "usd_per_million": 5.0,
                "evidence_dir": str(folder / "evidence"),
            },
        )
        total = time.perf_counter() - started
        return total, {"trained": trained, "chosen": out["label"], "report": out["report"]["markdown"]}
    finally:
        for h in hosts:
            h.close()


def run_by_hand(url: str, account: str, paths: dict[str, Path], folder: Path) -> tuple[float, dict[str, Any]]:
    import httpx2 as httpx
    import openai

    from ftops.dataset.subsets import write_subset

    client = openai.OpenAI(base_url=f"{url}/accounts/{account}/openai/v1", api_key=KEY)
    arm = f"{url}{target(url, account, 'rg-bench')['arm_id']}/deployments"
    http = httpx.Client(headers={"api-key": KEY}, timeout=60, params={"api-version": "2024-10-01"})
    evals = [json.loads(line) for line in paths["evals"].read_text().splitlines()]
    started = time.perf_counter()
    trained = 0.0
    scores = {}

    def wait_file(file_id: str) -> None:
        while client.files.retrieve(file_id).status not in ("processed", "error"):
            time.sleep(0.5)

    valid = client.files.create(file=paths["valid"].open("rb"), purpose="fine-tune")
    wait_file(valid.id)
    for lr in LRS:
        for fraction in FRACTIONS:
            data = write_subset(paths["train"], fraction, 0, folder / "subsets")
            upload = client.files.create(file=data.open("rb"), purpose="fine-tune")
            wait_file(upload.id)
            job = client.fine_tuning.jobs.create(
                model="gpt-4.1-mini-2025-04-14",
                training_file=upload.id,
                validation_file=valid.id,
                seed=7,
                method={
                    "type": "supervised",
                    "supervised": {
                        "hyperparameters": {"n_epochs": 3, "batch_size": 2, "learning_rate_multiplier": lr}
                    },
                },
            )
            while job.status not in ("succeeded", "failed", "cancelled"):
                time.sleep(2)
                job = client.fine_tuning.jobs.retrieve(job.id)
            trained = time.perf_counter() - started
            name = f"hand-{int(lr)}-{int(fraction * 100)}"
            body = {
                "sku": {"name": "GlobalStandard", "capacity": 10},
                "properties": {"model": {"format": "OpenAI", "name": job.fine_tuned_model, "version": "1"}},
            }
            while http.put(f"{arm}/{name}", json=body).status_code == 409:
                time.sleep(0.5)
            while http.get(f"{arm}/{name}").json()["properties"]["provisioningState"] != "Succeeded":
                time.sleep(0.5)
            passed = 0
            for item in evals:
                reply = client.chat.completions.create(
                    model=name,
                    messages=item["messages"],
                    max_tokens=item["max_tokens"],
                    temperature=0,
                    seed=1,
                )
                passed += bool(
                    re.search(item["pattern"], reply.choices[0].message.content or "", re.IGNORECASE)
                )
            scores[name] = passed / len(evals)
            while http.delete(f"{arm}/{name}").status_code == 409:
                time.sleep(0.5)
    return time.perf_counter() - started, {"trained": trained, "scores": scores}


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    os.environ["FTOPS_EMULATOR_KEY"] = KEY
    folder = OUT / "experiments"
    paths = write(folder / "data")
    rows = []
    with emulator(folder / "emulator", folder / "models") as url:
        for run in range(args.runs):
            for what, fn in (("A", run_ftops), ("B", run_by_hand)):
                seconds, detail = fn(
                    url, f"bench-exp-{what.lower()}{run}-{int(time.time())}", paths, folder / what
                )
                print(
                    f"({what}) run {run}: {seconds:.1f} s, jobs done at {detail['trained']:.1f} s", flush=True
                )
                rows.append((what, seconds, detail))
    a = [r for r in rows if r[0] == "A"]
    b = [r for r in rows if r[0] == "B"]
    body = (
        f"Machine: {machine()}. `python bench/bench_experiments.py --runs {args.runs}`\n"
        "Grid: learning rate multiplier 1 and 3 x 50 % and 100 % of 20 examples (tiny stand-in, 3 epochs, "
        "batch 2), each variant scored on 10 held-out prompts (regex). One emulator account per run; it "
        "trains one job at a time, as Azure does per account.\n\n"
        "| run | what | wall s | jobs done at s |\n|---|---|---:|---:|\n"
        + "".join(f"| ({w}) | {WHAT[w]} | {s:.1f} | {d['trained']:.1f} |\n" for w, s, d in rows)
        + f"\n- A / B = {sum(r[1] for r in a) / sum(r[1] for r in b):.2f} (total wall time); ftops chose "
        f"`{a[-1][2]['chosen']}`\n"
    )
    print(append_section(args.results, "experiments: a 2 x 2 grid vs its four jobs by hand", body))


if __name__ == "__main__":
    main()
