"""Distillation: a student's training data made of a teacher's answers.

The teacher answers a prompt set (asked through the paced runner, at the teacher deployment's own
rate limits), or production already captured its answers as stored completions. Each prompt is
known by the sha256 of its messages: the capture's journal is keyed by it, so a capture killed
half-way and run again asks only what is missing, and never a prompt twice. The answers are split
by that digest (not by file order): held-out prompts first (the student's gate compares it with
the teacher on them, so they are never trained on), then validation, then training. The files are
written in digest order, so the same answers give the same bytes and the same sha256, which is
the dataset's identity downstream (the training file, the job's spec).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import openai

from ftops.catalog import MIN_EXAMPLES
from ftops.dataset.validate import ValidateOptions, validate_file
from ftops.errors import DataError, UsageError
from ftops.evaluation.evalset import EvalItem, EvalSet, load
from ftops.evaluation.graders import GraderContext, make
from ftops.evaluation.runner import Answer, Limits, Runner, RunOptions, progress_key
from ftops.evaluation.screening import screen
from ftops.evaluation.stats import Comparison, compare, wilson
from ftops.ratelimit import limits_for
from ftops.tokenizer import TokenCounter

ROLES = ("train", "valid", "heldout")


def prompt_digest(messages: Sequence[dict[str, Any]]) -> str:
    """A prompt's identity: the sha256 of its messages as canonical JSON."""
    body = json.dumps(list(messages), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(body.encode()).hexdigest()


def _order_key(digest: str, seed: int) -> str:
    """Where a prompt falls in the split: a seeded hash of its digest, independent of file order."""
    return hashlib.blake2b(digest.encode(), digest_size=8, key=seed.to_bytes(8, "little")).hexdigest()


def split_roles(
    ordered: Sequence[str], max_examples: int | None, validation_split: float, held_out: int
) -> dict[str, str]:
    """Held-out prompts first (never trained on), then validation (at least 10 when asked for),
    then training; `max_examples` caps training plus validation."""
    roles = dict.fromkeys(ordered[:held_out], "heldout")
    rest = list(ordered[held_out:])
    if max_examples is not None:
        rest = rest[:max_examples]
    # Azure takes no file of fewer than 10 examples, a validation file included.
    n_valid = max(MIN_EXAMPLES, round(len(rest) * validation_split)) if validation_split > 0 else 0
    if len(rest) - n_valid < MIN_EXAMPLES:
        raise UsageError(
            f"{len(ordered)} distinct prompt(s) leave {len(rest) - n_valid} for training after "
            f"{held_out} held out and {n_valid} for validation; Azure needs at least {MIN_EXAMPLES}",
            fix="add prompts, lower distill_from.held_out, or set validation_split: 0",
        )
    roles.update(dict.fromkeys(rest[:n_valid], "valid"))
    roles.update(dict.fromkeys(rest[n_valid:], "train"))
    return roles


@dataclass(frozen=True)
class Plan:
    """Which prompts go where, decided before anything is asked."""

    prompts: EvalSet  # every prompt to ask, ids = prompt digests
    roles: dict[str, str]  # digest -> train / valid / heldout
    duplicates: int  # prompts that repeat an earlier one (asked once)

    def count(self, role: str) -> int:
        return sum(1 for r in self.roles.values() if r == role)


def plan(
    path: Path,
    *,
    max_tokens: int,
    max_examples: int | None,
    validation_split: float,
    held_out: int,
    seed: int,
) -> Plan:
    """Read a prompt set (eval-set JSONL: `messages`, optionally `reference`/`pattern`/`schema` for
    the quality filter; errors name the file and line) and decide each prompt's role."""
    source = load(path)
    unique: dict[str, EvalItem] = {}
    for item in source.items:
        if item.messages[-1].role == "assistant":
            raise UsageError(
                f"{path}: prompt {item.id} ends with an assistant message",
                fix="a prompt ends with the user's turn; the teacher writes the answer",
            )
        digest = prompt_digest(item.messages_json())
        unique.setdefault(digest, item.model_copy(update={"id": digest, "max_tokens": max_tokens}))
    ordered = sorted(unique, key=lambda d: _order_key(d, seed))
    if len(ordered) <= held_out:
        raise UsageError(
            f"{path}: {len(ordered)} distinct prompt(s), but {held_out} are held out for the gate",
            fix="add prompts or lower distill_from.held_out",
        )
    roles = split_roles(ordered, max_examples, validation_split, held_out)
    items = [unique[d] for d in ordered if d in roles]
    evalset = EvalSet(path.name, source.digest, items)
    return Plan(evalset, roles, len(source.items) - len(unique))


@dataclass(frozen=True)
class TeacherCall:
    deployment: str
    model: str
    capacity: int
    temperature: float
    seed: int
    concurrency: int = 8

    def options(self) -> RunOptions:
        tpm, rpm = limits_for(self.capacity, self.model)
        return RunOptions(
            self.deployment,
            self.model,
            seed=self.seed,
            temperature=self.temperature,
            limits=Limits(tpm, rpm),
            concurrency=self.concurrency,
        )


def journal_path(folder: Path, prompts: EvalSet, teacher: TeacherCall, endpoint: str) -> Path:
    """The capture's journal: one per prompt set, teacher and sampling (the runner's progress)."""
    return folder / f"capture-{progress_key(prompts, teacher.options(), endpoint)}.jsonl"


def recover(client: openai.OpenAI, tag: str, prompts: EvalSet, journal: Path) -> int:
    """Answers the teacher gave but a crash kept from the journal (the request was in flight),
    read back from its stored completions and journaled: they are not asked again. How many."""
    wanted = {str(item.id) for item in prompts.items}
    done = {json.loads(line)["item"] for line in _journal_lines(journal)}
    found: list[Answer] = []
    try:
        for stored in client.chat.completions.list(metadata={"ftops-capture": tag}, limit=100):
            item = (stored.metadata or {}).get("ftops-item", "")
            if item not in wanted or item in done or not stored.choices:
                continue
            choice = stored.choices[0]
            usage = stored.usage
            found.append(
                Answer(
                    item,
                    0,
                    choice.message.content or "",
                    filtered=choice.finish_reason == "content_filter",
                    prompt_tokens=usage.prompt_tokens if usage else 0,
                    completion_tokens=usage.completion_tokens if usage else 0,
                )
            )
            done.add(item)
    except (openai.NotFoundError, openai.BadRequestError):
        return 0  # an account or api-version without stored completions: the journal alone
    if found:
        journal.parent.mkdir(parents=True, exist_ok=True)
        torn = journal.exists() and not journal.read_bytes().endswith(b"\n")
        with journal.open("a", encoding="utf-8") as sink:
            sink.write("\n" if torn else "")
            sink.writelines(json.dumps(asdict(a)) + "\n" for a in found)
    return len(found)


def _journal_lines(journal: Path) -> list[str]:
    if not journal.exists():
        return []
    out = []
    for line in journal.read_text(encoding="utf-8").splitlines():
        try:
            json.loads(line)["item"]
        except (ValueError, KeyError, TypeError):
            continue  # cut short by a crash
        out.append(line)
    return out


def capture(
    client: openai.OpenAI,
    teacher: TeacherCall,
    prompts: EvalSet,
    journal: Path,
    on_answer: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, Answer], Runner, int]:
    """Every prompt answered by the teacher once: from the journal, from stored completions a crash
    kept out of it, and the rest asked now. (answers by prompt digest, the runner, recovered)"""
    options = replace(teacher.options(), store_tag=journal.stem.removeprefix("capture-"))
    recovered = recover(client, str(options.store_tag), prompts, journal)
    runner = Runner(client, options, progress=journal, on_answer=on_answer)
    answers = runner.run(prompts)
    return {item: answer for (item, _), answer in answers.items()}, runner, recovered


