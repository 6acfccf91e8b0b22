"""Likely credentials and personal data in training text.

Detectors run over a whole chunk of raw JSONL bytes at once, and a match is mapped back to its
line afterwards. Python's regex engine is only fast when a pattern starts with a literal, so:
token formats start with their literal prefix; "password=..." assignments are found by literal
keywords in a lower-cased copy; phone numbers by literal digit shapes ("9-9999") in a copy with
every digit mapped to 9. Each candidate is then confirmed by the full pattern around it.
bench/bench_validate.py measures the cost against tokenization.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

_PREFIXED = (
    ("likely_secret", "an AWS access key id", re.compile(rb"(?:AKIA|ASIA)[0-9A-Z]{16}(?![0-9A-Z])")),
    ("likely_secret", "an Azure storage account key", re.compile(rb"AccountKey=[A-Za-z0-9+/]{40,}={0,2}")),
    ("likely_secret", "a SAS token signature", re.compile(rb"sig=[A-Za-z0-9%+/]{30,}")),
    ("likely_secret", "an OpenAI-style API key", re.compile(rb"sk-(?:proj-)?[A-Za-z0-9_-]{32,}")),
    ("likely_secret", "a GitHub token", re.compile(rb"gh[pousr]_[A-Za-z0-9]{36,}")),
    ("likely_secret", "a Slack token", re.compile(rb"xox[baprs]-[A-Za-z0-9-]{10,}")),
    ("likely_secret", "a private key", re.compile(rb"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")),
    ("likely_secret", "a JSON web token", re.compile(rb"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.")),
    ("pii_email", "an e-mail address", re.compile(rb"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")),
)

_KEYWORDS = (b"passw", b"secret", b"api_key", b"apikey")
# keyword, optional JSON-escaped quote, = or :, then a value of 8+ characters holding a digit
_ASSIGNMENT = re.compile(
    rb"(?:passw(?:or)?d|client_secret|secret_key|secret|api_?key)\\?\"?\s*[=:]\s*\\?\"?"
    rb"(?=[^\s\"\\,;]*\d)[^\s\"\\,;]{8,}"
)

_DIGITS_TO_9 = bytes.maketrans(b"012345678", b"999999999")
_PHONE_SHAPES = (b"9-9999", b"9.9999", b"9 9999")
_PHONE = re.compile(
    rb"(?<![\w/.$-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\) ?|\d{2,4}[ .-])\d{3,4}[ .-]\d{4}(?![\w/-]|\.\d)"
)

_EMAIL_LOCAL = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_SAS_BEFORE = frozenset(b"?&")


def _mask(text: str) -> str:
    if len(text) <= 6:
        return text[0] + "***"
    return f"{text[:4]}***{text[-2:]}"


def _matches(chunk: bytes) -> Iterator[tuple[int, int, str, str]]:
    """(start, end, rule code, what) of every suspicious span."""
    for code, what, regex in _PREFIXED:
        for m in regex.finditer(chunk):
            start = m.start()
            if code == "pii_email":
                # The pattern starts at '@' so the engine can jump to it; require a local part.
                if start == 0 or chunk[start - 1] not in _EMAIL_LOCAL:
                    continue
                while start > 0 and chunk[start - 1] in _EMAIL_LOCAL:
                    start -= 1
            elif what.startswith("a SAS") and (start == 0 or chunk[start - 1] not in _SAS_BEFORE):
                continue
            yield start, m.end(), code, what

    lower = chunk.lower()
    for keyword in _KEYWORDS:
        for hit in re.finditer(re.escape(keyword), lower):
            found = _ASSIGNMENT.match(lower, hit.start())
            if found:
                yield found.start(), found.end(), "likely_secret", "a password or key assignment"

    shapes = chunk.translate(_DIGITS_TO_9)
    for shape in _PHONE_SHAPES:
        for hit in re.finditer(re.escape(shape), shapes):
            found = _PHONE.search(chunk, max(0, hit.start() - 20), hit.end() + 1)
            if found:
                yield found.start(), found.end(), "pii_phone", "a phone number"


def scan(chunk: bytes, line_starts: npt.NDArray[np.int64]) -> Iterator[tuple[int, str, str]]:
    """Yield (line index within the chunk, rule code, message), at most once per line and rule."""
    seen: set[tuple[int, str]] = set()
    for start, end, code, what in _matches(chunk):
        index = int(np.searchsorted(line_starts, start, side="right")) - 1
        if (index, code) in seen:
            continue
        seen.add((index, code))
        found = chunk[start:end].decode("utf-8", "replace")
        yield index, code, f"looks like {what} ('{_mask(found)}')"
