"""scripts/setup-runner.sh: what a nightly job on a GitHub-hosted ubuntu-24.04(-arm) runner
installs, and only that.

Ubuntu's archive cannot be reached from here, so what is checked is what can be: the script names
no package that conflicts with the runners' Docker (docker-ce with containerd.io, per
actions/runner-images#8107; docker.io needs containerd, which containerd.io conflicts with, as
does runc: eunomia-bpf/eunomia-bpf#302, docker-practice/actions-setup-docker#28), none of the
test tool chain, every command the product runs in a publish job, and every name exists in
Debian 12's archive (`apt-cache show` here). That Ubuntu 24.04 uses the same names is the
documented fact the README's "Nightlies" section cites, not something this test shows."""

from __future__ import annotations

import subprocess

import pytest

from pipeline.boot.machine import MACHINES
from pipeline.core.arch import Arch
from tests.factories import ROOT
from tests.support import commands

SCRIPT = ROOT / "scripts" / "setup-runner.sh"
# the runners' Docker is docker-ce + containerd.io: these conflict with it or replace it
CONFLICTING = {"docker.io", "containerd", "runc", "docker-ce", "containerd.io", "docker-compose"}
# what only the test suite runs (scripts/setup-debian.sh installs them for it)
TEST_ONLY = {"docker-registry", "apache2-utils", "debootstrap", "busybox-static",
             "qemu-user-static", "binfmt-support", "cloud-image-utils", "dosfstools", "mtools",
             "nodejs", "npm", "fdisk", "e2fsprogs", "openssl", "curl", "zstd", "time",
             "podman", "uidmap", "fuse-overlayfs"}  # fmt: skip


def _arrays() -> dict[str, list[str]]:
    return commands.bash_arrays(SCRIPT.read_text())


def _every_package() -> set[str]:
    return {p for name in ("join", "publish", "amd64", "arm64") for p in _arrays()[name]}


def test_no_conflict_with_the_runners_docker_and_no_test_tool_chain() -> None:
    arrays = _arrays()
    assert set(arrays) >= {"join", "publish", "amd64", "arm64"}
    assert _every_package() & CONFLICTING == set()
    assert _every_package() & TEST_ONLY == set()
    assert set(arrays["join"]) <= set(arrays["publish"])  # the join's Python, and more
    assert set(arrays["join"]) == {"python3", "python3-venv", "ca-certificates"}


@pytest.mark.parametrize("arch", list(Arch))
def test_a_publish_runner_gets_every_command_the_product_runs(arch: Arch) -> None:
    """The product's own commands (read from pipeline/ as tests/test_setup_commands.py reads
    them), mapped to their packages with dpkg -S here: each must be named for ARCH's runner. The
    other architecture's QEMU and firmware are not (a runner boots its own architecture only);
    limactl is not (only `lima --start` on a consumer's machine runs it), nor cosign (only the
    join signs, keyless, with the cosign v2 its `make cosign-v2` step installs), nor syft: without
    it a publish makes no SBOM and says so (no nightly step installs syft today)."""
    other = MACHINES[next(a for a in Arch if a != arch)]
    skipped = {other.qemu, str(other.firmware.code), str(other.firmware.vars), "limactl"}
    skipped |= {"cosign", "syft"}
    uses = [u for u in commands.scan() if u.where.startswith("pipeline/")]
    assert {"skopeo", "git", MACHINES[arch].qemu} <= {u.name for u in uses}
    uses = [u for u in uses if u.name not in skipped]
    named = set(_arrays()["publish"]) | set(_arrays()[arch.value])
    assert commands.gaps(uses, named, set()) == []
    # and the check is a real one: without the architecture's own packages it fails
    assert commands.gaps(uses, set(_arrays()["publish"]), set()) != []


def test_every_name_is_a_debian_12_package() -> None:
    packages = sorted(_every_package())
    proc = subprocess.run(
        ["apt-cache", "show", "--no-all-versions", *packages],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    shown = {
        line.split(": ", 1)[1] for line in proc.stdout.splitlines() if line.startswith("Package: ")
    }
    assert shown == set(packages), (sorted(set(packages) - shown), proc.stderr[-500:])


@pytest.mark.parametrize("argv", [[], ["nope"]])
def test_an_unknown_role_is_refused_before_anything_is_installed(argv: list[str]) -> None:
    proc = subprocess.run(
        ["bash", str(SCRIPT), *argv], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: setup-runner.sh publish|join")


def test_make_setup_runner_runs_the_script_with_its_role(tmp_path: object) -> None:
    proc = subprocess.run(
        ["make", "--no-print-directory", "-n", "setup-runner", "ROLE=publish"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert proc.stdout.strip() == "bash scripts/setup-runner.sh publish"
