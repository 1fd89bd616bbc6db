"""TLS policy: verification on by default, a CA bundle option, plain HTTP only to loopback."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.core.errors import UsageError
from pipeline.registry import BlobAction, RegistryClient, RetryPolicy
from pipeline.registry.errors import RegistryError
from pipeline.registry.transport import LazyTrust
from pipeline.shared.context import Options
from tests.support.faultproxy import FaultProxy
from tests.support.registry import RunningRegistry, start_registry

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


@pytest.fixture
def forward_proxy(
    registry: RunningRegistry, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FaultProxy]:
    """The shared plain registry behind a loopback forward proxy ($HTTP_PROXY, $HTTPS_PROXY):
    whatever host a client names, its plain requests reach the real registry and the proxy logs
    their absolute URL (the scheme and host used); an HTTPS attempt is a logged, refused CONNECT.
    Nothing leaves 127.0.0.1."""
    with FaultProxy(registry.host) as proxy:
        for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
            monkeypatch.setenv(name, f"http://{proxy.host}")
        for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
            monkeypatch.delenv(name, raising=False)
        yield proxy


def _push_and_check(client: RegistryClient, repository: str) -> None:
    assert client.push_blob(repository, DATA, DIGEST, len(DATA)).action is BlobAction.UPLOADED
    assert client.blob_exists(repository, DIGEST)


@pytest.mark.integration
@pytest.mark.parametrize("host", ["127.0.0.1:5000", "127.9.9.9", "localhost:5000", "[::1]:5000"])
def test_plain_http_to_loopback_is_allowed(
    forward_proxy: FaultProxy, repository_name: str, host: str
) -> None:
    with RegistryClient(host, plain_http=True, chunk_size=8192) as client:
        _push_and_check(client, repository_name)
    methods = [e.method for e in forward_proxy.log]
    assert {"POST", "PATCH", "PUT", "HEAD"} <= set(methods)
    assert all(e.path.startswith(f"http://{host}/v2/{repository_name}/") for e in forward_proxy.log)


@pytest.mark.integration
def test_forced_plain_http_is_allowed_anywhere(
    forward_proxy: FaultProxy, repository_name: str
) -> None:
    host = "registry.example.com"
    with RegistryClient(host, plain_http=True, force_plain_http=True, chunk_size=8192) as client:
        _push_and_check(client, repository_name)
    assert forward_proxy.log
    assert all(e.path.startswith(f"http://{host}/v2/{repository_name}/") for e in forward_proxy.log)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("host", "tunnel"),
    [
        ("registry.example.com", "registry.example.com:443"),
        ("127.0.0.1:5000", "127.0.0.1:5000"),
        ("r.example", "r.example:443"),
        ("docker.io", "registry-1.docker.io:443"),  # Docker Hub's API host
    ],
)
def test_https_is_the_default_and_force_plain_http_alone_keeps_it(
    forward_proxy: FaultProxy, repository_name: str, host: str, tunnel: str
) -> None:
    """--force-plain-http only lifts --plain-http's loopback limit; it never picks HTTP itself."""
    for force in (False, True):
        forward_proxy.forget()
        client = RegistryClient(host, force_plain_http=force, retry=RetryPolicy(max_attempts=1))
        with client, pytest.raises(RegistryError, match=f"registry {host}"):
            client.blob_exists(repository_name, DIGEST)
        assert [(e.method, e.path) for e in forward_proxy.log] == [("CONNECT", tunnel)]


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


def test_missing_ca_bundle_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        RegistryClient("r.example", ca_bundle=tmp_path / "ca.pem")


def test_invalid_registry_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        RegistryClient("bad host")


# -- whose trust --ca-bundle is: the target's, added to the system's -------------------------


@pytest.fixture(scope="module")
def other_ca_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """A TLS registry on another port, its certificate signed by a CA of its own."""
    reg = start_registry(tmp_path_factory.mktemp("other-ca"), tls=True)
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def same_ca_registry(
    tls_registry: RunningRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningRegistry]:
    """A TLS registry on another port with `tls_registry`'s CA and certificate."""
    tls = tls_registry.workdir / "tls"
    files = (tls / "ca.crt", tls / "server.crt", tls / "server.key")
    reg = start_registry(tmp_path_factory.mktemp("same-ca"), tls_files=files)
    try:
        yield reg
    finally:
        reg.stop()


