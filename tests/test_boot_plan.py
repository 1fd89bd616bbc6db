"""The boot check's planning, without booting: QEMU's command line, the Lima-shaped seed, how the
guest's answers are judged, missing host tools, and the decompress check of the published bytes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.boot import checks, firmware, guest, seed, tools
from pipeline.boot.machine import MACHINES, BootPlan, qemu_argv
from pipeline.core import zstdfile
from pipeline.core.arch import Arch
from pipeline.core.digest import Blob
from pipeline.core.errors import PipelineError

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


@pytest.mark.parametrize("arch", [Arch.AMD64, Arch.ARM64])
def test_the_guest_never_boots_from_the_network(arch: Arch) -> None:
    """The disk is the only boot option (strict boot order) and the NIC has no option ROM, so a
    firmware that cannot boot the disk falls through to nothing that wanders (tests/
    test_boot_gate.py sees it on a real OVMF boot)."""
    argv = qemu_argv(_plan(arch))
    assert argv[argv.index("-boot") + 1] == "strict=on"
    devices = [argv[i + 1] for i, a in enumerate(argv) if a == "-device"]
    [nic] = [d for d in devices if d.startswith("virtio-net-pci")]
    assert "romfile=" in nic.split(",")
    [disk] = [d for d in devices if d.startswith("virtio-blk-pci")]
    assert "bootindex=0" in disk.split(",") and "drive=disk0" in disk.split(",")
    assert sum("bootindex=" in d for d in devices) == 1
    drives = [argv[i + 1] for i, a in enumerate(argv) if a == "-drive"]
    assert "if=none,id=disk0,format=qcow2,file=/w/d.qcow2" in drives


# What OVMF printed for a GPT disk with an empty ESP (Debian 12's OVMF_CODE_4M.fd, before and
# after the NIC lost its option ROM); AAVMF prints the same BdsDxe lines.
OVMF_NOTHING = (
    'BdsDxe: failed to load Boot0001 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x2,0x0): Not Found\n'
)


@pytest.mark.parametrize(
    "after",
    [
        ">>Start PXE over IPv4.\n",
        ">>Start HTTP Boot over IPv4.....\n",
        'BdsDxe: starting Boot0002 "EFI Internal Shell" from Fv(7CB8)/FvFile(7C04)\n',
        "BdsDxe: No bootable option or device was found.\n",
    ],
)
def test_the_firmware_saying_it_found_nothing_ends_the_wait(after: str) -> None:
    found = firmware.nothing_to_boot("\x1b[=3h" + OVMF_NOTHING + after, "OVMF")
    assert found is not None and found.startswith(firmware.NOTHING_TO_BOOT)
    assert 'OVMF: Boot0001 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x2,0x0): Not Found' in found


def test_the_firmware_still_trying_is_not_a_failure() -> None:
    # one option failed, nothing fallen through to yet: it may still load the next option
    assert firmware.nothing_to_boot(OVMF_NOTHING, "OVMF") is None
    # a disk that boots: no failed load at all
    booted = 'BdsDxe: loading Boot0001 "UEFI Misc Device" from PciRoot(0x0)\nLinux version 6.1\n'
    assert firmware.nothing_to_boot(booted, "OVMF") is None
    # a fall-through line before any failed load (the shell started on purpose) is not it
    assert firmware.nothing_to_boot("UEFI Interactive Shell v2.2\n", "OVMF") is None


# What QEMU 7.2 logged when nested KVM could not run OVMF's first instructions on these
# machines (the vCPU stops, QEMU keeps running), shortened: the register dump goes on.
KVM_STOPPED = """KVM internal error. Suberror: 1
extra data[0]: 0x0000000000000001
extra data[1]: 0xed742dd9e3db9b0f
emulation failure
EAX=00000000 EBX=00807000 ECX=00000001 EDX=00807154
Code=66 90 90 cd 03 c3 66 90 66 90 66 90 66 90 66 90 66 90 90 53 <9b> db e3 d9 2d 74 ed fc ff
"""


def test_a_guest_kvm_stopped_is_seen_in_qemu_s_log(tmp_path: Path) -> None:
    """The boot retries under TCG at once when KVM stopped the guest (it waited out ssh's 180 s
    budget, then failed the boot)."""
    log = tmp_path / "qemu.log"
    log.write_text("")
    assert guest._kvm_failure(log) is None
    log.write_text(KVM_STOPPED)
    assert guest._kvm_failure(log) == "KVM internal error. Suberror: 1, emulation failure"
    assert guest._kvm_failure(tmp_path / "none.log") is None
