"""Distillation against the emulator: the DistillationDataset provider served by Pulumi's own
dynamic-provider host captures a teacher deployment's answers through the paced runner, writes
the content-addressed dataset, plans nothing when nothing changed and a replacement when the
prompt set changed; killed half-way and run again, every prompt was asked exactly once."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ftops.dataset.validate import ValidateOptions, validate_file
from ftops.providers.distillation import DistillationDatasetProvider
from ftops.providers.spec import sha256_file
from tests.emulator_process import HOST_ENV, KEY, Emulator, target
from tests.provider_host import DynamicHost, HostError
from tests.test_emulator_api import deploy

TEACHER = "gpt-4.1-2025-04-14"
PRODUCTS = ["tent", "stove", "sleeping bag", "headlamp", "rain jacket", "hiking boots", "backpack", "kayak"]
ASKS = [
    "How do I return a {p}?",
    "Is the {p} in stock in Oslo?",
    "What is the warranty on the {p}?",
    "Can I get the {p} shipped to Canada?",
    "Does the {p} come in green?",
]


def prompt_set(path: Path, n: int = 40) -> Path:
    lines = []
    for i in range(n):
        ask = ASKS[i % len(ASKS)].format(p=PRODUCTS[(i // len(ASKS)) % len(PRODUCTS)])
        lines.append(
            json.dumps(
                {
                    "messages": [
                        {"role": "system", "content": "You are Contoso Outdoor's support assistant."},
                        {"role": "user", "content": ask},
                    ]
                }
            )
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def dataset_props(emu: Emulator, account: str, prompts: Path, folder: Path, **extra: Any) -> dict[str, Any]:
    return {
        "target": target(emu, account),
        "name": "support-mini",
        "source": "prompts",
        "prompts_path": str(prompts),
        "prompts_digest": sha256_file(str(prompts)),
        "stored": None,
        "teacher_target": target(emu, account),
        "teacher": {"deployment": "teacher", "model": TEACHER, "capacity": 100},
        "sampling": {"temperature": 0.0, "max_tokens": 12, "seed": 0},
        "max_examples": None,
        "quality_filter": None,
        "validation_split": 0.1,
        "held_out": 8,
        "student_base": "gpt-4.1-mini-2025-04-14",
        "folder": str(folder),
        "concurrency": 4,
        **extra,
    }


def chat_requests(emu: Emulator, account: str) -> int:
    with emu.http() as http:
        counts = http.get("/admin/requests").json()["requests"]
    return int(counts.get(f"POST /accounts/{account}/openai/v1/chat/completions", 0))


def test_capture_writes_a_content_addressed_dataset_and_replans_only_on_change(
    emu: Emulator, host: DynamicHost, tmp_path: Path
) -> None:
    account = "distill-a"
    deploy(emu, "teacher", "gpt-4.1", version="2025-04-14", account=account, capacity=100)
    prompts = prompt_set(tmp_path / "prompts.jsonl")
    props = dataset_props(emu, account, prompts, tmp_path / "out")
    before = chat_requests(emu, account)
    id_, outs = host.create(DistillationDatasetProvider(), props)
    assert chat_requests(emu, account) - before == 40  # each prompt asked once
    assert outs["counts"] == {"train": 22, "valid": 10, "heldout": 8}
    train = Path(outs["train_path"])
    assert sha256_file(str(train)) == outs["train_digest"]
    assert validate_file(train, ValidateOptions(base_model="gpt-4.1-mini-2025-04-14")).valid
    rows = [json.loads(line) for line in train.read_text().splitlines()]
    assert all(r["messages"][-1]["role"] == "assistant" for r in rows)
    heldout = [json.loads(line) for line in Path(outs["heldout_path"]).read_text().splitlines()]
    trained_prompts = {r["messages"][1]["content"] for r in rows}
    assert not trained_prompts & {h["messages"][1]["content"] for h in heldout}  # never trained on
    (journal,) = (tmp_path / "out").glob("*/capture-*.jsonl")
    said = {a["item"][:16]: a["text"] for a in map(json.loads, journal.read_text().splitlines())}
    assert [h["reference"] for h in heldout] == [said[h["id"]] for h in heldout]  # the teacher's words
    assert outs["usage"]["requests"] == 40
    assert outs["usage"]["completion_tokens"] > 0

    # Same inputs: no change (and so no new file, no new job).
    assert host.diff(DistillationDatasetProvider(), id_, outs, props).changes == 1  # DIFF_NONE
    # A second capture of the same inputs asks nothing: every answer is in the journal.
    _, again = host.create(DistillationDatasetProvider(), props)
    assert again["train_digest"] == outs["train_digest"]
    assert chat_requests(emu, account) - before == 40
    # On a machine without the files or the journal (a fresh CI runner) the answers are read back
    # from the teacher's stored completions: still nothing asked, the same bytes.
    shutil.rmtree(tmp_path / "out")
    _, fresh = host.create(DistillationDatasetProvider(), props)
    assert fresh["train_digest"] == outs["train_digest"]
    assert chat_requests(emu, account) - before == 40

    # A changed prompt set is a new dataset: replaced, so the training file and job follow.
    changed = prompt_set(tmp_path / "prompts.jsonl", n=41)
    news = dataset_props(emu, account, changed, tmp_path / "out")
    diff = host.diff(DistillationDatasetProvider(), id_, outs, news)
    assert diff.changes == 2  # DIFF_SOME
    assert list(diff.replaces) == ["prompts_digest"]
    # And so is another teacher.
    other = dataset_props(
        emu, account, prompts, tmp_path / "out", teacher={**props["teacher"], "deployment": "t2"}
    )
    assert list(host.diff(DistillationDatasetProvider(), id_, outs, other).replaces) == ["prompts_digest"]


def _stored_for(emu: Emulator, account: str, tag: str) -> int:
    client = emu.v1(account=account)
    return len(list(client.chat.completions.list(metadata={"ftops-capture": tag}, limit=100)))


def test_a_capture_killed_half_way_resumes_and_asks_each_prompt_once(emu: Emulator, tmp_path: Path) -> None:
    account = "distill-crash"
    deploy(emu, "teacher", "gpt-4.1", version="2025-04-14", account=account, capacity=100)
    prompts = prompt_set(tmp_path / "prompts.jsonl")
    # Long answers make the capture slow enough for the kill to land with some prompts answered
    # and some in flight (a request the teacher received is answered and stored even when the
    # client is gone; a latency fault would hold requests before the service reads them).
    sampling = {"temperature": 0.0, "max_tokens": 96, "seed": 0}
    props = dataset_props(emu, account, prompts, tmp_path / "out", sampling=sampling)
    before = chat_requests(emu, account)
    first = DynamicHost(HOST_ENV)
    try:

        def run() -> None:
            with contextlib.suppress(HostError):
                first.create(DistillationDatasetProvider(), props, timeout=300)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 120
        journals: list[Path] = []
        while time.monotonic() < deadline:
            journals = list((tmp_path / "out").glob("*/capture-*.jsonl"))
            if journals and len(journals[0].read_text().splitlines()) >= 8:
                break
            time.sleep(0.05)
        first.kill()
        thread.join()
    finally:
        first.close()
    (journal,) = journals
    answered = len(journal.read_text().splitlines())
    assert 8 <= answered < 40, answered  # killed half-way
    tag = journal.stem.removeprefix("capture-")
    # Requests the kill left in flight finish on the teacher and are stored there: wait until every
    # request it received has its stored answer.
    deadline = time.monotonic() + 60
    while _stored_for(emu, account, tag) < chat_requests(emu, account) - before:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    asked_before_rerun = chat_requests(emu, account) - before
    in_flight = _stored_for(emu, account, tag) - answered  # answered by the teacher, lost to the kill

    second = DynamicHost(HOST_ENV)
    try:
        _, outs = second.create(DistillationDatasetProvider(), props)
        logged = second.logged()
    finally:
        second.close()
    assert f"{answered + in_flight} answers taken from the journal" in logged
    assert f"({in_flight} of them read back from the teacher's stored completions)" in logged
    assert chat_requests(emu, account) - before == 40  # every prompt asked exactly once in all
    assert asked_before_rerun < 40
    assert sum(outs["counts"].values()) == 40
    items = [json.loads(line)["item"] for line in journal.read_text().splitlines() if line.strip()]
    assert sorted(set(items)) == sorted(items)  # no prompt answered twice in the journal
    assert len(items) == 40


def test_ftops_distill_captures_now_and_a_second_run_asks_nothing(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from ftops.cli import app
    from tests.conftest import REPO

    repo = tmp_path / "repo"
    shutil.copytree(REPO / "environments", repo / "environments")
    shutil.copytree(REPO / "data", repo / "data")
    (repo / "Pulumi.yaml").write_text((REPO / "Pulumi.yaml").read_text())
    local = repo / "environments" / "Pulumi.local.yaml"
    text = local.read_text().replace("http://127.0.0.1:8790", emu.url)
    student = """        wait_timeout_minutes: 30
      support-mini:
        base_model: gpt-4.1-nano-2025-04-14
        distill_from:
          teacher:
            deployment: teacher
            model: gpt-4.1-2025-04-14
            capacity: 100
          prompts: data/support-bot-distill/prompts.jsonl
          sampling:
            max_tokens: 12
          held_out: 10
