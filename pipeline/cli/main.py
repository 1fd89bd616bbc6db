"""The command line: `bootc-pipeline COMMAND` (publish, its stages, boot, validate, pull, lima,
list, promote, prune)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pipeline.cli import releases as cli_releases
from pipeline.core import settings, worklock
from pipeline.core.arch import Arch
from pipeline.core.errors import EXIT_FAILURE, PipelineError, UsageError
from pipeline.core.progress import Reporter
from pipeline.model import provenance as prov
from pipeline.model import release as releases
from pipeline.model.plan import Provenance
from pipeline.publishing import versions
from pipeline.shared.context import Context, Options, apply_overrides


class _Parser(argparse.ArgumentParser):
    """argparse, but bad usage is a UsageError (one line, exit 2) like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}", hint=f"see `{self.prog} --help`")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="store_true", help="show tools' own log lines")
    p.add_argument("--debug", action="store_true", help="tracebacks and HTTP-level logging")


def _registry_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("registry")
    settings.add_arguments(g, "registry")


def _release_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("release")
    src = g.add_mutually_exclusive_group()
    src.add_argument(
        "--variant", default="fedora-40", help="manifests/VARIANT.yaml (default %(default)s)"
    )
    src.add_argument("--manifest", type=Path, help="a release manifest file")
    g.add_argument(
        "--manifests-dir",
        type=Path,
        help="where VARIANT.yaml is (default: manifests/ in the current directory or the "
        "nearest parent that has one)",
    )
    g.add_argument("--arch", help="comma-separated architectures (default: the manifest's)")
    settings.add_arguments(g, "release")
    g.add_argument(
        "--version",
        dest="release_version",
        help="the resolved version of a templated release manifest (default: resolved now)",
    )


def _verify_options(p: argparse.ArgumentParser) -> None:
    settings.add_arguments(p, "verify")


def _pull_output_options(p: argparse.ArgumentParser) -> None:
    _verify_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress, only errors")
    p.add_argument("--json", action="store_true", help="a JSON line on stdout with the result")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bootc-pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, text in (
        ("publish", "all stages: build, disk, compress, boot, push"),
        ("build", "build the bootc image per architecture"),
        ("disk", "run bootc-image-builder on the built images"),
        ("compress", "zstd-compress the disks"),
        ("push", "push the compressed disks, manifests, index and tags"),
    ):
        p = sub.add_parser(name, help=text)
        _release_options(p)
        _registry_options(p)
        _common(p)
    for name in ("publish", "push"):  # the skip is recorded as the disk's boot record
        sub.choices[name].add_argument(
            "--skip-boot", action="store_true", help="send the disks without a boot check"
        )
    p = sub.add_parser(
        "boot", help="boot the work directory's disks (or a published REF) and check Lima's needs"
    )
    p.add_argument("reference", nargs="?", help="a published release: REGISTRY/REPO:TAG|@DIGEST")
    p.add_argument("--platform", help="with REFERENCE: linux/ARCH (default: this host's)")
    p.add_argument(
        "--json", action="store_true", help="with REFERENCE: a JSON line on stdout with the result"
    )
    _verify_options(p)
    _release_options(p)
    _registry_options(p)
    _common(p)
    p = sub.add_parser("version", help="print the version this run would publish (resolved)")
    _release_options(p)
    _registry_options(p)
    _common(p)
    p = sub.add_parser("index", help="make the release of per-architecture result files")
    p.add_argument("results", nargs="+", type=Path, help="result-<arch>.json of each run")
    _release_options(p)
    _registry_options(p)
    _common(p)
    p = sub.add_parser("validate", help="fetch a published index or manifest and check it whole")
    p.add_argument("reference", help="REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:...")
    p.add_argument("--fetch-blobs", action="store_true", help="download layers and check sha256")
    _verify_options(p)
    _registry_options(p)
    _common(p)
    p = sub.add_parser("pull", help="download a release's disk, verified, decompressed")
    p.add_argument("reference", help="REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:...")
    p.add_argument("--platform", help="linux/ARCH to pull from an index (default: this host's)")
    p.add_argument("-o", "--output", help="file, or directory (existing, or ending in /)")
    p.add_argument("--keep-compressed", action="store_true", help="keep the .zst, not the qcow2")
    _pull_output_options(p)
    _registry_options(p)
    _common(p)
    p = sub.add_parser("lima", help="pull into the cache and write a Lima template for it")
    p.add_argument("reference", help="REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:...")
    p.add_argument(
        "--platform",
        help="comma-separated linux/ARCH, or 'all' (default: this host's)",
    )
    p.add_argument("-o", "--output", type=Path, help="the template (default ./lima-REPO.yaml)")
    p.add_argument("--start", action="store_true", help="then run `limactl start` on it")
    _pull_output_options(p)
    _registry_options(p)
    _common(p)
    p = sub.add_parser("check", help="validate release manifests (no engine, no registry)")
    p.add_argument("manifests", nargs="+", type=Path)
    _common(p)
    cli_releases.add_parsers(sub, _registry_options, _common)
    return parser


def _options(args: argparse.Namespace) -> Options:
    """Options from whichever flags this subcommand has (validate has only the registry's): the
    table's defaults for the rest."""
    given = settings.defaults() | vars(args)
    return Options(
        **{setting.dest: given[setting.dest] for setting in settings.SETTINGS},
        skip_boot=bool(given.get("skip_boot", False)),
        archs=tuple(Arch.parse_list(given["arch"])) if given.get("arch") else None,
    )


