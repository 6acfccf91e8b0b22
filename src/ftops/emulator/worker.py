"""The training worker: one spawned process per running job, so the API stays responsive.

It reads the job from SQLite, validates the training data, trains with `ftops.emulator.ml`,
and writes everything Azure reports back into SQLite as it happens: events (messages and
metrics), a checkpoint per epoch, results.csv as a result file, the fine-tuned model.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

from ftops.emulator import ids
from ftops.emulator.store import Doc, Store

_STEP_MESSAGE = re.compile(r"^Step \d+/\d+:")
KEPT_CHECKPOINTS = 3  # Azure keeps the checkpoints of the last three epochs
RESULT_COLUMNS = (
    "step",
    "train_loss",
    "train_mean_token_accuracy",
    "valid_loss",
    "validation_mean_token_accuracy",
    "full_valid_loss",
    "full_valid_mean_token_accuracy",
)


def add_event(
    store: Store,
    job_id: str,
    message: str,
    level: str = "info",
    kind: str = "message",
    data: dict[str, Any] | None = None,
) -> None:
    store.add_event(event_doc(job_id, message, level, kind, data))


def event_doc(
    job_id: str, message: str, level: str = "info", kind: str = "message", data: dict[str, Any] | None = None
) -> Doc:
    return {
        "id": ids.new("event"),
        "object": "fine_tuning.job.event",
        "created_at": ids.now(),
        "level": level,
        "message": message,
        "type": kind,
        "data": data or {},
        "job_id": job_id,
    }


class StoreReporter:
    """Receives progress from the trainer and records it the way Azure reports it."""

    def __init__(
        self,
        store: Store,
        job_id: str,
        model_id: str,
        work_dir: Path,
        parent: int,
        columns: tuple[str, ...] = RESULT_COLUMNS,
    ) -> None:
        self.parent = parent
        self.columns = columns
        self.store = store
        self.job_id = job_id
        self.model_id = model_id
        self.results = work_dir / "results.csv"
        self.rows: dict[int, dict[str, Any]] = {}
        if self.results.exists():  # a resumed job keeps the rows trained before its pause
            with self.results.open(newline="") as fh:
                reader = csv.DictReader(fh)
                self.columns = tuple(reader.fieldnames or columns)
                for row in reader:
                    self.rows[int(row["step"])] = {k: v for k, v in row.items() if v != ""}
        self.started = time.time()

    def event(self, message: str, level: str = "info") -> None:
        if _STEP_MESSAGE.match(message):
            return  # every step already has its metrics event with this very message
        add_event(self.store, self.job_id, message, level)

    def metrics(
        self,
        step: int,
        total_steps: int,
        train_loss: float,
        train_mean_token_accuracy: float,
        valid_loss: float | None,
        valid_mean_token_accuracy: float | None,
    ) -> None:
        data: dict[str, Any] = {
            "step": step,
            "train_loss": train_loss,
            "train_mean_token_accuracy": train_mean_token_accuracy,
        }
        if valid_loss is not None:
            data["valid_loss"] = valid_loss
            data["valid_mean_token_accuracy"] = valid_mean_token_accuracy
        self.rows[step] = {
            "step": step,
            "train_loss": train_loss,
            "train_mean_token_accuracy": train_mean_token_accuracy,
            "valid_loss": valid_loss,
            "validation_mean_token_accuracy": valid_mean_token_accuracy,
        }
        add_event(
            self.store,
            self.job_id,
            f"Step {step}/{total_steps}: training loss={train_loss:.4f}",
            kind="metrics",
            data=data,
        )
        self._progress(step, total_steps)

    def _progress(self, step: int, total_steps: int) -> None:
        elapsed = time.time() - self.started
        # Seconds per step so far, projected over the steps left.
        finish = int(time.time() + elapsed / max(1, len(self.rows)) * max(0, total_steps - step))

        def progress(doc: Doc, internal: Doc) -> None:
            internal["step"], internal["total_steps"] = step, total_steps
            doc["estimated_finish"] = finish

        self.store.update_job(self.job_id, progress)
        self._write_results()

    def rewards(self, step: int, total_steps: int, row: dict[str, float]) -> None:
        """An RFT step: Azure's reward metrics (and a multi grader's parts) as an event and a row."""
        data: dict[str, Any] = {"step": step, **row}
        self.rows[step] = data
        extra = [c for c in row if c not in self.columns]
        self.columns = (*self.columns, *extra)  # a multi grader's parts, as they first appear
        valid = f", validation reward={row['valid_reward_mean']:.4f}" if "valid_reward_mean" in row else ""
        add_event(
            self.store,
            self.job_id,
            f"Step {step}/{total_steps}: training reward={row['train_reward_mean']:.4f}{valid}",
            kind="metrics",
            data=data,
        )
        self._progress(step, total_steps)

    def checkpoint(self, epoch: int, step: int, path: Path, metrics: dict[str, float]) -> None:
        row = self.rows.setdefault(step, {"step": step})
        for key in ("full_valid_loss", "full_valid_mean_token_accuracy", "full_valid_reward_mean"):
            if key in metrics:
                row[key] = metrics[key]
        self._write_results()
        self.store.add_checkpoint(
            {
                "id": ids.new("checkpoint"),
                "object": "fine_tuning.job.checkpoint",
                "created_at": ids.now(),
                "fine_tuned_model_checkpoint": f"{self.model_id}:ckpt-step-{step}",
                "fine_tuning_job_id": self.job_id,
                "metrics": {"step": float(step), **{k: float(v) for k, v in metrics.items() if k != "step"}},
                "step_number": step,
            },
            path,
        )
        for dropped in self.store.prune_checkpoints(self.job_id, KEPT_CHECKPOINTS):
            shutil.rmtree(dropped, ignore_errors=True)
        add_event(self.store, self.job_id, f"Created checkpoint at step {step} (epoch {epoch}).")

    def control(self) -> str | None:
        # A worker must not outlive a killed emulator: it would keep writing to a job the restarted
        # emulator has already failed. (PR_SET_PDEATHSIG fires when the spawning *thread* ends.)
        if os.getppid() != self.parent:
            os._exit(1)
        wanted = self.store.control(self.job_id)
        # "shutdown" (the emulator is stopping) pauses like a user's pause, but resumes on restart.
        return "pause" if wanted == "shutdown" else wanted

    def _write_results(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for step in sorted(self.rows):
            writer.writerow({k: ("" if v is None else v) for k, v in self.rows[step].items()})
        tmp = self.results.with_suffix(".tmp")
        tmp.write_text(buf.getvalue())
        os.replace(tmp, self.results)


def _validate(store: Store, job_id: str, internal: Doc) -> str | None:
    """Check the data for the job's method; a one-paragraph reason when it is invalid."""
    from ftops.dataset.validate import ValidateOptions, validate_file

    problems = []
    for role, key in (("training", "training_path"), ("validation", "validation_path")):
        if not internal.get(key):
            continue
        report = validate_file(
            Path(internal[key]),
            ValidateOptions(
                method=internal["method"], base_model=internal["catalog_base"], role=role, workers=1
            ),
        )
        for rule in report.errors:
            first = rule.first[0]
            where = f"line {first.line}: " if first.line else ""
            problems.append(f"{role} file: {where}{first.message} ({rule.code}, {rule.count} in all)")
    if not problems:
        add_event(store, job_id, "Training file validation passed.")
        return None
    return "The training data is invalid for this job: " + "; ".join(problems[:5])


