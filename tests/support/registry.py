"""pytest plugin: real registries on 127.0.0.1 for tests: Debian's `docker-registry`
(distribution 2.8), distribution v3.1.1 and olareg v0.2.2 (RegistryKind).

Fixtures:
- `registry`: plain HTTP, anonymous docker-registry (session-scoped; use a unique repository
  per test).
- `any_registry`: the same, parametrized over all three kinds (`.kind` says which; only olareg
  has the OCI 1.1 referrers API).
- `auth_registry`: plain HTTP with htpasswd basic auth; `.username` / `.password`.
- `tls_registry`: HTTPS with a throwaway CA; `.ca_cert`.
- `token_registry`: the bearer-token flow, with a real token service (`TokenServer`).
- `faulty_proxy`: a loopback proxy in front of `registry` that injects resets, errors, stalls.
- `repository_name`: a repository unique to the test; `no_registry_login`: hides your logins.
- `start_registry(...)`: the function behind them, for tests that need their own instance.

Everything listens on 127.0.0.1 only, and every wait is bounded.

A missing docker-registry binary is a failure, not a skip: CI must not go green without it.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import http.client
import http.server
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support import gotools
from tests.support.faultproxy import FaultProxy

START_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 5.0
_HTTP_SECRET = "bootc-pipeline-test-http-secret"  # fixed, so upload URLs survive restart()


def registry_binary() -> str:
    path = shutil.which("docker-registry")
    if path is None:
        pytest.fail(
            "docker-registry not found: install the Debian package (apt-get install -y "
            "docker-registry); the registry tests need a real registry",
            pytrace=False,
        )
    return path


class RegistryKind(enum.StrEnum):
    """The registries the tests run: what they are and what they can do."""

    DOCKER_REGISTRY = "docker-registry"  # Debian's distribution 2.8.2 (2022)
    DISTRIBUTION = "distribution-v3"  # distribution v3.1.1
    OLAREG = "olareg"  # olareg v0.2.2

    @property
    def has_referrers_api(self) -> bool:
        """`GET /v2/<name>/referrers/<digest>` (distribution-spec v1.1): olareg only."""
        return self is RegistryKind.OLAREG

    @property
    def configurable(self) -> bool:
        """Takes distribution's config file (htpasswd, TLS, token auth): olareg does not."""
        return self is not RegistryKind.OLAREG

    def binary(self) -> str:
        if self is RegistryKind.DOCKER_REGISTRY:
            return registry_binary()
        return gotools.go_tool("registry" if self is RegistryKind.DISTRIBUTION else "olareg")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningRegistry:
    """One docker-registry process; `restart()` keeps its port, storage and secrets."""

    host: str
    url: str
    root: Path
    config: Path
    workdir: Path
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_cert: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    kind: RegistryKind = RegistryKind.DOCKER_REGISTRY
    argv: list[str] = field(default_factory=list)

    @property
    def log_path(self) -> Path:
        return self.workdir / "registry.log"

    def start(self) -> None:
        if self.process is not None:
            raise RuntimeError("registry already running")
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                self.argv or [registry_binary(), "serve", str(self.config)],
                # distribution v3 exports traces to localhost:4318 unless told not to
                env=os.environ | {"OTEL_TRACES_EXPORTER": "none"},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()
        self._wait_ready()

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT_SECONDS)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _wait_ready(self) -> None:
        """Poll /v2/ until it answers at all (401 counts: auth is configured), bounded."""
        context = ssl.create_default_context(cafile=str(self.ca_cert)) if self.ca_cert else None
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=2, context=context):
                    return
            except urllib.error.HTTPError:
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        log = self.log_path.read_text(errors="replace")[-2000:]
        self.stop()
        pytest.fail(f"{self.kind} on {self.host} did not become ready:\n{log}", pytrace=False)


