"""Registry references (`HOST[:PORT]/REPO[:TAG][@DIGEST]`), parsed once and strictly.

The grammar is distribution's (github.com/distribution/reference): a lowercase repository path of
components joined by `/`, a tag of at most 128 word characters, a digest. The registry part is
required unless the caller supplies a default, because a pipeline that pushes must never guess a
registry (Docker's implicit `docker.io/library/` would publish somewhere the user did not say).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from pipeline.core.errors import UsageError

# One path component: lowercase alphanumerics joined by `.`, `_`, `__` or runs of `-`.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}")
_DOMAIN_COMPONENT = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_HOSTNAME_RE = re.compile(rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*")
_PORT_RE = re.compile(r"[0-9]{1,5}")
_MAX_NAME_LENGTH = 255  # distribution's limit on `registry/repository`


@dataclass(frozen=True)
class Reference:
    """A parsed reference. `tag` and `digest` may both be set (`repo:tag@sha256:...`)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    @property
    def name(self) -> str:
        """`registry/repository`, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def target(self) -> str:
        """What to put after `/manifests/`: the digest if pinned, else the tag."""
        if self.digest is not None:
            return self.digest
        if self.tag is not None:
            return self.tag
        raise UsageError(f"reference {self} names neither a tag nor a digest")

    def with_tag(self, tag: str) -> Reference:
        """The same repository at another tag (any digest dropped)."""
        validate_tag(tag)
        return Reference(self.registry, self.repository, tag, None)

    def with_digest(self, digest: str) -> Reference:
        """The same repository pinned to a digest (the tag kept for readability)."""
        validate_digest(digest)
        return Reference(self.registry, self.repository, self.tag, digest)


def parse_reference(text: str, *, default_registry: str | None = None) -> Reference:
    """Parse `text`; raise UsageError naming the part that is wrong."""
    if not text or text != text.strip():
        raise UsageError(f"invalid reference {text!r}: empty or surrounded by whitespace")
    rest, digest = _split_digest(text)
    registry, path = _split_registry(text, rest, default_registry)
    repository, tag = _split_tag(text, path)
    if not _REPOSITORY_RE.fullmatch(repository):
        raise UsageError(
            f"invalid reference {text!r}: repository {repository!r} must be lowercase letters, "
            "digits and single separators (. _ __ -) between '/'-separated components"
        )
    validate_registry(registry, context=text)
    if len(registry) + 1 + len(repository) > _MAX_NAME_LENGTH:
        raise UsageError(f"invalid reference {text!r}: name longer than {_MAX_NAME_LENGTH}")
    return Reference(registry, repository, tag, digest)


def _split_digest(text: str) -> tuple[str, str | None]:
    if "@" not in text:
        return text, None
    rest, _, digest = text.partition("@")
    validate_digest(digest, context=text)
    return rest, digest


def _split_registry(text: str, rest: str, default: str | None) -> tuple[str, str]:
    """The first component is a registry iff it has a `.`, a `:`, is `localhost` or `[..]`."""
    first, sep, remainder = rest.partition("/")
    if sep and (any(c in first for c in ".:[") or first == "localhost" or first != first.lower()):
        return first, remainder
    if default is None:
        raise UsageError(
            f"invalid reference {text!r}: no registry host; write HOST[:PORT]/REPOSITORY[:TAG]"
        )
    return default, rest


def _split_tag(text: str, path: str) -> tuple[str, str | None]:
    repository, sep, tag = path.rpartition(":")
    if not sep:
        return path, None
    if "/" in tag:  # a ':' inside the path is not a tag separator
        raise UsageError(f"invalid reference {text!r}: unexpected ':' in repository {path!r}")
    validate_tag(tag, context=text)
    return repository, tag


def validate_tag(tag: str, *, context: str | None = None) -> None:
    """A tag is 1-128 characters of [A-Za-z0-9_.-], not starting with `.` or `-`."""
    if not _TAG_RE.fullmatch(tag):
        where = f"invalid reference {context!r}: " if context else ""
        raise UsageError(
            f"{where}invalid tag {tag!r}: 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'"
        )


def validate_digest(digest: str, *, context: str | None = None) -> None:
    """Only sha256 digests: the pipeline computes and verifies sha256 everywhere."""
    if not _DIGEST_RE.fullmatch(digest):
        where = f"invalid reference {context!r}: " if context else ""
        raise UsageError(f"{where}invalid digest {digest!r}: expected sha256:<64 lowercase hex>")


def is_digest(text: str) -> bool:
    """True for `sha256:<64 hex>`; used to tell a manifest digest from a tag."""
    return _DIGEST_RE.fullmatch(text) is not None


def validate_registry(registry: str, *, context: str | None = None) -> None:
    """`host[:port]` where host is a DNS name, an IPv4 address or a bracketed IPv6 address."""
    where = f"invalid reference {context!r}: " if context else ""
    host, port = split_host_port(registry)
    if port is not None and not (_PORT_RE.fullmatch(port) and 0 < int(port) < 65536):
        raise UsageError(f"{where}invalid port {port!r} in registry {registry!r}")
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise UsageError(f"{where}invalid IPv6 address in registry {registry!r}") from None
        return
    if not _HOSTNAME_RE.fullmatch(host):
        raise UsageError(f"{where}invalid registry host {host!r}")


def split_host_port(registry: str) -> tuple[str, str | None]:
    """Split `host:port`, `[v6]:port`, `host` or `[v6]`; the port is returned unvalidated."""
    if registry.startswith("["):
        end = registry.find("]")
        if end < 0:
            return registry, None
        host, rest = registry[: end + 1], registry[end + 1 :]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            return registry, None
        return host, rest[1:]
    host, sep, port = registry.partition(":")
    return host, (port if sep else None)


def is_loopback_registry(registry: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1: the only hosts plain HTTP is allowed to."""
    host, _ = split_host_port(registry)
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
