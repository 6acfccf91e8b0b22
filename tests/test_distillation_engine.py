"""Distillation through the real Pulumi engine against the emulator: `ftops up` captures the
teacher's answers, uploads them and trains the student; a second `up` with nothing changed asks
the teacher nothing and starts no job; a changed prompt set previews as a new dataset, training
file and job."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from ftops.engine import install
from tests.conftest import REPO
from tests.emulator_process import Emulator
from tests.test_distillation_emulator import chat_requests
from tests.test_emulator_api import deploy
from tests.test_engine import SALT, engine, last_line, make, ok, pulumi_home

pytestmark = pytest.mark.slow
__all__ = ["engine", "pulumi_home"]  # fixtures, used by name

STUDENT = """\
config:
  ftops:environment:
    name: local-dev
    stage: development
    target: local
    location: swedencentral
    naming:
      prefix: ftops
    emulator:
      endpoint: {endpoint}
      account: {account}
    models:
      support-mini:
        base_model: gpt-4.1-mini-2025-04-14
        method:
          type: supervised
          hyperparameters:
            n_epochs: 1
        distill_from:
          teacher:
            deployment: teacher
            model: gpt-4.1-2025-04-14
            capacity: 100
          prompts: data/prompts.jsonl
          sampling:
            max_tokens: 12
          held_out: 10
          agreement: 0.0  # the engine carries the verdict here; the proof tests the statistics
        suffix: mini
        seed: 7
    deployments:
      support-mini:
        model: support-mini
        sku:
          name: GlobalStandard
          capacity: 10
    gates:
      support-mini:  # baseline: the teacher, a distilled model's default
        repeats: 1
        temperature: 0
        fail_on_uncertainty: false
        safety: null
        quality:
          - name: answers
            eval_set: data/evals.jsonl
            grader: regex
            threshold: 0.5
"""


def test_up_distills_then_a_second_up_starts_nothing_and_a_new_prompt_set_plans_a_retrain(
    engine: install.Engine, emu: Emulator, pulumi_home: Path, tmp_path: Path
) -> None:
    account = "distill-engine"
    repo = make(tmp_path / "repo", emu, pulumi_home, account)
    shutil.copy(REPO / "data" / "support-bot-distill" / "prompts.jsonl", repo.root / "data" / "prompts.jsonl")
    (repo.root / "environments" / "Pulumi.local-dev.yaml").write_text(
        SALT + STUDENT.format(endpoint=emu.url, account=account)
    )
    deploy(emu, "teacher", "gpt-4.1", version="2025-04-14", account=account, capacity=100)

    first = repo.ftops("up", "--env", "local-dev")
    out = ok(first)
    for step in (
        "created support-mini-distilled",
        "created support-mini-training",
        "created support-mini-job",
        "created support-mini-gate",
    ):
        assert step in out, out
    # Each of the 82 prompts asked once; then the gate: the student answers the 10 held-out prompts
    # and the one eval item, the teacher only the eval item (not its own agreement check).
    assert chat_requests(emu, account) == 82 + 10 + 1 + 1
    assert [j.status for j in repo.jobs()] == ["succeeded"]
    # The gate compared the student with its teacher, through Pulumi's wire, and priced both.
    (evidence,) = [
        e
        for e in map(
            json.loads, map(Path.read_text, (repo.root / ".ftops" / "evidence" / "local-dev").glob("*.json"))
        )
        if e["gate"] == "support-mini"
    ]
    assert evidence["baseline"] == {"kind": "teacher", "deployment": "teacher", "model": "gpt-4.1-2025-04-14"}
    usage = evidence["usage"]
    assert usage["checks"] == ["answers"]
    assert usage["candidate"]["requests"] == usage["baseline"]["requests"] == 1
    assert 0 < usage["candidate"]["usd_per_1k"] < usage["baseline"]["usd_per_1k"], usage

    with emu.http() as http:
        http.delete("/admin/requests")
        again = repo.ftops("up", "--env", "local-dev", "--json")
        counted = http.get("/admin/requests").json()["requests"]
    ok(again)
    assert set(json.loads(again.stdout)["changes"]) == {"same"}, again.stdout
    assert not [k for k in counted if k.startswith(("POST", "PUT", "DELETE"))], counted
    assert len(repo.jobs()) == 1

    prompts = repo.root / "data" / "prompts.jsonl"
    prompts.write_text(
        prompts.read_text()
        + json.dumps({"messages": [{"role": "user", "content": "Do you sell trekking poles?"}]})
        + "\n"
    )
    preview = repo.ftops("preview", "--env", "local-dev")
    planned = ok(preview)
    for step in (
        "support-mini-distilled",
        "support-mini-training",
        "support-mini-validation",
        "support-mini-job",
    ):
        assert re.search(rf"would replace {step}\b", planned), planned
    assert re.search(r"preview: stack local-dev: 4 to replace, ", last_line(preview)), planned
    assert "; cost: this change trains support-mini for $" in last_line(preview), planned
