"""Pytest plugin: fake bootc bases that really boot, for the boot-stage tests.

The real quay.io/fedora/fedora-bootc and centos-bootc bases cannot be pulled here. These stand-ins
are Debian bookworm trees (debootstrap; arm64 through qemu-user-static) with what a Lima guest
needs and a real bootc base has: a kernel and initrd, systemd (with pam_systemd and the user's
D-Bus), openssh-server, cloud-init, sshfs, sudo, uidmap, rsync, fuse3, iptables, systemd-boot,
plus what ENVIRONMENT.md's "Booting an image" found Debian needs for cloud-init to finish cleanly
(locales, python3-cffi-backend, networkd).
On top, per flavour, the bootc bits of tests/standins/fakebase: os-release, the stub `dnf` (which
records the real packages as installed, so `dnf install` of them changes nothing), the stub
`bootc`, the flavour's default root filesystem.

Fixture `bootable_base(podman, binfmt_arm64)` -> a function (arch) -> image name of the fedora
flavour for that architecture; built once and cached (rootfs tarball under the test root's cache,
image in the test store while its source hash matches).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.images import (
    FAKEBASE_SOURCES,
    FLAVOURS,
    SOURCE_LABEL,
    Flavour,
    _write,
    debootstrap_tarball,
)
from tests.support.podman import PodmanService

BUILD_TIMEOUT = 1800.0
KERNELS = {"amd64": "linux-image-cloud-amd64", "arm64": "linux-image-cloud-arm64"}
PACKAGES = (
    "systemd,systemd-sysv,udev,dbus,libnss-myhostname,kmod,initramfs-tools,"
    "openssh-server,cloud-init,python3-cffi-backend,locales,cloud-guest-utils,"
    "sshfs,sudo,uidmap,rsync,fuse3,iptables,iproute2,tar,systemd-boot-efi,"
    # pam_systemd starts the user's systemd manager (linger, /run/user/UID), which Lima's user
    # containerd waits for; Fedora ships it in systemd itself, Debian in its own packages
    "libpam-systemd,dbus-user-session,"
    # what bootc needs beside it in a real base (bootc.spec: Requires skopeo) and Fedora ships
    # (curl): the bootc-origin check resolves the origin with them; debootstrap does not resolve
    # skopeo's virtual dependency container-network-stack (ENVIRONMENT.md)
    "skopeo,containernetworking-plugins,curl"
)
# Packages the stub dnf records as installed: what the real bases plus the Containerfiles' dnf
# lines provide. Their files are the real Debian ones, which dnf must not overwrite.
INSTALLED = {
    "openssh-server": ["/usr/sbin/sshd"],
    "openssh-clients": ["/usr/bin/ssh"],
    "cloud-init": ["/usr/bin/cloud-init"],
    "fuse-sshfs": ["/usr/bin/sshfs"],
    "sudo": ["/usr/bin/sudo"],
    "shadow-utils": ["/usr/bin/newuidmap", "/usr/bin/newgidmap", "/usr/sbin/useradd"],
    "rsync": ["/usr/bin/rsync"],
    "tar": ["/usr/bin/tar"],
    "iptables": ["/usr/sbin/iptables"],
    "fuse3": ["/usr/bin/fusermount3", "/usr/sbin/mount.fuse3"],
    "fuse": ["/usr/bin/fusermount"],
    "iptables-nft": ["/usr/sbin/iptables-nft", "/usr/sbin/iptables"],
}
NETWORK = "[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n"
# Run in the flavour's image build: what a real bootc base has and a plain Debian tree lacks.
# /usr/local is a link to /var/usrlocal, as in fedora-bootc and centos-bootc.
# sshd.service becomes a unit of its own (Debian ships it as an alias of ssh.service, which
# `systemctl enable sshd.service` in setup.sh refuses), as on Fedora and CentOS.
CUSTOMIZE = """set -e
sed '/^Alias=/d' /lib/systemd/system/ssh.service > /lib/systemd/system/sshd.service
systemctl disable ssh.service
rm -f /etc/systemd/system/sshd.service
systemctl enable systemd-networkd.service
for u in cloud-init-local cloud-init cloud-config cloud-final; do systemctl enable $u.service; done
sed -i 's/^hosts:.*/hosts: files myhostname dns/' /etc/nsswitch.conf
echo 'en_US.UTF-8 UTF-8' > /etc/locale.gen && locale-gen
echo LANG=en_US.UTF-8 > /etc/default/locale  # else cloud-init's locale module regenerates it
ln -sf fusermount3 /usr/bin/fusermount
rm -rf /usr/local && ln -s ../var/usrlocal /usr/local
: > /etc/machine-id
rm -f /etc/ssh/ssh_host_*
"""


def rootfs_tarball(arch: str) -> Path:
    """A bootable Debian tree for ARCH as a .tar.zst (debootstrap once, then cached)."""
    packages = [*PACKAGES.split(","), KERNELS[arch]]
    return debootstrap_tarball("bootable-base", f"rootfs-{arch}", packages, arch=arch)


def _flavour_context(directory: Path, flavour: Flavour) -> str:
    """A build context adding FLAVOUR's bootc bits to the Debian tree; returns its Containerfile."""
    for stub in ("dnf", "bootc"):
        shutil.copyfile(FAKEBASE_SOURCES / stub, directory / stub)
    _write(directory / "os-release", flavour.os_release)
    _write(directory / "20-wired.network", NETWORK)
    _write(directory / "customize.sh", CUSTOMIZE)
    _write(
        directory / "repo",
        f"[{flavour.name}]\nname={flavour.name} (fake: no repositories in tests)\nenabled=1\n",
    )
    db = directory / "installed"
    for package, files in INSTALLED.items():
        _write(db / package, "".join(f"{f}\n" for f in files))
    lines = [
        "ARG BASE",
        "FROM ${BASE}",
        "COPY --chmod=0755 dnf bootc /usr/bin/",
        "COPY os-release /usr/lib/os-release",
        "COPY 20-wired.network /etc/systemd/network/20-wired.network",
        "COPY customize.sh /tmp/customize.sh",
        "RUN sh /tmp/customize.sh && rm /tmp/customize.sh",
        f"COPY repo /etc/yum.repos.d/{flavour.repo_file}.repo",
        "COPY installed/ /usr/lib/fake-dnf/installed/",
        f"RUN echo {flavour.name} > /usr/lib/fake-dnf/flavour",
    ]
    if flavour.default_rootfs:
        toml = f'[install.filesystem.root]\\ntype = "{flavour.default_rootfs}"\\n'
        lines.append(
            f"RUN mkdir -p /usr/lib/bootc/install && printf '{toml}' "
            "> /usr/lib/bootc/install/00-rootfs.toml"
        )
    lines += ["LABEL containers.bootc=1", "LABEL ostree.bootable=1", 'CMD ["/bin/sh"]']
    return "\n".join(lines) + "\n"


