"""`publish`: every stage in order, as one linear job that reads like the release checklist.

What it leaves behind is written by outputs.py, its closing table by summary.py, and whether
there is anything to do at all is uptodate.py's question (all in pipeline/publishing/)."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

from pipeline.boot import tools as boot_tools
from pipeline.core.arch import Arch
from pipeline.model import plan
from pipeline.model import provenance as prov
from pipeline.model.plan import Provenance
from pipeline.model.published import ArchRelease, Published
from pipeline.publishing import assemble, inputs
from pipeline.publishing.outputs import write_outputs, write_results
from pipeline.publishing.sign import signing_key
from pipeline.publishing.stages import index as index_stage
from pipeline.publishing.stages import osimage
from pipeline.publishing.stages.boot import boot
from pipeline.publishing.stages.build import build, check_cross_arch, trust_inputs
from pipeline.publishing.stages.compress import compress
from pipeline.publishing.stages.disk import builder_image, disk
from pipeline.publishing.stages.push import push, push_arch, sibling_repositories
from pipeline.publishing.stages.sbom import sbom
from pipeline.publishing.summary import summary
from pipeline.publishing.tags import TagPolicy
from pipeline.publishing.uptodate import up_to_date
from pipeline.shared.context import Context

MIN_FREE_BYTES = 20 * 1024**3  # a bootc qcow2, its .zst and bib's scratch space, with room


def warnings(ctx: Context, provenance: Provenance) -> None:
    """What is likely wrong but not certainly: said up front, not failed on."""
    workdir = ctx.options.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(workdir).free
    if free < MIN_FREE_BYTES:
        ctx.reporter.info(
            f"warning: {free / 1024**3:.1f} GiB free in {workdir}; a bootc disk, its compressed "
            f"copy and bib's scratch space may need {MIN_FREE_BYTES // 1024**3} GiB"
        )
    root = ctx.release.path.resolve().parent
    if ctx.options.revision is None and prov.uncommitted_changes(root):
        ctx.reporter.info(
            f"warning: {root} has uncommitted changes; the release will say revision "
            f"{provenance.revision[:12]}, which does not contain them"
        )


def preflight(ctx: Context, provenance: Provenance) -> None:
    """Everything that can fail in the first second instead of after a 20-minute build."""
    warnings(ctx, provenance)
    signing_key(ctx.options)  # a bad key fails now, not after the build
    trust_inputs(ctx)  # as does a bad trust.public_key
    client = ctx.registry  # push access was checked first thing (publish)
    if ctx.tags_to_move:
        annotations = plan.release_annotations(ctx.release, provenance)
        TagPolicy.of(ctx, client).preflight(annotations)
        TagPolicy.of(ctx, client, ctx.os_target).preflight(annotations)
    for arch in ctx.archs:
        check_cross_arch(arch, Arch.host())
        if not ctx.options.skip_boot:
            boot_tools.require_for(arch)  # QEMU, firmware, seed and ssh tools, before the build
    ctx.reporter.info(f"builder: {ctx.builder_image} ({builder_image(ctx).id[:19]})")


def build_step(ctx: Context, arch: Arch, base_digest: str | None = None) -> None:
    with ctx.reporter.stage(f"build:{arch.value}", f"build {ctx.image_tag(arch)}"):
        build(ctx, arch, base_digest)


def sbom_step(ctx: Context, arch: Arch) -> None:
    with ctx.reporter.stage(f"sbom:{arch.value}", f"sbom {arch.value} (syft, SPDX JSON)"):
        sbom(ctx, arch)


def disk_step(ctx: Context, arch: Arch) -> None:
    with ctx.reporter.stage(
        f"disk:{arch.value}", f"disk {arch.value} ({ctx.release.builder.value})"
    ):
        disk(ctx, arch)


def compress_step(ctx: Context, arch: Arch) -> None:
    level = ctx.release.zstd_level
    with ctx.reporter.stage(f"compress:{arch.value}", f"compress {arch.value} (zstd -{level})"):
        compress(ctx, arch)


def os_image_step(
    ctx: Context, arch: Arch, provenance: Provenance, siblings: tuple[str, ...]
) -> None:
    where = ctx.release.os_repository
    with ctx.reporter.stage(f"os-image:{arch.value}", f"OS image {arch.value} to {where}"):
        osimage.push_image(ctx, arch, provenance, osimage.os_siblings(siblings))


def boot_step(ctx: Context, arch: Arch) -> None:
    with ctx.reporter.stage(f"boot:{arch.value}", f"boot {arch.value} (QEMU + UEFI, ssh)"):
        boot(ctx, arch)


def run_build(ctx: Context) -> None:
    """`build` alone: the base's digest for each architecture of the run, resolved now, then
    each architecture built FROM that digest, as `publish` builds FROM the recorded ones."""
    trust_inputs(ctx)  # a bad trust.public_key fails before anything else
    ctx.engine.describe()  # the engine first: a build without one fails in the first second
    with ctx.reporter.stage("inputs", f"inputs: the digests of {ctx.release.base}"):
        digests = inputs.base_digests(ctx, ctx.archs)
    for arch in ctx.archs:
        build_step(ctx, arch, digests[arch.value])


def run_disk(ctx: Context) -> None:
    for arch in ctx.archs:
        disk_step(ctx, arch)


def run_compress(ctx: Context) -> None:
    for arch in ctx.archs:
        compress_step(ctx, arch)


def run_boot(ctx: Context) -> None:
    """The boot check of every architecture; the first failure stops the run before any push."""
    for arch in ctx.archs:
        boot_step(ctx, arch)


def arch_pipeline(
    ctx: Context, arch: Arch, provenance: Provenance, siblings: tuple[str, ...]
) -> ArchRelease:
    """One architecture from source to registry: build, disk, compress, upload (by digest)."""
    build_step(ctx, arch)
    sbom_step(ctx, arch)  # of the image just built; attached to the disk manifest at upload
    disk_step(ctx, arch)
    compress_step(ctx, arch)
    # by digest (nothing visible yet), before the boot check: the guest resolves its origin
    os_image_step(ctx, arch, provenance, siblings)
    if not ctx.options.skip_boot:  # after compress, before this architecture's upload
        boot_step(ctx, arch)
    with ctx.reporter.stage(f"upload:{arch.value}", f"upload {arch.value}"):
        return push_arch(ctx, arch, provenance, siblings)


def _in_thread(
    ctx: Context, arch: Arch, provenance: Provenance, siblings: tuple[str, ...]
) -> ArchRelease:
    try:
        return arch_pipeline(ctx, arch, provenance, siblings)
    finally:
        ctx.close()


def run_arch_pipelines(ctx: Context, provenance: Provenance) -> list[ArchRelease]:
    """Each architecture's pipeline, at most --jobs at a time, joined before the index.

    A failing architecture fails the publish once the others running have finished (their
    stages are stamped, so the re-run reuses them); no index or tag is pushed.
    """
    siblings = sibling_repositories(ctx)
    jobs = max(1, min(ctx.options.jobs, len(ctx.archs)))
    if jobs == 1:
        return [arch_pipeline(ctx, arch, provenance, siblings) for arch in ctx.archs]
    ctx.reporter.info(f"{len(ctx.archs)} architectures, {jobs} at a time")
    with ctx.reporter.plain(), ThreadPoolExecutor(jobs, thread_name_prefix="arch") as pool:
        futures = [
            pool.submit(_in_thread, ctx.for_thread(), arch, provenance, siblings)
            for arch in ctx.archs
        ]
        done, running = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in done if f.exception() is not None]
        if failed and running:
            ctx.reporter.info("an architecture failed: waiting for the others (kept for a re-run)")
        return [f.result() for f in futures]  # the first failure, in architecture order


def run_push(ctx: Context, provenance: Provenance) -> Published:
    if provenance.inputs is None:  # `push` alone: the inputs `publish` recorded, if any
        found = inputs.saved(ctx)
        provenance = dataclasses.replace(provenance, inputs=found[0] if found else None)
    with ctx.reporter.stage("push", f"push {ctx.release.repository}"):
        published = push(ctx, provenance)
    write_results(ctx, published, provenance)
    write_outputs(ctx, published, provenance)
    return published


def run_index(ctx: Context, paths: Sequence[Path]) -> Published:
    """The join: result files of per-architecture runs (any machines) into the release."""
    ctx, found = index_stage.resolve(ctx, paths)
    provenance = index_stage.provenance_of(found[0])
    archs = ", ".join(r.release.arch.value for r in found)
    with ctx.reporter.stage("index", f"index {ctx.release.version} of {archs}"):
        published = index_stage.index(ctx, found)
    write_outputs(ctx, published, provenance)
    ctx.reporter.console.print(summary(ctx, published))
    return published


def publish(ctx: Context, provenance: Provenance) -> Published | None:
    ctx.registry.check_push_access(ctx.target.repository)  # first: it needs nothing else
    with ctx.reporter.stage("inputs", "inputs: base digests from the registry, build context"):
        record = inputs.record(ctx)
    provenance = dataclasses.replace(provenance, inputs=inputs.digest_of(record))
    if not ctx.options.rebuild and up_to_date(ctx, provenance):
        return None
    inputs.save(ctx, record)
    preflight(ctx, provenance)
    if ctx.options.skip_boot:
        ctx.reporter.info("boot check skipped (--skip-boot): the report records it")
    sent = run_arch_pipelines(ctx, provenance)
    with ctx.reporter.stage("push", f"index and tags {ctx.release.repository}"):
        index, os_index = assemble.plan_indexes(ctx, sent, provenance)
        published = assemble.release(ctx, ctx.registry, sent, index, os_index)
    write_results(ctx, published, provenance)
    write_outputs(ctx, published, provenance)
    ctx.reporter.console.print(summary(ctx, published))
    return published
