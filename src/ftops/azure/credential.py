"""The Azure credential ftops' own clients use (data plane, ARM, blob containers).

In a GitHub Actions job that may ask for an OIDC token (`permissions: id-token: write`, which sets
ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN) and names the federated identity
(AZURE_CLIENT_ID, AZURE_TENANT_ID): a client-assertion credential that asks GitHub for a fresh
OIDC token each time it needs a new access token, so a run that outlives the first token (a
training wait, a gate) keeps working. `azure/login` leaves an az CLI session that cannot refresh
once its one assertion has expired, and DefaultAzureCredential would go on using that session.
Anywhere else: DefaultAzureCredential, as before (az login, environment variables, managed
identity).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

AUDIENCE = "api://AzureADTokenExchange"  # what Entra expects in a federated credential's token
GITHUB_OIDC = ("ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN")
IDENTITY = ("AZURE_CLIENT_ID", "AZURE_TENANT_ID")


def azure_credential() -> TokenCredential:
    """GitHub OIDC exchanged on demand inside a GitHub Actions job set up for it, else
    DefaultAzureCredential. Entra's host follows AZURE_AUTHORITY_HOST (other clouds)."""
    env = os.environ
    if all(env.get(name) for name in (*GITHUB_OIDC, *IDENTITY)):
        from azure.identity import ClientAssertionCredential

        return ClientAssertionCredential(
            env["AZURE_TENANT_ID"],
            env["AZURE_CLIENT_ID"],
            github_oidc_token(env["ACTIONS_ID_TOKEN_REQUEST_URL"], env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"]),
        )
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def github_oidc_token(
    url: str, request_token: str, timeout: float = 30.0, pause: float = 1.0
) -> Callable[[], str]:
    """A callable that fetches a new GitHub OIDC token (audience api://AzureADTokenExchange) on every
    call: the credential calls it only when it needs a new access token, and GitHub's tokens are
    short-lived, so one fetched earlier may have expired by then."""
    separator = "&" if "?" in url else "?"
    address = f"{url}{separator}audience={urllib.parse.quote(AUDIENCE, safe='')}"

    def fetch() -> str:
        from azure.core.exceptions import ClientAuthenticationError

        request = urllib.request.Request(
            address, headers={"Authorization": f"Bearer {request_token}", "Accept": "application/json"}
        )
        last = ""
        for attempt in range(3):  # the runner's token service has brief hiccups; a 4xx is final
            if attempt:
                time.sleep(pause * attempt)
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    value = json.loads(response.read().decode("utf-8")).get("value")
                if not isinstance(value, str) or not value:
                    raise ClientAuthenticationError(message="GitHub's OIDC endpoint answered without a token")
                return value
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
                if exc.code < 500:
                    break
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last = str(getattr(exc, "reason", exc))
        raise ClientAuthenticationError(
            message=f"no GitHub OIDC token ({last}); the job needs `permissions: id-token: write`"
        )

    return fetch
