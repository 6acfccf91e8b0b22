"""`FineTuningJob`: a training job as declarative state, crash-safe and never retrained silently.

Create is find-or-create: the jobs of the account are listed and the one carrying this spec's
hash (in `metadata`, or its short form in the suffix) is adopted; only when there is none is a
job created. Then it waits with backoff, logging events as they arrive, up to the configured
time; past it, it fails with "still running ... re-run to continue" and the next run adopts the
job. A job that failed or was cancelled is reported, not retried: training again is a decision
(`attempt: N+1` in the environment), because it costs money.
"""

from __future__ import annotations

import contextlib
import re
import time
from typing import Any

import openai
import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

from ftops.azure.connection import Target, backoff, retry_after, same_account
from ftops.config.pins import pinned_models
from ftops.errors import JobError, PinsUnreadableError
from ftops.providers.args import FineTuningJobArgs
from ftops.providers.base import inputs_of, unknown
from ftops.providers.spec import (
    METADATA_MODEL,
    METADATA_SPEC,
    SPEC_KEYS,
    TERMINAL,
    Checkpoint,
    canonical,
    choose_model,
    deployable,
    is_job_for,
    job_suffix,
    kept_checkpoints,
    spec_hash,
    status_of,
)

OUTPUTS = (
    "job_id",
    "status",
    "fine_tuned_model",
    "model",
    "checkpoint_step",
    "trained_tokens",
    "train_loss",
    "valid_loss",
    "result_file",
    "spec_hash",
    "drift",
    "drift_blocking",
    "checkpoints",
)
_STEP = re.compile(r"Step (\d+)/(\d+)")
MAX_POLL_SECONDS = 60.0
SUBMIT_ATTEMPTS = 5


