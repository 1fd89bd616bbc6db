"""Boot a disk under QEMU + UEFI with a Lima-shaped seed, log in over ssh and run Lima's checks."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.boot import checks as lima
from pipeline.boot import firmware, seed, tools
from pipeline.boot.machine import DISK_BYTES, MACHINES, BootPlan, kvm_usable, qemu_argv
from pipeline.boot.tools import SFTP_SERVER
from pipeline.core.arch import Arch
from pipeline.core.errors import PipelineError
from pipeline.core.progress import Reporter

GUEST_MOUNT = "/mnt/bootc-pipeline-host"
COMMAND_SECONDS = 180.0  # one check over ssh
KVM_GRACE = 10.0  # a KVM start that dies this fast is retried under TCG
# what QEMU logs when KVM cannot run the guest's next instruction (nested KVM on these machines
# fails so in OVMF's first steps, ENVIRONMENT.md: "KVM was unreliable"); the vCPU stops and QEMU
# keeps running, so the boot is retried under TCG at once instead of waiting out ssh's budget
KVM_FAILED = "KVM internal error"
LOG_READ = 1 << 20  # QEMU's own log is a few lines, a register dump at the most
SSHD_GRACE = 60.0  # after cloud-init says it finished, ssh must answer within this
CLOUD_INIT_FINISHED = re.compile(r"Cloud-init v\. \S+ finished at")
CONSOLE_TAIL = 30


@dataclass
class BootResult:
    """What one boot showed; `ok` only if the guest booted and every required check passed."""

    arch: Arch
    firmware: str
    accelerator: str = ""
    booted: bool = False
    seconds_to_ssh: float | None = None
    checks: list[lima.CheckResult] = field(default_factory=list)
    console_log: Path | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def failed_checks(self) -> list[lima.CheckResult]:
        return [c for c in self.checks if c.required and not c.ok]

    @property
    def ok(self) -> bool:
        return self.booted and self.error is None and not self.failed_checks

    def failure(self) -> str:
        """One line naming what is wrong."""
        if self.error:
            return self.error
        return "; ".join(f"{c.name}: {c.detail}" for c in self.failed_checks)

    def to_dict(self) -> dict[str, object]:
        return {
            "booted": self.booted,
            "ok": self.ok,
            "firmware": self.firmware,
            "accelerator": self.accelerator,
            "secondsToSsh": self.seconds_to_ssh,
            "checks": [c.to_dict() for c in self.checks],
            "error": self.error,
            "consoleLog": str(self.console_log) if self.console_log else None,
            "notes": self.notes,
        }


@dataclass(frozen=True)
class Ssh:
    key: Path
    port: int
    user: str

    def argv(self, command: str, *, connect_timeout: int = 10) -> list[str]:
        return [
            "ssh",
            "-i",
            str(self.key),
            "-p",
            str(self.port),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            f"ConnectTimeout={connect_timeout}",
            f"{self.user}@127.0.0.1",
            "--",
            command,
        ]

    def run(self, command: str, timeout: float = COMMAND_SECONDS) -> tuple[int, str]:
        """Exit status and stdout+stderr of COMMAND in the guest (255: ssh itself failed)."""
        try:
            proc = subprocess.run(
                self.argv(command),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return 124, f"no answer within {timeout:.0f} s"
        return proc.returncode, (proc.stdout + proc.stderr).strip()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _run(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        raise PipelineError(f"{what} failed: {proc.stderr.strip()[-300:]}")


def disk_info(disk: Path, what: str) -> dict[str, Any]:
    """`qemu-img info` of DISK (its `format` and `virtual-size`), or one error naming WHAT."""
    try:
        proc = subprocess.run(
            ["qemu-img", "info", "--output=json", str(disk)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PipelineError(f"{what}: qemu-img info could not run ({exc})") from None
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise PipelineError(f"{what}: qemu-img cannot read it as a disk image ({why[-300:]})")
    try:
        info = json.loads(proc.stdout)
        if not isinstance(info, dict) or not isinstance(info.get("format"), str):
            raise ValueError("no format")
        int(info["virtual-size"])
    except (ValueError, KeyError, TypeError):
        raise PipelineError(f"{what}: qemu-img info gave no format and size") from None
    return info


def console_tail(path: Path | None, lines: int = CONSOLE_TAIL) -> list[str]:
    if path is None or not path.exists():
        return []
    text = path.read_bytes().decode("utf-8", "replace").replace("\r", "")
    clean = [re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line) for line in text.splitlines()]
    return [line for line in clean if line.strip()][-lines:]


def _prepare(disk: Path, work: Path, arch: Arch) -> tuple[Ssh, BootPlan, seed.SeedUser]:
    """The run's ssh key, seed ISO, firmware variables and disk overlay, fresh in WORK."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    key = work / "id_ed25519"
    comment = "bootc-pipeline boot check"
    _run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)], "ssh-keygen"
    )
    user = seed.host_user()
    files = work / "cidata"
    files.mkdir()
    hostname = f"lima-bootc-check-{arch.value}"
    (files / "user-data").write_text(seed.user_data(user, (work / "id_ed25519.pub").read_text()))
    (files / "meta-data").write_text(seed.meta_data(f"iid-{secrets.token_hex(8)}", hostname))
    (files / "network-config").write_text(seed.network_config())
    (files / "boot.sh").write_text(seed.boot_sh())
    (files / "boot.sh").chmod(0o755)
    iso = work / "cidata.iso"
    names = ["user-data", "meta-data", "network-config", "boot.sh"]
    _run(
        ["genisoimage", "-quiet", "-output", str(iso), "-volid", "cidata", "-joliet", "-rock"]
        + [str(files / n) for n in names],
        "making the cidata seed (genisoimage)",
    )
    machine = MACHINES[arch]
    vars_copy = work / f"{machine.firmware.name}_VARS.fd"
    shutil.copyfile(machine.firmware.vars, vars_copy)
    info = disk_info(disk, str(disk))
    size = max(DISK_BYTES, int(info["virtual-size"]))
    overlay = work / "diffdisk.qcow2"  # as Lima: the published disk stays untouched underneath
    _run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", info["format"], "-b", str(disk)]
        + [str(overlay), str(size)],
        "qemu-img create (disk overlay)",
    )
    port = _free_port()
    plan = BootPlan(arch, "tcg", overlay, size, iso, vars_copy, port, work / "console.log")
    return Ssh(key, port, user.name), plan, user


