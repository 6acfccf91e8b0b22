"""The emulator's state in SQLite (WAL): files, jobs, events, checkpoints, models, deployments.

Objects are stored as the JSON Azure returns (in the dated surface's vocabulary) plus an
`internal` JSON for what only the emulator needs (adapter paths, resume state, worker pid).
Each call opens its own connection, so the API's threads and the training worker processes
can share the database; read-modify-write goes through `BEGIN IMMEDIATE`.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

Doc = dict[str, Any]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, account TEXT NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, account TEXT NOT NULL,
    status TEXT NOT NULL, control TEXT, doc TEXT NOT NULL, internal TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, job_id TEXT NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, job_id TEXT NOT NULL,
    doc TEXT NOT NULL, path TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, account TEXT NOT NULL,
    doc TEXT NOT NULL, internal TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deployments (
    account TEXT NOT NULL, name TEXT NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (account, name));
CREATE TABLE IF NOT EXISTS account_writes (
    account TEXT PRIMARY KEY, busy_until REAL NOT NULL, operation TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS responses (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, account TEXT NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chat_completions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, account TEXT NOT NULL,
    created REAL NOT NULL, doc TEXT NOT NULL, messages TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS chat_completions_account ON chat_completions (account, seq);
CREATE TABLE IF NOT EXISTS usage (
    account TEXT NOT NULL, deployment TEXT NOT NULL, day TEXT NOT NULL, status INTEGER NOT NULL,
    requests INTEGER NOT NULL, PRIMARY KEY (account, deployment, day, status));
CREATE INDEX IF NOT EXISTS events_job ON events (job_id, seq);
CREATE INDEX IF NOT EXISTS checkpoints_job ON checkpoints (job_id, seq);
CREATE INDEX IF NOT EXISTS jobs_account ON jobs (account, seq);
"""

ACTIVE = ("running", "pausing")  # a worker process owns the job; "resuming" waits in the queue
TERMINAL = ("succeeded", "failed", "cancelled")


def _doc(row: tuple[Any, ...] | None) -> Doc | None:
    if row is None:
        return None
    doc: Doc = json.loads(row[0])
    return doc


