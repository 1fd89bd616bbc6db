"""Synthetic work directories the push stage accepts, without a container engine.

For each architecture it writes what the build and compress stages would have left behind
(pipeline/shared/state.py): a `build` stamp (image tag, id and base digest, as
`stages.build.built_image(..., in_engine=False)` reads them) and a `compress` stamp pointing at a
real `.qcow2.zst`: a qcow2 made by `qemu-img convert` from seeded pseudo-random bytes (so it is
incompressible and the same on every run), compressed by `pipeline.core.zstdfile.compress`. Equal
seeds give byte-identical disks, hence equal digests across work directories.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline.core import zstdfile
from pipeline.core.arch import Arch
from pipeline.core.digest import Blob
from pipeline.model import release
from pipeline.publishing.stages import runner
from pipeline.shared.state import arch_dir, inputs_key
from tests.factories import ROOT
from tests.support.faultproxy import FaultProxy
from tests.support.registry import RegistryKind, RunningRegistry, start_registry

DEFAULT_DISK_BYTES = 3 * 1024 * 1024 + 12345


@dataclass(frozen=True)
class Disk:
    """One compressed synthetic disk (the layer a push sends) and what it decompresses to."""

    path: Path
    compressed: Blob
    uncompressed: Blob


@dataclass(frozen=True)
class Workdir:
    root: Path
    variant: str
    disks: dict[Arch, Disk]

    @property
    def variant_dir(self) -> Path:
        return self.root / self.variant

    @property
    def report_path(self) -> Path:
        return self.variant_dir / "release-report.json"

    def journal(self, arch: Arch) -> Path:
        return arch_dir(self.root, self.variant, arch).root / "upload-journal.json"


def make_qcow2(dest: Path, *, seed: int, size: int = DEFAULT_DISK_BYTES) -> Path:
    """A valid qcow2 holding `size` seeded pseudo-random bytes (deterministic per seed)."""
    if shutil.which("qemu-img") is None:
        pytest.fail("qemu-img not found: apt-get install -y qemu-utils", pytrace=False)
    raw = dest.with_suffix(".raw")
    data = random.Random(seed).randbytes(size)
    raw.write_bytes(data + b"\0" * (-size % 512))
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(dest)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    raw.unlink()
    return dest


class DiskCache:
    """Makes each (seed, size) disk once per session; work directories get copies."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._made: dict[tuple[int, int, int], zstdfile.Compressed] = {}

    def get(self, seed: int, size: int, level: int) -> zstdfile.Compressed:
        key = (seed, size, level)
        if key not in self._made:
            qcow2 = make_qcow2(self.directory / f"disk-{seed}-{size}.qcow2", seed=seed, size=size)
            zst = qcow2.with_name(f"{qcow2.name}.{level}.zst")
            self._made[key] = zstdfile.compress(qcow2, zst, level=level)
        return self._made[key]


def make_workdir(
    root: Path,
    cache: DiskCache,
    *,
    variant: str = "fedora-40",
    layer_name: str = "fedora-bootc-lima-40.1.0",
    archs: tuple[Arch, ...] = (Arch("amd64"), Arch("arm64")),
    seeds: dict[Arch, int] | None = None,
    size: int = DEFAULT_DISK_BYTES,
    sources: dict[Arch, zstdfile.Compressed] | None = None,
) -> Workdir:
    """A work directory as `bootc-pipeline compress` leaves it, for `variant`'s push stage.

    Seeds default to one per architecture (amd64 1, arm64 2), so disks differ between
    architectures but not between work directories. `sources` gives an architecture a
    compressed disk of the test's own instead (at the manifest's level).
    """
    seeds = seeds or {arch: index + 1 for index, arch in enumerate(archs)}
    level = release.load(manifest_path(variant)).zstd_level  # as `compress` would have used
    disks: dict[Arch, Disk] = {}
    for arch in archs:
        source = (sources or {}).get(arch) or cache.get(seeds[arch], size, level)
        directory = arch_dir(root, variant, arch)
        directory.root.mkdir(parents=True, exist_ok=True)
        dest = directory.root / f"{layer_name}-{arch.value}.qcow2.zst"
        shutil.copyfile(source.path, dest)
        image_id = "sha256:" + inputs_key({"synthetic-image": seeds[arch], "arch": arch.value})
        # the stamps the stages leave, written by their runner (pipeline/stages/runner.py)
        stamps: dict[str, dict[str, Any]] = {
            "build": {
                "tag": f"localhost/bootc-pipeline/{variant}:synthetic-{arch.value}",
                "id": image_id,
                "base_digest": "sha256:" + inputs_key({"synthetic-base": arch.value}),
            },
            "disk": {"path": "(synthetic: no qcow2 kept)", "size": 0},
            "compress": {
                "path": str(dest),
                "level": level,
                "uncompressed": source.uncompressed.__dict__,
                "compressed": source.compressed.__dict__,
            },
        }
        for stage, outputs in stamps.items():
            stage_id = runner.chained_id(
                directory, stage, {"synthetic": seeds[arch], "layer": source.compressed.digest}
            )
            runner.record(directory, stage, stage_id, outputs)
        disks[arch] = Disk(dest, source.compressed, source.uncompressed)
    return Workdir(root, variant, disks)


