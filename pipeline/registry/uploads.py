"""Chunked blob upload (POST → PATCH… → PUT ?digest=) that resumes instead of resending.

docker-registry (distribution 2.8) ignores Content-Range on PATCH and appends whatever arrives,
so after any failed PATCH the chunk may or may not be stored. Resending it blindly would corrupt
the blob. Instead the upload asks the registry (`GET <upload URL>` → `Range: 0-N`) and goes on
from byte N+1; a vanished session (404) starts a new one. The final `PUT ?digest=` is the
integrity check: the registry hashes what it holds, and a mismatch (DIGEST_INVALID) restarts the
blob once from scratch; nothing is ever committed under a digest it does not have.

Across processes: `on_location(url, offset)` is told every upload URL the registry hands out
(journal.UploadJournal records it), and `run(resume=url)` starts by asking the registry where
that earlier session stands, so a killed publish goes on where the registry stopped.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, urljoin

import requests

from pipeline.errors import UsageError
from pipeline.registry.errors import (
    RegistryError,
    describe_response,
    error_codes,
    response_error,
    where,
)
from pipeline.registry.retry import RETRYABLE_STATUSES, parse_retry_after
from pipeline.registry.sources import BlobSource
from pipeline.registry.transport import ConnectionFailed, Transport

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024
# Overrides the chunk size (bytes) of clients made without an explicit one: tests use small
# chunks to exercise many PATCHes with small blobs; registries with request-size limits need it.
CHUNK_SIZE_ENV = "BOOTC_PIPELINE_CHUNK_SIZE"
_SESSION_GONE = frozenset({"BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID"})
_CONTENT_MISMATCH = frozenset({"DIGEST_INVALID", "SIZE_INVALID"})
_RANGE_RE = re.compile(r"^(?:bytes=)?0-(-?\d+)$")


def chunk_size_from_env(environ: Mapping[str, str] | None = None) -> int:
    """$BOOTC_PIPELINE_CHUNK_SIZE if set (a positive whole number of bytes), else the default."""
    text = (os.environ if environ is None else environ).get(CHUNK_SIZE_ENV, "").strip()
    if not text:
        return DEFAULT_CHUNK_SIZE
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"{CHUNK_SIZE_ENV}={text!r} is not a positive whole number of bytes")
    return int(text)


@dataclass
class UploadStats:
    """What an upload cost: bytes put on the wire (re-sends included) and how often it recovered."""

    bytes_sent: int = 0
    resumes: int = 0  # failed PATCHes recovered by asking the registry where it stands
    new_sessions: int = 0  # upload sessions started again because the old one was gone
    restarts: int = 0  # whole-blob restarts after the registry rejected the digest
    resumed_from: int = 0  # bytes an earlier run's session already held when this run took it up
    stale_resume: bool = False  # an earlier run's session was offered but the registry forgot it


class _SessionGone(Exception):
    """The upload URL answered 404: start a new session."""


class _ContentMismatch(Exception):
    """The registry holds other bytes than we sent: only a fresh upload can fix that."""

    def __init__(self, what: str, response: requests.Response | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.response = response


def push_scope(repository: str) -> str:
    return f"repository:{repository}:pull,push"


def with_digest(location: str, digest: str) -> str:
    """Append `digest=` to an upload URL, keeping its query (`_state`) byte for byte."""
    separator = "&" if "?" in location else "?"
    return f"{location}{separator}digest={quote(digest, safe='')}"


def cancel_upload(transport: Transport, repository: str, location: str) -> bool:
    """Cancel an upload session opened but not needed (a refused mount's); whether the registry
    confirmed it. Failure is harmless: registries purge abandoned uploads anyway.

    docker-registry wants the `delete` action for this (its challenge asks for it, and the token
    flow adds it); credentials without delete rights leave the session to be purged.
    """
    try:
        response = transport.request(
            "DELETE",
            location,
            scope=push_scope(repository),
            action="cancelling an unused upload",
            repository=repository,
        )
    except RegistryError:
        return False
    with response:
        return 200 <= response.status_code < 300 or response.status_code == 404


def parse_range_end(value: str | None) -> int | None:
    """The last byte index from `Range: 0-N` (docker-registry says `0--1` for nothing yet)."""
    if value is None:
        return None
    match = _RANGE_RE.match(value.strip())
    return int(match.group(1)) if match else None


class Uploader:
    """Uploads one blob into one repository through a Transport."""

    def __init__(
        self,
        transport: Transport,
        repository: str,
        source: BlobSource,
        digest: str,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        progress: Callable[[int], None] | None = None,
        on_location: Callable[[str, int], None] | None = None,
    ) -> None:
        """`on_location(url, offset)`: told each upload URL and the bytes the registry then held."""
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        self.t = transport
        self.repository = repository
        self.source = source
        self.digest = digest
        self.chunk_size = chunk_size
        self.progress = progress
        self.on_location = on_location
        self.stats = UploadStats()
        self._reported = 0  # high-water mark of bytes reported to `progress`
        self._scope = push_scope(repository)
        self._where = where(transport.registry, repository)

    def run(self, first_location: str | None = None, *, resume: str | None = None) -> UploadStats:
        """Upload and commit the blob; a digest mismatch gets one fresh restart.

        `resume`: an upload URL from an earlier run; the registry is asked how much of it it
        holds and the upload goes on from there (a forgotten session is not an error).
        `first_location`: a session already opened (a refused mount), used if not resuming.
        """
        try:
            self._upload_and_commit(first_location, resume)
        except _ContentMismatch as first:
            self.stats.restarts += 1
            log.warning(
                "%s: upload of %s went wrong (%s); uploading again",
                self._where,
                self.digest,
                first.what,
            )
            try:
                self._upload_and_commit(None, None)
            except _ContentMismatch as again:
                hint = "the file changed while uploading, or does not match its digest"
                if again.response is not None:
                    raise self._error(
                        f"uploading {self.digest} (second try)", again.response, hint=hint
                    ) from None
                raise RegistryError(
                    f"{self._where}: upload of {self.digest} failed twice: {again.what}",
                    hint=hint,
                ) from None
        return self.stats

    def _upload_and_commit(self, location: str | None, resume: str | None) -> None:
        offset = 0
        taken_up = self._take_up(resume) if resume is not None else None
        if taken_up is not None:
            if location is not None:
                cancel_upload(self.t, self.repository, location)
            location, offset = taken_up
            self.stats.resumed_from = offset
        location = location or self._start()
        self._remember(location, offset)
        self._report(offset)
        location = self._send_chunks(location, offset)
        self._commit(location)

    def _take_up(self, location: str) -> tuple[str, int] | None:
        """The URL and offset of an earlier run's session, or None if the registry forgot it.

        Any client error (404 BLOB_UPLOAD_UNKNOWN/INVALID, a 400 for a mangled URL, a session
        holding more than the blob) means "start afresh"; connection failures and exhausted
        retries are real failures and propagate.
        """
        try:
            return self._status(location, oversize_is_gone=True)
        except _SessionGone:
            pass
        except RegistryError as exc:
            if exc.status is None or exc.status == 401 or not 400 <= exc.status < 500:
                raise
        self.stats.stale_resume = True
        log.info(
            "registry %s: the earlier upload of %s is gone; starting afresh",
            self.t.registry,
            self.digest,
        )
        return None

    def _remember(self, location: str, offset: int) -> None:
        if self.on_location is not None:
            self.on_location(location, offset)

    # -- one upload session -------------------------------------------------------------------

    def _start(self) -> str:
        url = self.t.url(f"/v2/{self.repository}/blobs/uploads/")
        response = self.t.request(
            "POST",
            url,
            scope=self._scope,
            action="starting a blob upload",
            repository=self.repository,
            headers={"Content-Length": "0"},
        )
        with response:
            if response.status_code != 202:
                raise self._error("starting a blob upload", response)
            return self._location(response, url)

    def _location(self, response: requests.Response, request_url: str) -> str:
        """The next upload URL; relative Locations resolve against the request's URL."""
        location = response.headers.get("Location")
        if not location:
            raise RegistryError(
                f"{self._where}: upload response {response.status_code} has no Location header"
            )
        return urljoin(request_url, location)

    def _send_chunks(self, location: str, offset: int = 0) -> str:
        """PATCH chunks until the registry holds all bytes; returns the final upload URL.

        The retry budget bounds each streak of failures: it starts afresh whenever the upload
        gets further than it ever got, so a long upload may survive several separate hiccups
        while a registry that never lets it advance still fails in bounded attempts and time.
        """
        furthest = offset
        budget = self.t.retry.start()
        while offset < self.source.size:
            end = min(offset + self.chunk_size, self.source.size)
            response, failure = self._patch(location, offset, end)
            if response is not None and response.status_code == 202:
                location = self._location(response, location)
                held = parse_range_end(response.headers.get("Range"))
                response.close()
                if held is not None and held + 1 > end:
                    # More bytes than we sent: a chunk was stored twice (a proxy replayed it).
                    raise _ContentMismatch(f"registry holds {held + 1} bytes after {end} sent")
                offset = end if held is None else held + 1
                self._remember(location, offset)
                self._report(offset)
                if offset > furthest:
                    furthest = offset
                    budget = self.t.retry.start()
                continue
            retry_after = None
            if response is not None:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                failure = describe_response(response)
                codes = set(error_codes(response))
                recoverable = (
                    response.status_code in RETRYABLE_STATUSES
                    or response.status_code in (401, 416)
                    or (response.status_code == 404 and bool(codes & _SESSION_GONE))
                )
                if not recoverable:
                    raise self._error(f"uploading bytes {offset}-{end - 1}", response)
                response.close()
            wait = budget.next_wait(retry_after)
            if wait is None:
                raise RegistryError(
                    f"{self._where}: upload of "
                    f"{self.digest} failed at byte {offset} after {budget.attempts} attempts: "
                    f"{failure}"
                )
            log.info(
                "registry %s: PATCH at byte %d failed (%s); resuming in %.1f s",
                self.t.registry,
                offset,
                failure,
                wait,
            )
            budget.wait(wait)
            location, offset = self._resume(location)
            self._remember(location, offset)
        return location

    def _patch(self, location: str, start: int, end: int) -> tuple[requests.Response | None, str]:
        """One PATCH of bytes [start, end); a connection failure is returned, not raised."""
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{start}-{end - 1}",
            "Content-Length": str(end - start),
        }
        with self.source.reader(start, end) as body:
            try:
                response = self.t.request(
                    "PATCH",
                    location,
                    scope=self._scope,
                    action="uploading a chunk",
                    repository=self.repository,
                    headers=headers,
                    data=body,
                )
            except ConnectionFailed as exc:
                return None, exc.reason
            finally:
                self.stats.bytes_sent += body.consumed
        return response, ""

    def _resume(self, location: str) -> tuple[str, int]:
        """Ask where the session stands; start a new session if it is gone."""
        self.stats.resumes += 1
        try:
            return self._status(location)
        except _SessionGone:
            self.stats.new_sessions += 1
            log.info("registry %s: upload session gone; starting a new one", self.t.registry)
            return self._start(), 0

    def _status(self, location: str, *, oversize_is_gone: bool = False) -> tuple[str, int]:
        response = self.t.request(
            "GET",
            location,
            scope=self._scope,
            action="checking upload progress",
            repository=self.repository,
        )
        with response:
            if response.status_code == 404:
                raise _SessionGone()
            if response.status_code not in (200, 204):
                raise self._error("checking upload progress", response)
            held = parse_range_end(response.headers.get("Range"))
            offset = 0 if held is None else held + 1
            if offset > self.source.size:
                if oversize_is_gone:
                    raise _SessionGone()
                raise RegistryError(
                    f"{self._where}: upload holds "
                    f"{offset} bytes, more than the blob's {self.source.size}"
                )
            new_location = (
                self._location(response, location) if "Location" in response.headers else location
            )
            return new_location, offset

    def _commit(self, location: str) -> None:
        """PUT ?digest=: the registry checks the digest before it makes the blob visible."""
        url = with_digest(location, self.digest)
        try:
            response = self.t.request(
                "PUT",
                url,
                scope=self._scope,
                action="committing the blob",
                repository=self.repository,
                headers={"Content-Type": "application/octet-stream"},
                data=b"",
            )
        except ConnectionFailed:
            if self._landed():  # the commit went through; only its answer was lost
                return
            raise
        with response:
            if response.status_code in (201, 204):
                echoed = response.headers.get("Docker-Content-Digest")
                if echoed and echoed != self.digest:
                    raise self._error(f"commit answered digest {echoed}", response)
                self._report(self.source.size)
                return
            codes = set(error_codes(response))
            if response.status_code == 400 and codes & _CONTENT_MISMATCH:
                raise _ContentMismatch(describe_response(response), response)
            if response.status_code == 404 and self._landed():
                return  # a retried PUT after a lost answer: the first one committed
            raise self._error("committing the blob", response)

    def _landed(self) -> bool:
        url = self.t.url(f"/v2/{self.repository}/blobs/{self.digest}")
        response = self.t.request(
            "HEAD",
            url,
            scope=self._scope,
            action="checking the blob",
            repository=self.repository,
        )
        with response:
            return response.status_code == 200

    def _report(self, offset: int) -> None:
        """Tell `progress` about bytes the registry newly holds (never more than the blob size)."""
        if self.progress is not None and offset > self._reported:
            self.progress(offset - self._reported)
        self._reported = max(self._reported, offset)

    def _error(
        self, action: str, response: requests.Response, *, hint: str | None = None
    ) -> RegistryError:
        return response_error(self.t.registry, self.repository, action, response, hint=hint)
