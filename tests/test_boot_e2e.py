"""The boot stage end to end: `bootc-pipeline publish` with the boot check on, on a fake bootc base
that really boots (tests/support/bootable.py) and the bib stand-in's GPT disk, under QEMU + OVMF.

Judged by the registry (tags exist only after a passing boot; none after a failing one) and by the
guest itself: the test boots the published layer again with its own QEMU, seed and ssh key
(tests/support/vm.py) and asks the guest. Negative cases: an image whose Containerfile disables
sshd, and one that removes sshfs after setup.sh.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.boot.checks import OriginExpectation
from pipeline.boot.guest import CLOUD_INIT_FINISHED
from pipeline.core import mediatypes as mt
from tests.support import judges, vm
from tests.support.podman import PodmanService
from tests.support.published import Access, tags
from tests.support.registry import RunningRegistry

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent
ARCH = os.environ.get("BOOT_TEST_ARCH", "amd64")
LIMA_CHECKS = [
    "cloud-init",
    "user",
    "usr-local",
    "lima-tools",
    "lima-boot-hook",
    "disk-grown",
    "rootless-containerd",
    "bootc-origin",
    "reverse-sshfs",
]


@dataclass
class Run:
    proc: subprocess.CompletedProcess[str]
    workdir: Path
    variant: str
    repository: str

    @property
    def report(self) -> dict[str, Any]:
        path = self.workdir / self.variant / "release-report.json"
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    @property
    def console_log(self) -> Path:
        """Where the boot stage keeps the guest's serial console."""
        return self.workdir / self.variant / ARCH / "boot" / "console.log"

    @property
    def errors(self) -> list[str]:
        return [line for line in self.proc.stderr.splitlines() if "error:" in line]


def _manifest(
    directory: Path,
    variant: str,
    containerfile: Path,
    tool: str | None = None,
    version: str | None = None,
) -> tuple[Path, str]:
    """fedora-40's release manifest for one architecture, at zstd level 3, in its own repository
    (with TOOL as builder.tool when given)."""
    doc = yaml.safe_load((ROOT / "manifests" / "fedora-40.yaml").read_text())
    if tool is not None:
        doc["builder"]["tool"] = tool
    repository = f"bootc-lima/{variant}"
    doc |= {
        "name": variant,
        "containerfile": str(containerfile),
        "repository": f"ghcr.io/{repository}",
        "architectures": [ARCH],
    }
    if version is not None:
        doc |= {"version": version, "tags": [version]}
    doc.pop("os_image")  # the default: the OS image in `<repository>-os`, origin `:40`
    doc["compression"]["level"] = 3
    path = directory / "manifests" / f"{variant}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path, repository


def _containerfile(directory: Path, extra: str) -> Path:
    """containerfiles/ copied (setup.sh and all), fedora.Containerfile with EXTRA appended."""
    copy = directory / "containerfiles"
    shutil.copytree(ROOT / "containerfiles", copy)
    path = copy / "fedora.Containerfile"
    path.write_text(path.read_text() + extra)
    return path


def publish(
    podman: PodmanService,
    base: str,
    builder: str,
    registry: RunningRegistry,
    directory: Path,
    variant: str,
    extra: str = "",
    tool: str | None = None,
    flags: tuple[str, ...] = (),
    version: str | None = None,
) -> Run:
    manifest, repository = _manifest(
        directory, variant, _containerfile(directory, extra), tool, version
    )
    workdir = directory / "work"
    args = [
        "publish", "--manifest", str(manifest), "--engine", podman.url,
        "--workdir", str(workdir), "--base-image", base, "--builder-image", builder,
        "--registry", registry.host, "--plain-http",
        "--revision", "0" * 40, "--created", "2026-01-01T00:00:00Z", *flags,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=2400, env=env,
    )  # fmt: skip
    return Run(proc, workdir, variant, repository)


def publish_ok(
    request: pytest.FixtureRequest, directory: Path, variant: str, flags: tuple[str, ...] = ()
) -> Run:
    """`publish` of the bootable stand-in with the session's engine, builder and registry; it
    must succeed."""
    base: Callable[[str], str] = request.getfixturevalue("bootable_base")
    run = publish(
        request.getfixturevalue("podman"), base(ARCH), request.getfixturevalue("bib_standin"),
        request.getfixturevalue("registry"), directory, variant, flags=flags,
    )  # fmt: skip
    assert run.proc.returncode == 0, run.proc.stderr[-8000:]
    return run


