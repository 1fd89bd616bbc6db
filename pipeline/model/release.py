"""Release manifests (`manifests/<variant>.yaml`): loading, schema validation, defaults."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.arch import Arch
from pipeline.core.errors import UsageError
from pipeline.core.mediatypes import Compression, DiskFormat
from pipeline.model import schemas
from pipeline.model.builders import Builder

VERSION_FIELD = "{version}"


def default_os_repository(repository: str) -> str:
    """The OS image's repository when the manifest names none: `<repository>-os`, beside the
    disks' (README "Where the OS image lives")."""
    return f"{repository}-os"


@dataclass(frozen=True)
class Release:
    """A validated release manifest with its defaults applied."""

    variant: str
    path: Path
    name: str
    version: str
    description: str
    base: str
    containerfile: Path
    repository: str
    tags: tuple[str, ...]
    moving_tags: tuple[str, ...]
    architectures: tuple[Arch, ...]
    zstd_level: int
    disk_type: str
    rootfs: str
    bib_config: dict[str, Any] = field(hash=False)
    annotations: dict[str, str] = field(hash=False)
    kernel_append: dict[str, str] = field(default_factory=dict, hash=False)  # by arch
    minimum_lima_version: str = "1.0.0"
    guest_install_prefix: str = "/var/usrlocal"
    builder: Builder = Builder.BIB  # builder.tool
    retention: dict[str, float] | None = field(default=None, hash=False)  # keep, older_than_days
    version_template: str | None = None  # set when `version` is a template (nightlies)
    tag_templates: tuple[str, ...] = ()  # `tags` as written, `{version}` unresolved
    # os_image: the bootc image's own repository ("" = `<repository>-os`) and the tag the
    # disks' bootc origin follows ("" = the first moving tag, else the first release tag)
    os_repository_setting: str = ""
    os_origin_tag_setting: str = ""
    trust_public_key: Path | None = None  # trust.public_key: the OS image verifies with it

    @property
    def templated(self) -> bool:
        """Whether the version is still a template this run has not resolved."""
        return self.version_template is not None and self.version == self.version_template

    def with_version(self, version: str) -> Release:
        """This release at a resolved version: `{version}` in the release tags filled in."""
        tags = tuple(t.replace(VERSION_FIELD, version) for t in self.tag_templates or self.tags)
        return dataclasses.replace(self, version=version, tags=tags)

    @property
    def os_repository(self) -> str:
        """Where the release's bootc container image is published (README "Where the OS image
        lives"): its own repository, so each index holds one kind of thing."""
        return self.os_repository_setting or default_os_repository(self.repository)

    @property
    def os_origin_tag(self) -> str:
        """The OS image's tag the disks' bootc origin names: the stream's moving tag, so
        `bootc upgrade` follows the stream."""
        return self.os_origin_tag_setting or (self.moving_tags or self.tags)[0]

    @property
    def all_tags(self) -> tuple[str, ...]:
        return self.tags + tuple(t for t in self.moving_tags if t not in self.tags)

    def bib_config_for(self, arch: Arch) -> dict[str, Any]:
        """bib's config for ARCH's disk: `builder.config`, with that architecture's kernel
        arguments (`builder.kernel_append`) as customizations.kernel.append."""
        config = copy.deepcopy(self.bib_config)
        if arch.value in self.kernel_append:
            customizations = config.setdefault("customizations", {})
            customizations["kernel"] = {"append": self.kernel_append[arch.value]}
        return config

    def layer_title(self, arch: Arch) -> str:
        """`<name>-<version>-<arch>.qcow2.zst`: the suffix from the disk format and compression."""
        suffix = f".{DiskFormat(self.disk_type).value}{Compression.ZSTD.extension()}"
        return f"{self.name}-{self.version}-{arch.value}{suffix}"


def _apply_defaults(schema: dict[str, Any], instance: Any) -> Any:
    """Fill `default`s from the schema into a validated instance (objects only, recursively)."""
    if not isinstance(instance, dict):
        return instance
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            instance[key] = _apply_defaults(sub, instance[key])
    return instance


