"""The run's settings in one table (mkosi's SETTINGS way): each setting's flag, default and help.

The table drives argparse (`cli.py`), the defaults of `Options`, `RetryPolicy` and `Timeouts`,
and the README's list of settings (tests/test_settings.py compares it with `markdown()`), so no
two of them can disagree about a default again. Pure data: nothing here imports the pipeline.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

T = TypeVar("T")
N = TypeVar("N", int, float)
Group = Literal["release", "registry", "verify"]


def positive(kind: Callable[[str], N]) -> Callable[[str], N]:
    """An argparse type: a number greater than 0, else one line naming the value."""

    def parse(text: str) -> N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
        return value

    return parse


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One setting: `dest` is its `Options` field; `parse` None makes it a switch (off by default).
    `group` says which commands take it: "release" (the publishing commands), "registry" (every
    command that talks to a registry), "verify" (the commands that read a release back)."""

    dest: str
    flag: str
    group: Group
    default: T
    help: str
    parse: Callable[[str], T] | None = None
    metavar: str | None = None

    def add_to(self, parser: Any) -> None:
        """Add the flag to an argparse parser or argument group."""
        if self.parse is None:
            parser.add_argument(self.flag, dest=self.dest, action="store_true", help=self.help)
            return
        shown = "" if self.default is None else " (default %(default)s)"
        parser.add_argument(
            self.flag,
            dest=self.dest,
            type=self.parse,
            default=self.default,
            metavar=self.metavar,
            help=self.help + shown,
        )

    def markdown(self) -> str:
        """This setting's line in the README's list."""
        value = f" {self.metavar}" if self.metavar else ""
        default = "" if self.default in (None, False) else f" (default `{self.default}`)"
        return f"- `{self.flag}{value}`{default}: {self.help}"


def _path(text: str) -> Path:
    return Path(text)


# release: what is built and how
ENGINE = Setting[str | None](
    dest="engine_url",
    flag="--engine",
    group="release",
    default=None,
    help="Docker API URL of the engine (else DOCKER_HOST)",
    parse=str,
    metavar="URL",
)
WORKDIR = Setting[Path](
    dest="workdir",
    flag="--workdir",
    group="release",
    default=Path(".work"),
    help="where stages hand over (stamps, disks, results)",
    parse=_path,
    metavar="DIR",
)
BUILDER_IMAGE = Setting[str | None](
    dest="builder_image",
    flag="--builder-image",
    group="release",
    default=None,
    help="the disk builder's image (else the manifest's builder.tool's)",
    parse=str,
    metavar="IMAGE",
)
BASE_IMAGE = Setting[str | None](
    dest="base_image",
    flag="--base-image",
    group="release",
    default=None,
    help="build FROM this image instead of the manifest's base",
    parse=str,
    metavar="IMAGE",
)
CONTAINERFILE = Setting[Path | None](
    dest="containerfile",
    flag="--containerfile",
    group="release",
    default=None,
    help="build this Containerfile instead",
    parse=_path,
    metavar="FILE",
)
REVISION = Setting[str | None](
    dest="revision",
    flag="--revision",
    group="release",
    default=None,
    help="source revision (else git HEAD)",
    parse=str,
    metavar="REV",
)
CREATED = Setting[str | None](
    dest="created",
    flag="--created",
    group="release",
    default=None,
    help="RFC 3339 creation time (else SOURCE_DATE_EPOCH, else the commit's time)",
    parse=str,
    metavar="TIME",
)
FORCE = Setting[bool](
    dest="force",
    flag="--force",
    group="release",
    default=False,
    help="move release tags that name other content",
)
SIGNING_KEY = Setting[Path | None](
    dest="signing_key",
    flag="--signing-key",
    group="release",
    default=None,
    help="sign the release with this PEM key (else $BOOTC_PIPELINE_SIGNING_KEY; "
    "password in $BOOTC_PIPELINE_SIGNING_PASSWORD)",
    parse=_path,
    metavar="FILE",
)
KEYLESS = Setting[bool](
    dest="keyless",
    flag="--keyless",
    group="release",
    default=False,
    help="sign with cosign v2 keyless (GitHub Actions' OIDC token, Fulcio, Rekor)",
)
JOBS = Setting[int](
    dest="jobs",
    flag="--jobs",
    group="release",
    default=2,
    help="architectures built, compressed and uploaded at the same time",
    parse=positive(int),
    metavar="N",
)
REBUILD = Setting[bool](
    dest="rebuild",
    flag="--rebuild",
    group="release",
    default=False,
    help="build and publish even when the current release was made from the same inputs",
)

