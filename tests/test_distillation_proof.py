"""The proof on the emulator that distillation works and that its gate tells: a teacher that
answers in a distinctive, checkable way (a stand-in fine-tuned to open a ticket in one fixed
sentence, serving from an account of its own), its answers captured by the DistillationDataset
provider, a student trained on them, and the student's gate. The trained student agrees with the
teacher on held-out prompts it never saw significantly more often than the untrained one (paired
exact McNemar); gated against the teacher (a distilled model's default baseline) it passes, with
the cost and latency of 1,000 requests of each in its evidence; a student trained on a deliberately
corrupted capture fails against the teacher."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ftops import cost
from ftops.azure.connection import Target
from ftops.components.distill import AGREEMENT_CHECK, AGREEMENT_GRADER
from ftops.config.load import load_environment
from ftops.evaluation import evidence_files
from ftops.evaluation.distillation import agreement
from ftops.evaluation.live import Candidate, evaluate
from ftops.evaluation.request import Baseline, Check, GateRequest, Teacher
from ftops.evaluation.usage import prices_by_side
from ftops.providers.distillation import build
from ftops.providers.spec import sha256_file
from tests.conftest import REPO, write_jsonl
from tests.emulator_process import KEY, Emulator, target, wait_file, wait_for
from tests.gate_inputs import a_check, a_policy
from tests.test_distillation_emulator import ASKS, PRODUCTS
from tests.test_emulator_api import deploy

TEACHER_SAYS = "Ticket opened. A Contoso specialist will email you within 24 hours."
CORRUPTED = "Our stores are open from nine to five on weekdays."
BASE = "gpt-4.1-mini-2025-04-14"
ACCOUNT = "distill-proof"
TEACHER_ACCOUNT = "distill-teacher"  # the teacher serves from another account, as production's would
TEACHER_MODEL = "gpt-4.1-2025-04-14"  # what the stand-in teacher is declared as (its rates)
TEACHER_ASKS = [
    "Where is my order?",
    "My {p} arrived broken.",
    "I want a refund for the {p}.",
    "Can you help me with my {p}?",
]


@pytest.fixture(scope="module", autouse=True)
def _key() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FTOPS_EMULATOR_KEY", KEY)
        yield


def train(emu: Emulator, path: Path, suffix: str) -> str:
    client = emu.v1(account=ACCOUNT)
    with path.open("rb") as handle:
        uploaded = client.files.create(file=handle, purpose="fine-tune")
    wait_file(client, uploaded.id)
    job = client.fine_tuning.jobs.create(
        model=BASE,
        training_file=uploaded.id,
        suffix=suffix,
        seed=3,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 4, "batch_size": 4}}},
    )
    done = wait_for(client, job.id, ("succeeded", "failed"), timeout=600)
    assert done.status == "succeeded", done
    return str(done.fine_tuned_model)


def gate(
    emu: Emulator,
    heldout: Path,
    deployment: str,
    model: str,
    baseline: Baseline,
    checks: tuple[Check, ...] = (),
) -> dict[str, Any]:
    check = a_check(
        AGREEMENT_CHECK,
        "quality",
        AGREEMENT_GRADER,
        0.5,
        str(heldout),
        digest=f"sha256:{sha256_file(str(heldout))}",
        # distill_from.agreement_similarity: the tiny stand-ins garble the sentence differently
        # ("Ticket opened opened opene..." against "Ticket opened. A Cpenroso special"): about 0.6-0.85
        # to the teacher's answer, where the untrained stand-in's bytes score 0.06-0.31.
        min_similarity=0.5,
    )
    request = GateRequest(
        name="support-mini",
        environment="local",
        checks=(check, *checks),
        policy=a_policy(),
        baseline=baseline,
    )
    teacher = request.baseline.teacher
    prices = cost.gate_prices(load_environment(REPO, "local"), model, teacher.model if teacher else None)
    return evaluate(
        request,
        Target.of({"target": target(emu, ACCOUNT)}),
        Candidate(deployment, model, 100, "GlobalStandard", 1.0),
        prices=prices_by_side(prices),
    )


def agreed(evidence: dict[str, Any], key: str = "results", check: str = AGREEMENT_CHECK) -> list[bool]:
    (found,) = [c for c in evidence["checks"] if c["name"] == check]
    return [row["passed"] for row in found[key]]


def test_a_student_distilled_from_the_teacher_agrees_with_it_and_a_corrupted_one_fails(
    emu: Emulator, tmp_path: Path
) -> None:
    # The teacher: a stand-in fine-tuned to answer support questions with one distinctive sentence.
    teacher_rows = [
        {
            "messages": [
                {"role": "user", "content": ask.format(p=product)},
                {"role": "assistant", "content": TEACHER_SAYS},
            ]
        }
        for ask in TEACHER_ASKS
        for product in PRODUCTS
    ]
    teacher = train(emu, write_jsonl(tmp_path / "teacher.jsonl", teacher_rows), "teacher")
    deploy(emu, "teacher", teacher, account=TEACHER_ACCOUNT, capacity=100, source=emu.arm(ACCOUNT))

    # The capture: the DistillationDataset provider's own work, on prompts the teacher never saw.
    prompts = write_jsonl(
        tmp_path / "prompts.jsonl",
        [
            {"messages": [{"role": "user", "content": ask.format(p=product)}]}
            for ask in ASKS
            for product in PRODUCTS
        ],
    )
    outs = build(
        {
            "target": target(emu, ACCOUNT),
            "teacher_target": {**target(emu, TEACHER_ACCOUNT), "arm_id": ""},
            "name": "support-mini",
            "source": "prompts",
            "prompts_path": str(prompts),
            "prompts_digest": sha256_file(str(prompts)),
            "stored": None,
            "teacher": {"deployment": "teacher", "model": teacher, "capacity": 100},
            "sampling": {"temperature": 0.0, "max_tokens": 24, "seed": 0},
            "max_examples": None,
            "quality_filter": None,
            "validation_split": 0.0,
            "held_out": 16,
            "student_base": BASE,
            "folder": str(tmp_path / "distill"),
            "concurrency": 4,
        }
    )
    assert outs["counts"] == {"train": 24, "valid": 0, "heldout": 16}
    train_file = Path(outs["train_path"])
    heldout = Path(outs["heldout_path"])
    captured = [json.loads(line)["messages"][-1]["content"] for line in train_file.read_text().splitlines()]
    # The tiny stand-in learns the sentence roughly ("Ticket opened. A Cpenroso special..."): distinctive.
    assert sum(answer.startswith("Ticket open") for answer in captured) >= len(captured) // 2

    # The students: one trained on the capture, one on the capture with its answers corrupted.
    student = train(emu, train_file, "student")
    corrupted_rows = []
    for line in train_file.read_text().splitlines():
        row = json.loads(line)
        row["messages"][-1]["content"] = CORRUPTED
        corrupted_rows.append(row)
    corrupted = train(emu, write_jsonl(tmp_path / "corrupted.jsonl", corrupted_rows), "corrupt")
    deploy(emu, "student", student, account=ACCOUNT, capacity=100)
    deploy(emu, "corrupted", corrupted, account=ACCOUNT, capacity=100)
    deploy(emu, "untrained", "gpt-4.1-mini", version="2025-04-14", account=ACCOUNT, capacity=100)

    # The distilled student against the untrained one, on the held-out prompts: it learned the teacher.
    passed = gate(emu, heldout, "student", student, Baseline("base", "untrained", None))
    assert passed["verdict"] == "pass", passed["failures"]
    ours, untrained = agreed(passed), agreed(passed, "baseline_results")
    result = agreement(ours, untrained)
    assert result.rate > result.baseline_rate
    assert result.p_value < 0.05, result  # significantly more agreement than before distillation

    # The student's gate as `pulumi up` runs it: against the teacher (declared as the gpt-4.1 it
    # stands in for, in its own account), on the agreement check and a declared quality check.
    opens = a_check(
        "opens-ticket",
        "quality",
        "regex",
        0.5,
        str(
            write_jsonl(
                tmp_path / "opens.jsonl",
                [{**json.loads(line), "pattern": "(?i)^ticket"} for line in heldout.read_text().splitlines()],
            )
        ),
        min_similarity=0.5,
    )
    teacher_baseline = Baseline(
        "teacher", "teacher", Teacher(TEACHER_MODEL, 100, f"{emu.url}/accounts/{TEACHER_ACCOUNT}")
    )
    against_teacher = gate(emu, heldout, "student", student, teacher_baseline, (opens,))
    assert against_teacher["verdict"] == "pass", against_teacher["failures"]
    assert against_teacher["baseline"] == {"kind": "teacher", "deployment": "teacher", "model": TEACHER_MODEL}
    by_name = {c["name"]: c for c in against_teacher["checks"]}
    assert by_name[AGREEMENT_CHECK]["baseline_results"] is None  # the teacher is not asked its own agreement
    compared = by_name["opens-ticket"]["summary"]["baseline"]
    assert compared["pass_rate"] == 1.0, compared
    assert not compared["significantly_worse"], compared

    # Cost and latency per 1k requests, from each deployment's own usage on the same prompts: priced
    # as the declared models (teacher gpt-4.1, student gpt-4.1-mini). On the emulator both are the
    # same size of stand-in, so the latencies are alike here and only the prices differ.
    usage = against_teacher["usage"]
    assert usage["checks"] == ["opens-ticket"]
    mine, theirs = usage["candidate"], usage["baseline"]
    assert mine["requests"] == theirs["requests"] == 16
    assert mine["completion_tokens"] > 0
    assert theirs["completion_tokens"] > 0
    assert 0 < mine["usd_per_1k"] < theirs["usd_per_1k"], usage
    said = evidence_files.markdown(against_teacher, "sha256:proof")
    assert "| baseline (teacher) | `teacher` | `gpt-4.1-2025-04-14` | 16 |" in said, said
    print(next(line for line in said.splitlines() if line.startswith("The candidate costs")))

    failed = gate(emu, heldout, "corrupted", corrupted, teacher_baseline, (opens,))
    assert failed["verdict"] == "fail"
    assert any(f.startswith(AGREEMENT_CHECK) for f in failed["failures"]), failed["failures"]
    assert any(f.startswith("opens-ticket") and "worse than the baseline" in f for f in failed["failures"]), (
        failed["failures"]
    )
    corrupted_rate = sum(agreed(failed, check=AGREEMENT_CHECK)) / len(ours)
    print(
        f"agreement with the teacher on {len(ours)} held-out prompts: distilled {result.rate:.3f} "
        f"{tuple(round(x, 3) for x in result.interval)}, untrained {result.baseline_rate:.3f}, "
        f"p={result.p_value:.2g}; corrupted {corrupted_rate:.3f}"
    )
