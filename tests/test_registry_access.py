"""Access checks against real registries: the push preflight and what an anonymous consumer sees.

- `check_push_access` proves push rights before a long build: it opens a blob upload session and
  cancels it. Refusals (no credentials, wrong ones, read-only ones, a 403) are one line naming
  the registry, the repository and the push scope, with a hint; success leaves no upload behind.
- `anonymous_blob_status` is the HEAD Lima's downloader would send: never any credentials.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.registry import RegistryClient, RetryPolicy, Timeouts
from pipeline.registry.credentials import Credentials
from pipeline.registry.errors import RegistryError
from tests.support.faultproxy import FaultProxy
from tests.support.registry import RunningRegistry, TokenRegistry, TokenServer, start_registry

pytestmark = pytest.mark.integration

DATA = b"access-checked bytes" * 512
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()
UPLOADS = "/blobs/uploads/"


def open_uploads(reg: RunningRegistry, repository: str) -> list[Path]:
    """Upload sessions the registry still keeps for `repository`, from its storage.

    A live session has `_uploads/<uuid>/startedat` and `data`; cancelling one removes both
    (docker-registry 2.8 leaves only an empty hash state behind, which it no longer knows).
    """
    uploads = reg.root / "docker" / "registry" / "v2" / "repositories" / repository / "_uploads"
    return sorted(uploads.glob("*/startedat")) + sorted(uploads.glob("*/data"))


def upload_status(reg: RunningRegistry, path: str) -> tuple[int, str]:
    """GET an upload URL straight from the registry (no proxy, no client of ours)."""
    headers = {}
    if reg.username and reg.password:
        pair = f"{reg.username}:{reg.password}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    request = urllib.request.Request(f"{reg.url}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def good_client(reg: RunningRegistry, host: str | None = None) -> RegistryClient:
    assert reg.username and reg.password
    creds = Credentials(reg.username, reg.password, "the test")
    return RegistryClient(host or reg.host, plain_http=True, credentials=creds)


# -- check_push_access -----------------------------------------------------------------------------


def test_push_access_with_good_credentials_passes_and_leaves_no_upload(
    auth_registry: RunningRegistry, no_registry_login: Path, repository_name: str
) -> None:
    with FaultProxy(auth_registry.host) as proxy:
        good_client(auth_registry, proxy.host).check_push_access(repository_name)
        uploads = re.escape(f"/v2/{repository_name}{UPLOADS}")
        assert proxy.count("POST", uploads) >= 1  # a session was really opened...
        (cancel,) = [e for e in proxy.log if e.method == "DELETE" and re.search(uploads, e.path)]
    assert cancel.status == 204  # ... and cancelled: the registry forgot it
    status, body = upload_status(auth_registry, cancel.path)
    assert status == 404 and "BLOB_UPLOAD_UNKNOWN" in body
    assert open_uploads(auth_registry, repository_name) == []
    # ... and the repository still holds nothing: no blob, no manifest, no tag.
    assert not good_client(auth_registry).blob_exists(repository_name, DIGEST)
    assert good_client(auth_registry).list_tags(repository_name) == []


def test_push_access_without_credentials_is_one_clear_error(
    auth_registry: RunningRegistry, no_registry_login: Path, repository_name: str
) -> None:
    client = RegistryClient(auth_registry.host, plain_http=True)
    with pytest.raises(RegistryError) as caught:
        client.check_push_access(repository_name)
    error = caught.value
    assert str(error) == (
        f"registry {auth_registry.host}, repository {repository_name}: no push access "
        f"(scope repository:{repository_name}:pull,push): 401 Unauthorized and no credentials "
        "found (no credentials)"
    )
    assert error.status == 401 and "\n" not in str(error)
    assert error.hint and "push" in error.hint and "BOOTC_PIPELINE_REGISTRY_USERNAME" in error.hint
    assert open_uploads(auth_registry, repository_name) == []


def test_push_access_with_a_wrong_password_names_where_it_came_from(
    auth_registry: RunningRegistry, no_registry_login: Path, repository_name: str
) -> None:
    assert auth_registry.username
    creds = Credentials(auth_registry.username, "not-the-password", "a docker config")
    client = RegistryClient(auth_registry.host, plain_http=True, credentials=creds)
    with pytest.raises(RegistryError) as caught:
        client.check_push_access(repository_name)
    message = str(caught.value)
    assert message.startswith(
        f"registry {auth_registry.host}, repository {repository_name}: no push access "
        f"(scope repository:{repository_name}:pull,push): "
    )
    assert "credentials rejected" in message and "a docker config" in message
    assert "not-the-password" not in message + (caught.value.hint or "")
    assert caught.value.status == 401


class PullOnlyTokens(TokenServer):
    """A token service that grants read access only, whatever is asked: read-only credentials."""

    def issue(self, scopes: list[str], authenticated: bool) -> str:
        pull_only = [scope.rpartition(":")[0] + ":pull" for scope in scopes]
        return super().issue(pull_only, authenticated)


class NoDeleteTokens(TokenServer):
    """A token service that grants pull and push but never delete."""

    def issue(self, scopes: list[str], authenticated: bool) -> str:
        kept = [s for s in scopes if not s.endswith(":delete")]
        return super().issue(kept, authenticated)


@contextlib.contextmanager
def limited_token_registry(tokens_class: type[TokenServer]) -> Iterator[RunningRegistry]:
    with tempfile.TemporaryDirectory(prefix="bootc-registry-") as temp:
        tokens = tokens_class(Path(temp) / "token", username="limited", password="l-secret")
        try:
            reg = start_registry(Path(temp) / "registry", extra_lines=tokens.config_lines())
            reg.username, reg.password = tokens.username, tokens.password
            try:
                yield reg
            finally:
                reg.stop()
        finally:
            tokens.close()


@pytest.fixture
def read_only_registry() -> Iterator[RunningRegistry]:
    """A token-auth registry whose (valid) credentials may pull but never push."""
    with limited_token_registry(PullOnlyTokens) as reg:
        yield reg


def test_push_access_with_read_only_credentials_fails_naming_the_push_scope(
    read_only_registry: RunningRegistry, no_registry_login: Path, repository_name: str
) -> None:
    client = good_client(read_only_registry)
    assert not client.blob_exists(repository_name, DIGEST)  # reading is allowed
    with pytest.raises(RegistryError) as caught:
        client.check_push_access(repository_name)
    message = str(caught.value)
    assert message.startswith(
        f"registry {read_only_registry.host}, repository {repository_name}: no push access "
        f"(scope repository:{repository_name}:pull,push): 401"
    )
    assert "(credentials from the test)" in message and "\n" not in message
    assert caught.value.hint and "push" in caught.value.hint
    assert open_uploads(read_only_registry, repository_name) == []


def test_push_access_refused_with_403_is_the_same_error(
    registry: RunningRegistry, no_registry_login: Path, repository_name: str
) -> None:
    """Registries with permissions (Harbor, Quay, GHCR) answer 403 DENIED to a read-only user."""
    denied = {
        "errors": [{"code": "DENIED", "message": "requested access to the resource is denied"}]
    }
    with FaultProxy(registry.host) as proxy:
        proxy.add(
            "respond",
            method="POST",
            path=re.escape(UPLOADS),
            status=403,
            headers={"Content-Type": "application/json"},
            body=json.dumps(denied).encode(),
        )
        client = RegistryClient(proxy.host, plain_http=True, retry=RetryPolicy(max_attempts=1))
        with pytest.raises(RegistryError) as caught:
            client.check_push_access(repository_name)
    assert str(caught.value) == (
        f"registry {proxy.host}, repository {repository_name}: no push access "
        f"(scope repository:{repository_name}:pull,push): 403 DENIED: requested access to the "
        "resource is denied"
    )
    assert caught.value.status == 403 and caught.value.hint and "push" in caught.value.hint


def test_push_access_with_a_bearer_token_passes_and_cancels(
    token_registry: TokenRegistry, no_registry_login: Path, repository_name: str
) -> None:
    reg = token_registry.registry
    before = len(token_registry.tokens.requests)
    good_client(reg).check_push_access(repository_name)
    scopes = [scope for scope, _ in token_registry.tokens.requests[before:]]
    # A token for the push scope; cancelling wants `delete` too (docker-registry's rule for
    # every DELETE), which its challenge asks for and this token service grants.
    assert scopes == [
        [f"repository:{repository_name}:pull,push"],
        [f"repository:{repository_name}:pull,push", f"repository:{repository_name}:delete"],
    ]
    assert open_uploads(reg, repository_name) == []


def test_push_access_without_delete_rights_still_passes(
    no_registry_login: Path, repository_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Push rights are what is checked: a cancel the registry refuses is not a failure."""
    caplog.set_level(logging.INFO, logger="pipeline.registry.client")
    with limited_token_registry(NoDeleteTokens) as reg:
        good_client(reg).check_push_access(repository_name)
        assert len(open_uploads(reg, repository_name)) == 2  # left for the registry to purge
    assert "could not cancel the upload session" in caplog.text