def manifest_path(variant: str) -> Path:
    return ROOT / "manifests" / f"{variant}.yaml"


def manifest_for(tmp: Path, repo: str, variant: str = "fedora-40") -> Path:
    """A copy of manifests/VARIANT.yaml publishing to `repo` (for tests sharing a registry)."""
    path = tmp / f"manifests-{repo.replace('/', '-')}" / f"{variant}.yaml"
    path.parent.mkdir(parents=True)
    text = manifest_path(variant).read_text()
    published = release.load(manifest_path(variant)).repository.split("/", 1)[1]
    path.write_text(text.replace(published, repo))
    if not (tmp / "containerfiles").exists():
        (tmp / "containerfiles").symlink_to(ROOT / "containerfiles")
    return path


# -- the real CLI over a work directory ------------------------------------------------------------

CLI_TIMEOUT_SECONDS = 120.0
CREATED = "2026-01-01T00:00:00Z"
REVISION = "5e1f0c0ffee5e1f0c0ffee5e1f0c0ffee5e1f0c0"


def cli_env(home: Path, *, chunk_size: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A clean environment: no inherited logins (empty $HOME and $DOCKER_CONFIG), small chunks."""
    docker_config = home / "docker-config"
    docker_config.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "HOME": str(home),
        "DOCKER_CONFIG": str(docker_config),
        "BOOTC_PIPELINE_CHUNK_SIZE": str(chunk_size),
        "LC_ALL": "C.UTF-8",
    }
    env.update(extra or {})
    return env


def push_argv(
    workdir: Workdir,
    registry: str,
    *extra: str,
    manifest: Path | None = None,
    created: str = CREATED,
    plain_http: bool = True,
    skip_boot: bool = True,
) -> list[str]:
    """`push` over a synthetic work directory; its disks do not boot, so by default the skip is
    recorded (--skip-boot), as the push gate requires."""
    argv = [
        sys.executable, "-m", "pipeline", "push",
        "--manifest", str(manifest or manifest_path(workdir.variant)),
        "--workdir", str(workdir.root), "--registry", registry,
        "--revision", REVISION, "--created", created,
    ]  # fmt: skip
    if plain_http:
        argv.append("--plain-http")
    if skip_boot:
        argv.append("--skip-boot")
    return [*argv, *extra]


def run_push(
    argv: list[str], env: dict[str, str], *, timeout: float = CLI_TIMEOUT_SECONDS
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def start_push(argv: list[str], env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    """The CLI in the background, its stdout/stderr to `logs`.{out,err} (for kill and races)."""
    logs.parent.mkdir(parents=True, exist_ok=True)
    with logs.with_suffix(".out").open("wb") as out, logs.with_suffix(".err").open("wb") as err:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=err)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("bootc-pipeline: error:")]


def publish_synthetic(
    directory: Path, registry: str, *, size: int = DEFAULT_DISK_BYTES
) -> tuple[Workdir, dict[str, Any]]:
    """A release of both architectures pushed by the real CLI to `registry` (plain HTTP): the
    work directory (with the publish-time Lima template) and the release report."""
    (directory / "disks").mkdir(parents=True)
    work = make_workdir(directory / "work", DiskCache(directory / "disks"), size=size)
    proc = run_push(push_argv(work, registry), cli_env(directory / "home", chunk_size=1 << 20))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report: dict[str, Any] = json.loads(work.report_path.read_text())
    return work, report


@dataclass
class PublishedRelease:
    """A release of both architectures on a docker-registry of its own, reached directly
    (`registry.host`) or through a fault proxy (`proxy.host`)."""

    registry: RunningRegistry
    proxy: FaultProxy
    work: Workdir
    report: dict[str, Any]
    home: Path

    def env(self, **extra: str) -> dict[str, str]:
        return cli_env(self.home, chunk_size=1 << 20, extra=extra)


@contextlib.contextmanager
def published_release(
    directory: Path,
    *,
    size: int = DEFAULT_DISK_BYTES,
    kind: RegistryKind = RegistryKind.DOCKER_REGISTRY,
) -> Iterator[PublishedRelease]:
    registry = start_registry(directory / "registry", kind=kind)
    try:
        with FaultProxy(registry.host) as proxy:
            work, report = publish_synthetic(directory, registry.host, size=size)
            yield PublishedRelease(registry, proxy, work, report, directory / "home")
    finally:
        registry.stop()


def zstd_cli_layer(directory: Path) -> tuple[bytes, bytes]:
    """A qcow2 and its .zst made by the zstd CLI, as the seed's publisher did (`zstd`, then
    oras): (qcow2 bytes, layer bytes)."""
    qcow2 = make_qcow2(directory / "seed.qcow2", seed=7, size=2 * 1024 * 1024)
    subprocess.run(["zstd", "-q", "-19", str(qcow2)], check=True)
    return qcow2.read_bytes(), (directory / "seed.qcow2.zst").read_bytes()
