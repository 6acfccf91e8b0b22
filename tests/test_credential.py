"""ftops.azure.credential: a GitHub Actions job keeps getting Azure tokens past the lifetime of any
one GitHub OIDC token.

Two local servers stand in for the real ends: GitHub's OIDC token endpoint (plain HTTP, as the
runner's URL is just an address in ACTIONS_ID_TOKEN_REQUEST_URL) issuing 5-minute tokens, and
Entra's token endpoint (HTTPS with a throwaway certificate, which azure-identity insists on)
exchanging them for 10-minute access tokens, refusing an expired or unknown assertion as Entra
does (AADSTS700024). azure-identity and azure-core read one controllable clock, and so do both
servers, so a 20-minute run takes a second. The credential under test is the real
ClientAssertionCredential that `azure_credential()` builds, driven through the same
`get_bearer_token_provider` the data-plane clients use.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import itertools
import json
import ssl
import threading
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.core.exceptions import ClientAuthenticationError

from ftops.azure.credential import AUDIENCE, azure_credential, github_oidc_token

TENANT = "00000000-0000-0000-0000-00000000000t"
CLIENT = "00000000-0000-0000-0000-00000000000c"
REQUEST_TOKEN = "runtime-token-for-this-job"
SCOPE = "https://cognitiveservices.azure.com/.default"
OIDC_LIFETIME = 300  # GitHub's ID tokens are short-lived: 5 minutes here
ACCESS_LIFETIME = 600  # Entra's access tokens: 10 minutes here (an hour or more for real)
START = 1_900_000_000.0


class Clock:
    """time.time() for azure-identity, azure-core and both fake servers."""

    def __init__(self) -> None:
        self.now = START

    def time(self) -> float:
        return self.now


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _claims(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


@dataclass
class Tokens:
    """What both fake ends saw and did, in order."""

    clock: Clock
    oidc_issued: list[dict[str, Any]] = field(default_factory=list)
    exchanges: list[dict[str, Any]] = field(default_factory=list)  # {"at", "jti", "accepted", ...}
    access_issued: dict[str, float] = field(default_factory=dict)  # access token -> its expiry
    oidc_status: int = 200  # what GitHub's endpoint answers (a failure scenario sets it)
    oidc_requests: int = 0


def _handler(state: Tokens) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # GitHub: the runner's ID token endpoint
            state.oidc_requests += 1
            query = parse_qs(urlsplit(self.path).query)
            if self.headers.get("Authorization") != f"Bearer {REQUEST_TOKEN}":
                self._answer(401, {"message": "bad runtime token"})
                return
            if state.oidc_status != 200:
                self._answer(state.oidc_status, {"message": "scripted failure"})
                return
            if query.get("audience") != [AUDIENCE] or query.get("api-version") != ["2.0"]:
                self._answer(400, {"message": f"unexpected query {query}"})
                return
            now = int(state.clock.now)
            claims = {
                "iss": "https://token.actions.githubusercontent.com",
                "sub": "repo:org/repo:environment:dev",
                "aud": query["audience"][0],
                "iat": now,
                "exp": now + OIDC_LIFETIME,
                "jti": f"oidc-{len(state.oidc_issued) + 1}",
            }
            state.oidc_issued.append(claims)
            self._answer(200, {"count": 1, "value": f"{_b64({'alg': 'RS256'})}.{_b64(claims)}.sig"})

        def do_POST(self) -> None:  # Entra: /<tenant>/oauth2/v2.0/token, client credentials + assertion
            form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            one = {k: v[0] for k, v in form.items()}
            now = state.clock.now
            claims = _claims(one.get("client_assertion", "x.e30.x"))
            known = any(claims == issued for issued in state.oidc_issued)
            record = {"at": now - START, "jti": claims.get("jti"), "accepted": False}
            state.exchanges.append(record)
            if (
                self.path != f"/{TENANT}/oauth2/v2.0/token"
                or one.get("grant_type") != "client_credentials"
                or one.get("client_id") != CLIENT
                or one.get("client_assertion_type")
                != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
                or not known
                or claims.get("aud") != AUDIENCE
            ):
                self._answer(400, {"error": "invalid_client", "error_description": f"AADSTS700016 {one}"})
                return
            if claims["exp"] <= now:
                self._answer(
                    400,
                    {
                        "error": "invalid_client",
                        "error_description": "AADSTS700024: Client assertion is not within its valid "
                        "time range.",
                    },
                )
                return
            record["accepted"] = True
            token = f"access-{len(state.access_issued) + 1}"
            state.access_issued[token] = now + ACCESS_LIFETIME
            self._answer(200, {"token_type": "Bearer", "expires_in": ACCESS_LIFETIME, "access_token": token})

    return Handler


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the key and the certificate, PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = folder / "key.pem", folder / "cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def _serve(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    return thread


@dataclass
class Ends:
    tokens: Tokens
    clock: Clock
    github_url: str


@pytest.fixture
def ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ends]:
    """Both fake token endpoints, the GitHub Actions environment pointing at them, and the clock."""
    from azure.core.pipeline.policies import _authentication as core_auth
    from azure.identity._internal import aad_client, aad_client_base, get_token_mixin
    from azure.identity._internal import utils as identity_utils

    clock = Clock()
    fake_time = types.SimpleNamespace(time=clock.time)
    for module in (aad_client, aad_client_base, get_token_mixin, identity_utils, core_auth):
        monkeypatch.setattr(module, "time", fake_time)

    tokens = Tokens(clock)
    github = ThreadingHTTPServer(("127.0.0.1", 0), _handler(tokens))
    entra = ThreadingHTTPServer(("127.0.0.1", 0), _handler(tokens))
    key, cert = _certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    entra.socket = context.wrap_socket(entra.socket, server_side=True)
    threads = [_serve(github), _serve(entra)]
    github_url = f"http://127.0.0.1:{github.server_address[1]}/idtoken?api-version=2.0"

    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL", github_url)
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", REQUEST_TOKEN)
    monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT)
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", f"https://127.0.0.1:{entra.server_address[1]}")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))  # azure-core's requests transport trusts it
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    yield Ends(tokens, clock, github_url)
    for server in (github, entra):
        server.shutdown()
        server.server_close()
    for thread in threads:
        thread.join(timeout=5)


def _long_run(ends: Ends, token: Callable[[], str], minutes: int = 20) -> list[str]:
    """One authenticated call a minute for `minutes` minutes; each must carry a live access token."""
    used = []
    for minute in range(minutes + 1):
        ends.clock.now = START + 60 * minute
        value = token()
        expiry = ends.tokens.access_issued.get(value)
        assert expiry is not None, f"minute {minute}: {value!r} was never issued by the token endpoint"
        assert expiry > ends.clock.now, (
            f"minute {minute}: {value} expired {ends.clock.now - expiry:.0f} s ago"
        )
        used.append(value)
    return used


def test_in_github_actions_the_credential_exchanges_a_fresh_oidc_token_as_access_tokens_near_expiry(
    ends: Ends,
) -> None:
    from azure.identity import ClientAssertionCredential, get_bearer_token_provider

    credential = azure_credential()
    assert isinstance(credential, ClientAssertionCredential)
    used = _long_run(ends, get_bearer_token_provider(credential, SCOPE))

    tokens = ends.tokens
    # A 20-minute run outlives four 5-minute OIDC tokens and two 10-minute access tokens: the first
    # exchange at minute 0, then one whenever the access token was within 5 minutes of expiry.
    assert len(tokens.oidc_issued) >= 4, tokens.exchanges
    assert all(exchange["accepted"] for exchange in tokens.exchanges), tokens.exchanges
    # Every exchange presented a token fetched for it (never a reused one), each within its lifetime.
    assert [e["jti"] for e in tokens.exchanges] == [c["jti"] for c in tokens.oidc_issued]
    assert len(tokens.exchanges) == len(tokens.oidc_issued)
    assert len(set(used)) == len(tokens.access_issued) >= 4
    # Between refreshes the cached access token is reused: no OIDC request per call.
    assert tokens.oidc_requests < 21
    # Refreshed ahead of expiry (within the SDK's 5-minute margin), never after it nor much earlier.
    times = [e["at"] for e in tokens.exchanges]
    assert times[0] == 0
    for before, after in itertools.pairwise(times):
        assert ACCESS_LIFETIME - 300 <= after - before < ACCESS_LIFETIME, times


def test_a_single_oidc_token_exchanged_once_fails_the_same_long_run(ends: Ends) -> None:
    """The control: what an az CLI session from azure/login does (one assertion, never refetched)
    dies in this harness, so the test above proves the refetch, not the harness's leniency."""
    from azure.identity import ClientAssertionCredential, get_bearer_token_provider

    first = github_oidc_token(ends.github_url, REQUEST_TOKEN)()
    stale = ClientAssertionCredential(TENANT, CLIENT, lambda: first)
    with pytest.raises(ClientAuthenticationError, match="AADSTS700024"):
        _long_run(ends, get_bearer_token_provider(stale, SCOPE))
    assert ends.tokens.exchanges[0]["accepted"]
    assert not ends.tokens.exchanges[-1]["accepted"]
    assert ends.clock.now - START <= ACCESS_LIFETIME  # it failed once the first access token ran out