class Page:
    """One page of a newest-first list, as OpenAI paginates: `after` is the last id seen."""

    def __init__(self, docs: list[Doc], has_more: bool) -> None:
        self.docs = docs
        self.has_more = has_more


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")  # a "database is locked" error here surfaces as it is
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            conn.close()

    # ------------------------------------------------------------------ pagination
    @staticmethod
    def _page(
        conn: sqlite3.Connection, table: str, where: str, args: tuple[Any, ...], after: str | None, limit: int
    ) -> Page:
        if after is not None:
            row = conn.execute(f"SELECT seq FROM {table} WHERE id = ?", (after,)).fetchone()
            if row is None:
                return Page([], False)
            where += " AND seq < ?"
            args = (*args, row[0])
        rows = conn.execute(
            f"SELECT doc FROM {table} WHERE {where} ORDER BY seq DESC LIMIT ?", (*args, limit + 1)
        ).fetchall()
        return Page([json.loads(r[0]) for r in rows[:limit]], len(rows) > limit)

    # ------------------------------------------------------------------ files
    def add_file(self, account: str, doc: Doc) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO files (id, account, doc) VALUES (?, ?, ?)", (doc["id"], account, json.dumps(doc))
            )

    def get_file(self, account: str, file_id: str) -> Doc | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT doc FROM files WHERE id = ? AND account = ?", (file_id, account)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def update_file(self, file_id: str, change: Callable[[Doc], None]) -> Doc | None:
        with self._write() as conn:
            row = conn.execute("SELECT doc FROM files WHERE id = ?", (file_id,)).fetchone()
            if row is None:
                return None
            doc: Doc = json.loads(row[0])
            change(doc)
            conn.execute("UPDATE files SET doc = ? WHERE id = ?", (json.dumps(doc), file_id))
        return doc

    def list_files(self, account: str, purpose: str | None, after: str | None, limit: int) -> Page:
        where, args = "account = ?", (account,)
        args_: tuple[str, ...] = args
        if purpose:
            where += " AND json_extract(doc, '$.purpose') = ?"
            args_ = (*args, purpose)
        with self._read() as conn:
            return self._page(conn, "files", where, args_, after, limit)

    def delete_file(self, account: str, file_id: str) -> bool:
        with self._write() as conn:
            cur = conn.execute("DELETE FROM files WHERE id = ? AND account = ?", (file_id, account))
        return cur.rowcount > 0

    # ------------------------------------------------------------------ jobs
    def add_job(self, account: str, doc: Doc, internal: Doc) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO jobs (id, account, status, doc, internal) VALUES (?, ?, ?, ?, ?)",
                (doc["id"], account, doc["status"], json.dumps(doc), json.dumps(internal)),
            )

    def get_job(self, job_id: str, account: str | None = None) -> tuple[Doc, Doc, str | None] | None:
        """(doc, internal, control) of a job; with `account`, only that account's job."""
        query = "SELECT doc, internal, control FROM jobs WHERE id = ?"
        args: tuple[Any, ...] = (job_id,)
        if account is not None:
            query += " AND account = ?"
            args = (job_id, account)
        with self._read() as conn:
            row = conn.execute(query, args).fetchone()
        return (json.loads(row[0]), json.loads(row[1]), row[2]) if row else None

    def update_job(
        self,
        job_id: str,
        change: Callable[[Doc, Doc], str | bool | None],
        control: str | bool | None = False,
        events: tuple[Doc, ...] = (),
        final_checkpoint: str | None = None,
    ) -> tuple[Doc, Doc] | None:
        """Apply `change(doc, internal)` atomically; it may return False to abort the update.
        `control`: False keeps the control flag, None clears it, a string sets it. `events` and the
        final checkpoint's name are written in the same transaction, so a client that sees the new
        status also sees them (a job that reads "succeeded" has its "Job succeeded." event)."""
        with self._write() as conn:
            row = conn.execute("SELECT doc, internal FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            doc, internal = json.loads(row[0]), json.loads(row[1])
            if change(doc, internal) is False:
                return doc, internal
            conn.execute(
                "UPDATE jobs SET doc = ?, internal = ?, status = ? WHERE id = ?",
                (json.dumps(doc), json.dumps(internal), doc["status"], job_id),
            )
            if control is not False:
                conn.execute("UPDATE jobs SET control = ? WHERE id = ?", (control, job_id))
            if final_checkpoint is not None:
                self._rename_last_checkpoint(conn, job_id, final_checkpoint)
            for event in events:
                conn.execute(
                    "INSERT INTO events (id, job_id, doc) VALUES (?, ?, ?)",
                    (event["id"], event["job_id"], json.dumps(event)),
                )
        return doc, internal

    def control(self, job_id: str) -> str | None:
        with self._read() as conn:
            row = conn.execute("SELECT control FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row[0] if row else None

    def list_jobs(self, account: str, after: str | None, limit: int) -> Page:
        with self._read() as conn:
            return self._page(conn, "jobs", "account = ?", (account,), after, limit)

    def jobs_with_status(self, *statuses: str) -> list[tuple[str, str, str]]:
        """(id, account, status) of the jobs in these states, oldest first."""
        marks = ", ".join("?" * len(statuses))
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT id, account, status FROM jobs WHERE status IN ({marks}) ORDER BY seq", statuses
            ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def delete_job(self, account: str, job_id: str) -> bool:
        with self._write() as conn:
            cur = conn.execute("DELETE FROM jobs WHERE id = ? AND account = ?", (job_id, account))
            conn.execute("DELETE FROM events WHERE job_id = ?", (job_id,))
            conn.execute("DELETE FROM checkpoints WHERE job_id = ?", (job_id,))
        return cur.rowcount > 0

    # ------------------------------------------------------------------ events and checkpoints
    def add_event(self, doc: Doc) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO events (id, job_id, doc) VALUES (?, ?, ?)",
                (doc["id"], doc["job_id"], json.dumps(doc)),
            )

    def list_events(self, job_id: str, after: str | None, limit: int) -> Page:
        with self._read() as conn:
            return self._page(conn, "events", "job_id = ?", (job_id,), after, limit)

    def add_checkpoint(self, doc: Doc, path: Path) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO checkpoints (id, job_id, doc, path) VALUES (?, ?, ?, ?)",
                (doc["id"], doc["fine_tuning_job_id"], json.dumps(doc), str(path)),
            )

    def prune_checkpoints(self, job_id: str, keep: int) -> list[Path]:
        """Forget all but the newest `keep` checkpoints of a job; the adapter paths let go of."""
        with self._write() as conn:
            rows = conn.execute(
                "SELECT seq, path FROM checkpoints WHERE job_id = ? ORDER BY seq DESC", (job_id,)
            ).fetchall()
            old = rows[keep:]
            conn.executemany("DELETE FROM checkpoints WHERE seq = ?", [(r[0],) for r in old])
        return [Path(r[1]) for r in old]

    def rename_last_checkpoint(self, job_id: str, name: str) -> None:
        """The final checkpoint is the fine-tuned model itself: it carries the model's bare id."""
        with self._write() as conn:
            self._rename_last_checkpoint(conn, job_id, name)

    @staticmethod
    def _rename_last_checkpoint(conn: sqlite3.Connection, job_id: str, name: str) -> None:
        row = conn.execute(
            "SELECT seq, doc FROM checkpoints WHERE job_id = ? ORDER BY seq DESC LIMIT 1", (job_id,)
        ).fetchone()
        if row is None:
            return
        doc = json.loads(row[1])
        doc["fine_tuned_model_checkpoint"] = name
        conn.execute("UPDATE checkpoints SET doc = ? WHERE seq = ?", (json.dumps(doc), row[0]))

    def checkpoint_by_id(self, checkpoint_id: str) -> tuple[Doc, Path] | None:
        with self._read() as conn:
            row = conn.execute("SELECT doc, path FROM checkpoints WHERE id = ?", (checkpoint_id,)).fetchone()
        return (json.loads(row[0]), Path(row[1])) if row else None

    def list_checkpoints(self, job_id: str, after: str | None, limit: int) -> Page:
        with self._read() as conn:
            return self._page(conn, "checkpoints", "job_id = ?", (job_id,), after, limit)

    def checkpoint_path(self, model_id: str) -> Path | None:
        """The adapter of a checkpoint, by its `fine_tuned_model_checkpoint` name."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT path FROM checkpoints WHERE json_extract(doc, '$.fine_tuned_model_checkpoint') = ?",
                (model_id,),
            ).fetchone()
        return Path(row[0]) if row else None

    # ------------------------------------------------------------------ fine-tuned models
    def add_model(self, account: str, doc: Doc, internal: Doc) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO models (id, account, doc, internal) VALUES (?, ?, ?, ?)",
                (doc["id"], account, json.dumps(doc), json.dumps(internal)),
            )

    def get_model(self, model_id: str) -> tuple[str, Doc, Doc] | None:
        """(account, doc, internal) of a fine-tuned model, whichever account trained it."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT account, doc, internal FROM models WHERE id = ?", (model_id,)
            ).fetchone()
        return (row[0], json.loads(row[1]), json.loads(row[2])) if row else None

    def list_models(self, account: str) -> list[Doc]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT doc FROM models WHERE account = ? ORDER BY seq", (account,)
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    # ------------------------------------------------------------------ stored responses
    def add_response(self, account: str, doc: Doc) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO responses (id, account, doc) VALUES (?, ?, ?)",
                (doc["id"], account, json.dumps(doc)),
            )

    def get_response(self, account: str, response_id: str) -> Doc | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT doc FROM responses WHERE id = ? AND account = ?", (response_id, account)
            ).fetchone()
        return _doc(row)

    def delete_response(self, account: str, response_id: str) -> bool:
        with self._write() as conn:
            cur = conn.execute("DELETE FROM responses WHERE id = ? AND account = ?", (response_id, account))
        return cur.rowcount > 0

    # ------------------------------------------------------------------ stored chat completions
    def add_chat_completion(self, account: str, doc: Doc, messages: list[Doc]) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO chat_completions (id, account, created, doc, messages) VALUES (?, ?, ?, ?, ?)",
                (doc["id"], account, float(doc["created"]), json.dumps(doc), json.dumps(messages)),
            )

    def get_chat_completion(
        self, account: str, completion_id: str, since: float
    ) -> tuple[Doc, list[Doc]] | None:
        """(doc, request messages) of a stored completion created at or after `since` (retention)."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT doc, messages FROM chat_completions WHERE id = ? AND account = ? AND created >= ?",
                (completion_id, account, since),
            ).fetchone()
        return (json.loads(row[0]), json.loads(row[1])) if row else None

    def list_chat_completions(
        self,
        account: str,
        since: float,
        metadata: dict[str, str],
        model: str | None,
        after: str | None,
        limit: int,
        ascending: bool,
    ) -> Page:
        """A page of stored completions, filtered as Azure filters (every metadata pair, the model)."""
        where = "account = ? AND created >= ?"
        args: tuple[Any, ...] = (account, since)
        for key, value in metadata.items():
            where += " AND json_extract(doc, '$.metadata.' || json_quote(?)) = ?"
            args = (*args, key, value)
        if model is not None:
            where += " AND json_extract(doc, '$.model') = ?"
            args = (*args, model)
        with self._read() as conn:
            if after is not None:
                row = conn.execute(
                    "SELECT seq FROM chat_completions WHERE id = ? AND account = ?", (after, account)
                ).fetchone()
                if row is None:
                    return Page([], False)
                where += " AND seq > ?" if ascending else " AND seq < ?"
                args = (*args, row[0])
            direction = "ASC" if ascending else "DESC"
            rows = conn.execute(
                f"SELECT doc FROM chat_completions WHERE {where} ORDER BY seq {direction} LIMIT ?",
                (*args, limit + 1),
            ).fetchall()
        return Page([json.loads(r[0]) for r in rows[:limit]], len(rows) > limit)

    def set_chat_completion_metadata(
        self, account: str, completion_id: str, metadata: dict[str, str], since: float
    ) -> Doc | None:
        with self._write() as conn:
            row = conn.execute(
                "SELECT doc FROM chat_completions WHERE id = ? AND account = ? AND created >= ?",
                (completion_id, account, since),
            ).fetchone()
            if row is None:
                return None
            doc: Doc = json.loads(row[0])
            doc["metadata"] = metadata
            conn.execute("UPDATE chat_completions SET doc = ? WHERE id = ?", (json.dumps(doc), completion_id))
        return doc

    def delete_chat_completion(self, account: str, completion_id: str) -> bool:
        with self._write() as conn:
            cur = conn.execute(
                "DELETE FROM chat_completions WHERE id = ? AND account = ?", (completion_id, account)
            )
        return cur.rowcount > 0

    def expire_chat_completions(self, before: float) -> int:
        """Drop stored completions past retention; how many went."""
        with self._write() as conn:
            cur = conn.execute("DELETE FROM chat_completions WHERE created < ?", (before,))
        return cur.rowcount

    # ------------------------------------------------------------------ deployments
    def get_deployment(self, account: str, name: str) -> Doc | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT doc FROM deployments WHERE account = ? AND name = ?", (account, name)
            ).fetchone()
        return _doc(row)

    def list_deployments(self, account: str) -> list[Doc]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT doc FROM deployments WHERE account = ? ORDER BY name", (account,)
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def begin_account_write(self, account: str, seconds: float, operation: str) -> str | None:
        """Claim the account for a write lasting `seconds`; returns the operation in the way if busy."""
        now = time.time()
        with self._write() as conn:
            row = conn.execute(
                "SELECT busy_until, operation FROM account_writes WHERE account = ?", (account,)
            ).fetchone()
            if row is not None and row[0] > now:
                return str(row[1])
            conn.execute(
                "INSERT OR REPLACE INTO account_writes (account, busy_until, operation) VALUES (?, ?, ?)",
                (account, now + seconds, operation),
            )
        return None

    def put_deployment(self, account: str, name: str, doc: Doc) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO deployments (account, name, doc) VALUES (?, ?, ?)",
                (account, name, json.dumps(doc)),
            )

    # ------------------------------------------------------------------ usage (Azure Monitor's metrics)
    def count_request(self, account: str, deployment: str, status: int, day: str) -> None:
        """One inference request on a deployment, by UTC day and status: what AzureOpenAIRequests counts."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO usage (account, deployment, day, status, requests) VALUES (?, ?, ?, ?, 1) "
                "ON CONFLICT (account, deployment, day, status) DO UPDATE SET requests = requests + 1",
                (account, deployment, day, status),
            )

    def requests_per_day(
        self, account: str, first_day: str, last_day: str
    ) -> list[tuple[str, str, int, int]]:
        """(deployment, day, status, requests) for the account's days in [first_day, last_day]."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT deployment, day, status, requests FROM usage "
                "WHERE account = ? AND day BETWEEN ? AND ? ORDER BY deployment, day, status",
                (account, first_day, last_day),
            ).fetchall()
        return [(str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in rows]

    def delete_deployment(self, account: str, name: str) -> bool:
        with self._write() as conn:
            cur = conn.execute("DELETE FROM deployments WHERE account = ? AND name = ?", (account, name))
        return cur.rowcount > 0
