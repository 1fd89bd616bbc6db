"""Keep secrets out of every string the transport produces (logs, errors, reprs).

Secrets reach the transport as Authorization headers and, in principle, as URL userinfo
(`https://user:pass@host`, e.g. from a Location or realm a registry sends back) and as the query
of a pre-signed storage URL a registry redirects blob downloads to (S3's `X-Amz-Signature`,
CloudFront's `Signature`, Azure's `sig`, ...). Everything that is formatted for a human goes
through these functions, and the HTTP libraries' own log records through `QueryRedactingFilter`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "<redacted>"
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
# Query parameters whose values authorise a request on their own (pre-signed URLs, tokens).
_SECRET_QUERY_KEYS = frozenset(
    {"sig", "signature", "policy", "key-pair-id", "token", "access_token", "code", "password"}
)
_SECRET_QUERY_PARTS = ("signature", "credential", "security-token", "token", "secret")
# A query string inside free text (a log message): `?` up to whitespace, a quote or a bracket.
_QUERY_IN_TEXT = re.compile(r"\?[^\s\"'<>()\[\]]+")
# The libraries whose own log records may carry request URLs (urllib3 logs each request line).
_LIBRARY_LOGGERS = ("urllib3", "requests")


def _secret_query_key(key: str) -> bool:
    lowered = key.lower()
    return lowered in _SECRET_QUERY_KEYS or any(p in lowered for p in _SECRET_QUERY_PARTS)


def redact_url(url: str) -> str:
    """A URL without its secrets: userinfo (`scheme://<redacted>@host/...`) and the values of
    signature/credential/token query parameters (`?X-Amz-Signature=<redacted>`)."""
    try:
        parts = urlsplit(url)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return REDACTED
    if "@" in parts.netloc:
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{REDACTED}@{host}")
    if any(_secret_query_key(key) for key, _ in pairs):
        query = urlencode(
            [(key, REDACTED if _secret_query_key(key) else value) for key, value in pairs],
            safe="<>:",
        )
        parts = parts._replace(query=query)
    return urlunsplit(parts)


def redact_queries(text: str) -> str:
    """Free text with every URL query string (`?...`) replaced by `?<redacted>`."""
    return _QUERY_IN_TEXT.sub("?" + REDACTED, text)


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy of `headers` with credential-bearing values replaced."""
    return {k: (REDACTED if k.lower() in _SECRET_HEADERS else v) for k, v in headers.items()}


def one_line(text: str, limit: int = 300) -> str:
    """Collapse whitespace and cut, so a registry's message fits one log/error line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class QueryRedactingFilter(logging.Filter):
    """Rewrites a record's message with its URL query strings redacted (never drops a record).

    urllib3 logs every request line at DEBUG (`"GET /path?query HTTP/1.1" 200`), including the
    pre-signed storage URL a blob download was redirected to; its signature must not reach a
    CI log because someone ran with `--debug`.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record: leave it to logging's own handling
            return True
        redacted = redact_queries(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


_LOG_FILTER = QueryRedactingFilter()


def install_log_redaction() -> None:
    """Put `QueryRedactingFilter` on urllib3's and requests' loggers (idempotent).

    A logger's filters apply only to records logged through that very logger (not to those of
    its children propagating up), so the filter goes on each of the libraries' loggers that
    exist; they create them when their modules are imported, i.e. before any request is made.
    """
    manager = logging.Logger.manager
    names = {name for name in list(manager.loggerDict) if name.split(".", 1)[0] in _LIBRARY_LOGGERS}
    for name in sorted(names | set(_LIBRARY_LOGGERS)):
        logger = logging.getLogger(name)
        if _LOG_FILTER not in logger.filters:
            logger.addFilter(_LOG_FILTER)
