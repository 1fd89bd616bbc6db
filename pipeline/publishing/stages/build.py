"""Build stage: the bootc Containerfile for one architecture, through the engine."""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.arch import Arch
from pipeline.core.digest import of_bytes
from pipeline.core.errors import PipelineError
from pipeline.core.reference import parse_reference
from pipeline.publishing import inputs
from pipeline.publishing.stages import runner
from pipeline.shared.context import Context
from pipeline.shared.engine import ImageFacts
from pipeline.trust import containerpolicy
from pipeline.trust.keys import load_public_key

BINFMT = Path("/proc/sys/fs/binfmt_misc")
BOOTC_LABEL = "containers.bootc"


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    id: str
    base_digest: str


def check_cross_arch(arch: Arch, host: Arch, binfmt: Path = BINFMT) -> None:
    """Fail in the first second, not mid-build, when foreign binaries cannot run here."""
    if arch == host:
        return
    entry = binfmt / arch.qemu_binfmt
    try:
        enabled = entry.read_text().splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        enabled = False
    if not enabled:
        raise PipelineError(
            f"building for {arch.platform} on {host.platform} needs qemu-user-static, "
            f"but {entry} is missing or disabled",
            hint="apt-get install qemu-user-static binfmt-support (and mount binfmt_misc at "
            f"{binfmt} if it is empty)",
        )


def build(ctx: Context, arch: Arch, base_digest: str | None = None) -> BuiltImage:
    """Build ARCH FROM the base by BASE_DIGEST, else the digest the inputs recorded for it
    (pulled if missing); a build whose chained id is unchanged and whose image is still in the
    engine is not redone."""
    release = ctx.release
    check_cross_arch(arch, Arch.host())
    engine = ctx.engine
    tag = ctx.image_tag(arch)
    directory = ctx.arch_dir(arch)
    base_digest = base_digest or inputs.recorded_base(ctx, arch)
    base = inputs.pinned_base(release.base, base_digest)
    context = release.containerfile.parent
    trust = trust_inputs(ctx)
    inputs_of_build: dict[str, Any] = {
        "base": base,
        "baseDigest": base_digest,
        "containerfile": release.containerfile.relative_to(context).as_posix(),
        "context": inputs.tree_digest(context),
        "tag": tag,
        "platform": arch.platform,
    }
    if trust is not None:  # only then: the ids of releases without `trust` stay as they were
        inputs_of_build["trust"] = {"scope": trust[0], "publicKey": of_bytes(trust[1]).digest}

    def still_in_engine(outputs: dict[str, Any]) -> bool:
        facts = engine.inspect(tag)
        return facts is not None and facts.id == outputs.get("id")

    def act() -> dict[str, Any]:
        if not inputs.engine_only(release.base):
            # the base's registry gets its own access: plain HTTP only where it is loopback too
            access = ctx.options.access(ctx.target.registry, publishing=True)
            plain = access.host(parse_reference(release.base).registry).plain_http
            engine.ensure_pinned(base, arch, tls_verify=not plain, on_line=ctx.reporter.detail)
        facts = engine.build(
            context=context,
            containerfile=release.containerfile,
            tag=tag,
            arch=arch,
            buildargs={"BASE": base},
            on_line=ctx.reporter.detail,
        )
        if facts.labels.get(BOOTC_LABEL) != "1":
            raise PipelineError(
                f"{tag} has no label {BOOTC_LABEL}=1: bootc-image-builder would refuse it",
                hint=f"keep `LABEL {BOOTC_LABEL}=1` in {release.containerfile.name}",
            )
        if inputs.engine_only(release.base):  # built by name: it must still be the recorded one
            now = engine.base_digest(release.base, arch)
            if now != base_digest:
                raise PipelineError(
                    f"the base {release.base} for {arch.value} is {now} in {engine.name}, not "
                    f"the {base_digest} its inputs recorded: it changed during the run",
                    hint="run the build again",
                )
        if trust is not None:
            facts = add_trust_files(ctx, arch, tag, *trust)
        return dataclasses.asdict(BuiltImage(tag=tag, id=facts.id, base_digest=base_digest))

    ran = runner.run(
        directory,
        "build",
        inputs_of_build,
        act,
        reporter=ctx.reporter,
        kept=still_in_engine,
        shown=tag,
    )
    return BuiltImage(**ran.outputs)


def os_image_repository(ctx: Context) -> str:
    """Where the OS image is published (Release.os_repository), the scope its policy names."""
    return ctx.release.os_repository


def trust_inputs(ctx: Context) -> tuple[str, bytes] | None:
    """(the OS image's repository, the PEM of `trust.public_key`), or None without `trust`;
    a key that is missing or not an ECDSA P-256 public key fails here, before any build."""
    path = ctx.release.trust_public_key
    if path is None:
        return None
    load_public_key(path, source=f"trust.public_key in {ctx.release.path}")
    return os_image_repository(ctx), path.read_bytes()


def add_trust_files(ctx: Context, arch: Arch, tag: str, scope: str, pem: bytes) -> ImageFacts:
    """Rebuild TAG with the files that make containers/image in the guest verify the OS
    image (pipeline/trust/containerpolicy.py): one COPY layer over the built image, its own
    policy.json read back first so every rule in it is kept."""
    engine = ctx.engine
    where = f"the {arch.value} image {tag}"
    base_policy = engine.read_file(tag, containerpolicy.POLICY_PATH)
    files = containerpolicy.files(
        scope=scope, name=ctx.release.name, public_key_pem=pem, base_policy=base_policy,
        where=where,
    )  # fmt: skip
    if base_policy is None:
        ctx.reporter.info(
            f"    {arch.value}: {tag} has no {containerpolicy.POLICY_PATH}: containers-common's "
            "default kept for every other image"
        )
    scratch = ctx.arch_dir(arch).root
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="trust-", dir=scratch) as temp:
        context = Path(temp)
        for path, data in files.items():
            target = context / "rootfs" / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            target.chmod(0o644)
        containerfile = context / "Containerfile"
        containerfile.write_text(f"FROM {tag}\nCOPY rootfs/ /\n")
        facts = engine.build(
            context=context, containerfile=containerfile, tag=tag, arch=arch, buildargs={},
            on_line=ctx.reporter.detail,
        )  # fmt: skip
    ctx.reporter.info(
        f"    {arch.value}: {', '.join(files)} added: the guest verifies {scope} with the key"
    )
    return facts


def built_image(ctx: Context, arch: Arch, *, in_engine: bool = True) -> BuiltImage:
    """The last build's image for `arch`; with `in_engine`, checked to still be in the engine
    (bib needs the image itself; the push stage only its recorded facts)."""
    built = BuiltImage(**runner.require(ctx.arch_dir(arch), "build", ctx.release.variant))
    if not in_engine:
        return built
    facts = ctx.engine.inspect(built.tag)
    if facts is None or facts.id != built.id:
        raise PipelineError(
            f"image {built.tag} from the last build is gone or was replaced in the engine",
            hint="run `bootc-pipeline build` again",
        )
    return built