def test_push_access_on_an_anonymous_registry_passes_and_cancels(
    registry: RunningRegistry, repository_name: str
) -> None:
    RegistryClient(registry.host, plain_http=True).check_push_access(repository_name)
    assert open_uploads(registry, repository_name) == []


# -- anonymous_blob_status -------------------------------------------------------------------------


def test_anonymous_blob_status_on_an_anonymous_registry(
    registry: RunningRegistry, repository_name: str
) -> None:
    client = RegistryClient(registry.host, plain_http=True)
    client.push_blob(repository_name, DATA, DIGEST, len(DATA))
    assert client.anonymous_blob_status(repository_name, DIGEST) == 200
    missing = "sha256:" + hashlib.sha256(b"never pushed").hexdigest()
    assert client.anonymous_blob_status(repository_name, missing) == 404


def test_anonymous_blob_status_never_sends_the_clients_credentials(
    auth_registry: RunningRegistry, no_registry_login: Path, repository_name: str
) -> None:
    """The client holds good credentials and already sends them up front (Basic), yet the
    anonymous HEAD is answered 401: it went without them, as Lima's downloader would."""
    client = good_client(auth_registry)
    client.push_blob(repository_name, DATA, DIGEST, len(DATA))
    assert client.blob_exists(repository_name, DIGEST)  # authenticated: there

    assert client.anonymous_blob_status(repository_name, DIGEST) == 401

    assert client.blob_exists(repository_name, DIGEST)  # and the client still works


def test_anonymous_blob_status_on_a_token_registry_is_401(
    read_only_registry: RunningRegistry, no_registry_login: Path, repository_name: str
) -> None:
    client = good_client(read_only_registry)
    assert client.anonymous_blob_status(repository_name, DIGEST) == 401


def test_anonymous_blob_status_uses_the_transports_timeouts(
    registry: RunningRegistry, repository_name: str
) -> None:
    """A stalled answer ends at the read timeout (one attempt), as every other request does."""
    with FaultProxy(registry.host) as proxy:
        proxy.add("stall", method="HEAD", path="/blobs/", delay=5.0)
        client = RegistryClient(
            proxy.host,
            plain_http=True,
            timeouts=Timeouts(connect=2.0, read=0.5),
            retry=RetryPolicy(max_attempts=1),
        )
        with pytest.raises(RegistryError, match="timed out waiting for the response"):
            client.anonymous_blob_status(repository_name, DIGEST)
