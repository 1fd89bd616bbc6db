"""Stages that skip and gate the same way (pipeline/stages/runner.py), judged through the real CLI:
`build`, `disk` and `compress` run alone, one after the other, for amd64 on a real Podman service
with the bootc-image-builder stand-in (tests/standins/bib) and the fake Fedora base.

A re-run with nothing changed skips every stage, the disk included, and does not boot a disk
whose pass is on record; a changed input re-runs its stage and every stage after it (through
the chained ids), and the gate then holds nothing for the new disk, so nothing is sent from it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.core.arch import Arch
from pipeline.publishing.stages import runner
from pipeline.shared.state import ArchDir, arch_dir
from tests.factories import ROOT
from tests.support.images import FakeBases
from tests.support.podman import PodmanService
from tests.support.workdirs import CREATED, REVISION, error_lines

pytestmark = pytest.mark.integration
AMD64 = Arch.AMD64
CONTAINERFILE = "ARG BASE\nFROM ${BASE}\nLABEL containers.bootc=1\n"
ENV = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
STAGES = ("build", "disk", "compress")


@dataclass(frozen=True)
class Release:
    podman: PodmanService
    base: str
    builder: str
    root: Path  # manifests/ and context/ (the Containerfile's build context)
    workdir: Path

    @property
    def directory(self) -> ArchDir:
        return arch_dir(self.workdir, "fedora-40", AMD64)

    def argv(self, *argv: str) -> list[str]:
        return [
            sys.executable, "-m", "pipeline", argv[0], *argv[1:],
            "--manifest", str(self.root / "manifests" / "fedora-40.yaml"),
            "--containerfile", str(self.root / "context" / "Containerfile"),
            "--arch", "amd64", "--engine", self.podman.url, "--workdir", str(self.workdir),
            "--base-image", self.base, "--builder-image", self.builder,
            "--registry", "127.0.0.1:9", "--plain-http",
        ]  # fmt: skip

    def run(self, *argv: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*argv),
            cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def stage(self, stage: str) -> str:
        proc = self.run(stage)
        assert proc.returncode == 0, proc.stderr[-4000:]
        return proc.stderr

    def stamps(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(self.directory.root.glob("*.json"))}


def _unchanged(stage: str, stderr: str) -> bool:
    return (
        "amd64: " in stderr and "unchanged since the last run" in stderr.split(f"==> {stage}")[-1]
    )


@pytest.fixture(scope="module")
def release(
    podman: PodmanService,
    fake_bases: FakeBases,
    bib_standin: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Release:
    root = tmp_path_factory.mktemp("reruns")
    (root / "context").mkdir()
    (root / "context" / "Containerfile").write_text(CONTAINERFILE)
    (root / "manifests").mkdir()
    manifest = (ROOT / "manifests" / "fedora-40.yaml").read_text()
    (root / "manifests" / "fedora-40.yaml").write_text(manifest)
    (root / "containerfiles").symlink_to(ROOT / "containerfiles")
    made = Release(podman, fake_bases.instance("fedora", "amd64"), bib_standin, root, root / "work")
    for stage in STAGES:
        assert not _unchanged(stage, made.stage(stage))
    return made


def _passed(release: Release) -> dict[str, object]:
    """The gate's pass for the current disk, as the boot stage stamps it (this stand-in disk
    has no boot loader; a real boot and its skipped re-run are tests/test_boot_e2e.py's)."""
    record: dict[str, object] = {"booted": True, "ok": True, "firmware": "OVMF", "checks": []}
    directory = release.directory
    runner.record(directory, runner.GATE, runner.gate_id(directory), record)
    return record


def test_a_rerun_with_nothing_changed_skips_every_stage(release: Release) -> None:
    _passed(release)
    stamps = release.stamps()
    disk = (release.directory.disk_dir / "qcow2" / "disk.qcow2").stat()
    for stage in STAGES:
        stderr = release.stage(stage)
        assert _unchanged(stage, stderr), stderr[-3000:]
        assert "org.osbuild" not in stderr  # the builder did not run
    boot = release.stage("boot")
    assert "amd64: this disk passed its boot check already, not rebooted" in boot
    assert "qemu-system" not in boot and "decompressing" not in boot
    assert release.stamps() == stamps  # nothing re-stamped
    again = (release.directory.disk_dir / "qcow2" / "disk.qcow2").stat()
    assert (again.st_ino, again.st_mtime_ns) == (disk.st_ino, disk.st_mtime_ns)


def test_a_changed_input_reruns_its_stage_and_every_one_after_it(release: Release) -> None:
    _passed(release)
    # the build's context changes (a file the Containerfile does not use): the image may well be
    # the very same, but the build ran again, so the disk and all after it are made again
    (release.root / "context" / "notes.txt").write_text("not copied into the image\n")
    image = release.directory.load_stamp("build")
    for stage in STAGES:
        stderr = release.stage(stage)
        assert not _unchanged(stage, stderr), stderr[-3000:]
    assert release.directory.stale_link(runner.ORDER[:3]) is None
    built = release.directory.load_stamp("build") or {}
    print(f"\nimage after the context changed: {'the same' if built == image else 'a new one'}")
    # the pass was for the old disk: the gate holds nothing for this one, so it is not sent
    assert runner.gate_record(release.directory) is None
    push = release.run("push", "--revision", REVISION, "--created", CREATED)
    assert push.returncode == 1, push.stderr[-3000:]
    [line] = error_lines(push.stderr)
    assert "has no boot check on record" in line, line

    # a later stage's own input (the zstd level): the stages before it stay, it runs again
    path = release.root / "manifests" / "fedora-40.yaml"
    path.write_text(path.read_text().replace("level: 10", "level: 3", 1))
    for stage in STAGES:
        stderr = release.stage(stage)
        assert _unchanged(stage, stderr) == (stage != "compress"), stderr[-3000:]


def test_a_disk_made_while_another_run_took_the_os_image_name_is_not_used(
    release: Release,
) -> None:
    """Another publish of this release on the same engine (another work directory) tags its own
    image with the OS image's name, the one the builder is given, while the builder reads it:
    the disk may hold the other image, so the stage fails and records no disk."""
    release.directory.stamp_path("disk").unlink()  # the disk stage runs again
    seen = threading.Event()
    origin: list[str] = []

    def take_the_name() -> None:  # bounded: 600 polls of 0.1 s at most
        for _ in range(600):
            running = release.podman.cli(
                "ps", "-q", "--filter", f"ancestor={release.builder}", check=False
            )
            if running.stdout.strip() and origin:
                release.podman.cli("tag", release.base, origin[0])  # another image, this name
                seen.set()
                return
            time.sleep(0.1)

    log = release.workdir.parent / "disk-race.err"
    with log.open("w") as err:
        process = subprocess.Popen(release.argv("disk"), cwd=ROOT, env=ENV, stderr=err, text=True)
        thief = threading.Thread(target=take_the_name)
        thief.start()
        try:
            for _ in range(300):  # the origin is named before the builder starts
                found = re.search(r"amd64: bootc origin (\S+) ", log.read_text())
                if found or process.poll() is not None:
                    break
                time.sleep(0.1)
            assert found, log.read_text()[-3000:]
            origin.append(found.group(1))
            code = process.wait(900)
        finally:
            thief.join(70)
    stderr = log.read_text()
    assert seen.is_set(), stderr[-3000:]
    assert code == 1, stderr[-3000:]
    [line] = error_lines(stderr)
    assert f"{origin[0]} was given to sha256:" in line and "is not used" in line, line
    assert release.directory.load_stamp("disk") is None  # no disk on record
    assert "Traceback" not in stderr