"""
    assert text.count("        wait_timeout_minutes: 30\n") == 1
    local.write_text(text.replace("        wait_timeout_minutes: 30\n", student))
    monkeypatch.setenv("FTOPS_EMULATOR_KEY", KEY)
    monkeypatch.chdir(repo)
    deploy(emu, "teacher", "gpt-4.1", version="2025-04-14", account="local-dev", capacity=100)
    before = chat_requests(emu, "local-dev")
    runner = CliRunner()
    first = runner.invoke(app, ["distill", "--env", "local", "--model", "support-mini"])
    assert first.exit_code == 0, first.output
    assert "82 prompt(s) to ask teacher teacher" in first.output
    assert "62 train, 10 validation, 10 held out" in first.output
    assert chat_requests(emu, "local-dev") - before == 82
    assert re.search(
        r"teacher gpt-4\.1-2025-04-14: \$\d+\.\d\d per 1k requests, \d+\.\d{3} s mean latency \(82 ",
        first.output,
    )
    again = runner.invoke(app, ["distill", "--env", "local", "--model", "support-mini"])
    assert again.exit_code == 0, again.output
    assert chat_requests(emu, "local-dev") - before == 82  # every answer came from the journal
    assert first.output.splitlines()[-1] == again.output.splitlines()[-1]  # the same dataset


def test_a_dataset_from_stored_completions_reads_what_production_captured_and_nothing_else(
    emu: Emulator, host: DynamicHost, tmp_path: Path
) -> None:
    """`distill_from.stored`: the application's own calls with `store: true` and its metadata, read
    back through the stored-completions API (list by metadata, each one's messages). Other traffic
    is left out, a prompt production asked twice is trained on once, nothing is asked of the
    teacher, and the same completions are the same bytes."""
    account = "distill-stored"
    deploy(emu, "support-gpt41", "gpt-4.1", version="2025-04-14", account=account, capacity=100)
    app = emu.v1(account=account)
    system = "You are Contoso Outdoor's support assistant."

    def production(ask: str, **metadata: str) -> None:
        app.chat.completions.create(
            model="support-gpt41",
            messages=[{"role": "system", "content": system}, {"role": "user", "content": ask}],
            max_tokens=12,
            store=True,
            metadata=metadata,
        )

    asks = [a.format(p=p) for a in ASKS for p in PRODUCTS[:6]]  # 30 distinct prompts
    for ask in asks:
        production(ask, app="support-bot", channel="web")
    production(asks[0], app="support-bot", channel="web")  # asked again: trained on once
    for ask in ("Write me a poem.", "What is 2+2?"):
        production(ask, app="playground")  # another application's traffic: not ours
    before = chat_requests(emu, account)

    props = dataset_props(
        emu,
        account,
        prompt_set(tmp_path / "unused.jsonl"),  # replaced: a stored source has no prompt set
        tmp_path / "out",
        source="stored",
        prompts_path=None,
        prompts_digest=None,
        stored={
            "metadata": {"app": "support-bot"},
            "model": None,
            "created_after": None,
            "created_before": None,
        },
        teacher={"deployment": "support-gpt41", "model": TEACHER, "capacity": 100},
        validation_split=0.0,
        held_out=6,
    )
    _, failures = host.check(DistillationDatasetProvider(), {}, props)
    assert failures == []
    id_, outs = host.create(DistillationDatasetProvider(), props)
    assert chat_requests(emu, account) == before  # nothing asked: production already paid
    assert outs["counts"] == {"train": 24, "valid": 0, "heldout": 6}
    rows = [json.loads(line) for line in Path(outs["train_path"]).read_text().splitlines()]
    heldout = [json.loads(line) for line in Path(outs["heldout_path"]).read_text().splitlines()]
    seen = [r["messages"][1]["content"] for r in rows] + [h["messages"][1]["content"] for h in heldout]
    assert sorted(seen) == sorted(asks)  # each distinct prompt once; the playground's left out
    stored = {c.id: c for c in app.chat.completions.list(metadata={"app": "support-bot"}, limit=100)}
    answers = {c.choices[0].message.content for c in stored.values()}
    assert all(r["messages"][-1]["content"] in answers for r in rows)  # what production was told

    # The same filter over the same completions: the same bytes, and no change for Pulumi.
    _, again = host.create(DistillationDatasetProvider(), {**props, "folder": str(tmp_path / "again")})
    assert again["train_digest"] == outs["train_digest"]
    assert host.diff(DistillationDatasetProvider(), id_, outs, props).changes == 1  # DIFF_NONE
    # Another filter is another dataset.
    other = {**props, "stored": {**props["stored"], "metadata": {"app": "support-bot", "channel": "web"}}}
    assert list(host.diff(DistillationDatasetProvider(), id_, outs, other).replaces) == ["prompts_digest"]

    # The time window is the declared one: nothing was captured after the newest completion.
    newest = max(c.created for c in stored.values())
    after = datetime.fromtimestamp(newest + 1, tz=UTC).isoformat()
    late = {**props, "stored": {**props["stored"], "created_after": after}, "folder": str(tmp_path / "late")}
    with pytest.raises(HostError, match=r"matched 0 distinct prompt\(s\), but 6 are held out"):
        host.create(DistillationDatasetProvider(), late)
