"""What a release is made from, recorded so that a nightly with nothing new builds nothing.

The record: the base image's digest per architecture (resolved from its registry, not pulled),
a hash of the Containerfile and its build context, a hash of the release manifest file, the
builder image's digest and this pipeline's version (the installed package's, and a digest of its
code, so a new version of the code republishes). Its sha256 is the annotation
`org.bootc-pipeline.inputs` on the index and every manifest; `publish` compares it with the
release its first moving tag names before building anything.

A base or builder named `localhost/...` exists only in the engine (tests, air-gapped users):
its digest then comes from the engine, which is also not a pull. Any other base is built FROM
REGISTRY/REPO@DIGEST, the digest recorded here for that architecture (pulled when the engine
lacks it), so the annotation, the inputs and the bytes built on agree.
"""

from __future__ import annotations

import json
import os
import stat
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline.core import mediatypes as mt
from pipeline.core.arch import Arch
from pipeline.core.digest import Sha256, of_bytes
from pipeline.core.errors import PipelineError
from pipeline.core.files import atomic_write
from pipeline.core.reference import parse_reference
from pipeline.model import pullplan
from pipeline.registry.client import FetchedManifest
from pipeline.shared.context import Context

LOCAL_REGISTRY = "localhost"
PLATFORM_LISTS = (mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST)
RECORD_NAME = "inputs.json"
PACKAGE = Path(__file__).resolve().parent.parent  # the installed `pipeline` package


def pipeline_version() -> str:
    """The installed package's version, as its metadata says (not a constant of the code)."""
    try:
        return metadata.version("bootc-pipeline")
    except metadata.PackageNotFoundError:
        return "unknown"


def pipeline_code(root: Path = PACKAGE) -> str:
    """sha256 over the code that runs (every module and schema of the `pipeline` package): a
    version number that nobody bumped must not hide a change of the code that makes a release."""
    total = Sha256()
    for path in sorted(root.rglob("*")):
        if path.suffix in (".py", ".json") and "__pycache__" not in path.parts:
            digest = of_bytes(path.read_bytes()).digest
            total.update(f"{path.relative_to(root).as_posix()} {digest}\n".encode())
    return total.blob().digest


def tree_digest(root: Path) -> str:
    """sha256 over every file under `root` (sorted relative path, executable bit, content)."""
    total = Sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink()):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            entry = f"L {rel} {os.readlink(path)}\n".encode()
        else:
            mode = "x" if path.stat().st_mode & stat.S_IXUSR else "-"
            entry = f"F {rel} {mode} {of_bytes(path.read_bytes()).digest}\n".encode()
        total.update(entry)
    return total.blob().digest


def _per_arch(fetched: FetchedManifest, archs: tuple[Arch, ...], ref: str) -> dict[str, str]:
    body = fetched.json()
    if body.get("mediaType", fetched.media_type) not in PLATFORM_LISTS:
        return {arch.value: fetched.digest for arch in archs}  # one image for every arch
    found = pullplan.linux_digests(body, f"the base image {ref}")
    missing = [a.value for a in archs if a.value not in found]
    if missing:
        raise PipelineError(f"the base image {ref} has no {', '.join(missing)} image")
    return {arch.value: found[arch.value] for arch in archs}


def base_digests(ctx: Context, archs: tuple[Arch, ...] | None = None) -> dict[str, str]:
    """The base's digest per architecture of the release (or of ARCHS), without pulling it."""
    archs = archs or ctx.release.architectures
    ref = parse_reference(ctx.release.base)
    if engine_only(ctx.release.base):
        return {arch.value: ctx.engine.base_digest(ctx.release.base, arch) for arch in archs}
    accept = (mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST)
    with ctx.target_client(ref.registry) as client:  # the base's registry: its own access
        fetched = client.get_manifest(ref.repository, ref.target, accept)
    return _per_arch(fetched, archs, str(ref))


def engine_only(base: str) -> bool:
    """A base named `localhost/...` exists only in the engine: it is built by its name (and its
    digest checked after the build), never pulled."""
    return parse_reference(base).registry == LOCAL_REGISTRY


def pinned_base(base: str, digest: str) -> str:
    """What a build names its base by: the very image the inputs recorded (REGISTRY/REPO@DIGEST),
    so the bytes built on are the digest the release says, whatever a local tag names."""
    if engine_only(base):
        return base
    ref = parse_reference(base)
    return f"{ref.registry}/{ref.repository}@{digest}"


def recorded_base(ctx: Context, arch: Arch) -> str:
    """ARCH's base digest from the inputs this work directory recorded for the current base."""
    found = saved(ctx)
    digests = (
        found[1].get("baseDigests") if found and found[1].get("base") == ctx.release.base else None
    )
    digest = digests.get(arch.value) if isinstance(digests, dict) else None
    if not isinstance(digest, str):
        raise PipelineError(
            f"no digest of the base {ctx.release.base} for {arch.value} is recorded in "
            f"{ctx.variant_dir / RECORD_NAME}",
            hint="run `bootc-pipeline build` or `publish`: they record the inputs, then build",
        )
    return digest


def builder_digest(ctx: Context) -> str:
    ref = parse_reference(ctx.builder_image)
    if ref.digest:
        return ref.digest
    if ref.registry == LOCAL_REGISTRY:
        facts = ctx.engine.inspect(ctx.builder_image)
        if facts is None:
            raise PipelineError(f"the builder image {ctx.builder_image} is not in the engine")
        return facts.id
    try:
        with ctx.target_client(ref.registry) as client:  # the builder's registry: its own
            digest = client.manifest_digest(ref.repository, ref.target)
    except PipelineError as exc:
        raise PipelineError(
            f"cannot resolve the builder image {ctx.builder_image}: {exc.message}",
            hint="check --builder-image and that its registry answers",
        ) from None
    if digest is None:
        raise PipelineError(f"the builder image {ctx.builder_image} is not in its registry")
    return digest


def record(ctx: Context) -> dict[str, Any]:
    """The inputs of this release, as data (written to the report and inputs.json)."""
    release = ctx.release
    return {
        "base": release.base,
        "baseDigests": base_digests(ctx),
        "containerfile": release.containerfile.name,
        "buildContext": tree_digest(release.containerfile.parent),
        "releaseManifest": of_bytes(release.path.read_bytes()).digest,
        "builder": ctx.release.builder.value,
        "builderImage": ctx.builder_image,
        "builderDigest": builder_digest(ctx),
        "pipelineVersion": pipeline_version(),
        "pipelineCode": pipeline_code(),
    }


def digest_of(inputs: dict[str, Any]) -> str:
    return of_bytes(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()).digest


def save(ctx: Context, inputs: dict[str, Any]) -> None:
    """For the push stage, which may run as a command of its own after `publish` stopped."""
    body = json.dumps({"inputs": inputs, "digest": digest_of(inputs)}, indent=2, sort_keys=True)
    atomic_write(ctx.variant_dir / RECORD_NAME, body.encode() + b"\n")


def saved(ctx: Context) -> tuple[str, dict[str, Any]] | None:
    """The inputs digest and record `publish` saved in this work directory, if any."""
    try:
        data = json.loads((ctx.variant_dir / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("inputs"), dict):
        return None
    return digest_of(data["inputs"]), data["inputs"]
