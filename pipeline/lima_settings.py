"""What every Lima template for these images says besides its images, and why: one place, used by
the template `publish` writes and by any other writer of a template for a release (e.g. one made
from a pulled release). Checked against lima-vm/lima at commit
183a60d721bf9cd969f366301bf90710b8c6a28e (paths below are in that repository).
"""

from __future__ import annotations

from typing import Any

# 9p: CentOS/RHEL-family kernels are built without it (no CONFIG_NET_9P_VIRTIO), and Fedora kernels
# 6.9-6.11 shipped a broken 9p (Lima's templates/_images/fedora-41.yaml). Saying it is unsupported,
# as Lima's own fedora and centos-stream templates do, lets Lima choose: QEMU falls back from its
# 9p default to reverse-sshfs (pkg/driver/qemu/qemu_driver.go), vz keeps its virtiofs default.
# Forcing `mountType: reverse-sshfs` would throw virtiofs away on macOS.
MOUNT_TYPES_UNSUPPORTED: tuple[str, ...] = ("9p",)

# containerd off. Lima turns user containerd on by default: boot.Linux/20-rootless-base.sh sets up
# subuid/subgid ranges, Delegate=yes and linger, then 40-install-containerd.sh unpacks nerdctl-full
# (hundreds of MB, from the cidata ISO) under guestInstallPrefix and runs
# containerd-rootless-setuptool.sh as the user. What that needs of the guest is tried at every boot
# check (`rootless-containerd`, recorded, not fatal: pipeline/boot/checks.py): the user's systemd
# manager started by linger, memory and pids delegated, a user namespace mapped through
# newuidmap/newgidmap, overlayfs in a user namespace, programs unpacked under guestInstallPrefix
# running from PATH. No write to /usr is needed: 30-install-packages.sh finds every tool it would
# dnf-install, and /usr/bin/fusermount exists. What no boot here shows is nerdctl-full itself (a
# GitHub release) under the real bases' SELinux policy, so the default stays off, as
# vrothberg/lima-fedora-bootc (fedora-bootc.yaml) has it; the bases ship Podman.
# `limactl start --containerd=user` turns it on for one instance.
CONTAINERD: dict[str, bool] = {"system": False, "user": False}

# The host's home (read-only, Lima's default) and a writable scratch directory.
MOUNTS: tuple[dict[str, Any], ...] = (
    {"location": "~"},
    {"location": "/tmp/lima", "writable": True},
)

# Lines for the template's header: what a user of the template must know.
NOTES: tuple[str, ...] = (
    "The host needs the `zstd` command: Lima decompresses .zst images with it",
    "(lima pkg/downloader/downloader.go; only gzip has a built-in fallback).",
    'mountTypesUnsupported: ["9p"]: CentOS/RHEL kernels have no 9p and Fedora 6.9-6.11 kernels a',
    "broken one; QEMU then mounts with reverse-sshfs (sshfs is in the image), vz keeps virtiofs.",
    "containerd is off: nerdctl-full itself is unproven in these images, which ship Podman; the",
    "guest meets what it needs (the release report's rootless-containerd boot check), so",
    "`limactl start --containerd=user` turns it on for one instance.",
    "guestInstallPrefix is writable: /usr is read-only; the image links /usr/local there.",
)


def template(
    images: list[dict[str, Any]], *, minimum_lima_version: str, guest_install_prefix: str
) -> dict[str, Any]:
    """A whole Lima template for IMAGES (`location`, `arch`, `digest` each), in Lima's key order."""
    return {
        "minimumLimaVersion": minimum_lima_version,
        "images": images,
        "guestInstallPrefix": guest_install_prefix,
        "mountTypesUnsupported": list(MOUNT_TYPES_UNSUPPORTED),
        "mounts": [dict(m) for m in MOUNTS],
        "containerd": dict(CONTAINERD),
    }


def header(*lines: str) -> str:
    """A template header: the caller's lines (what, where from), then NOTES."""
    return "\n".join((*lines, *NOTES))
