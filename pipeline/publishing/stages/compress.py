"""Compress stage: the qcow2 to `<name>-<version>-<arch>.qcow2.zst`, hashed on both sides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
    dest = directory.root / ctx.release.layer_title(arch)

    def act() -> dict[str, Any]:
        total = source.stat().st_size
        with ctx.reporter.transfer(f"{arch.value}: zstd -{level}", total) as advance:
            result = zstdfile.compress(source, dest, level=level, progress=advance)
        ratio = result.compressed.size / result.uncompressed.size if result.uncompressed.size else 0
        ctx.reporter.info(
            f"    {arch.value}: {result.uncompressed.size} -> {result.compressed.size} bytes "
            f"(ratio {ratio:.3f})"
        )
        return {
            "path": str(dest),
            "level": level,
            "uncompressed": result.uncompressed.__dict__,
            "compressed": result.compressed.__dict__,
        }

    def kept(outputs: dict[str, Any]) -> bool:
        found = _from_stamp(outputs)
        return found is not None and found.path == dest

    ran = runner.run(
        directory,
        "compress",
        {"level": level},
        act,
        reporter=ctx.reporter,
        kept=kept,
        shown=dest.name,
    )
    found = _from_stamp(ran.outputs)
    if found is None:  # act() just wrote it, or kept() checked it
        raise PipelineError(f"the compress stage left no {dest}")
    return found


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
    stamp = runner.require(
        ctx.arch_dir(arch),
        "compress",
        ctx.release.variant,
        lambda outputs: _from_stamp(outputs) is not None,
    )
    found = _from_stamp(stamp)
    assert found is not None  # require() kept it
    if found.level != ctx.release.zstd_level:
        raise PipelineError(
            f"the {arch.value} disk was compressed at level {found.level}, the release "
            f"manifest says {ctx.release.zstd_level}",
            hint="run `bootc-pipeline compress` again",
        )
    return found