@dataclass(frozen=True)
class Example:
    digest: str
    messages: list[dict[str, Any]]  # the prompt
    answer: str
    item: EvalItem | None = None  # what the quality filter grades against (a prompt set's line)


@dataclass
class Dataset:
    folder: Path
    files: dict[str, Path]  # role -> JSONL
    digests: dict[str, str]  # role -> sha256 hex of the file
    counts: dict[str, int]
    dropped: dict[str, int] = field(default_factory=dict)  # why examples were left out, and how many
    usage: dict[str, float] = field(default_factory=dict)  # the teacher's tokens and latency

    def manifest(self) -> dict[str, Any]:
        return {
            "files": {k: str(v) for k, v in self.files.items()},
            "digests": self.digests,
            "counts": self.counts,
            "dropped": self.dropped,
            "usage": self.usage,
        }


def examples_from(prompts: EvalSet, answers: dict[str, Answer]) -> tuple[list[Example], int]:
    """(examples, answers the content filter blocked: left out)."""
    out, blocked = [], 0
    for item in prompts.items:
        answer = answers[str(item.id)]
        if answer.filtered:
            blocked += 1
            continue
        out.append(Example(str(item.id), item.messages_json(), answer.text, item))
    return out, blocked


def quality_filter(
    examples: Iterable[Example], grader_name: str, min_similarity: float
) -> tuple[list[Example], int]:
    """Keep the teacher answers that pass the grader (against each prompt's reference/pattern/schema)."""
    grader = make(grader_name, GraderContext(min_similarity=min_similarity))
    kept, failed = [], 0
    for example in examples:
        item = example.item
        # A prompt that declares nothing to check against (no reference, pattern or schema) is kept:
        # the filter is for the answers a prompt set can tell wrong, not a reason to drop the rest.
        declared = item is not None and (item.reference, item.pattern, item.schema_) != (None, None, None)
        if item is not None and declared and not grader.grade(example.answer, item).passed:
            failed += 1
            continue
        kept.append(example)
    return kept, failed


