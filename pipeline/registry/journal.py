"""Upload journal: where an unfinished blob upload stands, kept on disk so a killed publish resumes.

An upload session lives in the registry (docker-registry keeps it in storage, so it survives a
registry restart too), but the client only knows it by its upload URL, and that URL changes with
every accepted chunk (docker-registry signs the offset into `_state`). The journal records the
latest URL for each (registry, repository, digest), written atomically after every chunk the
registry acknowledged, and forgotten once the blob is committed. The next run asks the registry
for that session's status (`GET` → `Range: 0-N`) and goes on from byte N+1; a session the
registry no longer knows starts afresh. The journal is a hint, never a source of truth: the final
`PUT ?digest=` still has the registry check every byte.

What it may hold: upload URLs of the registry's own origin without userinfo or credential-like
query parameters (`_state` is a signed name/uuid/offset, not a secret). Anything else is not
recorded, so the journal can never carry a secret to disk; the file is also created 0600.

Limit (docker-registry 2.8): a chunk the registry received only in part (the client killed
mid-body with nothing buffering the request in between) or received without the client hearing
the answer leaves the recorded URL's offset behind the session's; the registry then cancels the
session on the next request with that URL and the upload starts again from byte 0.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pipeline.core.errors import PipelineError
from pipeline.core.files import atomic_write

log = logging.getLogger(__name__)

JOURNAL_VERSION = 1
# Query parameters that carry credentials in the wild (pre-signed URLs, token-in-URL schemes).
_SECRET_QUERY_WORDS = ("token", "signature", "sig", "credential", "password", "secret", "auth")
_SECRET_QUERY_KEYS = frozenset({"x-amz-signature", "x-amz-credential", "x-goog-signature"})


@dataclass(frozen=True)
class JournalEntry:
    """An unfinished upload: its latest upload URL and the bytes the registry then held."""

    location: str
    offset: int


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def may_record(location: str, origin: str) -> bool:
    """True if `location` is safe to write to disk: same origin as `origin`, no credentials."""
    try:
        parts = urlsplit(location)
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return False
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return False
    if _origin(location) != _origin(origin) or parts.fragment:
        return False
    for key, _ in query:
        name = key.lower()
        if name == "_state" or name == "digest":
            continue
        if name in _SECRET_QUERY_KEYS or any(word in name for word in _SECRET_QUERY_WORDS):
            return False
    return True


class UploadJournal:
    """A small JSON file of unfinished uploads, keyed by registry, repository and digest.

    Thread-safe within one process; two processes sharing one journal file would at worst make
    each other start an upload again (the registry refuses a stale upload URL), never corrupt it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._broken = False  # a write failed once: stop trying (the journal is only a hint)

    def __repr__(self) -> str:
        return f"UploadJournal({str(self.path)!r})"

    @staticmethod
    def key(registry: str, repository: str, digest: str) -> str:
        return f"{registry}/{repository}@{digest}"

    def load(self, registry: str, repository: str, digest: str) -> JournalEntry | None:
        with self._lock:
            raw = self._read().get(self.key(registry, repository, digest))
        if not isinstance(raw, dict):
            return None
        location, offset = raw.get("location"), raw.get("offset", 0)
        if not isinstance(location, str) or not isinstance(offset, int) or offset < 0:
            return None
        return JournalEntry(location, offset)

    def save(
        self, registry: str, repository: str, digest: str, location: str, offset: int, origin: str
    ) -> None:
        """Record the latest upload URL (or forget the entry if that URL must not be stored)."""
        key = self.key(registry, repository, digest)
        with self._lock:
            entries = self._read()
            if may_record(location, origin):
                entries[key] = {"location": location, "offset": offset}
            elif entries.pop(key, None) is None:
                return
            else:
                log.info("upload journal: upload URL not recorded (other origin or credentials)")
            self._write(entries)

    def clear(self, registry: str, repository: str, digest: str) -> None:
        """Forget an upload (committed, or found in the registry some other way)."""
        with self._lock:
            entries = self._read()
            if entries.pop(self.key(registry, repository, digest), None) is not None:
                self._write(entries)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError, ValueError):
            log.warning("upload journal %s is unreadable; ignoring it", self.path)
            return {}
        if not isinstance(data, dict) or data.get("version") != JOURNAL_VERSION:
            return {}
        uploads = data.get("uploads")
        return dict(uploads) if isinstance(uploads, dict) else {}

    def _write(self, entries: dict[str, Any]) -> None:
        if self._broken:
            return
        try:
            if not entries:
                self.path.unlink(missing_ok=True)
                return
            body = json.dumps(
                {"version": JOURNAL_VERSION, "uploads": entries}, indent=2, sort_keys=True
            )
            atomic_write(self.path, body.encode() + b"\n", mode=0o600)
        except (OSError, PipelineError) as exc:
            self._broken = True
            log.warning(
                "upload journal %s cannot be written (%s); going on without it", self.path, exc
            )
