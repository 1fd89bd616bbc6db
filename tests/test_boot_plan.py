"""The boot check's planning, without booting: QEMU's command line, the Lima-shaped seed, how the
guest's answers are judged, missing host tools, and the decompress check of the published bytes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline import zstdfile
from pipeline.arch import Arch
from pipeline.boot import checks, seed, tools
from pipeline.boot.machine import MACHINES, BootPlan, qemu_argv
from pipeline.digest import Blob
from pipeline.errors import PipelineError

ROOT = Path(__file__).resolve().parent.parent


def _plan(arch: Arch, accel: str = "tcg") -> BootPlan:
    p = Path("/w")
    return BootPlan(arch, accel, p / "d.qcow2", 1 << 30, p / "s.iso", p / "v.fd", 2222, p / "c")


@pytest.mark.parametrize(
    ("arch", "firmware", "machine"),
    [(Arch.AMD64, "OVMF_CODE_4M.fd", "q35"), (Arch.ARM64, "AAVMF_CODE.fd", "virt")],
)
def test_qemu_boots_uefi_with_ssh_on_loopback_only(arch: Arch, firmware: str, machine: str) -> None:
    argv = qemu_argv(_plan(arch))
    assert argv[0] == MACHINES[arch].qemu
    text = " ".join(argv)
    assert "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/" in text
    assert firmware in text and "unit=1,file=/w/v.fd" in text
    assert f"{machine},accel=tcg" in text
    netdev = argv[argv.index("-netdev") + 1]
    assert "hostfwd=tcp:127.0.0.1:2222-:22" in netdev
    assert "hostfwd=tcp::" not in netdev and "0.0.0.0" not in text
    assert "file:/w/c" in text  # the serial console is kept
    assert "accel=kvm" in " ".join(qemu_argv(_plan(arch, "kvm")))


def test_budgets_are_per_architecture_and_accelerator() -> None:
    assert _plan(Arch.ARM64).ssh_budget > _plan(Arch.AMD64).ssh_budget
    assert _plan(Arch.AMD64, "kvm").ssh_budget < _plan(Arch.AMD64).ssh_budget


def test_seed_has_the_keys_lima_sets() -> None:
    user = seed.SeedUser("alice", 1234)
    doc = yaml.safe_load(seed.user_data(user, "ssh-ed25519 AAAA key\n"))
    assert doc["growpart"] == {"mode": "auto", "devices": ["/"]}
    (entry,) = doc["users"]
    assert entry == {
        "name": "alice",
        "uid": "1234",
        "homedir": "/home/alice.linux",
        "shell": "/bin/bash",
        "sudo": "ALL=(ALL) NOPASSWD:ALL",
        "lock_passwd": True,
        "ssh-authorized-keys": ["ssh-ed25519 AAAA key"],
    }
    (script,) = doc["write_files"]
    assert script["path"] == "/var/lib/cloud/scripts/per-boot/00-lima.boot.sh"
    assert "/dev/disk/by-label/cidata" in script["content"]
    meta = yaml.safe_load(seed.meta_data("iid-1", "lima-x"))
    assert meta == {"instance-id": "iid-1", "local-hostname": "lima-x"}
    net = yaml.safe_load(seed.network_config())
    assert net["ethernets"]["eth0"]["dhcp4"] is True


def test_cloud_init_status_is_judged_by_its_own_words() -> None:
    assert checks.judge_cloud_init(0, "status: done\nboot_status_code: enabled")[0]
    ok, detail = checks.judge_cloud_init(1, "status: error\nerrors:\n  - locale failed")
    assert not ok and "status: error" in detail
    assert not checks.judge_cloud_init(0, "status: running")[0]


def test_disk_growth_is_reported_against_the_vm_disk() -> None:
    gib = 1024**3
    assert checks.judge_grown(f"{97 * gib} /dev/vda4", 100 * gib)[0]
    ok, detail = checks.judge_grown(f"{2 * gib} /dev/vda4", 100 * gib)
    assert not ok and "did not grow" in detail
    tools_check = next(
        c for c in checks.guest_checks(1000, "/var/usrlocal") if c.name == "lima-tools"
    )
    for tool in ("rsync", "sshfs", "newuidmap", "/usr/sbin/iptables", "mount.fuse3"):
        assert tool in tools_check.command


def test_a_missing_host_tool_names_its_debian_package() -> None:
    with pytest.raises(PipelineError) as info:
        tools.require(["qemu-system-x86_64-not-here", "/usr/share/AAVMF/NOPE.fd", "sh"])
    assert "qemu-system-x86_64-not-here" in info.value.message
    assert info.value.hint is not None and "apt-get install -y" in info.value.hint
    with pytest.raises(PipelineError) as info:
        tools.PACKAGES["/nonexistent/sftp-server"] = "openssh-sftp-server"
        tools.require(["/nonexistent/sftp-server"])
    assert "openssh-sftp-server" in str(info.value.hint)
    del tools.PACKAGES["/nonexistent/sftp-server"]


def test_decompress_refuses_bytes_other_than_the_recorded_ones(tmp_path: Path) -> None:
    disk = tmp_path / "disk.qcow2"
    disk.write_bytes(b"qcow2 bytes " * 1000)
    packed = zstdfile.compress(disk, tmp_path / "disk.zst", level=3)
    out = zstdfile.decompress(
        packed.path, tmp_path / "out", compressed=packed.compressed, uncompressed=None
    )
    assert out == packed.uncompressed and (tmp_path / "out").read_bytes() == disk.read_bytes()
    wrong = Blob("sha256:" + "0" * 64, packed.uncompressed.size)
    with pytest.raises(PipelineError, match="not the recorded bytes"):
        zstdfile.decompress(
            packed.path, tmp_path / "bad", compressed=packed.compressed, uncompressed=wrong
        )
    assert not (tmp_path / "bad").exists()


def test_boot_of_a_published_ref_wants_a_linux_platform() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "boot", "127.0.0.1:1/x/y:1",
         "--platform", "windows/amd64"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "platform 'windows/amd64': only linux/<arch> disks are published" in proc.stderr
