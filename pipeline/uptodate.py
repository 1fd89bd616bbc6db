"""The up-to-date check: whether the release a moving tag names was made from these inputs."""

from __future__ import annotations

from pipeline import plan, results
from pipeline import mediatypes as mt
from pipeline.context import Context
from pipeline.digest import Blob
from pipeline.plan import Provenance
from pipeline.published import ArchRelease


def up_to_date(ctx: Context, provenance: Provenance) -> bool:
    """Whether the release the first moving tag names was made from these very inputs, for
    every architecture of this run. Then each one's result file is written from the registry
    (so a join makes the same index again) and nothing is built or sent."""
    tags = ctx.release.moving_tags or ctx.release.tags
    client = ctx.registry
    repo = ctx.target.repository
    current = client.manifest_digest(repo, tags[0])
    if current is None:
        return False
    index = client.get_manifest(repo, current).json()
    annotations: dict[str, str] = index.get("annotations") or {}
    if annotations.get(mt.ANN_INPUTS) != provenance.inputs:
        ctx.reporter.info(f"inputs changed since {ctx.target.name}:{tags[0]}: building")
        return False
    children = {
        entry.get("platform", {}).get("architecture"): entry["digest"]
        for entry in index.get("manifests") or []
    }
    if any(arch.value not in children for arch in ctx.archs):
        return False
    version = annotations.get(mt.ANN_VERSION, "?")
    ctx.reporter.info(
        f"up to date: {ctx.target.name}:{tags[0]} is release {version} ({current}), made from "
        "the same inputs; nothing to build or send (--rebuild builds anyway)"
    )
    for arch in ctx.archs:
        fetched = client.get_manifest(repo, children[arch.value])
        manifest = plan.Document(fetched.media_type or mt.OCI_MANIFEST, fetched.body)
        body = manifest.json()
        layer = body["layers"][0]
        arch_release = ArchRelease(
            arch,
            Blob(layer["digest"], layer["size"]),
            Blob(
                body["annotations"][mt.ANN_UNCOMPRESSED_DIGEST],
                int(body["annotations"][mt.ANN_UNCOMPRESSED_SIZE]),
            ),
            0,
            manifest,
            0,
        )
        found = results.ArchResult(
            ctx.release.variant, ctx.target.name, annotations, arch_release, {}
        )
        path = ctx.variant_dir / results.file_name(arch)
        results.write(path, found)
        ctx.reporter.info(f"result: {path} (the published {arch.value} manifest)")
    return True
