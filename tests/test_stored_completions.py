"""Stored chat completions on the emulator, through the official `openai` SDK on both surfaces:
`store=True` + `metadata` on create (streamed too), list with filters and pagination, retrieve,
the request's messages, metadata update, delete, Azure's 30-day retention and its api-version
floor on the dated surface."""

from __future__ import annotations

import time
from pathlib import Path

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionSystemMessageParam

from ftops.emulator.store import Store
from ftops.emulator.stored_api import RETENTION_DAYS, retention_start
from tests.emulator_process import KEY, Emulator
from tests.test_emulator_api import deploy

SYSTEM: ChatCompletionSystemMessageParam = {
    "role": "system",
    "content": "You are Contoso Outdoor's support assistant.",
}


def dated(emu: Emulator, account: str, version: str = "2025-02-01-preview") -> openai.AzureOpenAI:
    return openai.AzureOpenAI(
        azure_endpoint=f"{emu.url}/accounts/{account}", api_key=KEY, api_version=version
    )


@pytest.mark.parametrize("surface", ["dated", "v1"])
def test_store_list_filter_retrieve_update_delete(emu: Emulator, surface: str) -> None:
    account = f"stored-{surface}"
    deploy(emu, "teacher", "tiny-test", account=account)
    client = dated(emu, account) if surface == "dated" else emu.v1(account=account)
    made = []
    for i in range(5):
        made.append(
            client.chat.completions.create(
                model="teacher",
                messages=[SYSTEM, {"role": "user", "content": f"Where is order CO-{i}?"}],
                max_tokens=6,
                temperature=0,
                store=True,
                metadata={"app": "support", "split": "even" if i % 2 == 0 else "odd"},
            )
        )
    # Not stored: no `store`, and `store` false.
    client.chat.completions.create(
        model="teacher", messages=[SYSTEM, {"role": "user", "content": "hi"}], max_tokens=2
    )
    client.chat.completions.create(
        model="teacher", messages=[{"role": "user", "content": "x"}], max_tokens=2, store=False
    )

    listed = client.chat.completions.list()
    assert [c.id for c in listed.data] == [c.id for c in made]  # oldest first: order asc by default
    assert listed.data[0].metadata == {"app": "support", "split": "even"}
    assert listed.data[0].choices[0].message.content == made[0].choices[0].message.content
    newest_first = client.chat.completions.list(order="desc")
    assert [c.id for c in newest_first.data] == [c.id for c in reversed(made)]

    even = client.chat.completions.list(metadata={"split": "even"})
    assert [c.id for c in even.data] == [made[0].id, made[2].id, made[4].id]
    both = client.chat.completions.list(metadata={"split": "odd", "app": "support"})
    assert [c.id for c in both.data] == [made[1].id, made[3].id]
    assert client.chat.completions.list(metadata={"app": "other"}).data == []
    assert [c.id for c in client.chat.completions.list(model=made[0].model).data] == [c.id for c in made]
    assert client.chat.completions.list(model="gpt-4o").data == []

    first = client.chat.completions.list(limit=2)
    assert first.has_more
    assert len(first.data) == 2
    assert [c.id for c in client.chat.completions.list(limit=2).iter_pages().__next__().data] == [
        made[0].id,
        made[1].id,
    ]
    assert [c.id for c in client.chat.completions.list(limit=2)] == [c.id for c in made]  # auto-paging
    rest = client.chat.completions.list(after=made[1].id, limit=10)
    assert [c.id for c in rest.data] == [c.id for c in made[2:]]
    assert not rest.has_more

    one = client.chat.completions.retrieve(made[3].id)
    assert one.id == made[3].id
    assert one.usage is not None
    asked = client.chat.completions.messages.list(made[3].id)
    assert [(m.role, m.content) for m in asked.data] == [
        ("system", SYSTEM["content"]),
        ("user", "Where is order CO-3?"),
    ]
    assert asked.data[0].id == f"{made[3].id}-0"

    updated = client.chat.completions.update(made[3].id, metadata={"reviewed": "yes"})
    assert updated.metadata == {"reviewed": "yes"}
    assert [c.id for c in client.chat.completions.list(metadata={"reviewed": "yes"}).data] == [made[3].id]

    deleted = client.chat.completions.delete(made[3].id)
    assert deleted.deleted
    assert deleted.id == made[3].id
    assert deleted.object == "chat.completion.deleted"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.retrieve(made[3].id)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.delete(made[3].id)
    assert len(client.chat.completions.list().data) == 4


def test_streamed_completion_is_stored_whole(emu: Emulator) -> None:
    account = "stored-stream"
    deploy(emu, "teacher", "tiny-test", account=account)
    client = emu.v1(account=account)
    stream = client.chat.completions.create(
        model="teacher",
        messages=[{"role": "user", "content": "How long is the return window?"}],
        max_tokens=8,
        temperature=0,
        stream=True,
        store=True,
        metadata={"run": "s1"},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    (stored,) = client.chat.completions.list(metadata={"run": "s1"}).data
    assert stored.id == chunks[0].id
    assert stored.choices[0].message.content == text
    assert stored.usage is not None
    assert stored.usage.completion_tokens > 0


def test_bad_metadata_and_updates_are_refused(emu: Emulator) -> None:
    account = "stored-bad"
    deploy(emu, "teacher", "tiny-test", account=account)
    client = emu.v1(account=account)
    ask: list[ChatCompletionMessageParam] = [{"role": "user", "content": "x"}]
    with pytest.raises(openai.BadRequestError, match="at most 16"):
        client.chat.completions.create(
            model="teacher", messages=ask, store=True, metadata={f"k{i}": "v" for i in range(17)}
        )
    with pytest.raises(openai.BadRequestError, match="at most 512"):
        client.chat.completions.create(model="teacher", messages=ask, store=True, metadata={"k": "v" * 513})
    made = client.chat.completions.create(model="teacher", messages=ask, max_tokens=2, store=True)
    with pytest.raises(openai.BadRequestError, match="Only metadata"):
        client.chat.completions.update(made.id, metadata={}, extra_body={"temperature": 0})
    with pytest.raises(openai.BadRequestError, match="limit"):
        client.chat.completions.list(limit=0)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.update("chatcmpl-nope", metadata={"a": "b"})


def test_ga_dated_version_neither_stores_nor_serves_stored_completions(emu: Emulator) -> None:
    account = "stored-ga"
    deploy(emu, "teacher", "tiny-test", account=account)
    ga = dated(emu, account, "2024-10-21")
    ga.chat.completions.create(
        model="teacher", messages=[{"role": "user", "content": "x"}], max_tokens=2, store=True
    )
    with pytest.raises(openai.NotFoundError):
        ga.chat.completions.list()
    assert dated(emu, account).chat.completions.list().data == []  # nothing was stored


def test_retention_is_thirty_days(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    now = time.time()
    for i, age_days in enumerate((31, 29, 0)):
        doc = {"id": f"chatcmpl-{i}", "created": now - age_days * 86400, "model": "m", "metadata": {}}
        store.add_chat_completion("a", doc, [{"role": "user", "content": "x"}])
    since = retention_start(now)
    assert RETENTION_DAYS == 30
    page = store.list_chat_completions("a", since, {}, None, None, 10, True)
    assert [d["id"] for d in page.docs] == ["chatcmpl-1", "chatcmpl-2"]
    assert store.get_chat_completion("a", "chatcmpl-0", since) is None
    assert store.expire_chat_completions(since) == 1
    assert store.list_chat_completions("a", 0, {}, None, None, 10, True).docs[0]["id"] == "chatcmpl-1"
