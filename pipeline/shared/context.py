"""What every stage works from: the release (overrides applied), options, the work directory."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.core import settings
from pipeline.core.arch import Arch
from pipeline.core.errors import UsageError
from pipeline.core.progress import Reporter
from pipeline.core.reference import Reference, parse_reference
from pipeline.model.release import Release
from pipeline.registry.access import RegistryAccess
from pipeline.registry.client import RegistryClient
from pipeline.registry.retry import RetryPolicy, Timeouts
from pipeline.shared.state import ArchDir, arch_dir

if TYPE_CHECKING:  # the Docker SDK is imported only by commands that use an engine
    from pipeline.shared.engine import Engine


@dataclass(frozen=True)
class Options:
    """Command-line overrides and settings (air-gapped users and tests need each of them); the
    defaults are pipeline/core/settings.py's table."""

    engine_url: str | None = settings.ENGINE.default
    workdir: Path = settings.WORKDIR.default
    builder_image: str | None = settings.BUILDER_IMAGE.default  # else the release's builder's
    base_image: str | None = settings.BASE_IMAGE.default
    containerfile: Path | None = settings.CONTAINERFILE.default
    registry: str | None = settings.REGISTRY.default
    plain_http: bool = settings.PLAIN_HTTP.default
    force_plain_http: bool = settings.FORCE_PLAIN_HTTP.default
    ca_bundle: Path | None = settings.CA_BUNDLE.default
    registry_config: Path | None = settings.REGISTRY_CONFIG.default
    revision: str | None = settings.REVISION.default
    created: str | None = settings.CREATED.default
    force: bool = settings.FORCE.default
    skip_boot: bool = False
    # build even when the inputs equal the current release's
    rebuild: bool = settings.REBUILD.default
    jobs: int = settings.JOBS.default  # architectures whose pipelines run at the same time
    archs: tuple[Arch, ...] | None = None
    retry_attempts: int = settings.RETRY_ATTEMPTS.default
    retry_seconds: float = settings.RETRY_SECONDS.default
    connect_timeout: float = settings.CONNECT_TIMEOUT.default
    read_timeout: float = settings.READ_TIMEOUT.default
    # else $BOOTC_PIPELINE_SIGNING_KEY (pipeline/trust/keys.py)
    signing_key: Path | None = settings.SIGNING_KEY.default
    keyless: bool = settings.KEYLESS.default  # sign with cosign keyless (Sigstore) instead of a key
    # else the environment or trust file (pipeline/trust/verify.py)
    public_key: Path | None = settings.PUBLIC_KEY.default

    def access(self, target: str, *, publishing: bool) -> RegistryAccess:
        """Each host's access (registry/access.py) from the user's settings. `target`: the
        registry the command is about, which --ca-bundle and --plain-http are for. The
        environment's credentials are a publish's target's, and for the commands that read
        (`publishing=False`: pull, lima, validate, boot REF) those of the registry --registry
        names, if any: never another host's."""
        return RegistryAccess(
            target=target,
            environment_host=target if publishing else self.registry,
            plain_http=self.plain_http,
            force_plain_http=self.force_plain_http,
            ca_bundle=self.ca_bundle,
            registry_config=self.registry_config,
        )

    def registry_client(
        self, registry: str, *, target: str | None = None, publishing: bool = False
    ) -> RegistryClient:
        """The one way a registry client is made from the user's settings: a client of
        `registry`, whose access is decided for `target` (default: `registry` itself) as
        `access` says."""
        return RegistryClient(
            registry,
            access=self.access(target or registry, publishing=publishing),
            retry=RetryPolicy(max_attempts=self.retry_attempts, total_seconds=self.retry_seconds),
            timeouts=Timeouts(connect=self.connect_timeout, read=self.read_timeout),
        )


def apply_overrides(release: Release, options: Options) -> Release:
    """The release as this run builds it: --base-image, --containerfile, --registry applied."""
    changes: dict[str, object] = {}
    if options.base_image:
        changes["base"] = options.base_image
    if options.containerfile:
        path = options.containerfile.resolve()
        if not path.is_file():
            raise UsageError(f"--containerfile: {options.containerfile} does not exist")
        changes["containerfile"] = path
    if options.registry:
        target = parse_reference(release.repository)
        changes["repository"] = f"{options.registry}/{target.repository}"
    if options.archs:
        unknown = [a.value for a in options.archs if a not in release.architectures]
        if unknown:
            known = ", ".join(a.value for a in release.architectures)
            raise UsageError(
                f"architecture {', '.join(unknown)} is not in {release.path} (it lists {known})"
            )
    return dataclasses.replace(release, **changes)  # type: ignore[arg-type]


@dataclass
class Context:
    release: Release
    options: Options
    reporter: Reporter
    # the boot records of result files made on other machines (the index join), by arch
    joined_boots: dict[str, dict[str, Any]] = field(default_factory=dict)
    _engine: Engine | None = field(default=None, repr=False)
    _registry: RegistryClient | None = field(default=None, repr=False)

    @property
    def archs(self) -> tuple[Arch, ...]:
        """The architectures this run handles: --arch, else all the manifest lists."""
        return self.options.archs or self.release.architectures

    @property
    def partial(self) -> bool:
        """Fewer architectures than the release has: its index must not take the tags."""
        return set(self.archs) != set(self.release.architectures)

    @property
    def tags_to_move(self) -> tuple[str, ...]:
        if self.partial and not self.options.force:
            return ()
        return self.release.all_tags

    @property
    def target(self) -> Reference:
        return parse_reference(self.release.repository)

    @property
    def builder_image(self) -> str:
        """The disk builder's image: --builder-image, else the release's builder's default."""
        return self.options.builder_image or self.release.builder.default_image

    @property
    def variant_dir(self) -> Path:
        return self.options.workdir / self.release.variant

    def arch_dir(self, arch: Arch) -> ArchDir:
        return arch_dir(self.options.workdir, self.release.variant, arch)

    def image_tag(self, arch: Arch) -> str:
        """The local name of the built bootc image (fully qualified: bib looks it up by name)."""
        return (
            f"localhost/bootc-pipeline/{self.release.variant}:{self.release.version}-{arch.value}"
        )

    def for_thread(self) -> Context:
        """This context for another thread: the same release, options and reporter, an engine
        connection and a registry client of its own (closed by `close()`)."""
        return dataclasses.replace(self, _engine=None, _registry=None)

    @property
    def registry(self) -> RegistryClient:
        """The run's one client of the target registry: made on first use, shared by every
        stage (its tokens and connections with it), closed by `close()`."""
        if self._registry is None:
            self._registry = self.target_client(self.target.registry)
        return self._registry

    def target_client(self, registry: str) -> RegistryClient:
        """A new client of `registry` in this publish run: the target's settings and the
        environment's credentials are the target's alone (a base's registry gets its own)."""
        return self.options.registry_client(registry, target=self.target.registry, publishing=True)

    def close(self) -> None:
        """Release what the run opened (the registry client's connections)."""
        if self._registry is not None:
            self._registry.close()
            self._registry = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from pipeline.shared.engine import Engine

            self._engine = Engine.connect(self.options.engine_url)
            self.reporter.info(f"engine: {self._engine.describe()}")
        return self._engine
