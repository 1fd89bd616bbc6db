"""Disk stage: the release's builder (bootc-image-builder, or osbuild's image-builder) turns the
built image into a qcow2, exactly per its contract (model/bib.py, model/image_builder.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from pathlib import Path
from typing import Any

from pipeline.core.arch import Arch
from pipeline.core.errors import PipelineError
from pipeline.core.files import atomic_write
from pipeline.core.mediatypes import DiskFormat
from pipeline.core.run import require_tool, run
from pipeline.model import bib
from pipeline.publishing.stages import runner
from pipeline.publishing.stages.build import BuiltImage, built_image
from pipeline.shared.context import Context
from pipeline.shared.engine import ImageFacts

QCOW2_MAGIC = b"QFI\xfb"
# Every architecture's image takes the same published name (the origin) for its builder run:
# one run of this process holds the name from the tag to the builder's end.
_ORIGIN_NAME = threading.Lock()


def check_qcow2(path: Path) -> None:
    """bib's output must be a qcow2 (magic `QFI\\xfb`, version 2 or 3), not an empty or raw file."""
    try:
        with path.open("rb") as f:
            header = f.read(8)
    except FileNotFoundError:
        raise PipelineError(f"the disk builder finished but wrote no {path}") from None
    if header[:4] != QCOW2_MAGIC or int.from_bytes(header[4:8], "big") not in (2, 3):
        raise PipelineError(f"{path} is not a qcow2 image (header {header[:8]!r})")


def containers_storage(ctx: Context, arch: Arch, image: str) -> Path:
    """A containers-storage (overlay) holding `image`, to bind-mount into bib.

    Podman's own graph root is one already. Docker Engine's image store is not: copy the image
    into a private containers-storage under the work directory with skopeo first.
    """
    engine = ctx.engine
    if engine.is_podman:
        if engine.storage_driver != "overlay":
            raise PipelineError(
                f"Podman's storage driver is {engine.storage_driver!r}; bootc-image-builder "
                "needs overlay"
            )
        return engine.graph_root
    skopeo = require_tool("skopeo", purpose="hand images from Docker Engine to bootc-image-builder")
    # One image per architecture, replaced on every hand-off: the storage does not grow.
    root = (ctx.arch_dir(arch).root / "containers-storage").resolve()
    runroot = (ctx.arch_dir(arch).root / "containers-run").resolve()
    for directory in (root, runroot):
        release_storage_mount(directory)
        inside = [p for p in mount_points() if p.startswith(f"{directory}/")]
        if inside:  # never delete through a mount into someone else's files
            raise PipelineError(f"cannot reset {directory}: {inside[0]} is mounted inside it")
        shutil.rmtree(directory, ignore_errors=True)
    daemon = engine.url if "://" in engine.url else "unix:///var/run/docker.sock"
    ctx.reporter.info(f"    copying {image} from Docker Engine into {root}")
    run(
        [
            skopeo,
            "copy",
            "--src-daemon-host",
            daemon,
            f"docker-daemon:{image}",
            f"containers-storage:[overlay@{root}+{runroot}]{image}",
        ]
    )
    release_storage_mount(root)
    return root


def mount_points(mountinfo: Path = Path("/proc/self/mountinfo")) -> list[str]:
    """Every mount point, bind mounts on the same filesystem included (os.path.ismount compares
    devices and misses those)."""
    points = []
    for line in mountinfo.read_text().splitlines():
        fields = line.split(" ")
        if len(fields) > 4:
            points.append(_unescape(fields[4]))
    return points