def run(db_path: str, job_id: str, parent: int) -> None:
    """Process entry point (multiprocessing spawn)."""
    store = Store(Path(db_path))
    found = store.get_job(job_id)
    if found is None:
        return
    doc, internal, _ = found
    try:
        _run(store, doc, internal, parent)
    except Exception as exc:  # the job fails with the reason; the process ends cleanly
        trace = traceback.format_exc(limit=3)
        _finish(
            store, job_id, "failed", error={"code": "training_failed", "message": f"{exc}", "param": None}
        )
        add_event(store, job_id, f"Training failed: {exc}", level="error")
        add_event(store, job_id, trace.strip().splitlines()[-1], level="error")


def _run(store: Store, doc: Doc, internal: Doc, parent: int) -> None:
    from ftops.emulator.ml.train import Hyper, TrainRequest, train

    job_id = doc["id"]
    resume = internal.get("resume_dir")
    if resume:
        # Consumed now: once training goes on from it the saved state is stale, and a later crash
        # must not resume from it again (the job is failed honestly instead).
        store.update_job(job_id, lambda d, i: i.pop("resume_dir", None))
    if not resume:
        reason = _validate(store, job_id, internal)
        if reason:
            _finish(
                store,
                job_id,
                "failed",
                error={"code": "invalid_training_file", "message": reason, "param": None},
            )
            add_event(store, job_id, reason, level="error")
            return
    hp = internal["hyperparameters"]

    def number(key: str) -> Any:
        value = hp.get(key, "auto")
        return None if value in (None, "auto") else value

    work_dir = Path(internal["work_dir"])
    if internal["method"] == "reinforcement":
        _run_rft(store, doc, internal, parent, number, resume)
        return
    request = TrainRequest(
        base=internal["stand_in"],
        method=internal["method"],
        training_file=Path(internal["training_path"]),
        validation_file=Path(internal["validation_path"]) if internal.get("validation_path") else None,
        hyper=Hyper(
            n_epochs=number("n_epochs"),
            batch_size=number("batch_size"),
            learning_rate_multiplier=number("learning_rate_multiplier"),
            beta=number("beta"),
        ),
        seed=int(doc["seed"]),
        work_dir=work_dir,
        cache_dir=Path(internal["cache_dir"]),
        parent_adapters=[Path(p) for p in internal.get("parent_adapters", [])],
        resume_from=Path(resume) if resume else None,
        fail_at_step=internal.get("fail_at_step"),
    )
    reporter = StoreReporter(store, job_id, internal["model_id"], work_dir, parent)
    result = train(request, reporter)
    _after(store, doc, internal, result.status, result.steps, result.total_steps, work_dir)
    if result.status == "succeeded":
        if result.adapter is None:
            raise RuntimeError("training succeeded without an adapter")
        _succeed(store, doc, internal, result.adapter, result.trained_tokens, result.resolved, work_dir)


