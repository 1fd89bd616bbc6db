"""The release operations' subcommands: `list`, `promote`, `prune` (pipeline/model/releases_plan.py
decides, pipeline/publishing/releases.py talks to the registry)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.core.errors import UsageError
from pipeline.core.progress import Reporter
from pipeline.core.reference import Reference, parse_reference, validate_tag
from pipeline.model import release as releases
from pipeline.model.releases_plan import (
    StoredRelease,
    list_rows,
    plan_os_prune,
    plan_promote,
    plan_prune,
)
from pipeline.publishing import releases as releases_ops
from pipeline.publishing.deleters import deleter_for
from pipeline.shared import readback
from pipeline.shared.context import Options, apply_overrides

Command = Callable[[argparse.Namespace, Reporter, Options], int]


def add_parsers(
    sub: Any, registry_options: Callable[[argparse.ArgumentParser], None], common: Any
) -> None:
    p = sub.add_parser("list", help="every release in a repository, newest first")
    p.add_argument("reference", help="REGISTRY/REPO")
    p.add_argument("--json", action="store_true", help="JSON on stdout")
    registry_options(p)
    common(p)
    p = sub.add_parser("promote", help="tag an existing release by digest (no rebuild)")
    p.add_argument("source", help="REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:... of a release")
    p.add_argument("target", help="REGISTRY/REPO:TAG[,TAG...] (the same registry)")
    p.add_argument(
        "--moving", default="", help="comma-separated tags of TARGET that move (set last)"
    )
    p.add_argument("--json", action="store_true", help="what moved, as JSON on stdout")
    registry_options(p)
    common(p)
    p = sub.add_parser("prune", help="delete old dated releases (a dry run without --yes)")
    p.add_argument("reference", nargs="?", help="REGISTRY/REPO (default: the manifest's)")
    p.add_argument("--keep", type=int, help="dated releases to keep (default: retention.keep)")
    p.add_argument("--older-than", type=float, metavar="DAYS", help="delete only older ones")
    p.add_argument("--yes", action="store_true", help="delete (default: show what would go)")
    p.add_argument("--json", action="store_true", help="the plan as JSON on stdout")
    p.add_argument("--variant", help="take repository and retention from this manifest")
    p.add_argument("--manifest", type=Path, help="the release manifest file")
    p.add_argument("--manifests-dir", type=Path, help="where VARIANT.yaml is")
    registry_options(p)
    common(p)


def _repository(text: str) -> Reference:
    ref = parse_reference(text)
    if ref.tag or ref.digest:
        raise UsageError(f"{text}: name a repository (REGISTRY/REPO), without a tag or digest")
    return ref


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [[", ".join(v) if isinstance(v, list) else str(v) for v in map(r.get, columns)]
             for r in rows]  # fmt: skip
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def run_list(args: argparse.Namespace, reporter: Reporter, options: Options) -> int:
    ref = _repository(args.reference)
    with options.registry_client(ref.registry) as client:
        found, others = releases_ops.read_releases(client, ref.repository)
    rows = list_rows(found)
    if args.json:
        print(json.dumps({"repository": ref.name, "releases": rows, "otherTags": others}))
    else:
        columns = ["version", "created", "architectures", "index", "tags", "boot", "signed"]
        print(_table(rows, [*columns, "osImage"]) if rows else f"no releases in {ref.name}")
    return 0


def run_promote(args: argparse.Namespace, reporter: Reporter, options: Options) -> int:
    source = parse_reference(args.source)
    if not source.tag and not source.digest:
        raise UsageError(f"{args.source}: name the release by tag or digest")
    name, _, tag_list = args.target.rpartition(":")
    if not name or "/" in tag_list:
        raise UsageError(f"{args.target}: expected REGISTRY/REPO:TAG[,TAG...]")
    target = _repository(name)
    tags = [t for t in tag_list.split(",") if t]
    moving = [t for t in args.moving.split(",") if t]
    for tag in tags:
        validate_tag(tag, context=args.target)
    if target.registry != source.registry:
        raise UsageError(
            f"promote copies within one registry ({source.registry}, not {target.registry})"
        )
    with options.registry_client(source.registry) as client:
        digest = client.manifest_digest(source.repository, source.target)
        if digest is None:
            raise UsageError(f"{source} does not exist")
        found, _ = releases_ops.read_releases(client, source.repository)
        release = next((r for r in found if r.digest == digest), None)
        if release is None:  # named by digest only: read that index alone
            release = releases_ops.read_release(client, source.repository, digest)
        if release is None:
            raise UsageError(f"{source} is not a release (an index): nothing to promote")
        current = {t: client.manifest_digest(target.repository, t) for t in tags}
        plan = plan_promote(
            release,
            source=source.repository,
            target=target.repository,
            tags=tags,
            moving=moving,
            current=current,
        )
        os_plan = None
        if release.os_image:  # the OS image goes with its disk: to TARGET-os, the same tags
            named = release.os_image.rpartition("@")[0]
            os_source = readback.os_index_repository(
                client, source.repository, named, release.os_digest
            )
            os_target = releases.default_os_repository(target.repository)
            os_release = releases_ops.read_release(client, os_source, release.os_digest)
            if os_release is None:
                raise UsageError(f"{source}: its OS image {release.os_image} is not an index")
            os_plan = plan_promote(
                os_release,
                source=os_source,
                target=os_target,
                tags=tags,
                moving=moving,
                current={t: client.manifest_digest(os_target, t) for t in tags},
            )
        reporter.info(f"promote {source} ({release.version}, {digest}) to {target.name}")
        origin = release.origin(source.registry)
        os_moved = None
        if os_plan is not None:  # first: a disk visible at a tag has its OS image there
            reporter.info(
                f"  its OS image {release.os_image} to {target.registry}/{os_plan.target}"
            )
            os_moved = releases_ops.promote(client, os_plan, reporter.info)
            reporter.info(
                f"  its disks keep the bootc origin they were built with, {origin} (promote "
                "copies bytes, it does not rebuild: `bootc switch` moves a VM to another stream)"
            )
        moved = releases_ops.promote(client, plan, reporter.info)
    if args.json:
        out: dict[str, Any] = {"index": digest, "repository": target.name, "moved": moved}
        if os_plan is not None:
            out["osImage"] = {
                "index": os_plan.release.digest,
                "repository": f"{target.registry}/{os_plan.target}",
                "moved": os_moved,
                "origin": origin,
            }
        print(json.dumps(out))
    return 0


def _os_repository(
    ref: Reference, os_repository: str | None, found: list[StoredRelease]
) -> str | None:
    """The repository (path) of this disk repository's OS images: the manifest's os_image, else
    `<repository>-os`, where publish and promote put them (a promoted release's annotations
    name its source's OS repository, whose images are not this prune's: the copy promote made
    here has the same digest, which is how it is found). None when no release names one."""
    if not any(r.os_image for r in found):
        return None
    if os_repository:
        return parse_reference(os_repository).repository
    return releases.default_os_repository(ref.repository)


def run_prune(args: argparse.Namespace, reporter: Reporter, options: Options) -> int:
    keep, older = args.keep, args.older_than
    os_repository = None
    if args.variant or args.manifest:
        path = args.manifest or releases.find(args.variant, args.manifests_dir)
        release = apply_overrides(releases.load(path), options)
        policy = release.retention or {}
        keep = keep if keep is not None else policy.get("keep")
        older = older if older is not None else policy.get("older_than_days")
        ref = _repository(args.reference or release.repository)
        # the manifest's OS repository is its disks': another repository keeps its own default
        own = _repository(release.repository)
        if (ref.registry, ref.repository) == (own.registry, own.repository):
            os_repository = release.os_repository
    elif args.reference:
        ref = _repository(args.reference)
    else:
        raise UsageError("prune: name REGISTRY/REPO, or --variant/--manifest")
    if keep is None:
        raise UsageError("prune: --keep N is required (or retention.keep in the manifest)")
    with options.registry_client(ref.registry) as client:
        found, _ = releases_ops.read_releases(client, ref.repository)
        plan = plan_prune(found, keep=int(keep), older_than_days=older, now=datetime.now(UTC))
        os_repo = _os_repository(ref, os_repository, found)
        os_plan = None
        if os_repo is not None:
            os_found, _ = releases_ops.read_releases(client, os_repo)
            os_plan = plan_os_prune(plan, os_found)
        rows = plan.rows()
        summary = {
            "repository": ref.name,
            "deleted": args.yes,
            "releases": rows,
            "deleteBytes": plan.deleted_bytes,
            "keepBytes": plan.kept_bytes,
        }
        if os_plan is not None:
            summary["osImage"] = {
                "repository": f"{ref.registry}/{os_repo}",
                "releases": os_plan.rows(),
                "deleteBytes": os_plan.deleted_bytes,
                "keepBytes": os_plan.kept_bytes,
            }
        if args.json:
            print(json.dumps(summary))
        else:
            columns = ["action", "version", "created", "index", "tags", "bytes", "reason"]
            print(_table(rows, columns) if rows else f"no releases in {ref.name}")
            verb = "deleting" if args.yes else "would delete (dry run; --yes deletes)"
            print(
                f"{verb} {len(plan.delete)} release(s), {plan.deleted_bytes} bytes; keeping "
                f"{len(plan.keep)}, {plan.kept_bytes} bytes"
            )
            if os_plan is not None:
                print(
                    f"{verb} {len(os_plan.delete)} OS image(s) in {ref.registry}/{os_repo}, "
                    f"{os_plan.deleted_bytes} bytes; keeping {len(os_plan.keep)}, "
                    f"{os_plan.kept_bytes} bytes"
                )
        if args.yes:
            deleter = deleter_for(ref.registry, ref.repository, client)
            releases_ops.prune(deleter, ref.repository, plan, reporter.info)
            if os_plan is not None and os_repo is not None:  # after the disks that name them
                os_deleter = deleter_for(ref.registry, os_repo, client)
                releases_ops.prune(os_deleter, os_repo, os_plan, reporter.info)
    return 0


COMMANDS: dict[str, Command] = {"list": run_list, "promote": run_promote, "prune": run_prune}
