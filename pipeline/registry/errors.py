"""Registry failures as one-line PipelineErrors that name the registry, repository and status.

The distribution spec's error body is `{"errors": [{"code": ..., "message": ..., "detail": ...}]}`;
its codes (DIGEST_INVALID, BLOB_UPLOAD_UNKNOWN, ...) are what a user can search for, so the
message quotes them. The body is never echoed raw: it could be HTML from a proxy, or huge.
"""

from __future__ import annotations

import json

import requests

from pipeline.core.errors import PipelineError
from pipeline.registry.redact import one_line


class RegistryError(PipelineError):
    """A registry refused or failed a request. `status`/`codes` let callers branch on it."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        codes: tuple[str, ...] = (),
        hint: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.codes = codes
        self.reason = reason  # what went wrong, without the "registry X, ..." prefix

    def __repr__(self) -> str:
        return f"RegistryError({self.message!r}, status={self.status!r}, codes={self.codes!r})"


def where(registry: str, repository: str | None = None) -> str:
    """The prefix of every registry message: `registry X` or `registry X, repository Y`."""
    return f"registry {registry}" + (f", repository {repository}" if repository else "")


def error_codes(response: requests.Response) -> tuple[str, ...]:
    """The `code`s of a distribution-spec error body, or () if the body is not one."""
    return tuple(code for code, _ in _errors(response))


def _errors(response: requests.Response) -> list[tuple[str, str]]:
    kind = response.headers.get("Content-Type", "")
    if "json" not in kind and not kind.startswith("text/plain"):  # olareg 0.2.2: text/plain
        return []
    try:
        body = json.loads(response.content[:65536])
    except (ValueError, UnicodeDecodeError):
        return []
    items = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return []
    found = []
    for item in items:
        if isinstance(item, dict):
            found.append((str(item.get("code", "")), str(item.get("message", ""))))
    return found


def describe_response(response: requests.Response) -> str:
    """`404 MANIFEST_UNKNOWN: manifest unknown` (or `502 Bad Gateway` without an error body)."""
    status = f"{response.status_code} {response.reason or ''}".strip()
    errors = _errors(response)
    if not errors:
        return status
    details = "; ".join(f"{code}: {msg}" if msg else code for code, msg in errors)
    return f"{response.status_code} {one_line(details)}"


def response_error(
    registry: str,
    repository: str | None,
    action: str,
    response: requests.Response,
    *,
    hint: str | None = None,
) -> RegistryError:
    """The error for a response that was not what `action` needed."""
    return RegistryError(
        f"{where(registry, repository)}: {action} failed: {describe_response(response)}",
        status=response.status_code,
        codes=error_codes(response),
        hint=hint,
    )
