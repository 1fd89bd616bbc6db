"""`publish`: every stage in order, as one linear job that reads like the release checklist."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from rich.table import Table

from pipeline import assemble, inputs, lima_settings, plan, report, results
from pipeline import mediatypes as mt
from pipeline import provenance as prov
from pipeline.arch import Arch
from pipeline.boot import tools as boot_tools
from pipeline.context import Context
from pipeline.digest import Blob
from pipeline.errors import PipelineError
from pipeline.plan import Provenance
from pipeline.published import ArchRelease, Published
from pipeline.stages import index as index_stage
from pipeline.stages.boot import boot, recorded
from pipeline.stages.build import build, check_cross_arch
from pipeline.stages.compress import compress
from pipeline.stages.disk import builder_image, disk
from pipeline.stages.push import push, push_arch, sibling_repositories
from pipeline.tags import TagPolicy

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
    client = ctx.registry  # push access was checked first thing (publish)
    if ctx.tags_to_move:
        TagPolicy.of(ctx, client).preflight(plan.release_annotations(ctx.release, provenance))
    for arch in ctx.archs:
        check_cross_arch(arch, Arch.host())
        if not ctx.options.skip_boot:
            boot_tools.require_for(arch)  # QEMU, firmware, seed and ssh tools, before the build
    ctx.reporter.info(f"builder: {ctx.options.builder_image} ({builder_image(ctx).id[:19]})")


def build_step(ctx: Context, arch: Arch, base_digest: str | None = None) -> None:
    with ctx.reporter.stage(f"build:{arch.value}", f"build {ctx.image_tag(arch)}"):
        build(ctx, arch, base_digest)


def disk_step(ctx: Context, arch: Arch) -> None:
    with ctx.reporter.stage(f"disk:{arch.value}", f"disk {arch.value} (bootc-image-builder)"):
        disk(ctx, arch)


def compress_step(ctx: Context, arch: Arch) -> None:
    level = ctx.release.zstd_level
    with ctx.reporter.stage(f"compress:{arch.value}", f"compress {arch.value} (zstd -{level})"):
        compress(ctx, arch)


def boot_step(ctx: Context, arch: Arch) -> None:
    with ctx.reporter.stage(f"boot:{arch.value}", f"boot {arch.value} (QEMU + UEFI, ssh)"):
        boot(ctx, arch)


def run_build(ctx: Context) -> None:
    """`build` alone: the base's digest for each architecture of the run, resolved now, then
    each architecture built FROM that digest, as `publish` builds FROM the recorded ones."""
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


def boot_records(ctx: Context) -> dict[str, dict[str, Any]]:
    """Per architecture, the boot check recorded for the disk being pushed (or why none)."""
    not_run = {"skipped": True, "reason": "not run"}
    return {
        arch.value: ctx.joined_boots.get(arch.value) or recorded(ctx, arch) or not_run
        for arch in ctx.archs
    }


def arch_pipeline(
    ctx: Context, arch: Arch, provenance: Provenance, siblings: tuple[str, ...]
) -> ArchRelease:
    """One architecture from source to registry: build, disk, compress, upload (by digest)."""
    build_step(ctx, arch)
    disk_step(ctx, arch)
    compress_step(ctx, arch)
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


def arch_timings(ctx: Context, arch: Arch) -> dict[str, float]:
    suffix = f":{arch.value}"
    return {k[: -len(suffix)]: v for k, v in ctx.reporter.timings.items() if k.endswith(suffix)}


def write_results(ctx: Context, published: Published, provenance: Provenance) -> None:
    """One result file per architecture: what `bootc-pipeline index` makes the release of."""
    annotations = plan.release_annotations(ctx.release, provenance)
    boots = boot_records(ctx)
    for r in published.archs:
        path = ctx.variant_dir / results.file_name(r.arch)
        found = results.ArchResult(
            ctx.release.variant,
            published.repository,
            annotations,
            r,
            arch_timings(ctx, r.arch),
            boots.get(r.arch.value),
        )
        results.write(path, found)
        ctx.reporter.info(f"result: {path}")


def output_paths(ctx: Context) -> tuple[Path, Path]:
    return (
        ctx.variant_dir / "release-report.json",
        ctx.variant_dir / f"lima-{ctx.release.variant}.yaml",
    )


def anonymous_access(ctx: Context, published: Published) -> dict[str, int]:
    """What Lima's downloader (plain HTTP(S), no registry token auth) gets for each layer."""
    client = ctx.registry
    found = {}
    for r in published.archs:
        status = client.anonymous_blob_status(ctx.target.repository, r.layer.digest)
        found[r.arch.value] = status
        if status != 200:
            ctx.reporter.info(
                f"warning: {r.arch.value} layer answers {status} without credentials: Lima's "
                "downloader has no registry token auth, so the Lima template's blob URL "
                "will not download"
            )
    return found