def _line(example: Example) -> str:
    messages = [*example.messages, {"role": "assistant", "content": example.answer}]
    return json.dumps({"messages": messages}, ensure_ascii=False, sort_keys=True)


def _heldout_line(example: Example, max_tokens: int) -> str:
    """A held-out prompt as an eval item whose reference is the teacher's answer (the student
    answers in the teacher's token budget)."""
    item = {
        "id": example.digest[:16],
        "messages": example.messages,
        "reference": example.answer,
        "max_tokens": max_tokens,
    }
    return json.dumps(item, ensure_ascii=False, sort_keys=True)


def write(
    folder: Path,
    examples: Sequence[Example],
    roles: dict[str, str],
    seed: int,
    student_base: str,
    max_tokens: int = 256,
) -> Dataset:
    """Write train/valid/heldout JSONL in split order; then `ftops validate`'s rules (for the
    student's base model) and the training-data safety screen must pass, or nothing is used."""
    folder.mkdir(parents=True, exist_ok=True)
    by_role: dict[str, list[Example]] = {r: [] for r in ROLES}
    for example in sorted(examples, key=lambda e: _order_key(e.digest, seed)):
        by_role[roles[example.digest]].append(example)
    files, digests = {}, {}
    for role in ROLES:
        if not by_role[role]:
            continue
        lines = [_heldout_line(e, max_tokens) if role == "heldout" else _line(e) for e in by_role[role]]
        body = "".join(line + "\n" for line in lines).encode()
        path = folder / f"{role}.jsonl"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(body)
        tmp.replace(path)  # a crash leaves the old file or the new one, never half of one
        files[role], digests[role] = path, hashlib.sha256(body).hexdigest()
    if "train" not in files:
        raise DataError(
            f"{folder}: no training examples left", fix="add prompts or loosen the quality filter"
        )
    for role in ("train", "valid"):
        if role not in files:
            continue
        report = validate_file(
            files[role], ValidateOptions(method="supervised", base_model=student_base, role="training")
        )
        if not report.valid:
            raise DataError(
                f"the teacher's answers do not make valid training data: {report.finding_lines()[0]}",
                fix="change the prompts, the teacher's max_tokens, or add a quality filter",
            )
        screening = screen(files[role])
        if screening.flags:
            raise DataError(
                f"{files[role]}: the teacher's answers would teach harmful content: {screening.summary()}",
                fix="remove those prompts or add a quality filter that drops the answers",
            )
    return Dataset(folder, files, digests, {r: len(by_role[r]) for r in ROLES})


def usage_of(answers: Iterable[Answer]) -> dict[str, float]:
    """The teacher's tokens and latency over the capture (its own usage counts)."""
    rows = list(answers)
    n = len(rows) or 1
    return {
        "requests": len(rows),
        "prompt_tokens": sum(a.prompt_tokens for a in rows),
        "completion_tokens": sum(a.completion_tokens for a in rows),
        "mean_latency_s": round(sum(a.latency for a in rows) / n, 4),
    }


# ---------------------------------------------------------------- stored completions


