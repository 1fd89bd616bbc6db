"""Build stage: the bootc Containerfile for one architecture, through the engine."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from pipeline.arch import Arch
from pipeline.context import Context
from pipeline.errors import PipelineError

BINFMT = Path("/proc/sys/fs/binfmt_misc")
BOOTC_LABEL = "containers.bootc"


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    id: str
    base_digest: str


def check_cross_arch(arch: Arch, host: Arch, binfmt: Path = BINFMT) -> None:
    """Fail in the first second, not mid-build, when foreign binaries cannot run here."""
    if arch == host:
        return
    entry = binfmt / arch.qemu_binfmt
    try:
        enabled = entry.read_text().splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        enabled = False
    if not enabled:
        raise PipelineError(
            f"building for {arch.platform} on {host.platform} needs qemu-user-static, "
            f"but {entry} is missing or disabled",
            hint="apt-get install qemu-user-static binfmt-support (and mount binfmt_misc at "
            f"{binfmt} if it is empty)",
        )


def build(ctx: Context, arch: Arch) -> BuiltImage:
    release = ctx.release
    check_cross_arch(arch, Arch.host())
    engine = ctx.engine
    tag = ctx.image_tag(arch)
    facts = engine.build(
        context=release.containerfile.parent,
        containerfile=release.containerfile,
        tag=tag,
        arch=arch,
        buildargs={"BASE": release.base},
        on_line=ctx.reporter.detail,
    )
    if facts.labels.get(BOOTC_LABEL) != "1":
        raise PipelineError(
            f"{tag} has no label {BOOTC_LABEL}=1: bootc-image-builder would refuse it",
            hint=f"keep `LABEL {BOOTC_LABEL}=1` in {release.containerfile.name}",
        )
    built = BuiltImage(tag=tag, id=facts.id, base_digest=engine.base_digest(release.base, arch))
    directory = ctx.arch_dir(arch)
    directory.save_stamp("build", facts.id, dataclasses.asdict(built))
    return built


def built_image(ctx: Context, arch: Arch, *, in_engine: bool = True) -> BuiltImage:
    """The last build's image for `arch`; with `in_engine`, checked to still be in the engine
    (bib needs the image itself; the push stage only its recorded facts)."""
    directory = ctx.arch_dir(arch)
    stamp = directory.load_stamp("build")
    if stamp is None:
        raise PipelineError(
            f"no build of {ctx.release.variant} for {arch.value} in {directory.root}",
            hint="run `bootc-pipeline build` first",
        )
    built = BuiltImage(**stamp)
    if not in_engine:
        return built
    facts = ctx.engine.inspect(built.tag)
    if facts is None or facts.id != built.id:
        raise PipelineError(
            f"image {built.tag} from the last build is gone or was replaced in the engine",
            hint="run `bootc-pipeline build` again",
        )
    return built
