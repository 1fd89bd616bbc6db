"""Index stage: per-architecture result files (from one machine or several) into a release.

Each result names a manifest pushed by digest on some machine. The results must agree with
each other and with the release manifest here; every child manifest and blob must be in the
registry; then the index is made exactly as a single-machine publish makes it
(publishing/assemble.py), so the same inputs give the same index digest, and tags move under the
same policy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from pipeline.core import mediatypes as mt
from pipeline.core.errors import UsageError
from pipeline.model import plan, results
from pipeline.model.plan import Provenance
from pipeline.model.published import Published
from pipeline.publishing import assemble
from pipeline.publishing.stages import runner
from pipeline.shared.context import Context


def _agree(paths: Sequence[Path], found: Sequence[results.ArchResult], ctx: Context) -> None:
    target = f"{ctx.target.registry}/{ctx.target.repository}"
    first = found[0]
    seen: dict[str, Path] = {}
    for path, result in zip(paths, found, strict=True):
        arch = result.release.arch
        if arch.value in seen:
            raise UsageError(
                f"{path}: a second result for {arch.value} (first: {seen[arch.value]})"
            )
        seen[arch.value] = path
        if arch not in ctx.release.architectures:
            raise UsageError(f"{path}: {arch.value} is not an architecture of {ctx.release.path}")
        if result.variant != ctx.release.variant:
            raise UsageError(
                f"{path}: a result of variant {result.variant}, not {ctx.release.variant}"
            )
        _gate(path, result)
        if result.repository != target:
            raise UsageError(f"{path}: pushed to {result.repository}, not {target}")
        differ = sorted(
            key
            for key in result.annotations.keys() | first.annotations.keys()
            if result.annotations.get(key) != first.annotations.get(key)
        )
        if differ:
            raise UsageError(
                f"{path}: made with other release annotations than {paths[0]} "
                f"({', '.join(differ)})",
                hint="every architecture of a release must come from one planned version",
            )


def _gate(path: Path, result: results.ArchResult) -> None:
    """The join is past the boot gate too: a result whose boot record is missing or not a pass
    (or the recorded `--skip-boot` skip), or says other than its manifest's boot-check
    annotation (written by the push past the gate), is refused."""
    arch, boot = result.release.arch.value, result.boot
    if boot is None:
        raise UsageError(
            f"{path}: the {arch} disk has no boot record: it is not joined",
            hint="publish that architecture again (the boot check, or --skip-boot on record)",
        )
    if not runner.passed(boot):
        raise UsageError(
            f"{path}: the {arch} disk failed its boot check ({runner.why_not(boot)}): it is "
            "not joined",
            hint="re-run that architecture's publish once its disk boots",
        )
    said = (result.release.manifest.json().get("annotations") or {}).get(mt.ANN_BOOT_CHECK)
    recorded = "skipped" if boot.get("skipped") else "passed"
    if said is not None and said != recorded:
        raise UsageError(
            f"{path}: the {arch} disk's boot record says {recorded}, its manifest says "
            f"{mt.ANN_BOOT_CHECK}={said}: it is not joined"
        )


def resolve(ctx: Context, paths: Sequence[Path]) -> tuple[Context, list[results.ArchResult]]:
    """The context of the release the results make: their version, base and architectures."""
    if not paths:
        raise UsageError("index: no result files given")
    found = [results.load(path) for path in paths]
    _agree(paths, found, ctx)
    ann = found[0].annotations
    for key in (mt.ANN_VERSION, mt.ANN_BASE_NAME, mt.ANN_CREATED, mt.ANN_REVISION):
        if key not in ann:
            raise UsageError(f"{paths[0]}: annotations: {key} is missing")
    release = dataclasses.replace(ctx.release, base=ann[mt.ANN_BASE_NAME]).with_version(
        ann[mt.ANN_VERSION]
    )
    archs = tuple(a for a in release.architectures if a in {r.release.arch for r in found})
    options = dataclasses.replace(ctx.options, archs=archs)
    boots = {r.release.arch.value: r.boot for r in found if r.boot is not None}
    joined = dataclasses.replace(ctx, release=release, options=options, joined_boots=boots)
    return joined, found


def provenance_of(result: results.ArchResult) -> Provenance:
    ann = result.annotations
    return Provenance(ann[mt.ANN_CREATED], ann[mt.ANN_REVISION], ann.get(mt.ANN_INPUTS))


def index(ctx: Context, found: Sequence[results.ArchResult]) -> Published:
    """Check the results against the release manifest, then make the release of them."""
    provenance = provenance_of(found[0])
    ours = plan.release_annotations(ctx.release, provenance)
    if ours != found[0].annotations:
        differ = sorted(k for k in ours.keys() | found[0].annotations.keys()
                        if ours.get(k) != found[0].annotations.get(k))  # fmt: skip
        raise UsageError(
            f"the results were made from another release manifest than {ctx.release.path} "
            f"(annotations differ: {', '.join(differ)})",
            hint="run the index stage from the same commit as the per-architecture runs",
        )
    for r in found:
        for stage, seconds in r.timings.items():
            ctx.reporter.timings[f"{stage}:{r.release.arch.value}"] = seconds
    archs = [r.release for r in found]
    client = assemble.client_for(ctx)
    index = assemble.plan_index(ctx, archs, provenance)
    return assemble.release(ctx, client, archs, index, sent=False)  # the join sent nothing yet
