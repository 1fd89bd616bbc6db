"""A guest booted by the tests themselves, to judge a published disk by its own answers.

Independent of pipeline/boot on purpose: its own QEMU command line, a seed made with
`cloud-localds` (cloud-image-utils) instead of the pipeline's genisoimage, its own ssh key and
user, and reverse sshfs wired with a shell fifo as ENVIRONMENT.md describes it.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.podman import run_checked

FIRMWARE = {
    "amd64": ("qemu-system-x86_64", "q35", "max", "/usr/share/OVMF/OVMF_CODE_4M.fd",
              "/usr/share/OVMF/OVMF_VARS_4M.fd"),
    "arm64": ("qemu-system-aarch64", "virt", "cortex-a72", "/usr/share/AAVMF/AAVMF_CODE.fd",
              "/usr/share/AAVMF/AAVMF_VARS.fd"),
}  # fmt: skip
JUDGE_USER = "judge"
BUDGET = {"amd64": 900.0, "arm64": 2400.0}  # seconds to ssh under TCG on a loaded 2-core machine


@dataclass(frozen=True)
class Guest:
    port: int
    key: Path
    console: Path

    def ssh_argv(self, command: str) -> list[str]:
        return [
            "ssh", "-i", str(self.key), "-p", str(self.port), "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10", f"{JUDGE_USER}@127.0.0.1", command,
        ]  # fmt: skip

    def run(self, command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.ssh_argv(command), capture_output=True, text=True, timeout=timeout, check=False
        )


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def booted(disk: Path, arch: str, work: Path) -> Iterator[Guest]:
    """Boot DISK (a qcow2, under a 20 GiB overlay) and yield once ssh works as the judge user."""
    qemu, machine, cpu, code, vars_template = FIRMWARE[arch]
    work.mkdir(parents=True, exist_ok=True)
    key = work / "judge_key"
    run_checked(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)])
    user_data = work / "user-data"
    public = key.with_suffix(".pub").read_text()
    user_data.write_text(
        "#cloud-config\nusers:\n  - name: judge\n    sudo: ALL=(ALL) NOPASSWD:ALL\n"
        f"    shell: /bin/bash\n    ssh_authorized_keys:\n      - {public}"
    )
    meta = work / "meta-data"
    meta.write_text("instance-id: judge-1\nlocal-hostname: judge\n")
    seed = work / "seed.img"
    run_checked(["cloud-localds", str(seed), str(user_data), str(meta)])
    overlay = work / "overlay.qcow2"
    run_checked(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(disk), str(overlay)]
        + ["20G"]
    )
    vars_copy = work / "vars.fd"
    vars_copy.write_bytes(Path(vars_template).read_bytes())
    port = _port()
    console = work / "console.log"
    argv = [
        qemu, "-machine", f"{machine},accel=tcg", "-cpu", cpu, "-m", "2048", "-smp", "2",
        "-display", "none", "-serial", f"file:{console}",
        "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
        "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}",
        "-drive", f"if=virtio,format=qcow2,file={overlay}",
        "-drive", f"if=virtio,format=raw,file={seed}",
        "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device", "virtio-net-pci,netdev=n0",
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    guest = Guest(port, key, console)
    try:
        deadline = time.monotonic() + BUDGET[arch]
        while guest.run("true", timeout=30).returncode != 0:
            assert proc.poll() is None, f"QEMU exited {proc.returncode}"
            assert time.monotonic() < deadline, console.read_text(errors="replace")[-3000:]
            time.sleep(3)
        yield guest
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def reverse_sshfs_reads(guest: Guest, host_dir: Path, mountpoint: str) -> str:
    """Mount HOST_DIR in the guest through sftp-server piped over ssh (Lima's way, via a fifo);
    return what `cat MOUNTPOINT/hello` printed in the guest."""
    fifo = host_dir.parent / "sftp.fifo"
    fifo.unlink(missing_ok=True)
    run_checked(["mkfifo", str(fifo)])
    sshfs = f"sudo sshfs :{host_dir} {mountpoint} -o slave,allow_other"
    mount = f"sudo mkdir -p {mountpoint} && {sshfs}"
    ssh = " ".join(f"'{a}'" for a in guest.ssh_argv(mount))
    pipe = subprocess.Popen(
        ["bash", "-c", f"/usr/lib/openssh/sftp-server < {fifo} | {ssh} > {fifo}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(20):
            proc = guest.run(f"cat {mountpoint}/hello", timeout=30)
            if proc.returncode == 0:
                return proc.stdout
            time.sleep(2)
        return ""
    finally:
        guest.run(f"sudo umount {mountpoint}", timeout=30)
        pipe.terminate()
        pipe.wait(timeout=30)