@dataclass(frozen=True)
class StoredFilter:
    metadata: dict[str, str]
    model: str | None
    created_after: datetime | None
    created_before: datetime | None


def read_stored(client: openai.OpenAI, wanted: StoredFilter) -> list[Example]:
    """What production captured (`store: true`), filtered as declared. The service filters by
    metadata and model; the time window is applied here (the list API has no time filter)."""
    after = wanted.created_after.timestamp() if wanted.created_after else None
    before = wanted.created_before.timestamp() if wanted.created_before else None
    kwargs: dict[str, Any] = {"limit": 100, "order": "asc"}
    if wanted.metadata:
        kwargs["metadata"] = wanted.metadata
    if wanted.model:
        kwargs["model"] = wanted.model
    out: list[Example] = []
    seen: set[str] = set()
    for completion in client.chat.completions.list(**kwargs):
        if (after is not None and completion.created < after) or (
            before is not None and completion.created >= before
        ):
            continue
        choice = completion.choices[0] if completion.choices else None
        if choice is None or choice.finish_reason == "content_filter" or not choice.message.content:
            continue
        asked = [
            {"role": m.role, "content": m.content or ""}
            for m in client.chat.completions.messages.list(completion.id, limit=100)
        ]
        digest = prompt_digest(asked)
        if digest in seen:
            continue  # the same prompt asked twice in production: trained on once
        seen.add(digest)
        out.append(Example(digest, asked, choice.message.content))
    return out


def stored_roles(
    examples: Sequence[Example], max_examples: int | None, validation_split: float, held_out: int, seed: int
) -> dict[str, str]:
    """The same split as a prompt set's, over the captured prompts."""
    ordered = sorted((e.digest for e in examples), key=lambda d: _order_key(d, seed))
    if len(ordered) <= held_out:
        raise UsageError(
            f"the stored completions filter matched {len(ordered)} distinct prompt(s), but {held_out} are "
            "held out for the gate",
            fix="widen the filter (metadata, model, time window) or lower distill_from.held_out",
        )
    return split_roles(ordered, max_examples, validation_split, held_out)


# ---------------------------------------------------------------- estimates and agreement


@dataclass(frozen=True)
class Estimate:
    prompts: int
    input_tokens: int  # prompt tokens the teacher reads (o200k count, 3 per message + 3 as the API does)
    output_tokens_max: int  # at most max_tokens per answer
    training_tokens_max: int  # the student's training tokens per epoch, at most (prompt + answer)


def estimate(prompts: EvalSet, roles: dict[str, str], max_tokens: int) -> Estimate:
    counter = TokenCounter("o200k_base")
    per_prompt = []
    for item in prompts.items:
        counts = counter.count_many([m.content for m in item.messages])
        per_prompt.append(int(counts.sum()) + 3 * len(item.messages) + 3)
    trained = [
        tokens + max_tokens
        for item, tokens in zip(prompts.items, per_prompt, strict=True)
        if roles.get(str(item.id)) in ("train", "valid")
    ]
    return Estimate(len(per_prompt), sum(per_prompt), max_tokens * len(per_prompt), sum(trained))


@dataclass(frozen=True)
class Agreement:
    """How often a student's answers agree with the teacher's on held-out prompts, and whether it
    agrees significantly more than another student does (paired exact McNemar, `stats.compare`)."""

    rate: float
    interval: tuple[float, float]
    baseline_rate: float
    wins: int  # prompts where this student agrees with the teacher and the other does not
    losses: int
    p_value: float  # one-sided: the probability of this many wins if it agreed no more often

    def summary(self) -> dict[str, Any]:
        return asdict(self)


def agreement(student: Sequence[bool], baseline: Sequence[bool], confidence: float = 0.95) -> Agreement:
    """`student[i]`: the student agreed with the teacher on held-out prompt i; `baseline[i]`: the
    other student (untrained, or trained on something else) did. The test asks whether the other
    student is worse: its "regressions" against this one are this one's wins."""
    if len(student) != len(baseline) or not student:
        raise ValueError("both students must be graded on the same, non-empty held-out prompts")
    other: Comparison = compare([[b] for b in baseline], [[s] for s in student])
    n = len(student)
    return Agreement(
        sum(student) / n,
        wilson(sum(student), n, confidence),
        sum(baseline) / n,
        other.regressions,
        other.improvements,
        other.p_value,
    )
