"""TLS policy: verification on by default, a CA bundle option, plain HTTP only to loopback."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pipeline.errors import UsageError
from pipeline.registry import BlobAction, RegistryClient, RetryPolicy
from pipeline.registry.errors import RegistryError
from tests.support.registry import RunningRegistry

DATA = b"over tls" * 4096
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()


@pytest.mark.integration
def test_tls_registry_with_ca_bundle(tls_registry: RunningRegistry, repository_name: str) -> None:
    client = RegistryClient(tls_registry.host, ca_bundle=tls_registry.ca_cert, chunk_size=8192)
    assert client.push_blob(repository_name, DATA, DIGEST, len(DATA)).action is BlobAction.UPLOADED
    assert client.fetch_blob(repository_name, DIGEST) == DATA


@pytest.mark.integration
def test_tls_registry_refused_without_the_ca(
    tls_registry: RunningRegistry, repository_name: str
) -> None:
    client = RegistryClient(tls_registry.host, retry=RetryPolicy(max_attempts=5))
    with pytest.raises(RegistryError) as caught:
        client.blob_exists(repository_name, DIGEST)
    assert str(caught.value) == (
        f"registry {tls_registry.host}, repository {repository_name}: checking blob {DIGEST} "
        "failed: TLS certificate verification failed"
    )
    assert caught.value.hint and "--ca-bundle" in caught.value.hint


@pytest.mark.integration
def test_plain_http_to_a_tls_registry_fails_clearly(
    tls_registry: RunningRegistry, repository_name: str
) -> None:
    client = RegistryClient(tls_registry.host, plain_http=True, retry=RetryPolicy(max_attempts=1))
    with pytest.raises(RegistryError, match=f"registry {tls_registry.host}"):
        client.blob_exists(repository_name, DIGEST)


@pytest.mark.parametrize("host", ["registry.example.com", "10.0.0.5:5000", "[fd00::1]:5000"])
def test_plain_http_to_non_loopback_is_refused(host: str) -> None:
    with pytest.raises(UsageError, match="plain HTTP is only allowed to loopback"):
        RegistryClient(host, plain_http=True)


@pytest.mark.parametrize("host", ["127.0.0.1:5000", "127.9.9.9", "localhost:5000", "[::1]:5000"])
def test_plain_http_to_loopback_is_allowed(host: str) -> None:
    assert repr(RegistryClient(host, plain_http=True)) == f"RegistryClient('http://{host}')"


def test_forced_plain_http_is_allowed_anywhere() -> None:
    client = RegistryClient("registry.example.com", plain_http=True, force_plain_http=True)
    assert repr(client) == "RegistryClient('http://registry.example.com')"


@pytest.mark.parametrize("host", ["registry.example.com", "127.0.0.1:5000"])
def test_force_plain_http_alone_keeps_https(host: str) -> None:
    """--force-plain-http only lifts --plain-http's loopback limit; it never picks HTTP itself."""
    assert repr(RegistryClient(host, force_plain_http=True)) == f"RegistryClient('https://{host}')"


@pytest.mark.integration
def test_force_plain_http_alone_talks_tls_with_the_ca_bundle(
    tls_registry: RunningRegistry, repository_name: str
) -> None:
    """Against the TLS registry: HTTPS, verified with --ca-bundle, not plain HTTP."""
    client = RegistryClient(
        tls_registry.host,
        force_plain_http=True,
        ca_bundle=tls_registry.ca_cert,
        chunk_size=8192,
        retry=RetryPolicy(max_attempts=1),
    )
    assert client.push_blob(repository_name, DATA, DIGEST, len(DATA)).action is BlobAction.UPLOADED
    assert client.fetch_blob(repository_name, DIGEST) == DATA


@pytest.mark.integration
def test_force_plain_http_alone_still_verifies_certificates(
    tls_registry: RunningRegistry, repository_name: str
) -> None:
    client = RegistryClient(
        tls_registry.host, force_plain_http=True, retry=RetryPolicy(max_attempts=1)
    )
    with pytest.raises(RegistryError, match="TLS certificate verification failed"):
        client.blob_exists(repository_name, DIGEST)


def test_https_is_the_default_and_docker_hub_uses_its_api_host() -> None:
    assert repr(RegistryClient("r.example")) == "RegistryClient('https://r.example')"
    assert repr(RegistryClient("docker.io")) == "RegistryClient('https://registry-1.docker.io')"


def test_missing_ca_bundle_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        RegistryClient("r.example", ca_bundle=tmp_path / "ca.pem")


def test_invalid_registry_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        RegistryClient("bad host")