@pytest.fixture(scope="module")
def good(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return publish_ok(request, tmp_path_factory.mktemp("boot-ok"), "boot-ok")


def test_publish_boots_the_disk_before_tagging(good: Run, registry: RunningRegistry) -> None:
    err = good.proc.stderr
    boot_at = err.index(f"==> boot {ARCH}")
    assert err.index(f"<== compress {ARCH}") < boot_at < err.index(f"==> upload {ARCH}")
    assert boot_at < err.index("==> index and tags")
    boot = good.report["boot"][ARCH]
    assert boot["booted"] and boot["ok"], boot
    assert boot["firmware"] == ("OVMF" if ARCH == "amd64" else "AAVMF")
    assert boot["accelerator"] in ("kvm", "tcg")
    assert 0 < boot["secondsToSsh"] < 900
    assert [c["name"] for c in boot["checks"]] == LIMA_CHECKS
    failed = [c for c in boot["checks"] if c["required"] and not c["ok"]]
    assert failed == [], failed
    # not required (the template turns containerd off), and met by the stand-in guest
    rootless = {c["name"]: c for c in boot["checks"]}["rootless-containerd"]
    assert rootless["ok"] and not rootless["required"], rootless
    # the guest's userspace console reaches the serial port (the kernel arguments name this
    # machine's own): cloud-init's closing line is there, which the boot check waits for
    console = good.console_log.read_text("utf-8", "replace")
    assert CLOUD_INIT_FINISHED.search(console), console[-2000:]
    assert "boot" in good.proc.stdout + err  # the summary table's boot column
    assert tags(Access(registry.host), good.repository) == sorted(["40", "40.1.0", "latest"])
    print(f"\nboot figures ({ARCH}): {json.dumps(boot, indent=1)}")


def _os_index(registry: RunningRegistry, repository: str, tag: str) -> dict[str, Any]:
    index: dict[str, Any] = json.loads(judges.skopeo_raw(registry.host, f"{repository}:{tag}"))
    return index


def _os_digest(index: dict[str, Any]) -> str:
    (entry,) = [m for m in index["manifests"] if m["platform"]["architecture"] == ARCH]
    return str(entry["digest"])


def _disk_annotations(run: Run, registry: RunningRegistry) -> dict[str, str]:
    digest = run.report["architectures"][ARCH]["manifest"]["digest"]
    body = json.loads(judges.skopeo_raw(registry.host, f"{run.repository}@{digest}"))
    annotations: dict[str, str] = body["annotations"]
    return annotations


def test_the_guest_s_origin_is_the_published_os_image(good: Run, registry: RunningRegistry) -> None:
    """Issue 15: the OS image index exists, its digest is the one the disk names, and the
    guest's bootc-origin check passed at publish (the origin named REPO-os:40, and the digest
    pushed for this architecture resolved from inside the guest)."""
    os_repo = f"{good.repository}-os"
    index = _os_index(registry, os_repo, "40")
    assert [m["platform"]["architecture"] for m in index["manifests"]] == [ARCH]
    ann = _disk_annotations(good, registry)
    assert ann[mt.ANN_OS_IMAGE] == f"{os_repo}@{_os_digest(index)}"
    assert ann[mt.ANN_OS_IMAGE_ORIGIN_TAG] == "40"
    checks = {c["name"]: c for c in good.report["boot"][ARCH]["checks"]}
    origin = checks["bootc-origin"]
    assert origin["ok"] and origin["required"], origin
    assert f"{registry.host}/{os_repo}@{_os_digest(index)}" in origin["detail"], origin


def test_the_first_release_s_vm_finds_the_next_release_through_its_origin(
    good: Run,
    request: pytest.FixtureRequest,
    podman: PodmanService,
    registry: RunningRegistry,
    tmp_path: Path,
) -> None:
    """Issue 15: a changed base and a second publish into the same repository: the moving tag's
    OS image is the new one, and the first release's disk, booted again, resolves its origin
    (the moving tag) from inside the guest to the new image's digest."""
    first_digest = _os_digest(_os_index(registry, f"{good.repository}-os", "40.1.0"))
    bootable: Callable[[str], str] = request.getfixturevalue("bootable_base")
    changed = f"localhost/fake-bootable/fedora-bootc:{ARCH}-changed"
    context = tmp_path / "base"
    context.mkdir()
    (context / "Containerfile").write_text(
        f"FROM {bootable(ARCH)}\nRUN echo 2 > /usr/lib/bootc-pipeline-test-base-generation\n"
    )
    podman.cli("build", "--quiet", "--pull=never", "--network=none", "--platform",
               f"linux/{ARCH}", "--tag", changed, str(context))  # fmt: skip
    second = publish(
        podman, changed, request.getfixturevalue("bib_standin"), registry,
        tmp_path / "second", good.variant, version="40.1.1",
        flags=("--created", "2026-01-02T00:00:00Z"),
    )  # fmt: skip
    assert second.proc.returncode == 0, second.proc.stderr[-8000:]
    os_repo = f"{good.repository}-os"
    moving = _os_index(registry, os_repo, "40")
    new_digest = _os_digest(moving)
    assert new_digest != first_digest
    assert _disk_annotations(second, registry)[mt.ANN_OS_IMAGE].endswith(f"@{new_digest}")
    assert _os_digest(_os_index(registry, os_repo, "40.1.0")) == first_digest  # immutable
    # the first release's disk, as the registry serves it, booted again
    digest = good.report["architectures"][ARCH]["manifest"]["digest"]
    (layer,) = json.loads(judges.skopeo_raw(registry.host, f"{good.repository}@{digest}"))["layers"]
    url = f"{registry.url}/v2/{good.repository}/blobs/{layer['digest']}"
    blob = judges.curl_get(url, tmp_path / "layer.zst")
    disk = judges.zstd_test_and_decompress(blob, tmp_path / "disk.qcow2")
    blob.unlink()
    origin = f"{registry.host}/{os_repo}:40"
    conf = OriginExpectation(origin, f"{registry.host}/{os_repo}@{new_digest}").registries_conf()
    assert conf is not None
    with vm.booted(disk, ARCH, tmp_path / "vm") as guest:
        status = guest.run("sudo -n bootc status --json")
        assert status.returncode == 0, status
        booted = json.loads(status.stdout)["status"]["booted"]["image"]["image"]
        assert booted == {"image": origin, "transport": "registry"}
        guest.run(f"printf %s {shlex.quote(conf)} > /tmp/registries.conf")
        found = guest.run(
            f"skopeo --registries-conf /tmp/registries.conf inspect --raw docker://{origin}"
        )
        assert found.returncode == 0, found
    resolved = json.loads(found.stdout)
    assert _os_digest(resolved) == new_digest


def test_a_disk_that_passed_and_did_not_change_is_not_booted_again(good: Run) -> None:
    """The boot record of the current disk is a pass: the boot stage skips it (no QEMU), and the
    gate still lets it through."""
    manifest = good.workdir.parent / "manifests" / f"{good.variant}.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "boot", "--manifest", str(manifest),
         "--workdir", str(good.workdir)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{ARCH}: this disk passed its boot check already, not rebooted" in proc.stderr
    assert "ssh on 127.0.0.1" not in proc.stderr and "decompressing" not in proc.stderr  # no QEMU


def test_the_published_disk_answers_for_itself(
    good: Run, registry: RunningRegistry, tmp_path: Path
) -> None:
    """Boot the layer the registry serves with the test's own QEMU and seed, and ask the guest."""
    digest = good.report["architectures"][ARCH]["manifest"]["digest"]
    manifest = json.loads(judges.skopeo_raw(registry.host, f"{good.repository}@{digest}"))
    (layer,) = manifest["layers"]
    url = f"{registry.url}/v2/{good.repository}/blobs/{layer['digest']}"
    blob = judges.curl_get(url, tmp_path / "layer.zst")
    disk = judges.zstd_test_and_decompress(blob, tmp_path / "disk.qcow2")
    blob.unlink()
    with vm.booted(disk, ARCH, tmp_path / "vm") as guest:
        status = guest.run("cloud-init status --wait")
        assert status.returncode == 0 and "status: done" in status.stdout, status
        assert guest.run("sudo -n true").returncode == 0
        tools = guest.run(
            "sudo -n sh -c 'for t in sshfs rsync tar newuidmap mount.fuse3; do command -v $t; done'"
        )
        assert tools.returncode == 0 and len(tools.stdout.split()) == 5, tools
        usr_local = guest.run("readlink -f /usr/local").stdout.strip()
        assert usr_local == "/var/usrlocal"
        size = int(guest.run("findmnt -bno SIZE /").stdout.strip())
        assert size > 15 * 1024**3, f"root filesystem did not grow to the 20 GiB disk: {size}"
        share = tmp_path / "share"
        share.mkdir()
        token = secrets.token_hex(8)
        (share / "hello").write_text(token)
        assert vm.reverse_sshfs_reads(guest, share, "/mnt/judge").strip() == token


@pytest.mark.parametrize(
    ("case", "extra", "named", "also"),
    [
        # mask, not disable: cloud-init.service has Wants=sshd.service (Fedora's and Debian's),
        # so a merely disabled sshd is started anyway (seen here: the guest answered on ssh)
        ("no-sshd", "RUN systemctl mask sshd.service\n", "sshd", None),
        # without pam_systemd no user manager starts (Lima's 40-install-containerd.sh would wait
        # for it forever): the informational check fails, and the error line does not name it
        (
            "no-sshfs",
            "RUN rm -f /usr/bin/sshfs && find /usr/lib -name pam_systemd.so -delete\n",
            "sshfs",
            "FAIL rootless-containerd: the user's systemd manager did not start",
        ),
    ],
)
def test_a_guest_lima_cannot_use_fails_the_boot_and_moves_no_tag(
    podman: PodmanService,
    bootable_base: Callable[[str], str],
    bib_standin: str,
    registry: RunningRegistry,
    tmp_path: Path,
    case: str,
    extra: str,
    named: str,
    also: str | None,
) -> None:
    run = publish(
        podman, bootable_base(ARCH), bib_standin, registry, tmp_path, f"boot-{case}", extra
    )
    assert run.proc.returncode == 1, run.proc.stderr[-4000:]
    (line, *_) = run.errors
    assert line.startswith(f"bootc-pipeline: error: boot check failed for {ARCH}:"), line
    assert named in line, line
    if also is not None:
        assert also in run.proc.stderr
        assert "rootless-containerd" not in line, line
    assert "guest console" in run.proc.stderr  # its last lines are in the log
    assert run.console_log.stat().st_size > 0
    assert "==> upload" not in run.proc.stderr and "==> index and tags" not in run.proc.stderr
    assert tags(Access(registry.host), run.repository) == []


def test_boot_of_a_published_ref_pulls_and_boots_it(
    good: Run, registry: RunningRegistry, tmp_path: Path
) -> None:
    """`bootc-pipeline boot REF --platform linux/ARCH`: a user checking someone else's release.
    The tag is resolved through the index, the layer pulled and verified, and the guest booted;
    the record names the registry's own layer digest, and the pulled disk is not left behind."""
    ref = f"{registry.host}/{good.repository}:40.1.0"
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "boot", ref, "--platform", f"linux/{ARCH}",
         "--plain-http", "--workdir", str(tmp_path), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=2400, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-6000:]
    record = json.loads(proc.stdout)
    digest = good.report["architectures"][ARCH]["manifest"]["digest"]
    manifest = json.loads(judges.skopeo_raw(registry.host, f"{good.repository}@{digest}"))
    assert record["manifest"] == digest
    assert record["layer"]["digest"] == manifest["layers"][0]["digest"]
    boot = record["boot"]
    assert boot["booted"] and boot["ok"], boot
    # `boot REF` runs every check publish runs, bootc-origin too: the disk's origin names the
    # OS image's repository and tag, and the image its manifest names resolves from the guest
    assert [c["name"] for c in boot["checks"]] == LIMA_CHECKS
    assert all(c["ok"] for c in boot["checks"]), boot["checks"]
    origin = {c["name"]: c for c in boot["checks"]}["bootc-origin"]
    assert origin["required"] and f"{good.repository}-os:40" in origin["detail"], origin
    work = tmp_path / "boot-published" / ARCH
    assert json.loads((work / "boot-report.json").read_text()) == record
    assert not list(work.glob("*.qcow2")), list(work.iterdir())
    print(f"\nboot REF figures ({ARCH}): {boot['secondsToSsh']} s to ssh")


