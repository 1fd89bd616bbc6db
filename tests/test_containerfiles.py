"""The shipped Containerfiles and containerfiles/lima/setup.sh on the fake bases.

Every variant's Containerfile builds (amd64, through the Podman service) on the fake base of its
distribution and release, and comes out with every command Lima's boot scripts look for; a
missing one fails the build with a message naming it. The fake bases stand in for
quay.io/fedora/fedora-bootc and quay.io/centos-bootc/centos-bootc (tests/support/images.py); the
release (40/42, 9/10) is their /etc/os-release VERSION_ID, which the stub dnf reads.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.model import release
from tests.support.images import FakeBases
from tests.support.podman import PodmanService

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent
CONTEXT = ROOT / "containerfiles"
SETUP = CONTEXT / "lima" / "setup.sh"
VARIANTS = sorted(p.stem for p in (ROOT / "manifests").glob("*.yaml"))
_BASE = re.compile(r"^quay\.io/(fedora/fedora|centos-bootc/centos)-bootc:(stream)?(\d+)$")

# Every command setup.sh requires, as it names them (the list in setup.sh is the contract; this
# copy is the test's independent statement of it, read from lima-vm/lima's boot scripts).
LIMA_COMMANDS = (
    "/usr/sbin/sshd", "cloud-init", "sudo", "sshfs", "mount.fuse3", "fusermount3",
    "/usr/bin/fusermount", "newuidmap", "newgidmap", "chpasswd", "rsync", "tar",
    "/usr/sbin/iptables", "systemctl", "loginctl", "modprobe", "bash",
)  # fmt: skip


@dataclass(frozen=True)
class Target:
    """What a variant's base is: the fake flavour and the release its os-release claims."""

    variant: str
    flavour: str
    release: int
    containerfile: Path


def target(variant: str) -> Target:
    r = release.load(ROOT / "manifests" / f"{variant}.yaml")
    match = _BASE.match(r.base)
    assert match, f"{variant}: base {r.base} is neither fedora-bootc nor centos-bootc"
    flavour = "fedora" if match.group(1).startswith("fedora") else "centos"
    return Target(variant, flavour, int(match.group(3)), r.containerfile)


def _build(
    podman: PodmanService, containerfile: Path, base: str, tag: str
) -> subprocess.CompletedProcess[bytes]:
    return podman.cli(
        "build", "--platform", "linux/amd64", "--build-arg", f"BASE={base}",
        "-f", str(containerfile), "-t", tag, str(CONTEXT), check=False,
    )  # fmt: skip


def _run(podman: PodmanService, image: str, script: str) -> str:
    proc = podman.cli("run", "--rm", "--network", "none", image, "sh", "-c", script, check=False)
    assert proc.returncode == 0, f"{script}: {proc.stderr.decode(errors='replace')}"
    return proc.stdout.decode()


@pytest.fixture(scope="module")
def release_bases(podman: PodmanService, fake_bases: FakeBases) -> Iterator[dict[str, str]]:
    """variant -> a fake base for its release: the flavour's amd64 base, os-release rewritten."""
    made: dict[str, str] = {}
    for variant in VARIANTS:
        t = target(variant)
        base = fake_bases.instance(t.flavour, "amd64")
        tag = f"localhost/test/fake-{t.flavour}-bootc:{t.release}"
        script = (
            f"sed -i -e 's/^VERSION_ID=.*/VERSION_ID={t.release}/' "
            f"-e 's/^VERSION=\"[0-9]*/VERSION=\"{t.release}/' /usr/lib/os-release /etc/os-release"
        )
        podman.cli("rmi", "--force", tag, check=False)
        podman.cli(
            "build", "--platform", "linux/amd64", "-t", tag, "-f", "-", str(CONTEXT),
            input=f"FROM {base}\nRUN {script}\n".encode(),
        )  # fmt: skip
        made[variant] = tag
    yield made
    for tag in made.values():
        podman.cli("rmi", "--force", tag, check=False)


@pytest.fixture(scope="module")
def built(podman: PodmanService, release_bases: dict[str, str]) -> Iterator[dict[str, str]]:
    """variant -> its image, built from the shipped Containerfile on its release's fake base."""
    images: dict[str, str] = {}
    for variant in VARIANTS:
        tag = f"localhost/test/lima-ready:{variant}"
        proc = _build(podman, target(variant).containerfile, release_bases[variant], tag)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-4000:]
        images[variant] = tag
    yield images
    for tag in images.values():
        podman.cli("rmi", "--force", tag, check=False)


