"""Evidence kept where it outlives the CI runner: the storage account's evidence container.

Blobs are named by content (`<env>/<gate>/<digest>.json`, with the `.md` and `.junit.xml`
beside it), so an upload is written once and a retried or repeated one finds it already there;
the container's soft delete and versioning keep it from quiet edits.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from ftops.azure.connection import container_client

SUFFIXES = (".json", ".md", ".junit.xml")


def blob_name(environment: str, gate: str, stem: str, suffix: str = ".json") -> str:
    """The evidence container's name for one file of a gate's evidence (`stem` is the digest's hex)."""
    return f"{environment}/{gate}/{stem}{suffix}"


def upload(spec: dict[str, Any], evidence_json: Path, environment: str, gate: str) -> str:
    """Upload the evidence files next to `evidence_json`; the JSON blob's URL."""
    from azure.core.exceptions import ResourceExistsError

    container = container_client(spec)
    stem = evidence_json.name.removesuffix(".json")
    url = ""
    for suffix in SUFFIXES:
        local = evidence_json.with_name(stem + suffix)
        if not local.exists():
            continue
        blob = container.get_blob_client(blob_name(environment, gate, stem, suffix))
        with contextlib.suppress(ResourceExistsError):  # named by its digest: what is there is this
            blob.upload_blob(local.read_bytes(), overwrite=False)
        if suffix == ".json":
            url = str(blob.url)
    return url