def _source_hash(tarball: Path, flavour: Flavour) -> str:
    h = hashlib.sha256(tarball.name.encode() + Path(__file__).read_bytes())
    for stub in ("dnf", "bootc"):
        h.update((FAKEBASE_SOURCES / stub).read_bytes())
    h.update(flavour.name.encode())
    return h.hexdigest()


def ensure_bootable_base(podman: PodmanService, arch: str, flavour: str = "fedora") -> str:
    """The bootable fake base of FLAVOUR for ARCH in the test store (built unless current)."""
    spec = FLAVOURS[flavour]
    name = f"localhost/fake-bootable/{flavour}-bootc:{arch}"
    tarball = rootfs_tarball(arch)
    source_hash = _source_hash(tarball, spec)
    if podman.image_label(name, SOURCE_LABEL) == source_hash:
        return name
    rootfs = f"localhost/fake-bootable/debian-rootfs:{tarball.name.split('.')[0]}"
    if not podman.image_exists(rootfs):
        podman.cli("import", "--quiet", "--arch", arch, "--os", "linux", str(tarball), rootfs)
    with tempfile.TemporaryDirectory(prefix="bootable-base-", dir="/var/tmp") as tmp:
        context = Path(tmp)
        (context / "Containerfile").write_text(_flavour_context(context, spec))
        build = ["build", "--quiet", "--pull=never", "--network=none", "--layers=false"]
        build += ["--platform", f"linux/{arch}", "--build-arg", f"BASE={rootfs}"]
        build += ["--label", f"{SOURCE_LABEL}={source_hash}", "--tag", name, str(context)]
        podman.cli(*build, timeout=BUILD_TIMEOUT)
    return name


@pytest.fixture(scope="session")
def bootable_base(podman: PodmanService, binfmt_arm64: Path) -> Callable[[str], str]:
    """arch -> a fake fedora-bootc base for ARCH that boots (built on first use per arch)."""
    built: dict[str, str] = {}

    def get(arch: str) -> str:
        if arch not in built:
            built[arch] = ensure_bootable_base(podman, arch)
        return built[arch]

    return get
