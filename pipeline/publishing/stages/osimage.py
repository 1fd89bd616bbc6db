"""OS image stage: each architecture's bootc container image, pushed to the release's OS image
repository (README "Where the OS image lives") before its disk's boot check, so the guest can
resolve its own origin.

The image leaves the engine as a docker-archive (the Docker API's `save`, which Podman serves
too): its config as it is, each layer (an uncompressed tar, its digest the config's diff_id)
zstd-compressed. Then every blob, then the image manifest by digest: nothing is visible until
the join's index and tags (pipeline/assemble.py). Layers are made once per built image and kept
in the architecture's work directory, so a re-run sends nothing.
"""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from pipeline.core import mediatypes as mt
from pipeline.core import zstdfile
from pipeline.core.arch import Arch
from pipeline.core.digest import Blob, Sha256
from pipeline.core.errors import PipelineError
from pipeline.model import plan
from pipeline.model.plan import Document, ImageLayer, OsImageRef, Provenance
from pipeline.model.release import default_os_repository
from pipeline.publishing.stages import runner
from pipeline.publishing.stages.build import built_image
from pipeline.shared.context import Context

LAYERS_STAMP = "os-layers"
PUSHED_STAMP = runner.OS_IMAGE
LAYER_LEVEL = 3  # layers are read by bootc at every upgrade: fast to unpack beats small
ARCHIVE_MEMBER_LIMIT = 10_000  # a docker-archive has a few entries per layer


def _directory(ctx: Context, arch: Arch) -> Path:
    return ctx.arch_dir(arch).root / "os-image"


def _hash_file(path: Path) -> Blob:
    digest = Sha256()
    with path.open("rb") as f:
        while block := f.read(4 * 1024 * 1024):
            digest.update(block)
    return digest.blob()


def _member(archive: tarfile.TarFile, name: str, dest: Path) -> Path:
    found = archive.extractfile(name)
    if found is None:
        raise PipelineError(f"the engine's image archive has no file {name}")
    with found, dest.open("wb") as out:
        shutil.copyfileobj(found, out, 4 * 1024 * 1024)
    return dest


def layers(ctx: Context, arch: Arch) -> tuple[Blob, list[ImageLayer], Path]:
    """ARCH's built image as config and zstd layers in its work directory (made once per image):
    the config blob, the layers, the directory holding `<hex>` files of each."""
    directory, state = _directory(ctx, arch), ctx.arch_dir(arch)
    recorded = built_image(ctx, arch, in_engine=False)  # made once per image: no engine needed
    stamp = state.load_stamp(LAYERS_STAMP, recorded.id)
    if stamp is not None:
        config = Blob(**stamp["config"])
        found = [ImageLayer(Blob(**entry["blob"]), entry["diffId"]) for entry in stamp["layers"]]
        if all((directory / b.hex).is_file() for b in [config, *(x.blob for x in found)]):
            return config, found, directory
    built = built_image(ctx, arch)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="os-image-", dir=state.root) as temp:
        archive_path = ctx.engine.save_image(built.tag, Path(temp) / "image.tar")
        with tarfile.open(archive_path) as archive:
            names = archive.getnames()
            if len(names) > ARCHIVE_MEMBER_LIMIT:
                raise PipelineError(f"the engine's archive of {built.tag} has {len(names)} files")
            index = json.loads(archive.extractfile("manifest.json").read())  # type: ignore[union-attr]
            entry: dict[str, Any] = index[0]
            config_file = _member(archive, entry["Config"], Path(temp) / "config.json")
            config = _hash_file(config_file)
            config_file.rename(directory / config.hex)
            diff_ids = json.loads((directory / config.hex).read_text())["rootfs"]["diff_ids"]
            if len(diff_ids) != len(entry["Layers"]):
                raise PipelineError(
                    f"the engine's archive of {built.tag} has {len(entry['Layers'])} layers, "
                    f"its config {len(diff_ids)}"
                )
            found = []
            for name, diff_id in zip(entry["Layers"], diff_ids, strict=True):
                plain = _member(archive, name, Path(temp) / "layer.tar")
                packed = zstdfile.compress(plain, Path(temp) / "layer.tar.zst", level=LAYER_LEVEL)
                if packed.uncompressed.digest != diff_id:
                    raise PipelineError(
                        f"layer {name} of {built.tag} is {packed.uncompressed.digest}, its config "
                        f"says {diff_id}"
                    )
                packed.path.rename(directory / packed.compressed.hex)
                plain.unlink()
                found.append(ImageLayer(packed.compressed, diff_id))
    state.save_stamp(
        LAYERS_STAMP,
        built.id,
        {
            "config": config.__dict__,
            "layers": [{"blob": x.blob.__dict__, "diffId": x.diff_id} for x in found],
        },
    )
    return config, found, directory


def plan_image(ctx: Context, arch: Arch, provenance: Provenance) -> tuple[Document, list[Blob]]:
    """ARCH's OS image manifest and the blobs it names (config first)."""
    config, found, _ = layers(ctx, arch)
    base = built_image(ctx, arch, in_engine=False).base_digest
    manifest = plan.os_image_manifest(ctx.release, config, found, base, provenance)
    return manifest, [config, *(x.blob for x in found)]


def os_siblings(siblings: tuple[str, ...]) -> tuple[str, ...]:
    """The OS image repositories beside the sibling releases' disk repositories (by the default
    name): base layers shared with them are mounted, not sent again."""
    return tuple(default_os_repository(repository) for repository in siblings)


def push_image(
    ctx: Context, arch: Arch, provenance: Provenance, siblings: tuple[str, ...] = ()
) -> OsImageRef:
    """Every blob of ARCH's bootc image, then its manifest by digest (no index, no tag)."""
    manifest, blobs = plan_image(ctx, arch, provenance)
    directory = _directory(ctx, arch)
    target = ctx.os_target
    client = ctx.registry if target.registry == ctx.target.registry else None
    if client is None:
        raise PipelineError(
            f"os_image.repository {ctx.release.os_repository} is on another registry than "
            f"{ctx.release.repository}: the OS image goes to the disks' registry"
        )
    sent = 0
    for blob in blobs:
        result = client.push_blob(
            target.repository, directory / blob.hex, blob.digest, blob.size, mount_from=siblings
        )
        sent += result.bytes_sent
    client.push_manifest(target.repository, manifest.digest, manifest.body, manifest.media_type)
    pushed = OsImageRef(
        f"{target.registry}/{target.repository}", manifest.digest, plan.origin_of(ctx.os_origin)
    )
    ctx.reporter.info(
        f"    {arch.value}: OS image {pushed.reference} ({len(blobs)} blobs, {sent} bytes sent)"
    )
    image = built_image(ctx, arch, in_engine=False).id
    ctx.arch_dir(arch).save_stamp(
        PUSHED_STAMP,
        manifest.digest,
        pushed.__dict__ | {"manifest": manifest.body.decode(), "image": image},
    )
    return pushed


def pushed(ctx: Context, arch: Arch) -> tuple[OsImageRef, Document] | None:
    """The OS image this machine pushed for ARCH's current build (None: none pushed from it;
    one pushed from an earlier build is not this disk's)."""
    stamp = ctx.arch_dir(arch).load_stamp(PUSHED_STAMP)
    if stamp is None or stamp.pop("image", None) != built_image(ctx, arch, in_engine=False).id:
        return None
    body = str(stamp.pop("manifest")).encode()
    return OsImageRef(**stamp), Document(mt.OCI_MANIFEST, body)
