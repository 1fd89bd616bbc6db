"""Credentials and TLS through the real CLI (`python -m pipeline push`), no container engine.

- An htpasswd registry, credentials from a docker config file (`--registry-config`), run with
  `--debug --verbose`, through a fault proxy (so retry and resume paths log too), once killed
  mid-upload (so an upload journal is left on disk) and then re-run: the password and its
  base64 `user:pass` form appear nowhere: not in stdout/stderr, the release report, the Lima
  template, the journal, or any other file of the work directory. Nor do the signatures of a
  pre-signed storage URL a blob request is redirected to (urllib3's own DEBUG request lines).
- Without credentials: one error line naming the registry, non-zero exit, nothing pushed.
- A TLS registry with a throwaway CA: accepted with `--ca-bundle`, refused without it (one
  error about verification); plain HTTP to a non-loopback name refused before any traffic.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.core.arch import Arch
from tests.support.faultproxy import FaultProxy
from tests.support.published import Access, snapshot
from tests.support.registry import RunningRegistry, start_registry
from tests.support.workdirs import (
    DiskCache,
    Workdir,
    cli_env,
    error_lines,
    make_workdir,
    push_argv,
    run_push,
    start_push,
)

pytestmark = pytest.mark.integration

CHUNK = 256 * 1024
REPO = "bootc-lima/fedora-bootc-lima"
TAGS = ["40", "40.1.0", "latest"]
PATCH = "/blobs/uploads/"


@pytest.fixture(scope="module")
def disks(tmp_path_factory: pytest.TempPathFactory) -> DiskCache:
    return DiskCache(tmp_path_factory.mktemp("disks"))


@pytest.fixture
def workdir(tmp_path: Path, disks: DiskCache) -> Workdir:
    return make_workdir(tmp_path / "work", disks)


@pytest.fixture
def htpasswd_registry(tmp_path: Path) -> Iterator[RunningRegistry]:
    reg = start_registry(tmp_path / "registry", htpasswd=True)
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def private_ca_registry(tmp_path: Path) -> Iterator[RunningRegistry]:
    """HTTPS with a certificate from a throwaway CA (`.ca_cert`), of this test alone."""
    reg = start_registry(tmp_path / "tls-registry", tls=True)
    try:
        yield reg
    finally:
        reg.stop()


def secrets_of(reg: RunningRegistry) -> list[str]:
    assert reg.username and reg.password
    pair = f"{reg.username}:{reg.password}".encode()
    return [
        reg.password,
        base64.b64encode(pair).decode(),
        base64.urlsafe_b64encode(pair).decode(),
        base64.b64encode(reg.password.encode()).decode().rstrip("="),
    ]


def docker_config(path: Path, hosts: list[str], username: str, password: str) -> Path:
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": auth} for host in hosts}}))
    return path


def assert_nothing_contains(secrets: list[str], texts: dict[str, str], root: Path) -> int:
    """No secret in any of `texts` nor in any file under `root`; returns files searched."""
    for name, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"a secret appears in {name}"
    searched = 0
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix == ".zst":
            continue
        data = path.read_bytes()
        searched += 1
        for secret in secrets:
            assert secret.encode() not in data, f"a secret appears in {path}"
    return searched


def test_htpasswd_credentials_from_docker_config_never_leak(
    htpasswd_registry: RunningRegistry, workdir: Workdir, tmp_path: Path
) -> None:
    reg = htpasswd_registry
    assert reg.username and reg.password
    proxy = FaultProxy(reg.host)
    try:
        config = docker_config(tmp_path / "config.json", [proxy.host], reg.username, reg.password)
        env = cli_env(tmp_path / "home", chunk_size=CHUNK)
        argv = push_argv(
            workdir, proxy.host, "--registry-config", str(config), "--debug", "--verbose"
        )
        # 1: killed in the middle of arm64's upload, leaving an upload journal behind.
        n_amd64 = -(-workdir.disks[Arch("amd64")].compressed.size // CHUNK)
        hold = proxy.add(
            "hold", method="PATCH", path=PATCH, skip=1 + n_amd64 + 2, delay=30.0, seconds=60.0
        )
        killed = start_push(argv, env, tmp_path / "logs" / "killed")
        try:
            assert hold.fired.wait(60), "the publish never reached arm64's upload"
        finally:
            killed.send_signal(signal.SIGKILL)
            killed.wait(30)
        assert workdir.journal(Arch("arm64")).is_file()
        texts = {
            "killed run's stdout": (tmp_path / "logs" / "killed.out").read_text(),
            "killed run's stderr": (tmp_path / "logs" / "killed.err").read_text(),
        }
        assert_nothing_contains(secrets_of(reg), texts, workdir.root)

        # 2: re-run through a 503, a mid-body reset and a truncated answer, all logged, and a
        # blob check redirected to a pre-signed storage URL, as registries on S3 do (urllib3
        # logs the redirected request line at DEBUG, signature and all, unless redacted).
        proxy.add("respond", status=503, method="PATCH", path=PATCH, skip=1, seconds=60.0)
        proxy.add("reset", method="PATCH", path=PATCH, skip=3, fraction=0.5, seconds=60.0)
        proxy.add("truncate", method="PUT", path="/manifests/", seconds=60.0)
        layer = workdir.disks[Arch("amd64")].compressed.digest
        signatures = [secrets.token_hex(20) for _ in range(3)]
        signed = (
            f"http://{proxy.host}/v2/{REPO}/blobs/{layer}?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            f"&X-Amz-Credential=AKIA{signatures[0]}%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
            f"&X-Amz-Signature={signatures[1]}&sig={signatures[2]}"
        )
        proxy.add(
            "respond",
            status=307,
            method="HEAD",
            path=re.escape(f"/blobs/{layer}") + "$",
            headers={"Location": signed},
            times=3,
            seconds=60.0,
        )
        proc = run_push(argv, env)
        assert proxy.count("HEAD", "X-Amz-Signature=") >= 1  # the redirect was followed
    finally:
        proxy.close()
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "resumed at byte" in proc.stderr
    assert "DEBUG" in proc.stderr  # --debug really logged the HTTP traffic
    for signature in signatures:
        assert signature not in proc.stderr + proc.stdout
    assert f'"HEAD /v2/{REPO}/blobs/{layer}?<redacted> HTTP/1.1"' in proc.stderr
    report = workdir.report_path
    lima = workdir.variant_dir / "lima-fedora-40.yaml"
    assert report.is_file() and lima.is_file()
    # Lima's downloader has no token auth: the user is told the template will not download.
    assert "layer answers 401 without credentials" in proc.stderr
    written = json.loads(report.read_text())
    assert written["limaAnonymousStatus"] == {"amd64": 401, "arm64": 401}
    # ... and is given the command that does work (registry auth, then a local verified file)
    assert written["limaTemplateDownloads"] is False
    command = f"bootc-pipeline lima {proxy.host}/{REPO}:40.1.0 --platform all"
    assert written["limaCommand"].startswith(command)
    assert f"for Lima, run: {command}" in proc.stderr
    assert f"Use instead: {command}" in lima.read_text()
    texts |= {"stdout": proc.stdout, "stderr": proc.stderr}
    searched = assert_nothing_contains(secrets_of(reg), texts, workdir.root)
    assert searched >= 6  # stamps, report, template at least

    access = Access(reg.host, username=reg.username, password=reg.password)
    tagged = snapshot(access, REPO)
    assert sorted(tagged) == TAGS
    assert tagged["40.1.0"].index == json.loads(report.read_text())["index"]["digest"]


def test_without_credentials_one_error_and_nothing_pushed(
    htpasswd_registry: RunningRegistry, workdir: Workdir, tmp_path: Path
) -> None:
    reg = htpasswd_registry
    env = cli_env(tmp_path / "home", chunk_size=CHUNK)
    proc = run_push(push_argv(workdir, reg.host), env)
    assert proc.returncode == 1, proc.stderr
    (line,) = error_lines(proc.stderr)
    assert f"registry {reg.host}" in line and "authentication failed" in line
    assert "no credentials" in line and "Traceback" not in proc.stderr
    assert not (reg.root / "docker" / "registry" / "v2" / "repositories").exists()

    assert reg.username and reg.password
    wrong = docker_config(tmp_path / "wrong.json", [reg.host], reg.username, "not-the-password")
    proc = run_push(push_argv(workdir, reg.host, "--registry-config", str(wrong)), env)
    assert proc.returncode == 1, proc.stderr
    (line,) = error_lines(proc.stderr)
    assert f"registry {reg.host}" in line and "credentials rejected" in line
    assert str(wrong) in line  # says where the rejected credentials came from
    assert "not-the-password" not in proc.stderr + proc.stdout
    assert not (reg.root / "docker" / "registry" / "v2" / "repositories").exists()

    # --debug turns the error into a traceback: it must not carry the credentials either.
    argv = push_argv(workdir, reg.host, "--registry-config", str(wrong), "--debug", "--verbose")
    proc = run_push(argv, env)
    assert proc.returncode != 0 and "Traceback" in proc.stderr
    pair = base64.b64encode(f"{reg.username}:not-the-password".encode()).decode()
    for secret in ("not-the-password", pair):
        assert secret not in proc.stderr + proc.stdout


def test_tls_registry_with_a_private_ca(
    private_ca_registry: RunningRegistry, workdir: Workdir, tmp_path: Path
) -> None:
    reg = private_ca_registry
    assert reg.ca_cert is not None
    env = cli_env(tmp_path / "home", chunk_size=CHUNK)

    proc = run_push(push_argv(workdir, reg.host, plain_http=False), env)
    assert proc.returncode == 1, proc.stderr
    (line,) = error_lines(proc.stderr)
    assert f"registry {reg.host}" in line and "TLS certificate verification failed" in line
    assert "--ca-bundle" in proc.stderr
    assert not (reg.root / "docker" / "registry" / "v2" / "repositories").exists()

    argv = push_argv(workdir, reg.host, "--ca-bundle", str(reg.ca_cert), plain_http=False)
    proc = run_push(argv, env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    tagged = snapshot(Access(reg.host, scheme="https", ca_cert=reg.ca_cert), REPO)
    assert sorted(tagged) == TAGS
    report = json.loads(workdir.report_path.read_text())
    assert {s.index for s in tagged.values()} == {report["index"]["digest"]}


def test_plain_http_to_a_non_loopback_name_is_refused(workdir: Workdir, tmp_path: Path) -> None:
    env = cli_env(tmp_path / "home", chunk_size=CHUNK)
    proc = run_push(push_argv(workdir, "registry.example.com"), env)
    assert proc.returncode == 2, proc.stderr
    (line,) = error_lines(proc.stderr)
    assert "registry.example.com" in line and "plain HTTP is only allowed to loopback" in line
    assert not workdir.report_path.exists()


def test_publish_without_push_rights_fails_before_the_engine_is_asked(
    htpasswd_registry: RunningRegistry, tmp_path: Path
) -> None:
    """Preflight: a publish that could never push stops in its first second, not after a build."""
    reg = htpasswd_registry
    argv = [
        sys.executable, "-m", "pipeline", "publish", "--variant", "fedora-40",
        "--registry", reg.host, "--plain-http", "--workdir", str(tmp_path / "w"),
        "--engine", "unix:///nonexistent/engine.sock",
    ]  # fmt: skip
    proc = run_push(argv, cli_env(tmp_path / "home", chunk_size=CHUNK))
    assert proc.returncode == 1, proc.stderr
    (line,) = error_lines(proc.stderr)
    assert f"registry {reg.host}" in line and "no push access" in line
    assert "engine" not in proc.stderr and "==> build" not in proc.stderr