def start_registry(
    workdir: Path,
    *,
    htpasswd: bool = False,
    tls: bool = False,
    relative_urls: bool = False,
    extra_lines: list[str] | None = None,
    address: str = "127.0.0.1",
    tls_files: tuple[Path, Path, Path] | None = None,
    kind: RegistryKind = RegistryKind.DOCKER_REGISTRY,
) -> RunningRegistry:
    """Start a registry of `kind` on `address`:<free port> with storage under `workdir`.

    `address` is a loopback address (`[::1]` for IPv6); `tls_files` (ca, cert, key) reuses
    another registry's CA and certificate instead of a new CA (implies `tls`). olareg takes
    none of distribution's configuration (auth, TLS) and listens on 127.0.0.1.
    """
    binary = kind.binary()
    workdir.mkdir(parents=True, exist_ok=True)
    root = workdir / "storage"
    root.mkdir(exist_ok=True)
    port = free_port()
    host = f"{address}:{port}"
    if not kind.configurable:
        if htpasswd or tls or tls_files or extra_lines or address != "127.0.0.1":
            raise ValueError(f"{kind} takes no distribution config (auth, TLS, address)")
        return _start_olareg(binary, workdir, root, port)
    lines = [
        "version: 0.1",
        "log:",
        "  level: warn",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {root}",
        "  delete:",
        "    enabled: true",
        "  maintenance:",
        "    uploadpurging:",
        "      enabled: false",
        "http:",
        f"  addr: {host}",
        f"  secret: {_HTTP_SECRET}",
        f"  relativeurls: {'true' if relative_urls else 'false'}",
    ]
    reg = RunningRegistry(host, "", root, workdir / "config.yml", workdir)
    if tls or tls_files:
        reg.ca_cert, cert, key = tls_files or make_tls_files(workdir / "tls")
        lines += ["  tls:", f"    certificate: {cert}", f"    key: {key}"]
    if htpasswd:
        reg.username = "pipeline-user"
        reg.password = "pw-" + secrets.token_hex(12)
        path = workdir / "htpasswd"
        path.write_text(make_htpasswd(reg.username, reg.password))
        lines += ["auth:", "  htpasswd:", "    realm: test-realm", f"    path: {path}"]
    lines += extra_lines or []
    reg.config.write_text("\n".join(lines) + "\n")
    reg.url = f"{'https' if tls or tls_files else 'http'}://{host}"
    reg.kind = kind
    reg.argv = [binary, "serve", str(reg.config)]
    reg.start()
    return reg


def _start_olareg(binary: str, workdir: Path, root: Path, port: int) -> RunningRegistry:
    host = f"127.0.0.1:{port}"
    reg = RunningRegistry(host, f"http://{host}", root, workdir / "config.yml", workdir)
    reg.kind = RegistryKind.OLAREG
    reg.argv = [binary, "serve", "--addr", "127.0.0.1", "--port", str(port), "--dir", str(root)]
    reg.argv += ["--api-delete"]  # as docker-registry's storage.delete.enabled above
    reg.start()
    return reg