# registry: how every registry is reached
REGISTRY = Setting[str | None](
    dest="registry",
    flag="--registry",
    group="registry",
    default=None,
    help="the target registry host[:port]: publish there instead of the manifest's; the "
    "environment's credentials are for it alone (pull, lima, validate, boot REF: for REF's "
    "registry only when this names it)",
    parse=str,
    metavar="HOST",
)
PLAIN_HTTP = Setting[bool](
    dest="plain_http",
    flag="--plain-http",
    group="registry",
    default=False,
    help="HTTP, not HTTPS (loopback only)",
)
FORCE_PLAIN_HTTP = Setting[bool](
    dest="force_plain_http",
    flag="--force-plain-http",
    group="registry",
    default=False,
    help="allow --plain-http to a non-loopback host",
)
CA_BUNDLE = Setting[Path | None](
    dest="ca_bundle",
    flag="--ca-bundle",
    group="registry",
    default=None,
    help="CA certificates added to the system's trust, for the target registry only",
    parse=_path,
    metavar="FILE",
)
REGISTRY_CONFIG = Setting[Path | None](
    dest="registry_config",
    flag="--registry-config",
    group="registry",
    default=None,
    help="docker config.json with credentials",
    parse=_path,
    metavar="FILE",
)
RETRY_ATTEMPTS = Setting[int](
    dest="retry_attempts",
    flag="--retry-attempts",
    group="registry",
    default=5,
    help="tries per request",
    parse=positive(int),
    metavar="N",
)
RETRY_SECONDS = Setting[float](
    dest="retry_seconds",
    flag="--retry-seconds",
    group="registry",
    default=300.0,
    help="time budget for retrying one request or resuming one upload",
    parse=positive(float),
    metavar="S",
)
CONNECT_TIMEOUT = Setting[float](
    dest="connect_timeout",
    flag="--connect-timeout",
    group="registry",
    default=10.0,
    help="seconds to wait for a TCP/TLS connection",
    parse=positive(float),
    metavar="S",
)
READ_TIMEOUT = Setting[float](
    dest="read_timeout",
    flag="--read-timeout",
    group="registry",
    default=120.0,
    help="seconds to wait between bytes of a response (a registry may hash a large blob first)",
    parse=positive(float),
    metavar="S",
)

# verify: what a release read back must be signed with
PUBLIC_KEY = Setting[Path | None](
    dest="public_key",
    flag="--public-key",
    group="verify",
    default=None,
    help="refuse a release not signed with this key (else $BOOTC_PIPELINE_PUBLIC_KEY or "
    "~/.config/bootc-pipeline/trust.yaml)",
    parse=_path,
    metavar="FILE",
)

# in the order --help and the README list them
SETTINGS: tuple[Setting[Any], ...] = (
    ENGINE, WORKDIR, BUILDER_IMAGE, BASE_IMAGE, CONTAINERFILE, REVISION, CREATED, FORCE,
    SIGNING_KEY, KEYLESS, JOBS, REBUILD, REGISTRY, PLAIN_HTTP, FORCE_PLAIN_HTTP, CA_BUNDLE,
    REGISTRY_CONFIG, RETRY_ATTEMPTS, RETRY_SECONDS, CONNECT_TIMEOUT, READ_TIMEOUT, PUBLIC_KEY,
)  # fmt: skip


def add_arguments(parser: Any, group: Group) -> None:
    """Every setting of `group`, in the table's order, as flags of `parser`."""
    for setting in SETTINGS:
        if setting.group == group:
            setting.add_to(parser)


def defaults() -> dict[str, Any]:
    """Each setting's default by its `Options` field."""
    return {s.dest: s.default for s in SETTINGS}


CAPTIONS: dict[Group, str] = {
    "release": "The publishing commands (publish, its stages, boot, version, index) take:",
    "registry": "Every command that talks to a registry (also validate, pull, lima) takes:",
    "verify": "The commands that read a release back (pull, lima, validate, boot REF) take:",
}


def markdown() -> str:
    """The README's list of settings, as the table says it."""
    lines: list[str] = []
    for group, caption in CAPTIONS.items():
        lines += [caption, ""] if not lines else ["", caption, ""]
        lines += [s.markdown() for s in SETTINGS if s.group == group]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