def test_a_refused_oidc_request_is_one_authentication_error_that_says_what_the_job_needs(
    ends: Ends,
) -> None:
    ends.tokens.oidc_status = 403
    with pytest.raises(ClientAuthenticationError, match=r"HTTP 403.*id-token: write"):
        azure_credential().get_token(SCOPE)
    assert ends.tokens.oidc_requests == 1  # a 4xx is not retried
    assert ends.tokens.exchanges == []


def test_a_failing_oidc_endpoint_is_retried_then_reported(ends: Ends) -> None:
    ends.tokens.oidc_status = 503
    with pytest.raises(ClientAuthenticationError, match="HTTP 503"):
        github_oidc_token(ends.github_url, REQUEST_TOKEN, pause=0)()
    assert ends.tokens.oidc_requests == 3


@pytest.mark.parametrize(
    "unset",
    ["ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN", "AZURE_CLIENT_ID", "AZURE_TENANT_ID"],
)
def test_outside_a_github_job_set_up_for_oidc_it_is_default_azure_credential(
    ends: Ends, monkeypatch: pytest.MonkeyPatch, unset: str
) -> None:
    from azure.identity import DefaultAzureCredential

    monkeypatch.delenv(unset)
    assert isinstance(azure_credential(), DefaultAzureCredential)
    assert ends.tokens.oidc_requests == 0