def make_htpasswd(username: str, password: str) -> str:
    """A bcrypt htpasswd line (docker-registry accepts only bcrypt)."""
    if shutil.which("htpasswd") is None:
        pytest.fail("htpasswd not found: apt-get install -y apache2-utils", pytrace=False)
    out = subprocess.run(
        ["htpasswd", "-Bbn", username, password],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return out.stdout.decode().strip() + "\n"


def make_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost; returns (ca, cert, key)."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl not found: apt-get install -y openssl", pytrace=False)
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "server.ext"
    ext.write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = ["openssl"]
    commands = [
        [*run, "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca_cert), "-days", "2",
         "-subj", "/CN=bootc-pipeline test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        [*run, "req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1"],
        [*run, "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
         "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext)],
    ]  # fmt: skip
    for command in commands:
        subprocess.run(command, check=True, capture_output=True, timeout=60)
    return ca_cert, cert, key


@contextlib.contextmanager
def _running(
    *, htpasswd: bool = False, tls: bool = False, kind: RegistryKind = RegistryKind.DOCKER_REGISTRY
) -> Iterator[RunningRegistry]:
    with tempfile.TemporaryDirectory(prefix="bootc-registry-") as temp:
        reg = start_registry(Path(temp), htpasswd=htpasswd, tls=tls, kind=kind)
        try:
            yield reg
        finally:
            reg.stop()


@pytest.fixture(scope="session")
def registry() -> Iterator[RunningRegistry]:
    """A plain-HTTP anonymous registry shared by the session."""
    with _running() as reg:
        yield reg


@pytest.fixture(scope="session")
def distribution_registry() -> Iterator[RunningRegistry]:
    """distribution v3.1.1, plain HTTP, anonymous (no referrers API)."""
    with _running(kind=RegistryKind.DISTRIBUTION) as reg:
        yield reg


@pytest.fixture(scope="session")
def olareg_registry() -> Iterator[RunningRegistry]:
    """olareg v0.2.2, plain HTTP, anonymous (has the referrers API)."""
    with _running(kind=RegistryKind.OLAREG) as reg:
        yield reg


REGISTRY_FIXTURES = {
    RegistryKind.DOCKER_REGISTRY: "registry",
    RegistryKind.DISTRIBUTION: "distribution_registry",
    RegistryKind.OLAREG: "olareg_registry",
}


@pytest.fixture(params=list(RegistryKind), ids=str)
def any_registry(request: pytest.FixtureRequest) -> RunningRegistry:
    """Each of the three registries in turn (session-wide instances)."""
    reg: RunningRegistry = request.getfixturevalue(REGISTRY_FIXTURES[request.param])
    return reg


@pytest.fixture(scope="session")
def auth_registry() -> Iterator[RunningRegistry]:
    """A registry requiring HTTP basic auth (htpasswd) for everything."""
    with _running(htpasswd=True) as reg:
        yield reg


@pytest.fixture(scope="session")
def tls_registry() -> Iterator[RunningRegistry]:
    """An HTTPS registry whose certificate is signed by `.ca_cert` (a throwaway CA)."""
    with _running(tls=True) as reg:
        yield reg


@pytest.fixture
def repository_name(request: pytest.FixtureRequest) -> str:
    """A repository name unique to the test, so tests can share one registry."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower()).strip("-")
    return f"test/{base[:60].strip('-')}-{secrets.token_hex(3)}"


@pytest.fixture
def no_registry_login(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Hide the developer's own logins: an empty $DOCKER_CONFIG and no credential variables.

    Returns the (empty) docker config directory, where a test may write a config.json.
    """
    config_dir = tmp_path / "docker-config"
    config_dir.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(config_dir))
    monkeypatch.delenv("BOOTC_PIPELINE_REGISTRY_USERNAME", raising=False)
    monkeypatch.delenv("BOOTC_PIPELINE_REGISTRY_PASSWORD", raising=False)
    return config_dir


# -- a fault-injecting loopback proxy (tests/support/faultproxy.py) ------------------------------

FaultyProxy = FaultProxy  # the name the first registry tests use


@pytest.fixture
def faulty_proxy(registry: RunningRegistry) -> Iterator[FaultProxy]:
    """A FaultyProxy in front of the shared plain registry (no faults until a test adds some)."""
    proxy = FaultProxy(registry.host)
    try:
        yield proxy
    finally:
        proxy.close()


# -- a bearer-token service for docker-registry's `auth.token` ------------------------------------


class TokenServer:
    """A minimal docker token service (the spec registries implement) for a real docker-registry.

    It signs RS256 JWTs with `openssl dgst` under a self-signed certificate that the registry
    trusts (`rootcertbundle`), and grants every requested action to `username`/`password`;
    anonymous requests get a token with no access, or with pull access to `public` repositories
    (what ghcr.io and quay.io grant anonymous users of public images). `requests` records
    (scopes, authenticated).
    """

    service = "bootc-test-registry"
    issuer = "bootc-test-token-issuer"

    def __init__(self, workdir: Path, *, username: str, password: str) -> None:
        self.workdir = workdir
        self.username = username
        self.password = password
        self.fail_with: int | None = None  # answer every request with this status
        self.requests: list[tuple[list[str], bool]] = []
        self.public: set[str] = set()  # repositories anonymous tokens may pull (public images)
        self._lock = threading.Lock()
        self.rekey()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _token_handler(self))
        self._server.daemon_threads = True
        self.realm = f"http://127.0.0.1:{self._server.server_address[1]}/token"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def rekey(self) -> None:
        """A new signing key and certificate: tokens signed before no longer verify."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.key = self.workdir / "token.key"
        self.cert = self.workdir / "token.crt"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key),
             "-out", str(self.cert), "-days", "2", "-subj", "/CN=bootc-test-token-signer"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        der = subprocess.run(
            ["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
            check=True, capture_output=True, timeout=60,
        ).stdout  # fmt: skip
        self._x5c = base64.b64encode(der).decode()

    def config_lines(self) -> list[str]:
        return [
            "auth:",
            "  token:",
            f"    realm: {self.realm}",
            f"    service: {self.service}",
            f"    issuer: {self.issuer}",
            f"    rootcertbundle: {self.cert}",
        ]

    def issue(self, scopes: list[str], authenticated: bool) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if authenticated:
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
            elif name in self.public and "pull" in actions.split(","):
                access.append({"type": kind, "name": name, "actions": ["pull"]})
        now = int(time.time())
        claims = {
            "iss": self.issuer, "sub": self.username if authenticated else "", "aud": self.service,
            "exp": now + 600, "nbf": now - 10, "iat": now - 10, "jti": secrets.token_hex(8),
            "access": access,
        }  # fmt: skip
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        encoded = [_b64url(json.dumps(part).encode()) for part in (header, claims)]
        signing_input = ".".join(encoded)
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(), check=True, capture_output=True, timeout=60,
        ).stdout  # fmt: skip
        return f"{signing_input}.{_b64url(signature)}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(STOP_TIMEOUT_SECONDS)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _token_handler(server: TokenServer) -> type[http.server.BaseHTTPRequestHandler]:
    expected = "Basic " + base64.b64encode(f"{server.username}:{server.password}".encode()).decode()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 30

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
            pass

        def do_GET(self) -> None:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            given = self.headers.get("Authorization")
            with server._lock:
                server.requests.append((query.get("scope", []), given is not None))
            if server.fail_with is not None:  # the token service itself is unwell
                return self._answer(server.fail_with, {"details": "token service unavailable"})
            if given is not None and given != expected:
                return self._answer(401, {"details": "bad credentials"})
            token = server.issue(query.get("scope", []), given is not None)
            self._answer(200, {"token": token, "access_token": token, "expires_in": 600})

        def _answer(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@dataclass
class TokenRegistry:
    """A docker-registry using `token` for bearer auth; `rekey()` invalidates issued tokens."""

    registry: RunningRegistry
    tokens: TokenServer

    def rekey(self) -> None:
        self.tokens.rekey()
        self.registry.restart()


@pytest.fixture(scope="session")
def token_registry() -> Iterator[TokenRegistry]:
    """A registry behind the bearer-token flow (`.registry`, `.tokens`; credentials on both)."""
    with tempfile.TemporaryDirectory(prefix="bootc-registry-") as temp:
        password = "tok-" + secrets.token_hex(12)
        tokens = TokenServer(Path(temp) / "token", username="token-user", password=password)
        try:
            reg = start_registry(Path(temp) / "registry", extra_lines=tokens.config_lines())
            reg.username, reg.password = tokens.username, password
            try:
                yield TokenRegistry(reg, tokens)
            finally:
                reg.stop()
        finally:
            tokens.close()
