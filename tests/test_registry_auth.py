"""Authentication against real registries: htpasswd basic auth and the bearer-token flow.

Credentials come from where users keep them (docker config.json, credential helpers, CI
variables), and no secret may leak into logs, errors, reprs or progress output.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.core.errors import UsageError
from pipeline.core.mediatypes import EMPTY_DIGEST, EMPTY_JSON
from pipeline.registry import OCI_MANIFEST, BlobAction, RegistryClient
from pipeline.registry.credentials import Credentials, find_credentials
from pipeline.registry.errors import RegistryError
from tests.support.faultproxy import FaultProxy
from tests.support.registry import RunningRegistry, TokenRegistry

pytestmark = pytest.mark.integration

DATA = b"authenticated bytes" * 1000
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()


def write_config(directory: Path, content: dict[str, object]) -> Path:
    path = directory / "config.json"
    path.write_text(json.dumps(content))
    return path


def auth_entry(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def round_trip(client: RegistryClient, repository: str) -> None:
    assert client.push_blob(repository, DATA, DIGEST, len(DATA)).action is BlobAction.UPLOADED
    assert client.fetch_blob(repository, DIGEST) == DATA


def test_basic_auth_from_registry_config(
    auth_registry: RunningRegistry, no_registry_login: Path, tmp_path: Path, repository_name: str
) -> None:
    assert auth_registry.username and auth_registry.password
    config = write_config(
        tmp_path,
        {"auths": {auth_registry.host: auth_entry(auth_registry.username, auth_registry.password)}},
    )
    client = RegistryClient(auth_registry.host, plain_http=True, registry_config=config)
    round_trip(client, repository_name)


def test_basic_auth_from_default_docker_config_with_url_key(
    auth_registry: RunningRegistry, no_registry_login: Path, repository_name: str
) -> None:
    assert auth_registry.username and auth_registry.password
    key = f"http://{auth_registry.host}/v1/"
    entry = {"username": auth_registry.username, "password": auth_registry.password}
    write_config(no_registry_login, {"auths": {key: entry}})
    client = RegistryClient(auth_registry.host, plain_http=True)
    round_trip(client, repository_name)


def test_basic_auth_from_environment(
    auth_registry: RunningRegistry,
    no_registry_login: Path,
    monkeypatch: pytest.MonkeyPatch,
    repository_name: str,
) -> None:
    assert auth_registry.username and auth_registry.password
    monkeypatch.setenv("BOOTC_PIPELINE_REGISTRY_USERNAME", auth_registry.username)
    monkeypatch.setenv("BOOTC_PIPELINE_REGISTRY_PASSWORD", auth_registry.password)
    round_trip(RegistryClient(auth_registry.host, plain_http=True), repository_name)


def fake_helper(directory: Path, name: str, user: str, secret: str, server: str) -> None:
    """A docker-credential-NAME that knows one server, as docker's helpers behave."""
    script = directory / f"docker-credential-{name}"
    payload = json.dumps({"ServerURL": server, "Username": user, "Secret": secret})
    script.write_text(
        "#!/bin/sh\n"
        '[ "$1" = get ] || exit 2\n'
        "read -r server\n"
        f'if [ "$server" = "{server}" ]; then echo \'{payload}\'; exit 0; fi\n'
        "echo 'credentials not found in native keychain'; exit 1\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


@pytest.mark.parametrize("kind", ["credHelpers", "credsStore"])
def test_basic_auth_from_credential_helper(
    auth_registry: RunningRegistry,
    no_registry_login: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    repository_name: str,
    kind: str,
) -> None:
    assert auth_registry.username and auth_registry.password
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_helper(bin_dir, "fake", auth_registry.username, auth_registry.password, auth_registry.host)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path('/usr/bin')}:{Path('/bin')}")
    content: dict[str, object] = (
        {"credHelpers": {auth_registry.host: "fake"}} if kind == "credHelpers"
        else {"credsStore": "fake", "auths": {auth_registry.host: {}}}
    )  # fmt: skip
    write_config(no_registry_login, content)
    round_trip(RegistryClient(auth_registry.host, plain_http=True), repository_name)


