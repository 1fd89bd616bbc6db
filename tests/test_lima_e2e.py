"""The real Lima end to end: `limactl start oras:127.0.0.1:PORT/REPO:TAG` of a release this
project published, as a Lima user would (lima-vm/lima v2.2.0, QEMU, TCG here).

`bootc-pipeline publish` (boot check on) publishes the bootable stand-in base
(tests/support/bootable.py, through tests/test_boot_e2e.publish) to Debian's docker-registry on
127.0.0.1. Then, as an unprivileged user (limactl refuses root; tests/support/lima.py), limactl
resolves `oras:` through `limactl-url-oras` (the venv's bin on PATH; BOOTC_PIPELINE_PLAIN_HTTP=1
for the loopback registry) and must reach its own READY: ssh, the user session, the guest agent,
the mounts (lima-vm/lima pkg/hostagent requirements). The guest is then asked through
`limactl shell`; stopped and started again (a second boot of the same disk keeps /etc and /var);
deleted. The publish-time template (blob URLs on the registry) must start as written, too.

On a failure the assertion carries Lima's own logs (ha.stderr.log, serial logs). Seconds from
`limactl start` to its return (READY) are printed and written to LIMA_FIGURES.

BOOT_TEST_ARCH=arm64 (`make lima-test ARCH=arm64`) runs the same against an arm64 release with
`limactl start --arch aarch64` (TCG: slow; not in CI).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.consume import lima_plugin
from pipeline.core.arch import Arch
from tests.support.lima import LimaUser, make_lima_user
from tests.support.registry import RunningRegistry
from tests.test_boot_e2e import ARCH, Run, publish_ok

pytestmark = pytest.mark.integration

START_TIMEOUT = 40 * 60  # seconds: TCG on a CPU shared with other work
SHELL_TIMEOUT = 300.0
ARCH_FLAGS = [] if Arch(ARCH) == Arch.host() else ["--arch", Arch(ARCH).lima]
# 2 vCPUs and 2 GiB, not Lima's 4 and 4: what the machines running these tests can spare
SIZE_FLAGS = ["--cpus", "2", "--memory", "2"]
FIGURES = Path(os.environ.get("LIMA_FIGURES", "/tmp/bootc-pipeline-lima-figures.json"))
SHARED = Path("/tmp/lima")  # the template's writable mount


def figures(key: str, value: object) -> None:
    data = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    data[f"{ARCH}:{key}"] = value
    FIGURES.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nlima figure {ARCH}:{key} = {value}")


@pytest.fixture(scope="module")
def release(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    # --skip-boot: the boot check is tests/test_boot_e2e.py's subject; here the real Lima judges
    # (and one TCG boot fewer fits CI's time)
    return publish_ok(request, tmp_path_factory.mktemp("lima-e2e"), "lima-e2e", ("--skip-boot",))


@pytest.fixture(scope="module")
def user(release: Run) -> Iterator[LimaUser]:
    lima_user = make_lima_user()
    lima_user.extra_env[lima_plugin.PLAIN_HTTP_ENV] = "1"
    if ARCH_FLAGS:
        lima_user.extra_env[lima_plugin.PLATFORMS_ENV] = Arch(ARCH).platform
    SHARED.mkdir(exist_ok=True)
    SHARED.chmod(0o1777)
    yield lima_user
    for instance in ("lima-e2e", "published"):
        lima_user.limactl("delete", "--force", instance, timeout=300)
    subprocess.run(["rm", "-rf", str(lima_user.root)], check=False)


class Guest:
    def __init__(self, user: LimaUser, instance: str) -> None:
        self.user = user
        self.instance = instance

    def fail(self, what: str, proc: subprocess.CompletedProcess[str] | None = None) -> None:
        out = f"\nstdout: {proc.stdout[-3000:]}\nstderr: {proc.stderr[-6000:]}" if proc else ""
        pytest.fail(f"{self.instance}: {what}{out}\n{self.user.logs(self.instance)}")

    def start(self, *locator: str) -> float:
        began = time.monotonic()
        proc = self.user.limactl(
            "start", "--tty=false", f"--timeout={START_TIMEOUT // 60}m", *locator,
            timeout=START_TIMEOUT + 300,
        )  # fmt: skip
        seconds = round(time.monotonic() - began, 1)
        if proc.returncode != 0 or "READY" not in proc.stderr:
            self.fail(f"limactl start did not reach READY in {seconds} s", proc)
        return seconds

    def sh(self, script: str) -> str:
        proc = self.user.limactl(
            "shell", "--workdir", "/", self.instance, "sh", "-c", script, timeout=SHELL_TIMEOUT
        )
        if proc.returncode != 0:
            self.fail(f"guest command failed: {script}", proc)
        return proc.stdout

    def stop(self) -> None:
        proc = self.user.limactl("stop", self.instance, timeout=600)
        if proc.returncode != 0:
            self.fail("limactl stop failed", proc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def fetch_forwarded(port: int, deadline: float) -> bytes:
    """GET / on the host's 127.0.0.1:PORT, which only Lima's port forwarding can answer."""
    last = ""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"GET /token HTTP/1.0\r\nHost: x\r\n\r\n")
                chunks = []
                while chunk := s.recv(65536):
                    chunks.append(chunk)
                answer = b"".join(chunks)
                if answer.startswith(b"HTTP/1.0 200"):
                    return answer.split(b"\r\n\r\n", 1)[1]
                last = answer[:80].decode(errors="replace")
        except OSError as exc:
            last = str(exc)
        time.sleep(2)
    raise AssertionError(f"127.0.0.1:{port} not forwarded from the guest: {last}")


def test_limactl_starts_oras_ref_and_the_guest_is_lima_ready(
    release: Run, registry: RunningRegistry, user: LimaUser
) -> None:
    ref = f"{registry.host}/{release.repository}:40.1.0"
    guest = Guest(user, "lima-e2e")  # the template's name: the repository's last component
    first = guest.start(*ARCH_FLAGS, *SIZE_FLAGS, f"oras:{ref}")
    figures("first-start-seconds", first)

    status = guest.sh("cloud-init status --wait || true")
    assert "status: done" in status, status
    assert guest.sh("id -un").strip() == user.account.pw_name
    assert guest.sh("sudo -n true && echo ok").strip() == "ok"
    # writable for Lima's boot scripts, which install into guestInstallPrefix as root
    write = "sudo -n touch /usr/local/lima-write && sudo -n rm /usr/local/lima-write && echo ok"
    assert guest.sh(write).strip() == "ok"
    agent = guest.sh("ls /usr/local/bin/lima-guestagent && readlink -f /usr/local")
    assert agent.split() == ["/usr/local/bin/lima-guestagent", "/var/usrlocal"], agent

    # the home mount (reverse-sshfs: QEMU's 9p default is unsupported per the template)
    token = secrets.token_hex(8)
    host_file = user.home / f"from-host-{token}"
    host_file.write_text(token)
    user.give(host_file)
    mounts = guest.sh("findmnt -no FSTYPE,TARGET -T " + str(user.home))
    assert mounts.split() == ["fuse.sshfs", str(user.home)], mounts
    assert guest.sh(f"cat {host_file}").strip() == token
    host_file.unlink()

    # /tmp/lima, writable both ways
    (SHARED / f"h-{token}").write_text("host")
    assert (
        guest.sh(f"cat /tmp/lima/h-{token} && echo guest > /tmp/lima/g-{token}").strip() == "host"
    )
    assert (SHARED / f"g-{token}").read_text().strip() == "guest"
    for name in (f"h-{token}", f"g-{token}"):
        (SHARED / name).unlink()

    # a port the guest listens on, reached from the host through Lima's port forwarding
    port = free_port()
    guest.sh(
        f"mkdir -p /tmp/www && echo {token} > /tmp/www/token && cd /tmp/www && "
        f"(setsid python3 -m http.server --bind 127.0.0.1 {port} >/dev/null 2>&1 < /dev/null &)"
    )
    assert fetch_forwarded(port, time.monotonic() + 180).strip() == token.encode()

    # second boot of the same disk: /etc and /var are kept
    guest.sh(f"echo {token} | sudo tee /etc/lima-e2e-mark /var/lima-e2e-mark >/dev/null")
    guest.stop()
    second = guest.start("lima-e2e")
    figures("second-start-seconds", second)
    assert guest.sh("cat /etc/lima-e2e-mark /var/lima-e2e-mark").split() == [token, token]
    assert "status: done" in guest.sh("cloud-init status --wait || true")

    proc = user.limactl("delete", "--force", "lima-e2e", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert not (user.lima_home / "lima-e2e").exists()


def test_the_publish_time_template_starts_as_written(release: Run, user: LimaUser) -> None:
    """Its images are blob URLs on the registry (docker-registry serves them without a token):
    Lima downloads the .zst itself, checks the digest, decompresses with zstd."""
    written = release.workdir / release.variant / f"lima-{release.variant}.yaml"
    copy = user.root / "published.yaml"
    copy.write_bytes(written.read_bytes())
    user.give(copy)
    guest = Guest(user, "published")
    seconds = guest.start(*ARCH_FLAGS, *SIZE_FLAGS, str(copy))
    figures("publish-template-start-seconds", seconds)
    assert "status: done" in guest.sh("cloud-init status --wait || true")
    assert guest.sh("sudo -n true && echo ok").strip() == "ok"
    proc = user.limactl("delete", "--force", "published", timeout=300)
    assert proc.returncode == 0, proc.stderr