def _run_rft(store: Store, doc: Doc, internal: Doc, parent: int, number: Any, resume: str | None) -> None:
    from ftops.emulator.ml.rft import RESULT_COLUMNS as RFT_COLUMNS
    from ftops.emulator.ml.rft import RftHyper, RftRequest, train_rft

    job_id, work_dir = doc["id"], Path(internal["work_dir"])
    hp = internal["hyperparameters"]
    # Azure's cap applies once: a job resumed after the automatic pause runs uncapped.
    ceiling = None if internal.get("rft_ceiling_reached") else internal.get("rft_pause_after_seconds")
    request = RftRequest(
        base=internal["stand_in"],
        grader=internal["grader"],
        training_file=Path(internal["training_path"]),
        validation_file=Path(internal["validation_path"]),
        hyper=RftHyper(
            n_epochs=number("n_epochs"),
            batch_size=number("batch_size"),
            learning_rate_multiplier=number("learning_rate_multiplier"),
            eval_interval=number("eval_interval"),
            eval_samples=number("eval_samples"),
            compute_multiplier=number("compute_multiplier"),
            reasoning_effort=str(hp.get("reasoning_effort", "default")),
        ),
        seed=int(doc["seed"]),
        work_dir=work_dir,
        cache_dir=Path(internal["cache_dir"]),
        parent_adapters=[Path(p) for p in internal.get("parent_adapters", [])],
        resume_from=Path(resume) if resume else None,
        fail_at_step=internal.get("fail_at_step"),
        pause_after_seconds=ceiling,
        grader_stand_ins=dict(internal.get("grader_stand_ins") or {}),
    )
    reporter = StoreReporter(store, job_id, internal["model_id"], work_dir, parent, RFT_COLUMNS)
    result = train_rft(request, reporter)
    if result.status == "ceiling":
        store.update_job(job_id, lambda d, i: i.update(rft_ceiling_reached=True))
        add_event(
            store,
            job_id,
            f"Job paused automatically after {result.training_seconds:.0f} s of training, the emulator's "
            "cost ceiling (Azure pauses RFT jobs at $5,000); the last checkpoint is deployable, and a "
            "resumed job runs without a further cap.",
            level="warn",
        )
    _after(
        store,
        doc,
        internal,
        "paused" if result.status == "ceiling" else result.status,
        result.steps,
        result.total_steps,
        work_dir,
    )
    if result.status == "succeeded":
        if result.adapter is None:
            raise RuntimeError("training succeeded without an adapter")
        _succeed(store, doc, internal, result.adapter, result.trained_tokens, result.resolved, work_dir)