def lima_command(ctx: Context, published: Published) -> str:
    """The command that gets a release into Lima from any registry (tokens, redirects)."""
    version = ctx.release.version
    ref = (
        f"{published.repository}:{version}"
        if version in published.tags
        else f"{published.repository}@{published.index.digest}"
    )
    flags = " --plain-http" if ctx.options.plain_http else ""
    return f"bootc-pipeline lima {ref} --platform all{flags} --start"


def write_outputs(ctx: Context, published: Published, provenance: Provenance) -> None:
    """The report and the Lima template, then (best-effort) the anonymous download check.

    The release is tagged by now: a probe that fails must not cost it its report. The report
    is written first and written again with the probe's answers, or with what went wrong. When
    the probe shows that Lima cannot download the blob URLs, the template is written again as a
    working file that says so and names the `bootc-pipeline lima` command that works.
    """
    report_path, template_path = output_paths(ctx)
    body = report.release_report(ctx.release, published, provenance, ctx.reporter.timings)
    command = lima_command(ctx, published)
    body["limaCommand"] = command
    body["boot"] = boot_records(ctx)
    found = inputs.saved(ctx)
    if found and found[0] == published.index.json()["annotations"].get(mt.ANN_INPUTS):
        body["inputs"] = {"digest": found[0]} | found[1]
    report.write_report(report_path, body)
    template = report.lima_template(ctx.release, published, plain_http=ctx.options.plain_http)

    def write_template(*start: str) -> None:
        header = lima_settings.header(
            f"Lima template for {ctx.release.name} {ctx.release.version}, made by bootc-pipeline.",
            f"Index {published.repository}@{published.index.digest}",
            *start,
        )
        report.write_lima_template(template_path, template, header=header)

    write_template(f"Start it with: limactl start {template_path.name}")
    ctx.reporter.info(f"report: {report_path}")
    ctx.reporter.info(f"lima template: {template_path}")
    try:
        anonymous = anonymous_access(ctx, published)
    except PipelineError as exc:
        body["limaAnonymousStatus"] = {"error": exc.message}
        ctx.reporter.info(
            f"warning: could not check anonymous downloads ({exc.message}); the release is "
            f"published, check that Lima can download it, or use: {command}"
        )
        report.write_report(report_path, body)
        return
    body["limaAnonymousStatus"] = anonymous
    works = all(status == 200 for status in anonymous.values())
    body["limaTemplateDownloads"] = works
    report.write_report(report_path, body)
    if not works:
        statuses = ", ".join(sorted({str(s) for s in anonymous.values()}))
        write_template(
            f"WORKING FILE: its blob URLs answered {statuses} without credentials, so Lima "
            "cannot download them.",
            f"Use instead: {command}",
        )
        ctx.reporter.info(
            f"the Lima template {template_path.name} will not download from "
            f"{ctx.target.registry} (no anonymous access); for Lima, run: {command}"
        )


def summary(ctx: Context, published: Published) -> Table:
    """One row per architecture; the boot column when the boot check ran (a skip is said in the
    caption, which keeps the table within 80 columns for the digests)."""
    table = Table(title=f"{published.repository} {ctx.release.version}")
    boots = None if ctx.options.skip_boot else boot_records(ctx)
    columns = ["arch", "manifest", "layer bytes", "disk bytes", "sent bytes", "seconds"]
    if boots is not None:
        columns.insert(5, "boot")
    for column in columns:
        table.add_column(column)
    for r in published.archs:
        seconds = sum(arch_timings(ctx, r.arch).values())
        cells = [
            r.arch.value,
            r.manifest.digest[:19],
            str(r.layer.size),
            str(r.uncompressed.size),
            str(r.bytes_sent),
            f"{seconds:.1f}",
        ]
        if boots is not None:
            cells.insert(5, boot_cell(boots.get(r.arch.value, {})))
        table.add_row(*cells)
    table.caption = f"index {published.index.digest}  tags: {', '.join(published.tags)}"
    if boots is None:
        table.caption += "  boot: skipped (--skip-boot)"
    return table


def boot_cell(record: dict[str, Any]) -> str:
    if record.get("skipped"):
        return "skipped"  # why is in the report
    if not record.get("ok"):
        return "FAILED"
    return f"ok, ssh {record.get('secondsToSsh')} s ({record.get('accelerator')})"


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
        index = assemble.plan_index(ctx, sent, provenance)
        published = assemble.release(ctx, ctx.registry, sent, index)
    write_results(ctx, published, provenance)
    write_outputs(ctx, published, provenance)
    ctx.reporter.console.print(summary(ctx, published))
    return published
