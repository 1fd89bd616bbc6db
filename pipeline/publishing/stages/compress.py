"""Compress stage: the qcow2 to `<name>-<version>-<arch>.qcow2.zst`, hashed on both sides."""

from __future__ import annotations

from pathlib import Path

from pipeline.core import zstdfile
from pipeline.core.arch import Arch
from pipeline.core.digest import Blob
from pipeline.core.errors import PipelineError
from pipeline.publishing.stages import runner
from pipeline.publishing.stages.disk import built_disk
from pipeline.shared.context import Context


def compress(ctx: Context, arch: Arch) -> zstdfile.Compressed:
    directory = ctx.arch_dir(arch)
    source = built_disk(ctx, arch)
    level = ctx.release.zstd_level
    key = runner.chained_id(directory, "compress", {"level": level})
    dest = directory.root / ctx.release.layer_title(arch)
    reused = _from_stamp(directory.load_stamp("compress", key))
    if reused is not None and reused.path == dest:
        ctx.reporter.info(f"    {arch.value}: {dest.name} unchanged since the last run")
        return reused
    total = source.stat().st_size
    with ctx.reporter.transfer(f"{arch.value}: zstd -{level}", total) as advance:
        result = zstdfile.compress(source, dest, level=level, progress=advance)
    ratio = result.compressed.size / result.uncompressed.size if result.uncompressed.size else 0
    ctx.reporter.info(
        f"    {arch.value}: {result.uncompressed.size} -> {result.compressed.size} bytes "
        f"(ratio {ratio:.3f})"
    )
    runner.record(
        directory,
        "compress",
        key,
        {
            "path": str(dest),
            "level": level,
            "uncompressed": result.uncompressed.__dict__,
            "compressed": result.compressed.__dict__,
        },
    )
    return result


def _from_stamp(stamp: dict[str, object] | None) -> zstdfile.Compressed | None:
    if not stamp:
        return None
    try:
        path = Path(str(stamp["path"]))
        compressed = Blob(**stamp["compressed"])  # type: ignore[arg-type]
        uncompressed = Blob(**stamp["uncompressed"])  # type: ignore[arg-type]
        level = int(stamp["level"])  # type: ignore[call-overload]
    except (KeyError, TypeError, ValueError):
        return None
    if not path.is_file() or path.stat().st_size != compressed.size:
        return None
    return zstdfile.Compressed(path, uncompressed, compressed, level)


def compressed_disk(ctx: Context, arch: Arch) -> zstdfile.Compressed:
    """The last compress stage's output for `arch`, checked to come from the last disk and build
    and to be at the manifest's level: push never publishes a stale disk."""
    directory = ctx.arch_dir(arch)
    found = _from_stamp(directory.load_stamp("compress"))
    if found is None:
        raise PipelineError(
            f"no compressed disk of {ctx.release.variant} for {arch.value}",
            hint="run `bootc-pipeline compress` first",
        )
    stale = directory.stale_link(runner.ORDER[: runner.ORDER.index("compress") + 1])
    if stale:
        raise PipelineError(
            f"the {arch.value} outputs in {directory.root} are from different runs: the "
            f"{stale} stage is older than the one before it",
            hint=f"run `bootc-pipeline {stale}` again (and the stages after it)",
        )
    if found.level != ctx.release.zstd_level:
        raise PipelineError(
            f"the {arch.value} disk was compressed at level {found.level}, the release "
            f"manifest says {ctx.release.zstd_level}",
            hint="run `bootc-pipeline compress` again",
        )
    return found
