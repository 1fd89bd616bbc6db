#!/usr/bin/python3
"""osbuild image-builder stand-in for bootc-pipeline's tests (as /usr/bin/image-builder).

The real container (ghcr.io/osbuild/image-builder-cli) cannot be pulled here. This script
honours the part of its contract the pipeline uses, as read from osbuild/image-builder at commit
a1f35083b02774adbd51da7e96494c56ef1323ee (pipeline/model/image_builder.py names the files):

- `image-builder build [flags] IMAGE_TYPE` (cobra: exactly one argument, unknown flags refused
  as `unknown flag: --X`), with `--bootc-ref`, `--bootc-default-fs`, `--arch`, `--blueprint`
  (.json or .toml; unknown keys refused), `--output-dir`, `--output-name`, `--with-sbom`,
  `--with-manifest`, `--progress`, `--cache`, `-v/--verbose`; `--distro` with `--bootc-ref` is
  refused as upstream does; `--bootc-pull-container` and `--bootc-build-ref` are refused as not
  implemented (there is no registry to pull from here).
- The bootc image from the container storage mounted at /var/lib/containers/storage (refused
  without it, with pkg/setup/setup.go's message), which must be a bootc image (the label
  `containers.bootc=1`, setup.go ValidateHasContainerTags); a privileged container (setup.go
  Validate: /sys must be writable).
- Outputs: osbuild's export `OUTPUT/qcow2/disk.qcow2` renamed to `OUTPUT/NAME.qcow2` (raw:
  `NAME.raw`), `NAME.osbuild-manifest.json` with --with-manifest, `NAME.image-os.spdx.json`
  with --with-sbom; NAME is --output-name (its image extension stripped), else
  `bootc-TYPE-ARCH` (upstream: distro-type-arch; the bootc distro's name is unconfirmed).
- Failure: one stderr line `error: MESSAGE`, exit status 1 (main.go: log.Fatalf).

The disk itself is written by the bib stand-in's code (the same layout and contents), so both
builders' disks pass the same checks and boot the same way.
"""

from __future__ import annotations

import json
import platform
import sys
import tomllib
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    from tests.standins.bib import bootc_image_builder as core  # from the repository
except ImportError:  # in the stand-in's image, where the disk writer is a top-level module
    import bootc_image_builder as core  # type: ignore[import-not-found,no-redef]

DISK_WRITER = core  # the bib stand-in's code writes this stand-in's disks too

VERSION = "image-builder stand-in (bootc-pipeline tests)"
IMAGE_TYPES = {"qcow2": "qcow2", "raw": "raw"}  # image type -> the disk writer's type
ARCHS = {"x86_64": "amd64", "aarch64": "arm64", "amd64": "amd64", "arm64": "arm64"}
PROGRESS = ("auto", "verbose", "term", "debug")
STORAGE_MISSING = (
    'cannot find "/var/lib/containers/storage/overlay" '
    "(missing -v /var/lib/containers/storage:/var/lib/containers/storage mount?)"
)
# Blueprint keys that say nothing about a bootc disk (accepted, as the real loader does).
BLUEPRINT_ONLY = ("name", "description", "version", "distro")

STRING_FLAGS = {
    "bootc-ref",
    "bootc-default-fs",
    "arch",
    "blueprint",
    "output-dir",
    "output-name",
    "progress",
    "cache",
    "distro",
    "bootc-build-ref",
}
BOOL_FLAGS = {"with-sbom", "with-manifest", "bootc-pull-container", "verbose"}


class Refused(Exception):
    """One `error: MESSAGE` line, exit status 1."""


@dataclass(frozen=True)
class Options:
    image_type: str
    bootc_ref: str
    default_fs: str | None
    arch: str | None  # OCI name
    blueprint: Path | None
    output_dir: Path
    output_name: str | None
    progress: str
    with_sbom: bool
    with_manifest: bool


def _flags(argv: list[str]) -> tuple[dict[str, str | bool], list[str]]:
    """cobra/pflag parsing: `--flag value`, `--flag=value`, `-v`; unknown flags refused."""
    flags: dict[str, str | bool] = {}
    args: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg == "-v":
            flags["verbose"] = True
        elif arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            if name in STRING_FLAGS:
                if not eq:
                    following = next(it, None)
                    if following is None:
                        raise Refused(f"flag needs an argument: --{name}")
                    value = following
                flags[name] = value
            elif name in BOOL_FLAGS:
                if eq and value.lower() not in ("true", "false", "1", "0"):
                    raise Refused(f'invalid argument "{value}" for "--{name}" flag')
                flags[name] = not eq or value.lower() in ("true", "1")
            else:
                raise Refused(f"unknown flag: --{name}")
        elif arg.startswith("-") and arg != "-":
            raise Refused(f"unknown shorthand flag: {arg[1:2]!r} in {arg}")
        else:
            args.append(arg)
    return flags, args


