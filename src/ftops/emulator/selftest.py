"""`ftops emulator selftest`: one model of a local environment through a running emulator.

Upload the model's data, fine-tune the local stand-in for real, deploy the base and the
fine-tuned model through the ARM-shaped endpoint, and ask both the first training prompts: the
fine-tuned answers should be closer to the training answers. It checks the emulator end to end
with the official SDK, the way `pulumi up --stack local` will drive it.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx2 as httpx
import openai
from rich.console import Console
from rich.table import Table

from ftops.config.schema import Environment
from ftops.errors import CheckFailedError, UsageError

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
RESOURCE_GROUP = "rg-ftops-local"


@dataclass
class Outcome:
    job_id: str
    model: str
    trained_tokens: int
    seconds: float
    first_loss: float
    last_loss: float
    base_f1: float
    tuned_f1: float
    improved: int
    prompts: int

    @property
    def moved(self) -> bool:
        """Whether training moved the answers toward the training answers (mean word F1 rose);
        a model that trained but answers no closer (or worse) did not pass the selftest."""
        return self.tuned_f1 > self.base_f1

    def summary(self) -> str:
        trained = (
            f"{self.model} trained {self.trained_tokens:,} tokens in {self.seconds:.0f} s "
            f"(loss {self.first_loss:.2f} -> {self.last_loss:.2f})"
        )
        closer = (
            f"closer to the training answers on {self.improved}/{self.prompts} prompts "
            f"(word F1 {self.base_f1:.2f} -> {self.tuned_f1:.2f})"
        )
        if self.moved:
            return f"selftest: ok: {trained}; its answers are {closer}"
        return f"selftest: {trained}, but answers did not move toward the training answers: {closer}"


def _words(text: str) -> Counter[str]:
    return Counter(re.findall(r"[a-z0-9$]+", text.lower()))


def overlap_f1(answer: str, reference: str) -> float:
    """Word-overlap F1 between an answer and the training answer (SQuAD-style)."""
    a, r = _words(answer), _words(reference)
    common = sum((a & r).values())
    if not common:
        return 0.0
    precision, recall = common / sum(a.values()), common / sum(r.values())
    return 2 * precision * recall / (precision + recall)


def _prompts(path: Path, n: int) -> list[tuple[list[dict[str, Any]], str]]:
    """(messages up to the first assistant reply, that reply) for the first n examples with one."""
    out = []
    with path.open(encoding="utf-8-sig") as fh:
        for line in fh:
            messages = json.loads(line).get("messages", [])
            for i, message in enumerate(messages):
                if message.get("role") == "assistant" and isinstance(message.get("content"), str) and i:
                    out.append((messages[:i], message["content"]))
                    break
            if len(out) == n:
                break
    return out


def run(
    env: Environment, root: Path, endpoint: str, api_key: str, console: Console, prompts: int = 6
) -> Outcome:
    if env.emulator is None or not env.models:
        raise UsageError(
            f"environment '{env.name}' is not a local environment that trains a model", fix="use --env local"
        )
    key, spec = next(iter(env.models.items()))
    deployment = next((d for d in env.deployments.values() if d.model == key), None)
    account = env.emulator.account
    data_plane = f"{endpoint.rstrip('/')}/accounts/{account}"
    client = openai.AzureOpenAI(azure_endpoint=data_plane, api_key=api_key, api_version="2024-10-21")
    arm = (
        f"{endpoint.rstrip('/')}/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/"
        f"Microsoft.CognitiveServices/accounts/{account}"
    )
    try:
        return _run(env, root, key, spec, deployment, client, arm, api_key, console, prompts)
    except openai.APIConnectionError:
        raise UsageError(
            f"no emulator answers at {endpoint}", fix="start one with `ftops emulator`"
        ) from None
    except openai.AuthenticationError:
        raise UsageError(
            "the emulator refused the key", fix="set FTOPS_EMULATOR_KEY to the key it printed"
        ) from None


def _upload(client: openai.AzureOpenAI, path: Path, console: Console) -> str:
    with path.open("rb") as fh:
        created = client.files.create(file=fh, purpose="fine-tune")
    while (f := client.files.retrieve(created.id)).status not in ("processed", "error"):
        time.sleep(0.2)
    if f.status == "error":
        raise CheckFailedError(f"{path}: the emulator rejected the file: {f.status_details}")
    console.print(f"selftest: uploaded {path.name} as {f.id}", soft_wrap=True)
    return f.id


def _deploy(arm: str, api_key: str, name: str, model: str, version: str, sku: str, capacity: int) -> None:
    body = {
        "sku": {"name": sku, "capacity": capacity},
        "properties": {
            "model": {"format": "OpenAI", "name": model, "version": version},
            "versionUpgradeOption": "NoAutoUpgrade",
        },
    }
    url = f"{arm}/deployments/{name}"
    with httpx.Client(headers={"api-key": api_key}, params={"api-version": "2024-10-01"}, timeout=60) as http:
        for _ in range(600):  # another write on the account answers 409 until it finishes
            response = http.put(url, json=body)
            if response.status_code != 409:
                break
            time.sleep(0.5)
        if response.status_code not in (200, 201):
            raise CheckFailedError(
                f"deploying {model} as '{name}' failed: {response.status_code} {response.text}"
            )
        while http.get(url).json()["properties"]["provisioningState"] != "Succeeded":
            time.sleep(0.2)


def _run(
    env: Environment,
    root: Path,
    key: str,
    spec: Any,
    deployment: Any,
    client: openai.AzureOpenAI,
    arm: str,
    api_key: str,
    console: Console,
    n_prompts: int,
) -> Outcome:
    training = _upload(client, root / spec.training_file, console)
    validation = _upload(client, root / spec.validation_file, console) if spec.validation_file else None
    base_model = env.base_of(key)
    hyper = spec.method.hyperparameters.model_dump()
    started = time.monotonic()
    job = client.fine_tuning.jobs.create(
        model=base_model,
        training_file=training,
        validation_file=validation,
        suffix=spec.suffix,
        seed=spec.seed,
        method=cast(Any, {"type": spec.method.type, spec.method.type: {"hyperparameters": hyper}}),
        metadata={"ftops-environment": env.name, "ftops-model": key},
    )
    console.print(
        f"selftest: fine-tuning {base_model} as job {job.id} (real training on the CPU)", soft_wrap=True
    )
    seen: set[str] = set()
    losses: dict[int, float] = {}
    while True:
        fresh = [e for e in client.fine_tuning.jobs.list_events(job.id, limit=100).data if e.id not in seen]
        for event in reversed(fresh):
            seen.add(event.id)
            if event.type == "metrics" and isinstance(event.data, dict):
                losses[int(event.data["step"])] = float(event.data["train_loss"])
            console.print(f"  {event.message}", markup=False, highlight=False, soft_wrap=True)
        job = client.fine_tuning.jobs.retrieve(job.id)
        if job.status in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(1)
    seconds = time.monotonic() - started
    if job.status != "succeeded" or not job.fine_tuned_model:
        message = job.error.message if job.error else job.status
        raise CheckFailedError(f"the fine-tuning job {job.id} ended {job.status}: {message}")

    sku = deployment.sku if deployment is not None else None
    name = key if deployment is None else next(k for k, d in env.deployments.items() if d is deployment)
    base_name, version = base_model.rsplit("-", 3)[0], "-".join(base_model.rsplit("-", 3)[1:])
    _deploy(arm, api_key, f"{name}-base", base_name, version, "GlobalStandard", 50)
    _deploy(
        arm,
        api_key,
        name,
        job.fine_tuned_model,
        "1",
        sku.name if sku else "GlobalStandard",
        sku.capacity if sku else 10,
    )
    console.print(
        f"selftest: deployed {base_model} as '{name}-base' and {job.fine_tuned_model} as '{name}'",
        soft_wrap=True,
    )

    table = Table("prompt", "training answer", "base model", "fine-tuned", show_lines=True)
    base_scores, tuned_scores = [], []
    for messages, reference in _prompts(root / spec.training_file, n_prompts):
        answers = []
        for deployment_name in (f"{name}-base", name):
            reply = client.chat.completions.create(
                model=deployment_name, messages=cast(Any, messages), temperature=0, max_tokens=60
            )
            answers.append(reply.choices[0].message.content or "")
        base_scores.append(overlap_f1(answers[0], reference))
        tuned_scores.append(overlap_f1(answers[1], reference))
        question = str(messages[-1].get("content", ""))
        table.add_row(
            question,
            reference,
            f"{answers[0]}\n(F1 {base_scores[-1]:.2f})",
            f"{answers[1]}\n(F1 {tuned_scores[-1]:.2f})",
        )
    console.print(table)
    steps = sorted(losses)
    return Outcome(
        job.id,
        job.fine_tuned_model,
        job.trained_tokens or 0,
        seconds,
        losses[steps[0]] if steps else float("nan"),
        losses[steps[-1]] if steps else float("nan"),
        sum(base_scores) / max(1, len(base_scores)),
        sum(tuned_scores) / max(1, len(tuned_scores)),
        sum(t > b for b, t in zip(base_scores, tuned_scores, strict=True)),
        len(base_scores),
    )
