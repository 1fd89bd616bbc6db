"""What every Lima template for these images says besides its images, and why: one place, used by
the template `publish` writes and by any other writer of a template for a release (e.g. one made
from a pulled release). Checked against lima-vm/lima at commit
183a60d721bf9cd969f366301bf90710b8c6a28e (paths below are in that repository).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.core import mediatypes as mt
from pipeline.core.errors import PipelineError
from pipeline.model.release import Release

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


@dataclass(frozen=True)
class Settings:
    """What a release's own Lima template needs beyond its images: the release manifest's `lima:`
    (pipeline/model/release.py), carried in the release as index and manifest annotations so that a
    consumer of the published release (`lima REF`, `boot REF`) uses the same settings."""

    minimum_lima_version: str
    guest_install_prefix: str

    @classmethod
    def of(cls, release: Release) -> Settings:
        return cls(release.minimum_lima_version, release.guest_install_prefix)

    def annotations(self) -> dict[str, str]:
        return {
            mt.ANN_LIMA_MINIMUM_VERSION: self.minimum_lima_version,
            mt.ANN_LIMA_GUEST_INSTALL_PREFIX: self.guest_install_prefix,
        }


# what a release manifest without `lima:` gets (its schema's defaults)
DEFAULTS = Settings(Release.minimum_lima_version, Release.guest_install_prefix)

# as the release manifest's schema has them (pipeline/model/schemas/release-manifest.schema.json)
_VERSION = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+")
_PREFIX = re.compile(r"/[^\x00-\x1f\x7f]*")


def from_annotations(annotations: dict[str, str], where: str) -> Settings | None:
    """The settings a published manifest carries; None for a release from before they were
    carried (neither key). One key without the other, or a value of the wrong shape, is remote
    input gone wrong: one error naming the key."""
    version = annotations.get(mt.ANN_LIMA_MINIMUM_VERSION)
    prefix = annotations.get(mt.ANN_LIMA_GUEST_INSTALL_PREFIX)
    if version is None and prefix is None:
        return None
    if version is None or not _VERSION.fullmatch(version):
        raise PipelineError(
            f"{where}: annotation {mt.ANN_LIMA_MINIMUM_VERSION} is {str(version)[:80]!r}, "
            "not a Lima version (X.Y.Z)"
        )
    if prefix is None or not _PREFIX.fullmatch(prefix):
        raise PipelineError(
            f"{where}: annotation {mt.ANN_LIMA_GUEST_INSTALL_PREFIX} is {str(prefix)[:80]!r}, "
            "not an absolute path"
        )
    return Settings(version, prefix)


def of_release(settings: Settings | None, where: str, say: Callable[[str], None]) -> Settings:
    """A consumer's settings: the release's own, or (a release from before they were carried)
    the defaults a release manifest gets, said once."""
    if settings is not None:
        return settings
    say(
        f"{where} carries no Lima settings ({mt.ANN_LIMA_MINIMUM_VERSION}, "
        f"{mt.ANN_LIMA_GUEST_INSTALL_PREFIX}: published before they were): using the defaults, "
        f"minimumLimaVersion {DEFAULTS.minimum_lima_version}, guestInstallPrefix "
        f"{DEFAULTS.guest_install_prefix}"
    )
    return DEFAULTS


def template(images: list[dict[str, Any]], settings: Settings) -> dict[str, Any]:
    """A whole Lima template for IMAGES (`location`, `arch`, `digest` each), in Lima's key order."""
    return {
        "minimumLimaVersion": settings.minimum_lima_version,
        "images": images,
        "guestInstallPrefix": settings.guest_install_prefix,
        "mountTypesUnsupported": list(MOUNT_TYPES_UNSUPPORTED),
        "mounts": [dict(m) for m in MOUNTS],
        "containerd": dict(CONTAINERD),
    }


def header(*lines: str) -> str:
    """A template header: the caller's lines (what, where from), then NOTES."""
    return "\n".join((*lines, *NOTES))