def parse_args(argv: list[str]) -> Options:
    if argv[:1] != ["build"]:
        raise Refused(f"the stand-in implements only `build` (got {' '.join(argv[:1]) or 'none'})")
    flags, args = _flags(argv[1:])
    if len(args) != 1:
        raise Refused(f"accepts 1 arg(s), received {len(args)}")
    ref = flags.get("bootc-ref")
    if flags.get("distro") and ref:
        raise Refused("cannot use --distro with --bootc-ref")
    if not isinstance(ref, str) or not ref:
        raise Refused("the image-builder stand-in builds only bootc images: pass --bootc-ref")
    for name in ("bootc-pull-container", "bootc-build-ref"):
        if flags.get(name):
            raise Refused(f"--{name} is not implemented by the image-builder stand-in")
    image_type = args[0]
    if image_type not in IMAGE_TYPES:
        raise Refused(f'image type "{image_type}" is not implemented by the stand-in')
    arch = None
    if isinstance(flags.get("arch"), str):
        arch = ARCHS.get(str(flags["arch"]))
        if arch is None:
            raise Refused(f'unsupported architecture "{flags["arch"]}"')
    progress = str(flags.get("progress", "auto"))
    if progress not in PROGRESS:
        raise Refused(f'unknown progress type: "{progress}"')
    if progress == "auto" and flags.get("verbose"):
        progress = "verbose"  # main.go progressFromCmd
    fs = flags.get("bootc-default-fs")
    if isinstance(fs, str) and fs not in core.ROOTFS_TYPES:
        raise Refused(f'unsupported root filesystem type "{fs}"')
    blueprint = flags.get("blueprint")
    output_name = flags.get("output-name")
    return Options(
        image_type=image_type,
        bootc_ref=ref,
        default_fs=fs if isinstance(fs, str) else None,
        arch=arch,
        blueprint=Path(blueprint) if isinstance(blueprint, str) and blueprint else None,
        output_dir=Path(str(flags.get("output-dir") or ".")),
        output_name=output_name if isinstance(output_name, str) and output_name else None,
        progress=progress,
        with_sbom=bool(flags.get("with-sbom")),
        with_manifest=bool(flags.get("with-manifest")),
    )


def load_blueprint(path: Path | None) -> core.Config:
    """internal/blueprintload: .json or .toml by extension, unknown keys refused."""
    if path is None:
        return core.Config()
    try:
        text = path.read_text()
    except OSError as exc:
        raise Refused(f'cannot open blueprint file "{path}": {exc.strerror}') from None
    try:
        if path.suffix == ".json":
            doc: Any = json.loads(text)
        elif path.suffix == ".toml":
            doc = tomllib.loads(text)
        else:
            raise Refused(f'unsupported file extension for "{path}" (please use .toml or .json)')
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise Refused(f'cannot decode "{path}": {exc}') from None
    if isinstance(doc, dict):
        doc = {k: v for k, v in doc.items() if k not in BLUEPRINT_ONLY}
    try:
        return core.parse_config(doc)
    except core.BibError as exc:
        raise Refused(f'cannot decode "{path}": {exc}') from None


def check_privileged(mounts: str | None = None) -> None:
    """setup.go Validate: a writable /sys is its proxy for a privileged container."""
    text = mounts if mounts is not None else Path("/proc/self/mounts").read_text()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[1] == "/sys":
            if "rw" in fields[3].split(","):
                return
            break
    raise Refused("this command requires a privileged container")


def basename(opts: Options, arch: str) -> str:
    """main.go basenameFor: --output-name without its image extension, else distro-type-arch."""
    if opts.output_name is None:
        return f"bootc-{opts.image_type}-{core.UNAME[arch]}"
    return opts.output_name.removesuffix(f".{opts.image_type}")


def write_sbom(path: Path, image: str) -> None:
    """A minimal SPDX 2.3 document naming the image (the real one lists every package)."""
    doc = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"sbom-for-{image}",
        "documentNamespace": f"https://bootc-pipeline.invalid/spdx/{image}",
        "creationInfo": {"created": "1970-01-01T00:00:00Z", "creators": [f"Tool: {VERSION}"]},
        "packages": [],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")


def build(opts: Options) -> None:
    check_privileged()
    config = load_blueprint(opts.blueprint)
    core.check_storage(message=STORAGE_MISSING)
    host = ARCHS.get(platform.machine(), platform.machine())
    arch = opts.arch or host
    name = basename(opts, arch)
    disk_type = IMAGE_TYPES[opts.image_type]
    core.make_disk(
        core.DiskRequest(
            image=opts.bootc_ref,
            types=(disk_type,),
            target=arch,
            rootfs=opts.default_fs,
            config=config,
            output=opts.output_dir,
            manifest_name=f"{name}.osbuild-manifest.json" if opts.with_manifest else None,
            absent=(
                "running {image} container failed: the image is not in the local container "
                "storage (pull it first, or pass --bootc-pull-container)"
            ),
            no_rootfs='no default fs set: mount "/boot" requires a filesystem but none set',
        ),
        core.Progress(opts.progress, interactive=sys.stdin.isatty()),
    )
    # build.go buildImage: osbuild's export directory's file renamed to NAME.EXT, dir removed
    subdir, filename, _ = core.IMAGE_TYPES[disk_type]
    export = opts.output_dir / subdir
    (export / filename).replace(opts.output_dir / f"{name}.{filename.split('.', 1)[1]}")
    export.rmdir()
    if opts.with_sbom:
        write_sbom(opts.output_dir / f"{name}.image-os.spdx.json", opts.bootc_ref)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args[:1] == ["version"]:
            print(f"image-builder:\n  version: {VERSION}")
            return 0
        build(parse_args(args))
        return 0
    except (Refused, core.BibError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    except Exception as exc:  # a bug in the stand-in: still image-builder's failure shape
        traceback.print_exc()
        print(f"error: internal error in the image-builder stand-in: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