@contextlib.contextmanager
def _qemu(plan: BootPlan, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen(qemu_argv(plan), stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


def _tail(path: Path, chars: int = 300) -> str:
    try:
        return path.read_text(errors="replace").strip()[-chars:]
    except OSError:
        return ""


def _kvm_failure(qemu_log: Path) -> str | None:
    """QEMU's line saying KVM stopped the guest, with the reason QEMU gives after it (the
    register dump left out); None while there is none."""
    lines = _tail(qemu_log, LOG_READ).splitlines()
    for n, line in enumerate(lines):
        if line.startswith(KVM_FAILED):
            reason = next((x for x in lines[n + 1 :] if "failure" in x or "error" in x), "")
            return f"{line.strip()}{', ' + reason.strip() if reason else ''}"
    return None


def _wait_for_ssh(
    proc: subprocess.Popen[bytes], plan: BootPlan, ssh: Ssh, qemu_log: Path
) -> tuple[float | None, str]:
    """Seconds until a login worked, or None and why not."""
    start = time.monotonic()
    finished_at: float | None = None
    last = ""
    while True:
        elapsed = time.monotonic() - start
        if proc.poll() is not None:
            return None, f"QEMU exited with status {proc.returncode}: {_tail(qemu_log)}"
        if plan.accel == "kvm" and (failed := _kvm_failure(qemu_log)) is not None:
            return None, failed  # QEMU stays, the guest stops
        status, output = ssh.run("true", timeout=30)
        if status == 0:
            return time.monotonic() - start, ""
        last = output.splitlines()[-1] if output else f"ssh exit status {status}"
        console = plan.console.read_text(errors="replace") if plan.console.exists() else ""
        if finished_at is None:
            stuck = firmware.nothing_to_boot(console, plan.machine.firmware.name)
            if stuck is not None:
                return None, stuck
            if CLOUD_INIT_FINISHED.search(console):
                finished_at = time.monotonic()
        if finished_at is not None and time.monotonic() - finished_at > SSHD_GRACE:
            return None, (
                f"cloud-init finished but sshd never accepted the seed's key on 127.0.0.1:"
                f"{plan.ssh_port} ({last}): is sshd enabled in the image?"
            )
        if elapsed > plan.ssh_budget:
            return None, (
                f"no ssh login within {plan.ssh_budget:.0f} s on 127.0.0.1:{plan.ssh_port} "
                f"({last}): the guest did not boot far enough for sshd (see the console log)"
            )
        time.sleep(3)


def _command_check(
    ssh: Ssh, check: lima.Check, plan: BootPlan, origin: lima.OriginExpectation | None = None
) -> lima.CheckResult:
    # `cloud-init status --wait` may wait for the rest of boot: it gets the boot's budget
    status, output = ssh.run(
        check.command, timeout=plan.ssh_budget if check.name == "cloud-init" else COMMAND_SECONDS
    )
    if check.name == "cloud-init":
        ok, detail = lima.judge_cloud_init(status, output)
    elif check.name == "bootc-origin" and origin is not None:
        ok, detail = lima.judge_origin(status, output, origin)
    elif check.name == "disk-grown":
        ok, detail = lima.judge_grown(output, plan.disk_bytes) if status == 0 else (False, output)
    else:
        ok = status == 0
        lines = [line for line in output.splitlines() if line.strip() and not _noise(line)]
        detail = lines[-1] if lines else f"exit status {status}"
    return lima.CheckResult(check.name, ok, detail, check.required)


def _noise(line: str) -> bool:
    return line.startswith("sudo: unable to resolve host")


def reverse_sshfs(ssh: Ssh, host_dir: Path, timeout: float = 60.0) -> lima.CheckResult:
    """Mount HOST_DIR in the guest as Lima does: the host's sftp-server talks through the ssh
    session to `sshfs -o slave` in the guest. Then read a host-written file there, and write one
    back."""
    name = "reverse-sshfs"
    host_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(8)
    (host_dir / "from-host.txt").write_text(token + "\n")
    mount = shlex.quote(GUEST_MOUNT)
    remote = (
        f"sudo -n mkdir -p {mount} && exec sudo -n sshfs :{shlex.quote(str(host_dir))} {mount} "
        "-o slave -o allow_other"
    )
    errors = host_dir.parent / "sshfs.stderr"
    with errors.open("wb") as err:
        session = subprocess.Popen(
            ssh.argv(remote), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err
        )
    assert session.stdin is not None and session.stdout is not None
    sftp = subprocess.Popen(
        [SFTP_SERVER], stdin=session.stdout, stdout=session.stdin, stderr=subprocess.DEVNULL
    )
    session.stdout.close()
    session.stdin.close()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if session.poll() is not None:
                why = _tail(errors) or f"ssh exit status {session.returncode}"
                return lima.CheckResult(name, False, f"sshfs did not mount: {why}")
            status, output = ssh.run(f"cat {mount}/from-host.txt", timeout=30)
            if status == 0 and output.strip() == token:
                back = f"sudo -n sh -c 'echo {token} > {mount}/from-guest.txt'"
                status, output = ssh.run(back, timeout=30)
                written = (host_dir / "from-guest.txt").read_text().strip() if status == 0 else ""
                if written != token:
                    return lima.CheckResult(name, False, f"guest write not seen on host: {output}")
                return lima.CheckResult(
                    name, True, f"host file read at {GUEST_MOUNT}, guest write seen on the host"
                )
            time.sleep(2)
        return lima.CheckResult(name, False, f"host file not readable in the guest: {output}")
    finally:
        ssh.run(f"sudo -n umount {mount}", timeout=30)
        for proc in (session, sftp):
            if proc.poll() is None:
                proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


def _record(result: BootResult, found: lima.CheckResult, reporter: Reporter) -> None:
    result.checks.append(found)
    mark = "ok  " if found.ok else "FAIL"
    reporter.info(f"    {result.arch.value}: {mark} {found.name}: {found.detail}")


def boot_disk(
    disk: Path,
    arch: Arch,
    work: Path,
    *,
    install_prefix: str,
    reporter: Reporter,
    origin: lima.OriginExpectation | None = None,
) -> BootResult:
    """Boot DISK (qcow2, left untouched) for ARCH with WORK as scratch; never raises on a guest
    failure: the result says what failed."""
    machine = MACHINES[arch]
    tools.require_for(arch)
    ssh, plan, user = _prepare(disk, work, arch)
    result = BootResult(arch, machine.firmware.name, console_log=plan.console)
    accels = ["kvm", "tcg"] if kvm_usable(arch, Arch.host()) else ["tcg"]
    qemu_log = work / "qemu.log"
    for accel in accels:
        plan = dataclasses.replace(plan, accel=accel)
        started = time.monotonic()
        with _qemu(plan, qemu_log) as proc:
            reporter.info(
                f"    {arch.value}: QEMU {machine.machine} + {machine.firmware.name}, {accel}, "
                f"ssh on 127.0.0.1:{plan.ssh_port} (budget {plan.ssh_budget:.0f} s)"
            )
            if accel == "kvm":
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=KVM_GRACE)
                if proc.poll() is not None and time.monotonic() - started < KVM_GRACE + 1:
                    result.notes.append(f"KVM failed to start ({_tail(qemu_log, 200)}): TCG used")
                    continue
                if (failed := _kvm_failure(qemu_log)) is not None:
                    result.notes.append(f"{failed}: TCG used")
                    continue
            result.accelerator = accel
            seconds, why = _wait_for_ssh(proc, plan, ssh, qemu_log)
            if seconds is None and accel == "kvm" and why.startswith(KVM_FAILED):
                result.notes.append(f"{why}: TCG used")
                continue
            if seconds is None:
                result.error = f"{arch.value} did not boot to ssh: {why}"
                return result
            result.booted, result.seconds_to_ssh = True, round(seconds, 1)
            reporter.info(f"    {arch.value}: ssh as {user.name} after {seconds:.1f} s")
            for check in lima.guest_checks(user.uid, install_prefix, origin):
                _record(result, _command_check(ssh, check, plan, origin), reporter)
            _record(result, reverse_sshfs(ssh, work / "host-share"), reporter)
            return result
    result.error = f"{arch.value}: QEMU did not start"
    return result
