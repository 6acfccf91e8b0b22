"""Library exceptions mapped into ftops' error tree, once, here at the edge.

Two rules keep a failure to one line in seconds:
- a missing or unusable credential is raised as `CredentialError`, which is not an azure-core
  error, so the storage and ARM retry policies (which retry any AzureError, ~85 s for a blob
  read) do not retry what waiting cannot fix;
- nothing listening on this machine (the emulator is down) is `UnreachableError` at the first
  refused connection: there is no one to come back. Remote endpoints keep their retries.

`translate` is what the CLI's single handler calls for anything that is not already an
FtopsError; `--debug` still shows the original traceback.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from ftops.errors import CredentialError, FtopsError, ServiceError, UnreachableError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
_ATTEMPTED = re.compile(r"^\s+(\w+Credential): ", re.M)


def is_loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in LOOPBACK


def credential_error(exc: BaseException) -> CredentialError:
    """The chain DefaultAzureCredential tried, and what would make one of them work."""
    tried = _ATTEMPTED.findall(str(exc))
    chain = f"tried {', '.join(tried)}" if tried else str(exc).splitlines()[0]
    return CredentialError(
        f"no Azure credential ({chain})",
        fix="run `az login` (on a laptop); set AZURE_CLIENT_ID and AZURE_TENANT_ID with "
        "AZURE_CLIENT_SECRET or AZURE_FEDERATED_TOKEN_FILE (a service principal); in GitHub Actions grant "
        "`id-token: write` and sign in with azure/login (README: One-time Azure set-up)",
    )


def unreachable(url: str, reason: str) -> UnreachableError:
    parts = urlsplit(url)
    where = f"{parts.scheme}://{parts.netloc}" if parts.netloc else url
    if is_loopback(url):
        fix = (
            "start the emulator (`ftops emulator` in another shell; `make up` starts it for its own run "
            "and stops it after), then export FTOPS_EMULATOR_KEY with the key it prints"
        )
    else:
        fix = (
            "check the network path: a private endpoint answers only inside its VNet (run on the "
            "self-hosted runner there), and check the DNS name"
        )
    return UnreachableError(f"cannot reach {where} ({reason})", fix=fix)


class GuardedCredential:
    """A TokenCredential whose failure to produce a token is a CredentialError (see above). It
    offers only `get_token`, which every azure-core pipeline and the openai token provider use."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.exceptions import ClientAuthenticationError

        try:
            return self._inner.get_token(*scopes, **kwargs)
        except ClientAuthenticationError as exc:
            raise credential_error(exc) from exc

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()


def _url_of(exc: BaseException) -> str:
    for holder in (exc, getattr(exc, "request", None), getattr(exc, "response", None)):
        try:
            url = getattr(holder, "url", None) or getattr(getattr(holder, "request", None), "url", None)
        except RuntimeError:  # httpx: an exception raised without its request has none
            url = None
        if url:
            return str(url)
    return ""


def _one(exc: BaseException) -> FtopsError | None:
    import httpx2 as httpx
    import openai
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError

    if isinstance(exc, FtopsError):
        return exc
    if isinstance(exc, ClientAuthenticationError) and getattr(exc, "status_code", None) is None:
        return credential_error(exc)  # raised by a credential, not an answer from a service
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | ServiceRequestError):
        return unreachable(_url_of(exc), type(exc).__name__)
    if isinstance(exc, openai.AuthenticationError):
        return ServiceError(
            f"{_url_of(exc)}: HTTP 401: the service refused the credential",
            fix="check the key (or that the signed-in identity holds a role on the account)",
        )
    if isinstance(exc, openai.APIStatusError):
        return ServiceError(f"{_url_of(exc)}: HTTP {exc.status_code}: {exc.message}")
    if isinstance(exc, HttpResponseError):
        reason = " ".join(str(exc.message or exc.reason or "").split())[:300]
        return ServiceError(f"{_url_of(exc)}: HTTP {exc.status_code}: {reason}")
    return None


def translate(exc: BaseException) -> FtopsError | None:
    """The FtopsError an exception (or what caused it) amounts to; None when it is not one we know."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        mapped = _one(current)
        if mapped is not None:
            return mapped
        current = current.__cause__ or current.__context__
    return None
