"""The QEMU machine a disk boots in: firmware, accelerator and devices, planned as data."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.arch import Arch


@dataclass(frozen=True)
class Firmware:
    name: str  # OVMF, AAVMF
    code: Path
    vars: Path  # the template: each boot gets a writable copy


@dataclass(frozen=True)
class Machine:
    """What differs per guest architecture."""

    qemu: str
    firmware: Firmware
    machine: str
    tcg_cpu: str
    kvm_cpu: str
    ssh_budget_tcg: float  # seconds from start to an ssh login, software emulation
    ssh_budget_kvm: float


MACHINES: dict[Arch, Machine] = {
    Arch.AMD64: Machine(
        qemu="qemu-system-x86_64",
        firmware=Firmware(
            "OVMF",
            Path("/usr/share/OVMF/OVMF_CODE_4M.fd"),
            Path("/usr/share/OVMF/OVMF_VARS_4M.fd"),
        ),
        machine="q35",
        tcg_cpu="max",
        kvm_cpu="max",  # -cpu host aborted on an MSR on these machines
        ssh_budget_tcg=900.0,
        ssh_budget_kvm=180.0,
    ),
    Arch.ARM64: Machine(
        qemu="qemu-system-aarch64",
        firmware=Firmware(
            "AAVMF",
            Path("/usr/share/AAVMF/AAVMF_CODE.fd"),
            Path("/usr/share/AAVMF/AAVMF_VARS.fd"),
        ),
        machine="virt",
        tcg_cpu="cortex-a72",  # "max" emulates pointer authentication, much slower under TCG
        kvm_cpu="host",
        ssh_budget_tcg=2400.0,
        ssh_budget_kvm=180.0,
    ),
}

MEMORY_MIB = 2048
CPUS = 2
# What Lima gives a VM by default (`disk: 100GiB`): the root filesystem should grow to it.
DISK_BYTES = 100 * 1024**3
MAC = "52:55:55:12:34:56"  # Lima's user-mode NIC prefix 52:55:55


def kvm_usable(arch: Arch, host: Arch) -> bool:
    """KVM is worth trying: same architecture and a /dev/kvm this process may open."""
    return arch == host and os.access("/dev/kvm", os.R_OK | os.W_OK)


@dataclass(frozen=True)
class BootPlan:
    arch: Arch
    accel: str  # "kvm" or "tcg"
    disk: Path  # qcow2 overlay over the published disk
    disk_bytes: int  # its virtual size: DISK_BYTES, or the disk's own if larger
    seed: Path  # cidata ISO
    vars: Path  # this boot's copy of the firmware variables
    ssh_port: int
    console: Path  # serial console log

    @property
    def machine(self) -> Machine:
        return MACHINES[self.arch]

    @property
    def ssh_budget(self) -> float:
        m = self.machine
        return m.ssh_budget_kvm if self.accel == "kvm" else m.ssh_budget_tcg


def qemu_argv(plan: BootPlan) -> list[str]:
    """The QEMU command line: UEFI pflash, the disk and seed on virtio, ssh on 127.0.0.1 only."""
    m = plan.machine
    cpu = m.kvm_cpu if plan.accel == "kvm" else m.tcg_cpu
    return [
        m.qemu,
        "-nodefaults",
        "-display",
        "none",
        "-machine",
        f"{m.machine},accel={plan.accel}",
        "-cpu",
        cpu,
        "-m",
        str(MEMORY_MIB),
        "-smp",
        str(CPUS),
        "-drive",
        f"if=pflash,format=raw,unit=0,readonly=on,file={m.firmware.code}",
        "-drive",
        f"if=pflash,format=raw,unit=1,file={plan.vars}",
        # the disk is the only boot option (strict: the firmware drops every other one, so a
        # disk it cannot boot never wanders into network boot), and the NIC has no option ROM
        "-boot",
        "strict=on",
        "-drive",
        f"if=none,id=disk0,format=qcow2,file={plan.disk}",
        "-device",
        "virtio-blk-pci,drive=disk0,bootindex=0",
        "-drive",
        f"if=virtio,format=raw,readonly=on,file={plan.seed}",
        "-netdev",
        f"user,id=net0,hostfwd=tcp:127.0.0.1:{plan.ssh_port}-:22",
        "-device",
        f"virtio-net-pci,netdev=net0,mac={MAC},romfile=",
        "-fw_cfg",
        "name=opt/org.tianocore/IPv4PXESupport,string=n",
        "-fw_cfg",
        "name=opt/org.tianocore/IPv6PXESupport,string=n",
        "-device",
        "virtio-rng-pci",
        "-serial",
        f"file:{plan.console}",
    ]
