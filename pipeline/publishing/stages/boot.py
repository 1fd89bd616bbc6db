"""Boot stage: boot each architecture's disk exactly as it will be published, before tags move.

`boot(ctx, arch)` takes the compress stage's .zst, decompresses it checking both digests the
compress stage recorded (so the guest runs the bytes that get pushed), and boots it under QEMU
with UEFI firmware and a Lima-shaped seed (pipeline/boot). A failing boot raises PipelineError
naming what failed; the guest's console log stays in the work directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.boot.checks import OriginExpectation
from pipeline.boot.guest import BootResult, boot_disk
from pipeline.boot.verdict import fail_if_bad
from pipeline.core import zstdfile
from pipeline.core.arch import Arch
from pipeline.core.digest import Blob
from pipeline.core.errors import PipelineError
from pipeline.core.progress import Reporter
from pipeline.publishing.stages import osimage, runner
from pipeline.publishing.stages.compress import compressed_disk
from pipeline.shared.context import Context


def boot_work(ctx: Context, arch: Arch) -> Path:
    return ctx.arch_dir(arch).root / "boot"


def boot_compressed(
    compressed: zstdfile.Compressed | Path,
    arch: Arch,
    work: Path,
    *,
    install_prefix: str,
    reporter: Reporter,
    expect: tuple[Blob, Blob | None] | None = None,
    origin: OriginExpectation | None = None,
) -> BootResult:
    """Decompress a .zst disk (checked against its digests) next to WORK and boot it."""
    if isinstance(compressed, zstdfile.Compressed):
        source, expect = compressed.path, (compressed.compressed, compressed.uncompressed)
    else:
        source = compressed
    if expect is None:
        raise PipelineError(f"no recorded digest to check {source} against")
    disk = work.parent / "boot-disk.qcow2"
    reporter.info(
        f"    {arch.value}: decompressing {source.name} (checking {expect[0].digest[:19]})"
    )
    zstdfile.decompress(source, disk, compressed=expect[0], uncompressed=expect[1])
    try:
        return boot_disk(
            disk, arch, work, install_prefix=install_prefix, reporter=reporter, origin=origin
        )
    finally:
        disk.unlink(missing_ok=True)


def boot(ctx: Context, arch: Arch) -> BootResult | None:
    """Boot ARCH's compressed disk from the work directory; PipelineError if it fails. The
    result, pass or failure, is the gate's record for this disk (publishing/stages/runner.py):
    a disk that passed and did not change is not booted again (None then)."""
    disk = compressed_disk(ctx, arch)
    booted: list[BootResult] = []
    origin = origin_expectation(ctx, arch)
    checked = origin.reference if origin else None

    def act() -> dict[str, Any]:
        result = boot_compressed(
            disk,
            arch,
            boot_work(ctx, arch),
            install_prefix=ctx.release.guest_install_prefix,
            reporter=ctx.reporter,
            origin=origin,
        )
        booted.append(result)
        return result.to_dict() | ({"osImage": checked} if checked else {})

    def kept(outputs: dict[str, Any]) -> bool:
        """A pass stands for this disk and the OS image its origin was checked against."""
        return checked is None or outputs.get("osImage") == checked

    ran = runner.run(ctx.arch_dir(arch), runner.GATE, {}, act, reporter=ctx.reporter, kept=kept)
    return None if ran.reused else fail_if_bad(booted[0], ctx.reporter)


def origin_expectation(ctx: Context, arch: Arch) -> OriginExpectation | None:
    """What bootc-origin checks: the OS image pushed from ARCH's current build
    (publishing/stages/osimage.py) and the origin the disk was given (None when none was
    pushed from it: `boot` alone, before any push of this build)."""
    found = osimage.pushed(ctx, arch)
    if found is None:
        if ctx.arch_dir(arch).load_stamp(runner.OS_IMAGE) is not None:
            ctx.reporter.info(
                f"    {arch.value}: the OS image pushed last is from an earlier build, not this "
                "disk's: bootc-origin is not checked (publish pushes this build's)"
            )
        return None
    image = found[0]
    return OriginExpectation.of(image.origin, image.reference)


def recorded(ctx: Context, arch: Arch) -> dict[str, Any] | None:
    """The boot check recorded for ARCH's current compressed disk (pass, failure or skip)."""
    return runner.gate_record(ctx.arch_dir(arch))