def test_the_shipped_manifests_cover_both_releases_of_both_distributions() -> None:
    assert {(t.flavour, t.release) for t in map(target, VARIANTS)} == {
        ("fedora", 40),
        ("fedora", 42),
        ("centos", 9),
        ("centos", 10),
    }


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_builds_lima_ready(
    podman: PodmanService, built: dict[str, str], variant: str
) -> None:
    t = target(variant)
    image = built[variant]
    checks = " && ".join(
        f"test -e {c}" if c.startswith("/") else f"command -v {c} >/dev/null" for c in LIMA_COMMANDS
    )
    _run(podman, image, checks)
    installed = set(_run(podman, image, "ls /usr/lib/fake-dnf/installed").split())
    assert {"cloud-init", "fuse-sshfs", "fuse3", "rsync", "tar", "iptables-nft"} <= installed
    assert ("epel-release" in installed) == (t.flavour == "centos")
    if t.flavour == "centos":
        repo = _run(podman, image, "cat /etc/yum.repos.d/epel.repo")
        assert f"Enterprise Linux {t.release} " in repo
    # Lima's fusermount workaround is made at build time, not at boot on a read-only /usr.
    assert _run(podman, image, "readlink /usr/bin/fusermount").strip() == "fusermount3"
    assert _run(podman, image, "readlink /usr/local").strip() == "../var/usrlocal"
    # cloud-init's network stage is enabled under the name this release's cloud-init uses.
    wants = set(_run(podman, image, "ls /etc/systemd/system/*.wants/").split())
    network = "cloud-init-network.service" if t.release == 10 else "cloud-init.service"
    assert {"sshd.service", "cloud-init-local.service", network, "cloud-final.service"} <= wants


def _without(text: str, package: str) -> str:
    """The Containerfile with PACKAGE dropped from its package install (asserting it was there)."""
    head, install, tail = text.partition("dnf -y install openssh-server")
    packages, clean, rest = tail.partition("&& dnf clean all")
    changed = re.sub(rf"\s{re.escape(package)}(?=\s)", " ", packages, count=1)
    assert install and clean and changed != packages, f"{package} is not in the install"
    return head + install + changed + clean + rest


def _with_before_setup(text: str, command: str) -> str:
    """The Containerfile with `RUN COMMAND` just before setup.sh runs."""
    anchor = "RUN sh /usr/share/bootc-lima/setup.sh"
    assert anchor in text
    return text.replace(anchor, f"RUN {command}\n{anchor}")


@pytest.mark.parametrize(
    ("variant", "change", "named"),
    [
        ("fedora-42", ("drop", "rsync"), "rsync is missing (package rsync)"),
        ("centos-stream10", ("drop", "iptables-nft"), "/usr/sbin/iptables is missing"),
        ("fedora-40", ("drop", "fuse3"), "mount.fuse3 is missing (package fuse3)"),
        ("centos-stream9", ("drop", "tar"), None),  # the fake base has busybox tar: no failure
        ("fedora-42", ("run", "rm /usr/bin/loginctl"), "loginctl is missing (package systemd)"),
        ("centos-stream10", ("run", "rm /usr/bin/sshfs"), "sshfs is missing (package fuse-sshfs)"),
        ("fedora-40", ("run", "rm /usr/sbin/chpasswd"), "chpasswd is missing"),
    ],
)
def test_a_missing_lima_command_fails_the_build_naming_it(
    podman: PodmanService,
    release_bases: dict[str, str],
    tmp_path: Path,
    variant: str,
    change: tuple[str, str],
    named: str | None,
) -> None:
    text = target(variant).containerfile.read_text()
    how, what = change
    text = _without(text, what) if how == "drop" else _with_before_setup(text, what)
    containerfile = tmp_path / "Containerfile"
    containerfile.write_text(text)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    tag = f"localhost/test/not-lima-ready:{digest}"
    proc = _build(podman, containerfile, release_bases[variant], tag)
    podman.cli("rmi", "--force", tag, check=False)
    output = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
    if named is None:
        assert proc.returncode == 0, output[-3000:]
        return
    assert proc.returncode != 0, f"the build passed without {what}"
    assert f"setup.sh: {named}" in output, output[-3000:]
    assert "setup.sh: not Lima-ready, missing:" in output


def test_setup_sh_requires_what_this_test_lists() -> None:
    """setup.sh's `need` lines and LIMA_COMMANDS name the same commands (neither drifts)."""
    needed = re.findall(r"^need (\S+) ", SETUP.read_text(), flags=re.MULTILINE)
    assert sorted(needed) == sorted(LIMA_COMMANDS)