def _context(args: argparse.Namespace, reporter: Reporter) -> Context:
    options = _options(args)
    path = args.manifest or releases.find(args.variant, args.manifests_dir)
    release = apply_overrides(releases.load(path), options)
    pinned = getattr(args, "release_version", None)
    if release.version_template is not None and pinned:
        release = release.with_version(pinned)
    elif pinned:
        raise UsageError(f"--version: {path} has a fixed version ({release.version})")
    ctx = Context(release=release, options=options, reporter=reporter)
    if release.templated and args.command != "index":
        with ctx.target_client(ctx.target.registry) as client:
            ctx.release = versions.resolve_in_registry(release, client, ctx.target.repository)
        reporter.info(f"version: {ctx.release.version} (from {release.version_template})")
    return ctx


def _run_stage(args: argparse.Namespace, reporter: Reporter) -> int:
    from pipeline.publishing import publish

    ctx = _context(args, reporter)

    def provenance() -> Provenance:  # only the stages that publish need git (or --revision)
        root = ctx.release.path.resolve().parent
        return prov.resolve(root, revision=args.revision, created=args.created)

    stages: dict[str, Callable[[], object]] = {
        "publish": lambda: publish.publish(ctx, provenance()),
        "build": lambda: publish.run_build(ctx),
        "disk": lambda: publish.run_disk(ctx),
        "compress": lambda: publish.run_compress(ctx),
        "push": lambda: publish.run_push(ctx, provenance()),
        "boot": lambda: publish.run_boot(ctx),
        "index": lambda: publish.run_index(ctx, args.results),
        "version": lambda: print(ctx.release.version),
    }
    try:
        if args.command == "version":
            stages[args.command]()
        else:
            with worklock.locked(ctx.variant_dir):  # one run at a time writes its stamps
                stages[args.command]()
    finally:
        ctx.close()
    return 0


def _validate(args: argparse.Namespace, reporter: Reporter) -> int:
    from pipeline.consume import validate

    result = validate.validate_reference(
        args.reference, options=_options(args), fetch_blobs=args.fetch_blobs, reporter=reporter
    )
    return 0 if result else EXIT_FAILURE


def _pull(args: argparse.Namespace, reporter: Reporter) -> int:
    import json

    from pipeline.consume import pull

    arch = pull.parse_platform(args.platform) if args.platform else Arch.host()
    pulled = pull.pull(
        args.reference,
        arch=arch,
        output=args.output,
        keep_compressed=args.keep_compressed,
        options=_options(args),
        reporter=reporter,
    )
    if args.json:
        print(json.dumps(pulled.as_json()), flush=True)
    return 0


def _lima(args: argparse.Namespace, reporter: Reporter) -> int:
    import json

    from pipeline.consume import lima

    made = lima.make_template(
        args.reference,
        platforms=args.platform,
        template=args.output,
        options=_options(args),
        reporter=reporter,
    )
    if args.json:
        print(json.dumps(made.as_json()), flush=True)
    if args.start:
        lima.start(made.template, reporter)
    return 0


def _boot_published(args: argparse.Namespace, reporter: Reporter) -> int:
    """`boot REF`: pipeline/consume/boot_published.py."""
    import json

    from pipeline.consume import boot_published, pull

    arch = pull.parse_platform(args.platform) if args.platform else Arch.host()
    boot_published.boot_published(
        args.reference,
        arch=arch,
        options=_options(args),
        reporter=reporter,
        emit=(lambda record: print(json.dumps(record), flush=True)) if args.json else None,
    )
    return 0


def _check(args: argparse.Namespace, reporter: Reporter) -> int:
    for path in args.manifests:
        release = releases.load(path)
        reporter.info(
            f"{path}: ok ({release.name} {release.version}, {len(release.architectures)} arch)"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = None
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(
            level=logging.DEBUG if args.debug else logging.WARNING,
            format="%(levelname)s %(name)s: %(message)s",
        )
        reporter = Reporter(verbose=args.verbose or args.debug)
        if getattr(args, "quiet", False):
            reporter = Reporter(stream=open(os.devnull, "w"), live=False)  # noqa: SIM115
        if args.command == "validate":
            return _validate(args, reporter)
        if args.command == "pull":
            return _pull(args, reporter)
        if args.command == "lima":
            return _lima(args, reporter)
        if args.command == "check":
            return _check(args, reporter)
        if args.command in cli_releases.COMMANDS:
            return cli_releases.COMMANDS[args.command](args, reporter, _options(args))
        if args.command == "boot" and args.reference:
            return _boot_published(args, reporter)
        return _run_stage(args, reporter)
    except PipelineError as exc:
        if args is not None and getattr(args, "debug", False):
            raise
        print(f"bootc-pipeline: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"bootc-pipeline: hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # a bug, not bad input: still one line, the traceback on request
        if args is not None and getattr(args, "debug", False):
            raise
        text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        print(f"bootc-pipeline: internal error: {type(exc).__name__}: {text}", file=sys.stderr)
        print("bootc-pipeline: hint: re-run with --debug for the traceback", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(
            "bootc-pipeline: interrupted; re-run to resume (finished stages are kept)",
            file=sys.stderr,
        )
        return 130