def test_helper_without_an_entry_means_anonymous(
    no_registry_login: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_helper(bin_dir, "fake", "u", "s", "other.example")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    write_config(no_registry_login, {"credsStore": "fake"})
    assert find_credentials("127.0.0.1:5000") is None


def test_missing_helper_is_a_usage_error(no_registry_login: Path) -> None:
    write_config(no_registry_login, {"credHelpers": {"r.example": "does-not-exist"}})
    with pytest.raises(UsageError, match="docker-credential-does-not-exist"):
        find_credentials("r.example")


def test_explicit_registry_config_must_exist(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        find_credentials("r.example", registry_config=tmp_path / "nope.json")


def test_no_credentials_is_a_clear_401(
    auth_registry: RunningRegistry, no_registry_login: Path, repository_name: str
) -> None:
    client = RegistryClient(auth_registry.host, plain_http=True)
    with pytest.raises(RegistryError) as caught:
        client.blob_exists(repository_name, DIGEST)
    assert str(caught.value) == (
        f"registry {auth_registry.host}: authentication failed for scope "
        f"repository:{repository_name}:pull: 401 Unauthorized and no credentials found "
        "(no credentials)"
    )
    assert caught.value.status == 401
    assert caught.value.hint and "BOOTC_PIPELINE_REGISTRY_USERNAME" in caught.value.hint


def test_wrong_password_names_where_credentials_came_from(
    auth_registry: RunningRegistry, no_registry_login: Path, tmp_path: Path, repository_name: str
) -> None:
    config = write_config(tmp_path, {"auths": {auth_registry.host: auth_entry("someone", "nope")}})
    client = RegistryClient(auth_registry.host, plain_http=True, registry_config=config)
    with pytest.raises(RegistryError, match="credentials rejected") as caught:
        client.push_blob(repository_name, DATA, DIGEST, len(DATA))
    assert str(config) in str(caught.value) and auth_registry.host in str(caught.value)


def test_no_secret_leaks_anywhere(
    auth_registry: RunningRegistry,
    no_registry_login: Path,
    tmp_path: Path,
    repository_name: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Grep every string the transport produces for the password and its base64 forms."""
    assert auth_registry.username and auth_registry.password
    password = auth_registry.password
    basic = base64.b64encode(f"{auth_registry.username}:{password}".encode()).decode()
    caplog.set_level(logging.DEBUG)  # requests/urllib3 included
    config = write_config(tmp_path, {"auths": {auth_registry.host: auth_entry("x", password)}})
    seen: list[str] = []

    bad = RegistryClient(auth_registry.host, plain_http=True, registry_config=config)
    with pytest.raises(RegistryError) as caught:
        bad.push_blob(repository_name, DATA, DIGEST, len(DATA))
    seen += [str(caught.value), repr(caught.value), caught.value.hint or "", repr(bad)]

    good = RegistryClient(
        auth_registry.host,
        plain_http=True,
        credentials=Credentials(auth_registry.username, password, "test"),
    )
    good.push_blob(repository_name, DATA, DIGEST, len(DATA), progress=lambda n: seen.append(str(n)))

    # A blob download redirected to pre-signed storage (S3, CloudFront and Azure style query
    # parameters), as registries on object storage do: urllib3 logs every request line at
    # DEBUG, and the signatures in it must not reach the log either.
    signatures = [secrets.token_hex(20) for _ in range(4)]
    with FaultProxy(auth_registry.host) as proxy:
        signed = (
            f"http://{proxy.host}/v2/{repository_name}/blobs/{DIGEST}?X-Amz-Algorithm=AWS4-HMAC-"
            f"SHA256&X-Amz-Credential={signatures[0]}%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
            f"&X-Amz-Signature={signatures[1]}&Expires=1700000000&Signature={signatures[2]}"
            f"&sv=2021-08-06&sig={signatures[3]}"
        )
        proxy.add(
            "respond",
            method="GET",
            path=re.escape(f"/blobs/{DIGEST}") + "$",
            status=307,
            headers={"Location": signed},
        )
        via_proxy = RegistryClient(
            proxy.host,
            plain_http=True,
            credentials=Credentials(auth_registry.username, password, "test"),
        )
        assert via_proxy.blob_exists(repository_name, DIGEST)  # credentials go up front now
        assert via_proxy.fetch_blob(repository_name, DIGEST) == DATA
        assert proxy.count("GET", "X-Amz-Signature=") == 1  # the redirect was followed
    body = b'{"schemaVersion": 2}'
    with pytest.raises(RegistryError) as invalid:
        good.push_manifest(repository_name, "v1", body, OCI_MANIFEST)
    seen += [str(invalid.value), repr(good), repr(good._t), repr(good._t.auth)]
    seen += [repr(Credentials(auth_registry.username, password, "test"))]
    seen += [record.getMessage() for record in caplog.records]
    captured = capsys.readouterr()
    seen += [captured.out, captured.err]

    text = "\n".join(seen)
    assert "/blobs/uploads/" in text  # the debug log was really captured
    assert "'Authorization': '<redacted>'" in text  # with the headers, redacted
    for secret in (password, basic, base64.b64encode(password.encode()).decode(), *signatures):
        assert secret not in text
    # urllib3's line for the redirected request was logged, its query redacted.
    assert f'"GET /v2/{repository_name}/blobs/{DIGEST}?<redacted> HTTP/1.1" 200' in text


# -- bearer tokens ---------------------------------------------------------------------------------


def token_client(token_registry: TokenRegistry, *, chunk_size: int = 1 << 20) -> RegistryClient:
    reg = token_registry.registry
    assert reg.username and reg.password
    creds = Credentials(reg.username, reg.password, "test")
    return RegistryClient(reg.host, plain_http=True, credentials=creds, chunk_size=chunk_size)


def test_bearer_token_flow_push_and_pull(
    token_registry: TokenRegistry, no_registry_login: Path, repository_name: str
) -> None:
    client = token_client(token_registry, chunk_size=4096)
    before = len(token_registry.tokens.requests)

    round_trip(client, repository_name)  # HEAD, POST, 5 PATCHes, PUT, GET
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST}).encode()
    with pytest.raises(RegistryError, match="400"):  # reached the registry, past auth
        client.push_manifest(repository_name, "v1", body, OCI_MANIFEST)

    scopes = [scope for scope, _ in token_registry.tokens.requests[before:]]
    # one token per scope, cached: pull (HEAD, GET) and pull,push (upload, manifest)
    assert sorted(scopes) == sorted(
        [[f"repository:{repository_name}:pull"], [f"repository:{repository_name}:pull,push"]]
    )
    assert all(authenticated for _, authenticated in token_registry.tokens.requests[before:])


def test_bearer_mount_asks_for_both_repositories(
    token_registry: TokenRegistry, no_registry_login: Path, repository_name: str
) -> None:
    client = token_client(token_registry)
    client.push_blob(repository_name, DATA, DIGEST, len(DATA))
    other = repository_name + "-copy"
    result = client.push_blob(other, DATA, DIGEST, len(DATA), mount_from=[repository_name])
    assert result.action is BlobAction.MOUNTED
    last_scopes = token_registry.tokens.requests[-1][0]
    assert f"repository:{other}:pull,push" in last_scopes
    assert f"repository:{repository_name}:pull" in last_scopes


def test_invalidated_token_is_renewed_once(
    token_registry: TokenRegistry, no_registry_login: Path, repository_name: str
) -> None:
    client = token_client(token_registry)
    client.push_blob(repository_name, DATA, DIGEST, len(DATA))
    token_registry.rekey()  # every cached token is now signed by an untrusted key
    before = len(token_registry.tokens.requests)

    assert client.fetch_blob(repository_name, DIGEST) == DATA

    assert len(token_registry.tokens.requests) == before + 1


def test_anonymous_token_without_access_fails_naming_scope(
    token_registry: TokenRegistry, no_registry_login: Path, repository_name: str
) -> None:
    client = RegistryClient(token_registry.registry.host, plain_http=True)
    before = len(token_registry.tokens.requests)
    with pytest.raises(RegistryError) as caught:
        client.blob_exists(repository_name, DIGEST)
    message = str(caught.value)
    assert message.startswith(f"registry {token_registry.registry.host}: authentication failed")
    assert f"scope repository:{repository_name}:pull" in message
    assert "(no credentials)" in message
    assert len(token_registry.tokens.requests) == before + 1  # the flow ran once, then gave up


def test_token_service_rejecting_credentials(
    token_registry: TokenRegistry, no_registry_login: Path, repository_name: str
) -> None:
    client = RegistryClient(
        token_registry.registry.host,
        plain_http=True,
        credentials=Credentials("token-user", "wrong-password", "the test"),
    )
    with pytest.raises(RegistryError) as caught:
        client.blob_exists(repository_name, DIGEST)
    message = str(caught.value)
    assert "credentials rejected by token service" in message
    assert token_registry.tokens.realm in message and "wrong-password" not in message
    assert caught.value.status == 401  # a refusal: push access reads as such
    with pytest.raises(RegistryError) as refused:
        client.check_push_access(repository_name)
    assert refused.value.status == 401 and "no push access" in refused.value.message


@pytest.mark.parametrize("status", [500, 503])
def test_token_service_failing_is_not_a_refusal_of_access(
    status: int, token_registry: TokenRegistry, no_registry_login: Path, repository_name: str
) -> None:
    """A token service answering 5xx says nothing about push rights: the error keeps its
    status and cause, and does not read "no push access" or "credentials rejected"."""
    client = token_client(token_registry)
    token_registry.tokens.fail_with = status
    try:
        with pytest.raises(RegistryError) as caught:
            client.check_push_access(repository_name)
    finally:
        token_registry.tokens.fail_with = None
    error = caught.value
    assert error.status == status
    assert f"error from token service {token_registry.tokens.realm} ({status}" in error.message
    assert "no push access" not in error.message and "rejected" not in error.message
    assert error.hint is not None and "try again later" in error.hint
    assert token_registry.tokens.password not in error.message


def test_pull_from_a_token_registry_anonymous_when_public_else_with_credentials(
    token_registry: TokenRegistry, no_registry_login: Path, repository_name: str, tmp_path: Path
) -> None:
    """`pull` through docker-registry's own token auth: an anonymous token reads a public
    repository (ghcr.io/quay.io public images); a private one needs the credentials."""
    from pipeline.core import zstdfile
    from tests.support.oci_push import seed_manifest
    from tests.support.workdirs import cli_env

    qcow2 = tmp_path / "d.qcow2"
    qcow2.write_bytes(DATA)
    layer = zstdfile.compress(qcow2, tmp_path / "d.qcow2.zst", level=3)
    body = (tmp_path / "d.qcow2.zst").read_bytes()
    client = token_client(token_registry)
    client.push_blob(repository_name, EMPTY_JSON, EMPTY_DIGEST, len(EMPTY_JSON))
    client.push_blob(repository_name, body, layer.compressed.digest, len(body))
    document = json.dumps(seed_manifest(body, layer.compressed.digest, "d.qcow2.zst")).encode()
    client.push_manifest(repository_name, "v1", document, OCI_MANIFEST)
    reg = token_registry.registry
    ref = f"{reg.host}/{repository_name}:v1"

    def pull(out: Path, *flags: str, **extra: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "pipeline", "pull", ref, "--plain-http", "-o", f"{out}/"]
        argv += flags
        env = cli_env(tmp_path / "home", chunk_size=1 << 20, extra=extra)
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)

    before = len(token_registry.tokens.requests)
    refused = pull(tmp_path / "a")
    assert refused.returncode == 1 and "authentication failed" in refused.stderr

    token_registry.tokens.public.add(repository_name)
    try:
        anonymous = pull(tmp_path / "b")
    finally:
        token_registry.tokens.public.discard(repository_name)
    assert anonymous.returncode == 0, anonymous.stderr
    assert (tmp_path / "b" / "d.qcow2").read_bytes() == DATA
    asked = token_registry.tokens.requests[before:]
    assert asked and not any(authenticated for _, authenticated in asked)

    assert reg.username and reg.password
    creds = {
        "BOOTC_PIPELINE_REGISTRY_USERNAME": reg.username,
        "BOOTC_PIPELINE_REGISTRY_PASSWORD": reg.password,
    }
    private = pull(tmp_path / "c", "--registry", reg.host, **creds)  # theirs: named
    assert private.returncode == 0, private.stderr
    assert (tmp_path / "c" / "d.qcow2").read_bytes() == DATA
    assert token_registry.tokens.requests[-1][1]  # the last token was asked for with credentials
    assert reg.password not in private.stdout + private.stderr