def parse(data: Any, *, path: Path, variant: str) -> Release:
    """Validate already-parsed YAML; one UsageError naming the file, key path and problem."""
    found = schemas.problems(schemas.RELEASE_MANIFEST, data)
    if found:
        more = f" (and {len(found) - 1} more problem(s))" if len(found) > 1 else ""
        raise UsageError(f"{path}: {found[0]}{more}")
    doc = _apply_defaults(schemas.load(schemas.RELEASE_MANIFEST), copy.deepcopy(data))
    overlap = set(doc["tags"]) & set(doc["moving_tags"])
    if overlap:
        raise UsageError(
            f"{path}: moving_tags: {', '.join(sorted(overlap))} also listed in tags "
            "(a tag is either an immutable release tag or a moving one)"
        )
    builder = doc["builder"]
    appends = builder["kernel_append"]
    if appends and "kernel" in builder["config"].get("customizations", {}):
        raise UsageError(
            f"{path}: builder.kernel_append: set with builder.config.customizations.kernel too "
            "(say each architecture's kernel arguments in one place)"
        )
    missing = [a for a in doc["architectures"] if a not in appends] if appends else []
    if missing:
        raise UsageError(
            f"{path}: builder.kernel_append: no kernel arguments for {', '.join(missing)} "
            "(give every architecture its own, or none)"
        )
    template = doc["version"] if "{" in doc["version"] else None
    os_image = doc.get("os_image", {})
    origin_tag = os_image.get("origin_tag", "")
    if origin_tag and origin_tag not in doc["moving_tags"] and origin_tag not in doc["tags"]:
        raise UsageError(
            f"{path}: os_image.origin_tag: {origin_tag!r} is not one of the release's tags or "
            "moving_tags (the disks' bootc origin must name a tag the release pushes)"
        )
    if VERSION_FIELD in (origin_tag or (doc["moving_tags"] or doc["tags"])[0]):
        raise UsageError(
            f"{path}: os_image.origin_tag: the bootc origin would name {VERSION_FIELD}, a tag "
            "that changes with every release",
            hint="add a moving tag (the stream's, e.g. `nightly`) and name it in origin_tag",
        )
    if os_image.get("repository") == doc["repository"]:
        raise UsageError(
            f"{path}: os_image.repository: the disks' repository; the OS image needs its own "
            "(an index mixing disks and images breaks clients that take the first entry per "
            "platform)"
        )
    if template and "{date}" in template and "{n}" not in template:
        raise UsageError(
            f"{path}: version: {template!r} has {{date}} but no {{n}}: two nightlies of one day "
            "would collide"
        )
    if template and not all(VERSION_FIELD in tag for tag in doc["tags"]):
        raise UsageError(
            f"{path}: tags: a templated version needs {VERSION_FIELD} in every release tag "
            "(a fixed release tag would be taken by the first nightly)"
        )
    root = path.resolve().parent.parent  # the repository root manifests/ was found in
    release = Release(
        variant=variant,
        path=path,
        name=doc["name"],
        version=doc["version"],
        description=doc["description"],
        base=doc["base"],
        containerfile=(root / doc["containerfile"]).resolve(),
        repository=doc["repository"],
        tags=tuple(doc["tags"]),
        moving_tags=tuple(doc["moving_tags"]),
        architectures=tuple(Arch(a) for a in doc["architectures"]),
        zstd_level=doc["compression"]["level"],
        disk_type=doc["builder"]["type"],
        rootfs=doc["builder"]["rootfs"],
        builder=Builder(doc["builder"]["tool"]),
        retention=dict(doc["retention"]) if "retention" in doc else None,
        bib_config=doc["builder"]["config"],
        kernel_append=dict(doc["builder"]["kernel_append"]),
        annotations=dict(doc["annotations"]),
        minimum_lima_version=doc["lima"]["minimum_lima_version"],
        guest_install_prefix=doc["lima"]["guest_install_prefix"],
        version_template=template,
        tag_templates=tuple(doc["tags"]),
        os_repository_setting=os_image.get("repository", ""),
        os_origin_tag_setting=origin_tag,
        trust_public_key=(root / doc["trust"]["public_key"]).resolve() if "trust" in doc else None,
    )
    return release if template else release.with_version(release.version)


def load(path: Path) -> Release:
    """Read and validate `manifests/<variant>.yaml`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such release manifest") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    import yaml  # here, not at the top: `pull` reads no manifest file

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise UsageError(f"{path}{where}: {problem}") from None
    release = parse(data, path=path, variant=path.stem)
    if not release.containerfile.is_file():
        raise UsageError(f"{path}: containerfile: {release.containerfile} does not exist")
    return release


def discover(start: Path) -> Path:
    """The `manifests/` directory of the repository `start` is in: `start`'s own, else the
    nearest parent's (as git finds its root). A UsageError names the directories searched."""
    start = start.resolve()
    searched = [start, *start.parents]
    for directory in searched:
        if (directory / "manifests").is_dir():
            return directory / "manifests"
    raise UsageError(
        "no manifests/ directory in the current directory or its parents "
        f"(searched {', '.join(str(d) for d in searched)})",
        hint="run in the repository that holds manifests/VARIANT.yaml, "
        "or pass --manifest FILE or --manifests-dir DIR",
    )


def find(variant: str, manifests_dir: Path | None, *, cwd: Path | None = None) -> Path:
    """The manifest file of a variant name (in `manifests_dir`, else the one `discover` finds
    from `cwd`), or a UsageError listing the known variants."""
    if manifests_dir is None:
        manifests_dir = discover(Path.cwd() if cwd is None else cwd)
    candidate = manifests_dir / f"{variant}.yaml"
    if candidate.is_file():
        return candidate
    known = ", ".join(sorted(p.stem for p in manifests_dir.glob("*.yaml"))) or "none"
    raise UsageError(f"unknown variant {variant!r} (manifests in {manifests_dir}: {known})")
