"""Identifiers in Azure's forms. Every id the API accepts is checked against its pattern before it
touches the database or the file system, so no id can name a path outside the data directory."""

from __future__ import annotations

import re
import secrets
import time

PATTERNS = {
    "file": re.compile(r"^file-[0-9a-f]{32}$"),
    "job": re.compile(r"^ftjob-[0-9a-f]{32}$"),
    "event": re.compile(r"^ftevent-[0-9a-f]{32}$"),
    "checkpoint": re.compile(r"^ftckpt_[0-9a-f]{32}$"),
}
ACCOUNT = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
DEPLOYMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def new(kind: str) -> str:
    prefix = {"file": "file-", "job": "ftjob-", "event": "ftevent-", "checkpoint": "ftckpt_"}[kind]
    return prefix + secrets.token_hex(16)


def valid(kind: str, value: str) -> bool:
    return bool(PATTERNS[kind].match(value))


def now() -> int:
    return int(time.time())
