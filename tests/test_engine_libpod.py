"""Podman's libpod manifest-list endpoint, as the build stage reads a base's digest per arch.

Podman 4.3 answers `GET /libpod/manifests/<name>/json` with 200 for a manifest list and 404 for
a local image that is not one (it then looked for a list remotely); anything else is a failure
to report, not "not a manifest list". Real Podman service; the failing answer comes from the
loopback fault proxy in front of the same store served over TCP.
"""

from __future__ import annotations

import json
import socket
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from pipeline.core.arch import Arch
from pipeline.core.errors import PipelineError
from pipeline.shared.engine import Engine
from tests.support.faultproxy import FaultProxy
from tests.support.podman import PodmanService
from tests.support.registry import free_port

pytestmark = pytest.mark.integration

PLAIN = "localhost/bootc-pipeline-test/plain:1"
LIST = "localhost/bootc-pipeline-test/list:1"


def _serve_tcp(podman: PodmanService, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        podman.argv("system", "service", "--time=0", f"tcp://127.0.0.1:{port}"),
        env=podman.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.1)
    process.kill()
    pytest.fail("podman system service on TCP did not start", pytrace=False)


def test_manifest_list_plain_image_and_failure(podman: PodmanService, tmp_path: Path) -> None:
    empty = tmp_path / "empty.tar"
    with tarfile.open(empty, "w"):
        pass
    podman.cli("import", str(empty), PLAIN)
    podman.cli("manifest", "rm", LIST, check=False)
    podman.cli("manifest", "create", LIST)
    podman.cli("manifest", "add", LIST, f"containers-storage:{PLAIN}")
    host = Arch.host()
    listed = json.loads(podman.cli("manifest", "inspect", LIST).stdout)
    (instance,) = [m["digest"] for m in listed["manifests"]]

    engine = Engine.connect(podman.url)
    assert engine.base_digest(LIST, host) == instance  # 200: the list's instance for the arch
    assert engine.base_digest(PLAIN, host).startswith("sha256:")  # 404: a plain image, no error

    port = free_port()
    service = _serve_tcp(podman, port)
    try:
        with FaultProxy(f"127.0.0.1:{port}") as proxy:
            proxy.add(
                "respond", method="GET", path="/libpod/manifests/", status=500, times=10,
                headers={"Content-Type": "application/json"},
                body=b'{"cause": "x", "message": "storage is broken", "response": 500}',
            )  # fmt: skip
            remote = Engine.connect(f"tcp://{proxy.host}")
            with pytest.raises(PipelineError) as caught:
                remote.base_digest(LIST, host)
    finally:
        service.terminate()
        service.wait(30)
    assert f"could not read manifest list {LIST}: 500 storage is broken" in caught.value.message
