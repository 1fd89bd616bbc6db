"""Keep secrets out of every string the transport produces (logs, errors, reprs).

Secrets reach the transport as Authorization headers and, in principle, as URL userinfo
(`https://user:pass@host`, e.g. from a Location or realm a registry sends back). Everything that is
formatted for a human goes through these functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

REDACTED = "<redacted>"
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})


def redact_url(url: str) -> str:
    """Drop userinfo from a URL (`scheme://user:pass@host/...` → `scheme://<redacted>@host/...`)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{REDACTED}@{host}"))


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy of `headers` with credential-bearing values replaced."""
    return {k: (REDACTED if k.lower() in _SECRET_HEADERS else v) for k, v in headers.items()}


def one_line(text: str, limit: int = 300) -> str:
    """Collapse whitespace and cut, so a registry's message fits one log/error line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
