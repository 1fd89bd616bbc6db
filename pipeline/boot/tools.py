"""Host programs the boot check needs, each with the Debian package that provides it."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from pipeline.boot.machine import MACHINES
from pipeline.core.arch import Arch
from pipeline.core.errors import PipelineError

SFTP_SERVER = "/usr/lib/openssh/sftp-server"

# program (or absolute path) -> Debian package
PACKAGES: dict[str, str] = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-system-aarch64": "qemu-system-arm",
    "qemu-img": "qemu-utils",
    "genisoimage": "genisoimage",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "/usr/lib/openssh/sftp-server": "openssh-sftp-server",
    "/usr/share/OVMF/OVMF_CODE_4M.fd": "ovmf",
    "/usr/share/OVMF/OVMF_VARS_4M.fd": "ovmf",
    "/usr/share/AAVMF/AAVMF_CODE.fd": "qemu-efi-aarch64",
    "/usr/share/AAVMF/AAVMF_VARS.fd": "qemu-efi-aarch64",
}


def missing(needed: Iterable[str]) -> list[str]:
    """The programs and files of NEEDED this host lacks."""
    return [
        name
        for name in needed
        if not (Path(name).exists() if name.startswith("/") else shutil.which(name))
    ]


def require(needed: Iterable[str]) -> None:
    """One clear error naming what is missing and the Debian packages that provide it."""
    absent = missing(needed)
    if absent:
        packages = sorted({PACKAGES.get(name, name) for name in absent})
        raise PipelineError(
            f"the boot check needs {', '.join(absent)}, not found on this host",
            hint=f"install them: apt-get install -y {' '.join(packages)}",
        )


def require_for(arch: Arch) -> None:
    """Everything booting ARCH's disk needs on this host, or one error naming the packages."""
    m = MACHINES[arch]
    needed = [m.qemu, "qemu-img", "genisoimage", "ssh", "ssh-keygen", SFTP_SERVER]
    require([*needed, str(m.firmware.code), str(m.firmware.vars)])