def test_boot_of_a_published_ref_finds_the_platform_in_the_index(
    good: Run, registry: RunningRegistry, tmp_path: Path
) -> None:
    """`bootc-pipeline boot REF --platform`: the index is read and a missing platform named."""
    other = "arm64" if ARCH == "amd64" else "amd64"
    ref = f"{registry.host}/{good.repository}:40.1.0"
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "boot", ref, "--platform", f"linux/{other}",
         "--plain-http", "--workdir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert f"has no linux/{other} manifest (it has linux/{ARCH})" in proc.stderr


def test_the_image_builder_stand_ins_disk_boots(
    podman: PodmanService,
    bootable_base: Callable[[str], str],
    image_builder_standin: str,
    registry: RunningRegistry,
    tmp_path: Path,
) -> None:
    """builder.tool: image-builder: the disk its stand-in writes (`image-builder build
    --bootc-ref IMAGE qcow2`, output renamed to disk.qcow2) passes the same boot check."""
    run = publish(
        podman, bootable_base(ARCH), image_builder_standin, registry, tmp_path, "boot-ib",
        tool="image-builder",
    )  # fmt: skip
    assert run.proc.returncode == 0, run.proc.stderr[-8000:]
    assert (run.workdir / "boot-ib" / ARCH / "disk" / "disk.qcow2").is_file()  # its output name
    boot = run.report["boot"][ARCH]
    assert boot["booted"] and boot["ok"], boot
    failed = [c for c in boot["checks"] if c["required"] and not c["ok"]]
    assert [c["name"] for c in boot["checks"]] == LIMA_CHECKS and failed == [], boot["checks"]
    inputs = json.loads((run.workdir / "boot-ib" / "inputs.json").read_text())
    assert inputs["inputs"]["builder"] == "image-builder"
    assert {"40.1.0", "40", "latest"} <= set(tags(Access(registry.host), run.repository))