def is_mountpoint(path: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> bool:
    return str(path.resolve()) in mount_points(mountinfo)


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def release_storage_mount(root: Path) -> None:
    """containers/storage bind-mounts its overlay directory on itself (skopeo here, bib inside
    its container, which can propagate back): leave nothing mounted in the work directory."""
    overlay = root / "overlay"
    for _ in range(16):  # each user of the storage may have stacked one more mount
        if not is_mountpoint(overlay):
            return
        umount = require_tool("umount", purpose="release a storage mount", package="mount")
        run([umount, str(overlay)])
    raise PipelineError(f"{overlay} is still mounted after 16 unmounts")


def builder_image(ctx: Context) -> ImageFacts:
    """bootc-image-builder's image in the engine, pulled (once, with progress) if missing, so
    that its id, part of the disk's inputs, is the same on every run."""
    ref = ctx.builder_image
    return ctx.engine.ensure_image(ref, on_line=lambda line: ctx.reporter.info(f"    {line}"))


def disk(ctx: Context, arch: Arch) -> Path:
    """Run bib for one architecture; reuse the previous disk when nothing it depends on changed."""
    release = ctx.release
    image = built_image(ctx, arch)
    directory = ctx.arch_dir(arch)
    disk_format = DiskFormat(release.disk_type)
    bib_config = release.bib_config_for(arch)
    config = json.dumps(bib_config, sort_keys=True).encode()
    builder = builder_image(ctx)
    tool = release.builder
    output = tool.output_disk(directory.disk_dir, disk_format)

    def act() -> dict[str, Any]:
        make_disk(ctx, arch, image, output, config)
        return {"path": str(output), "size": output.stat().st_size}

    runner.run(
        directory,
        "disk",
        {
            "image": image.id,
            "tool": tool.value,
            "builder": ctx.builder_image,
            "builder_id": builder.id,
            "format": disk_format.value,
            "rootfs": release.rootfs,
            "config": bib_config,
            "origin": ctx.os_origin,  # bootc records the builder's input name as the origin
        },
        act,
        reporter=ctx.reporter,
        kept=lambda outputs: _kept(outputs) == output,
        shown="disk",
    )
    return output


def make_disk(ctx: Context, arch: Arch, image: BuiltImage, output: Path, config: bytes) -> None:
    """Run the release's builder on IMAGE into a fresh disk directory; OUTPUT is checked to
    be a qcow2. The builder is given the image under the OS image's published moving name, so
    the disk's bootc origin is that name (`ostree-unverified-registry:REG/REPO-os:40`)."""
    with _ORIGIN_NAME:
        _make_disk(ctx, arch, image, output, config)


def _make_disk(ctx: Context, arch: Arch, built: BuiltImage, output: Path, config: bytes) -> None:
    release = ctx.release
    directory = ctx.arch_dir(arch)
    origin = ctx.os_origin
    ctx.engine.tag(built.tag, origin)
    ctx.reporter.info(f"    {arch.value}: bootc origin {origin} (the name the builder is given)")
    graph_root = containers_storage(ctx, arch, origin)
    if not ctx.engine.is_podman:  # skopeo has copied the image: the builder reads that copy
        _still_named(ctx, arch, origin, built.id)
    try:
        if directory.disk_dir.exists():
            shutil.rmtree(directory.disk_dir)
        directory.disk_dir.mkdir(parents=True)
    except OSError as exc:
        raise PipelineError(f"cannot reset {directory.disk_dir}: {exc.strerror}") from None
    config_path = directory.root / "bib-config.json"
    atomic_write(config_path, config, mode=0o600)  # may hold user passwords: never world-readable
    invocation = release.builder.run(
        bib.DiskJob(
            builder_image=ctx.builder_image,
            bootc_image=origin,
            arch=arch,
            disk_format=DiskFormat(release.disk_type),
            rootfs=release.rootfs,
            graph_root=graph_root,
            output_dir=directory.disk_dir.resolve(),
            config_path=config_path.resolve(),
            chown=(os.getuid(), os.getgid()),
        )
    )

    def on_line(line: str) -> None:
        stage = bib.stage_of(line)
        if stage:
            ctx.reporter.info(f"    {arch.value}: {stage}")
        ctx.reporter.detail(line)

    try:
        ctx.engine.run_builder(invocation, on_line=on_line)
    finally:
        config_path.unlink(missing_ok=True)  # it may hold passwords: gone once it has been read
        if not ctx.engine.is_podman:  # Podman's own graph root is not ours to unmount
            release_storage_mount(graph_root)
    if ctx.engine.is_podman:  # the builder read Podman's storage while it ran
        _still_named(ctx, arch, origin, built.id)
    check_qcow2(output)


def _still_named(ctx: Context, arch: Arch, origin: str, image_id: str) -> None:
    """The builder took ORIGIN by name: it must have named this build's image throughout.

    Another publish of the same release on this engine (another work directory) tags its own
    image with the same name; a disk made meanwhile may hold either. Refused, so no disk is
    published whose OS image is not the one its annotations and origin check name.
    """
    now = ctx.engine.inspect(origin)
    if now is None or now.id != image_id:
        raise PipelineError(
            f"{origin} was given to {now.id if now else 'no image'} while the {arch.value} "
            f"disk was made from {image_id}: another run on this engine uses the same OS image "
            "name, so this disk may hold its image and is not used",
            hint="let the other run finish, then run again",
        )


def _kept(outputs: dict[str, Any]) -> Path | None:
    """The disk a disk stamp names, if it is still there at its recorded size."""
    path = Path(str(outputs.get("path")))
    if not path.is_file() or path.stat().st_size != outputs.get("size"):
        return None
    return path


def built_disk(ctx: Context, arch: Arch) -> Path:
    """The last disk stage's output for `arch`, made from the last build."""
    kept = runner.require(
        ctx.arch_dir(arch), "disk", ctx.release.variant, lambda outputs: _kept(outputs) is not None
    )
    return Path(str(kept["path"]))
