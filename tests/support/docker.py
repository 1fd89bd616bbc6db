"""A private Docker Engine (Debian's docker.io) for the tests that prove Docker works too."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

START_TIMEOUT = 60.0


@dataclass(frozen=True)
class DockerService:
    url: str
    root: Path

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[bytes]:
        proc = subprocess.run(
            ["docker", "-H", self.url, *args], capture_output=True, timeout=timeout, check=False
        )
        if proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {proc.stderr.decode()[-2000:]}")
        return proc


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerService]:
    """dockerd on a private socket, data root and exec root; no bridge, no iptables."""
    if shutil.which("dockerd") is None:
        pytest.fail("dockerd not found: apt-get install docker.io (scripts/setup-debian.sh does)")
    base = Path(tempfile.mkdtemp(prefix="bootc-pipeline-docker-", dir="/var/tmp"))
    sock = base / "docker.sock"
    log = (base / "dockerd.log").open("wb")
    proc = subprocess.Popen(
        [
            "dockerd", "--data-root", str(base / "data"), "--exec-root", str(base / "exec"),
            "-H", f"unix://{sock}", "--pidfile", str(base / "pid"),
            "--iptables=false", "--bridge=none",
        ],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"unix://{sock}"
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while True:
            try:
                docker.DockerClient(base_url=url, timeout=5).ping()
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = (base / "dockerd.log").read_text(errors="replace")[-2000:]
                    pytest.fail(f"dockerd did not start within {START_TIMEOUT:.0f}s:\n{tail}")
                time.sleep(0.5)
        yield DockerService(url, base)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        log.close()
        subprocess.run(["umount", "-R", str(base / "exec")], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)
