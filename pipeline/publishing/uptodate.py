"""The up-to-date check: whether the release a moving tag names was made from these inputs."""

from __future__ import annotations

from pipeline.core import mediatypes as mt
from pipeline.model import plan, results
from pipeline.model.plan import Provenance
from pipeline.model.published import ArchRelease
from pipeline.publishing.stages import runner
from pipeline.shared import readback
from pipeline.shared.context import Context


def up_to_date(ctx: Context, provenance: Provenance) -> bool:
    """Whether the release the first moving tag names was made from these very inputs, for
    every architecture of this run. Then each one's result file is written from the registry
    (the manifests read back and verified, shared/readback.py, so a join makes the same index
    again) and nothing is built or sent."""
    tags = ctx.release.moving_tags or ctx.release.tags
    client = ctx.registry
    repo = ctx.target.repository
    current = client.manifest_digest(repo, tags[0])
    if current is None:
        return False
    index = readback.index_at(client, repo, current)
    if index is None:
        return False
    if index.annotations.get(mt.ANN_INPUTS) != provenance.inputs:
        ctx.reporter.info(f"inputs changed since {ctx.target.name}:{tags[0]}: building")
        return False
    made = plan.Provenance(
        index.annotations.get(mt.ANN_CREATED, ""),
        index.annotations.get(mt.ANN_REVISION, ""),
        provenance.inputs,
    )
    # as the join will check them: that release's version and provenance, this run's manifest
    release = ctx.release.with_version(index.annotations.get(mt.ANN_VERSION, ctx.release.version))
    ours = plan.release_annotations(release, made)
    if ours != index.annotations:  # e.g. made by a version that annotated less: the join would
        differ = sorted(k for k in ours.keys() | index.annotations.keys()  # refuse its results
                        if ours.get(k) != index.annotations.get(k))  # fmt: skip
        ctx.reporter.info(
            f"{ctx.target.name}:{tags[0]} has the same inputs but other annotations than this "
            f"run makes ({', '.join(differ)}): building"
        )
        return False
    archs = readback.arch_releases(client, repo, index, ctx.archs)
    if archs is None:
        return False
    boots = {a.arch: runner.published_record(_boot_check(a)) for a in archs}
    if None in boots.values():  # the join refuses a result without its boot record
        ctx.reporter.info(
            f"{ctx.target.name}:{tags[0]} does not say how its disks passed the boot gate: building"
        )
        return False
    version = index.annotations.get(mt.ANN_VERSION, "?")
    ctx.reporter.info(
        f"up to date: {ctx.target.name}:{tags[0]} is release {version} ({current}), made from "
        "the same inputs; nothing to build or send (--rebuild builds anyway)"
    )
    for arch_release in archs:
        arch = arch_release.arch
        result = results.ArchResult(
            ctx.release.variant,
            ctx.target.name,
            index.annotations,
            arch_release,
            {},
            boots[arch],
        )
        path = ctx.variant_dir / results.file_name(arch)
        results.write(path, result)
        ctx.reporter.info(f"result: {path} (the published {arch.value} manifest)")
    return True


def _boot_check(release: ArchRelease) -> str | None:
    found = (release.manifest.json().get("annotations") or {}).get(mt.ANN_BOOT_CHECK)
    return found if isinstance(found, str) else None