@pytest.mark.integration
@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"])
def test_a_private_ca_for_the_target_does_not_break_a_source_trusted_by_the_system(
    tls_registry: RunningRegistry,
    other_ca_registry: RunningRegistry,
    repository_name: str,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
) -> None:
    """The source's CA is in the system's trust ($SSL_CERT_FILE or $REQUESTS_CA_BUNDLE, which
    the transport used to drop); --ca-bundle is the target's private CA (it used to replace the
    whole trust, for every host)."""
    assert tls_registry.ca_cert and other_ca_registry.ca_cert
    monkeypatch.setenv(variable, str(other_ca_registry.ca_cert))
    options = Options(ca_bundle=tls_registry.ca_cert, retry_attempts=1)
    with options.registry_client(tls_registry.host, publishing=True) as target:
        _push_and_check(target, repository_name)
    source = options.registry_client(
        other_ca_registry.host, target=tls_registry.host, publishing=True
    )
    with source:
        assert source.blob_exists(repository_name, DIGEST) is False  # verified, answered 404


@pytest.mark.integration
def test_ca_bundle_adds_to_the_system_trust(
    tls_registry: RunningRegistry,
    other_ca_registry: RunningRegistry,
    repository_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A target whose certificate the system trusts stays reachable with a --ca-bundle that
    does not hold its CA (a token service or mirror of the target may use either)."""
    assert tls_registry.ca_cert and other_ca_registry.ca_cert
    monkeypatch.setenv("SSL_CERT_FILE", str(other_ca_registry.ca_cert))
    options = Options(ca_bundle=tls_registry.ca_cert, retry_attempts=1)
    with options.registry_client(other_ca_registry.host, publishing=True) as client:
        _push_and_check(client, repository_name)


@pytest.mark.integration
def test_ca_bundle_is_not_trusted_for_another_host(
    tls_registry: RunningRegistry, same_ca_registry: RunningRegistry, repository_name: str
) -> None:
    """--ca-bundle is for the target: a base's registry on another host with a certificate of
    that private CA is not trusted through it."""
    options = Options(ca_bundle=tls_registry.ca_cert, retry_attempts=1)
    source = options.registry_client(
        same_ca_registry.host, target=tls_registry.host, publishing=True
    )
    with source, pytest.raises(RegistryError, match="TLS certificate verification failed"):
        source.blob_exists(repository_name, DIGEST)
    with options.registry_client(same_ca_registry.host, publishing=True) as target:
        assert target.blob_exists(repository_name, DIGEST) is False  # its target: trusted


def test_token_services_and_redirects_elsewhere_get_the_systems_trust_alone(
    tls_registry: RunningRegistry,
) -> None:
    """The transport's adapters, per URL: the target's host trusts --ca-bundle on top of the
    system's store; a token service or blob storage on another host, the system's alone."""
    assert tls_registry.ca_cert is not None
    options = Options(ca_bundle=tls_registry.ca_cert)
    subject = ((("commonName", "bootc-pipeline test CA"),),)

    def trusts_the_ca(client: RegistryClient, url: str) -> bool:
        adapter = client._t.session.get_adapter(url)
        assert isinstance(adapter, LazyTrust)  # the trust is built at the first HTTPS request
        return any(ca["subject"] == subject for ca in adapter._context().get_ca_certs())

    with options.registry_client(tls_registry.host, publishing=True) as client:
        assert trusts_the_ca(client, f"https://{tls_registry.host}/v2/x/blobs/sha256:0")
        assert not trusts_the_ca(client, "https://auth.example/token?service=x")
        assert not trusts_the_ca(client, "https://blobs.example/signed?X-Amz-Signature=s")
    source = options.registry_client("quay.io", target=tls_registry.host, publishing=True)
    with source:
        assert not trusts_the_ca(source, "https://quay.io/v2/fedora/fedora-bootc/manifests/40")
        assert trusts_the_ca(source, f"https://{tls_registry.host}/v2/")  # the target's own