class FineTuningJobProvider(ResourceProvider):
    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = [CheckFailure(p, r) for p, r in Target.of(news).problems()]
        if not news.get("base_model"):
            failures.append(CheckFailure("base_model", "is required: a base model or a fine-tuned model id"))
        for key in ("training_digest", "validation_digest"):
            value = news.get(key)
            # Unknown in a preview when the file is replaced (a distilled model's new dataset).
            if (
                value is not None
                and not unknown(value)
                and (len(str(value)) != 64 or not str(value).isalnum())
            ):
                failures.append(CheckFailure(key, "must be a sha256 digest (64 hex digits)"))
        if not news.get("training_digest"):
            failures.append(CheckFailure("training_digest", "is required"))
        method = news.get("method") or {}
        if method.get("type") not in ("supervised", "dpo", "reinforcement"):
            failures.append(CheckFailure("method.type", "must be supervised, dpo or reinforcement"))
        if news.get("checkpoint", "final") not in (
            "final",
            "best_valid_loss",
            "best_valid_reward",
            "best_eval",
        ):
            failures.append(
                CheckFailure("checkpoint", "must be final, best_valid_loss, best_valid_reward or best_eval")
            )
        elif news.get("checkpoint") == "best_eval" and kept_checkpoints(method) is None:
            failures.append(
                CheckFailure("method.hyperparameters.n_epochs", "best_eval needs a whole number of epochs")
            )
        timeout = news.get("wait_timeout_minutes", 60)
        if not isinstance(timeout, int | float) or timeout <= 0:
            failures.append(CheckFailure("wait_timeout_minutes", "must be a positive number of minutes"))
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [k for k in SPEC_KEYS if canonical(olds.get(k)) != canonical(news.get(k))]
        if not same_account(olds, news):
            replaces.append("target")
        if olds.get("drift_blocking") and not replaces:
            raise JobError(
                f"model {olds.get('name')}: {olds.get('drift')}. ftops does not train again on its own "
                "(that costs money): to train a new job, raise `attempt` for this model in the environment; "
                "to stop managing it, remove the model"
            )
        changed = replaces or [k for k in inputs_of(news, OUTPUTS) if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=False)

    # ------------------------------------------------------------------ create
    def create(self, props: dict[str, Any]) -> CreateResult:
        client = Target.of(props).client()
        spec = spec_hash(props)
        name = props.get("name", "model")
        job = self._find(client, spec, str(props["base_model"]))
        if job is None:
            job = self._submit(client, props, spec)
            pulumi.log.info(f"{name}: created fine-tuning job {job.id} (spec {spec[:7]})")
        else:
            pulumi.log.info(
                f"{name}: adopting job {job.id} ({job.status}) created earlier for spec {spec[:7]}"
            )
        if status_of(job.status) in ("failed", "cancelled"):
            raise JobError(self._ended(name, job))
        job = self._wait(client, job, float(props.get("wait_timeout_minutes", 60)) * 60, name)
        return CreateResult(job.id, {**inputs_of(props, OUTPUTS), **self._outputs(client, props, spec, job)})

    @staticmethod
    def _find(client: openai.OpenAI, spec: str, base_model: str) -> Any:
        # Azure has no server-side metadata filter: list (the SDK pages through every job, 100 at a
        # time; an account holds at most 100) and match on this side.
        for job in client.fine_tuning.jobs.list(limit=100):
            if is_job_for(job, spec, base_model):
                return job
        return None

    def _submit(self, client: openai.OpenAI, props: dict[str, Any], spec: str) -> Any:
        """POST the job once per attempt, never blindly again: a lost response or a 5xx after the
        service committed the job must not start a second paid job, so before every retry the
        account is searched for a job carrying this spec."""
        method = dict(props["method"])
        kind = method.pop("type")
        # Everything but the type goes in the method's own section (hyperparameters, and for RFT
        # the grader and response format).
        section = {k: canonical(v) for k, v in method.items() if v is not None}
        body: dict[str, Any] = {
            "model": props["base_model"],
            "training_file": props["training_file"],
            "suffix": job_suffix(props.get("suffix"), spec),
            "metadata": {METADATA_SPEC: spec, METADATA_MODEL: str(props.get("name", ""))},
            "method": {"type": kind, kind: section},
        }
        if props.get("validation_file"):
            body["validation_file"] = props["validation_file"]
        if props.get("seed") is not None:
            body["seed"] = int(props["seed"])
        extra = {"trainingType": props["training_type"]} if props.get("training_type") else None
        once = client.with_options(max_retries=0)
        for attempt in range(SUBMIT_ATTEMPTS):
            try:
                return once.fine_tuning.jobs.create(**body, extra_body=extra)
            except (
                openai.APIConnectionError,
                openai.RateLimitError,
                openai.InternalServerError,
                openai.ConflictError,
            ) as exc:
                if attempt == SUBMIT_ATTEMPTS - 1:
                    raise
                wait = retry_after(getattr(exc, "response", None)) or backoff(attempt)
                pulumi.log.warn(
                    f"{props.get('name')}: creating the job failed ({type(exc).__name__}); "
                    f"checking for it and retrying in {wait:.0f} s"
                )
                time.sleep(wait)
                found = self._find(client, spec, str(props["base_model"]))
                if found is not None:
                    return found
        raise JobError("unreachable")  # the loop returns or raises

    @staticmethod
    def _ended(name: str, job: Any) -> str:
        error = getattr(job, "error", None)
        why = f": {error.message}" if error is not None and getattr(error, "message", None) else ""
        return (
            f"model {name}: job {job.id} for this spec ended {job.status}{why}. ftops does not train "
            "again on its own: fix the cause and raise `attempt` for this model in the environment to train "
            "a new job"
        )

    def _wait(self, client: openai.OpenAI, job: Any, timeout: float, name: str) -> Any:
        deadline = time.monotonic() + timeout
        delay = 2.0
        seen: set[str] = set()
        progress = ""
        while status_of(job.status) not in TERMINAL:
            if time.monotonic() > deadline:
                if job.status == "paused":
                    raise JobError(
                        f"job {job.id} for model {name} is paused at {progress or 'its last step'}; resume "
                        "it (or cancel it and raise `attempt`), then re-run `pulumi up`"
                    )
                raise JobError(
                    f"still running: job {job.id} for model {name} at {progress or job.status} after "
                    f"{timeout / 60:g} min; re-run `pulumi up` to continue waiting (it adopts this job, no "
                    "new one is started)"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, MAX_POLL_SECONDS)
            for event in reversed(client.fine_tuning.jobs.list_events(job.id, limit=20).data):
                if event.id in seen:
                    continue
                seen.add(event.id)
                match = _STEP.search(event.message)
                if match:
                    progress = f"step {match.group(1)}/{match.group(2)}"
                pulumi.log.info(f"{name}: {event.message}")
            job = client.fine_tuning.jobs.retrieve(job.id)
        if job.status != "succeeded":
            raise JobError(self._ended(name, job))
        return job

    @staticmethod
    def _outputs(client: openai.OpenAI, props: dict[str, Any], spec: str, job: Any) -> dict[str, Any]:
        listed = client.fine_tuning.jobs.checkpoints.list(job.id, limit=100).data
        checkpoints = [
            Checkpoint(
                int(c.step_number),
                c.fine_tuned_model_checkpoint,
                {k: float(v) for k, v in c.metrics.model_dump(exclude_none=True).items()},
                c.id,
            )
            for c in listed
        ]
        kept = deployable(job.fine_tuned_model, checkpoints)
        expected = kept_checkpoints(props.get("method") or {})
        if props.get("checkpoint") == "best_eval" and expected is not None and len(kept) < expected:
            raise JobError(
                f"model {props.get('name')}: job {job.id} keeps {len(kept)} checkpoint(s), best_eval "
                f"declared a candidate for each of {expected}; check the job's checkpoints, or use "
                "checkpoint: final"
            )
        model, step = choose_model(job.fine_tuned_model, checkpoints, str(props.get("checkpoint", "final")))
        last = max(checkpoints, key=lambda c: c.step, default=None)
        metrics = last.metrics if last else {}
        return {
            "job_id": job.id,
            "status": job.status,
            "fine_tuned_model": job.fine_tuned_model,
            "model": model,
            "checkpoint_step": step,
            "trained_tokens": job.trained_tokens,
            "train_loss": metrics.get("train_loss"),
            "valid_loss": metrics.get("full_valid_loss", metrics.get("valid_loss")),
            "result_file": job.result_files[0] if job.result_files else None,
            "spec_hash": spec,
            "drift": "",
            "drift_blocking": False,
            "checkpoints": kept,
        }

    # ------------------------------------------------------------------ read, update, delete
    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        client = Target.of(props).client()
        kept = {k: props.get(k) for k in OUTPUTS}
        try:
            job = client.fine_tuning.jobs.retrieve(id_)
        except openai.NotFoundError:
            model = props.get("fine_tuned_model")
            try:
                if model:
                    client.models.retrieve(model)
                drift, blocking = f"job {id_} was deleted out of band; its model {model} still exists", False
            except openai.NotFoundError:
                drift, blocking = f"job {id_} and its model {model} were deleted out of band", True
            pulumi.log.warn(f"{props.get('name')}: {drift}")
            return ReadResult(
                id_, {**inputs_of(props, OUTPUTS), **kept, "drift": drift, "drift_blocking": blocking}
            )
        if job.status != "succeeded":
            drift = f"job {id_} is now {job.status} (it was succeeded)"
            pulumi.log.warn(f"{props.get('name')}: {drift}")
            return ReadResult(
                id_,
                {
                    **inputs_of(props, OUTPUTS),
                    **kept,
                    "status": job.status,
                    "drift": drift,
                    "drift_blocking": True,
                },
            )
        return ReadResult(
            id_,
            {**inputs_of(props, OUTPUTS), **kept, "status": job.status, "drift": "", "drift_blocking": False},
        )

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Only settings that do not change what is trained (file ids, checkpoint policy, retention)."""
        client = Target.of(news).client()
        try:
            job = client.fine_tuning.jobs.retrieve(id_)
        except openai.NotFoundError:
            # The job record is gone but its model may still serve (reported by read): keep what we know.
            kept = {k: olds.get(k) for k in OUTPUTS}
            return UpdateResult({**inputs_of(news, OUTPUTS), **kept})
        outputs = self._outputs(client, news, str(olds.get("spec_hash")), job)
        return UpdateResult({**inputs_of(news, OUTPUTS), **outputs})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        name, model = props.get("name"), props.get("fine_tuned_model")
        if props.get("retain", True):
            pulumi.log.info(f"{name}: keeping job {id_} and model {model} (retain_on_delete)")
            return
        # The pins are read now, not taken from state: a promotion since the last `up` counts too.
        try:
            pins = pinned_models(str(props.get("releases_dir") or ""))
        except PinsUnreadableError as exc:
            raise JobError(
                f"{name}: not deleting job {id_} and model {model}: the release pins cannot be read ({exc})"
            ) from None
        pinned = [m for m in pins if model and m.startswith(model)]
        if pinned:
            pulumi.log.info(f"{name}: keeping job {id_} and model {model}: release pin(s) reference it")
            return
        with contextlib.suppress(openai.NotFoundError):
            Target.of(props).dated_client().delete(f"/fine_tuning/jobs/{id_}", cast_to=type(None))


class FineTuningJob(pulumi.dynamic.Resource):
    job_id: pulumi.Output[str]
    status: pulumi.Output[str]
    fine_tuned_model: pulumi.Output[str]
    model: pulumi.Output[str]
    trained_tokens: pulumi.Output[int]
    train_loss: pulumi.Output[float]
    valid_loss: pulumi.Output[float]
    spec_hash: pulumi.Output[str]
    drift: pulumi.Output[str]
    checkpoints: pulumi.Output[list[dict[str, Any]]]  # the kept ones, oldest first (spec.deployable)

    def __init__(
        self, resource_name: str, args: FineTuningJobArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        inputs = {**args.inputs(), **dict.fromkeys(OUTPUTS)}
        super().__init__(FineTuningJobProvider(), resource_name, inputs, opts)
