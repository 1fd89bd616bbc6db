"""What a publish (or a join) leaves behind besides the registry: the per-architecture result
files, the release report and the Lima template, and the anonymous-download check behind them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.core import mediatypes as mt
from pipeline.core.arch import Arch
from pipeline.core.errors import PipelineError
from pipeline.model import lima_settings, plan, report, results
from pipeline.model.plan import Provenance
from pipeline.model.published import Published
from pipeline.publishing import inputs
from pipeline.publishing.stages.boot import recorded
from pipeline.shared.context import Context


def boot_records(ctx: Context) -> dict[str, dict[str, Any]]:
    """Per architecture, the boot check recorded for the disk being pushed (a pass, or the
    --skip-boot skip: the push gate let nothing else through), or a joined result's."""
    not_run = {"skipped": True, "reason": "not run"}
    return {
        arch.value: ctx.joined_boots.get(arch.value) or recorded(ctx, arch) or not_run
        for arch in ctx.archs
    }


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
    body["signatures"] = list(published.signatures)
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