def _after(
    store: Store, doc: Doc, internal: Doc, status: str, steps: int, total_steps: int, work_dir: Path
) -> None:
    """A paused or cancelled run recorded; nothing to do for a finished one."""
    job_id = doc["id"]
    if status == "paused":
        shutdown = store.control(job_id) == "shutdown"

        def paused(d: Doc, i: Doc) -> bool | None:
            if d["status"] == "cancelled":  # a cancel that raced the pause wins
                return False
            d["status"] = "resuming" if shutdown else "paused"
            i["resume_dir"] = str(work_dir / "resume")
            i["step"], i["total_steps"] = steps, total_steps
            return None

        store.update_job(job_id, paused, control=None)
        where = f"step {steps}/{total_steps}"
        if shutdown:
            add_event(
                store,
                job_id,
                f"The emulator is stopping; the job saved its state at {where} and resumes on restart.",
            )
        else:
            add_event(store, job_id, f"Job paused at {where}.")
        return
    if status == "cancelled":
        _finish(store, job_id, "cancelled")
        add_event(store, job_id, f"Job cancelled at step {steps}/{total_steps}.")


def _succeed(
    store: Store,
    doc: Doc,
    internal: Doc,
    adapter: Path,
    trained_tokens: int,
    resolved: dict[str, Any],
    work_dir: Path,
) -> None:
    job_id, account, model_id = doc["id"], internal["account"], internal["model_id"]
    current = store.get_job(job_id)
    if current is None or current[0]["status"] == "cancelled":
        return  # cancelled while the last step ran: the user's decision stands
    results = work_dir / "results.csv"
    file_id = ids.new("file")
    files_dir = Path(internal["files_dir"])
    target = files_dir / file_id
    target.write_bytes(
        results.read_bytes() if results.exists() else b",".join(c.encode() for c in RESULT_COLUMNS)
    )
    store.add_file(
        account,
        {
            "id": file_id,
            "object": "file",
            "bytes": target.stat().st_size,
            "created_at": ids.now(),
            "filename": "results.csv",
            "purpose": "fine-tune-results",
            "status": "processed",
        },
    )
    store.add_model(
        account,
        {
            "id": model_id,
            "object": "model",
            "created_at": ids.now(),
            "owned_by": "organization-owner",
            "created_by": job_id,
        },
        {
            "stand_in": internal["stand_in"],
            "adapters": [*internal.get("parent_adapters", []), str(adapter)],
            "base_model": internal["catalog_base"],
            "job_id": job_id,
            "method": internal["method"],
        },
    )
    hyper = {
        k: v
        for k, v in resolved.items()
        if k in ("n_epochs", "batch_size", "learning_rate_multiplier", "beta")
        or internal["method"] == "reinforcement"
    }

    def done(d: Doc, i: Doc) -> bool | None:
        if d["status"] in ("cancelled", "failed"):  # decided while the last step ran: it stands
            return False
        d.update(
            status="succeeded",
            finished_at=ids.now(),
            fine_tuned_model=model_id,
            trained_tokens=trained_tokens,
            result_files=[file_id],
            estimated_finish=None,
        )
        supervised = {
            k: v for k, v in hyper.items() if k in ("n_epochs", "batch_size", "learning_rate_multiplier")
        }
        d["hyperparameters"] = supervised
        method = d.get("method") or {"type": internal["method"]}
        kind = method["type"]
        method.setdefault(kind, {})["hyperparameters"] = supervised if kind == "supervised" else hyper
        d["method"] = method
        i.pop("resume_dir", None)
        return None

    messages = (
        f"New fine-tuned model created: {model_id}",
        "The job has successfully completed.",
        "Job succeeded.",
    )
    store.update_job(
        job_id,
        done,
        control=None,
        events=tuple(event_doc(job_id, m) for m in messages),
        final_checkpoint=model_id,
    )


def _finish(store: Store, job_id: str, status: str, error: Doc | None = None) -> None:
    def change(doc: Doc, internal: Doc) -> None:
        doc["status"] = status
        doc["finished_at"] = ids.now()
        doc["estimated_finish"] = None
        if error is not None:
            doc["error"] = error
        internal.pop("resume_dir", None)

    store.update_job(job_id, change, control=None)
