"""Chunked blob upload (POST → PATCH… → PUT ?digest=) that resumes instead of resending.

docker-registry (distribution 2.8) ignores Content-Range on PATCH and appends whatever arrives,
so after any failed PATCH the chunk may or may not be stored. Resending it blindly would corrupt
the blob. Instead the upload asks the registry (`GET <upload URL>` → `Range: 0-N`) and goes on
from what it holds; a vanished session (404) starts a new one. The final `PUT ?digest=` is the
integrity check: the registry hashes what it holds, and a mismatch (DIGEST_INVALID) restarts the
blob once from scratch; nothing is ever committed under a digest it does not have.

The registry's `Range` is read together with what this client knows (`reconcile`,
`acknowledged`): the registry holds at least the bytes it acknowledged and at most the bytes
sent. docker-registry 2.8 says `0-0` both for nothing and for one byte held; ECR's PATCH answers
can keep a `Range` stuck at the first chunk's end while storing every chunk
(aws/containers-roadmap#2831). Neither makes the client skip or re-send bytes.

Registries differ in what chunk they take (`ChunkSizing`): ghcr.io refuses request bodies over
4 MiB with a 416, a registry may state a minimum (`OCI-Chunk-Min-Length`, and a 416 below it).
A 416 makes the upload re-read the status, resize its chunks, and go on from what is held.

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

from pipeline.core.errors import UsageError
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
MiB = 1024 * 1024
# Request-body limits of registries that do not say so until refused: ghcr.io answers a larger
# PATCH with 416 "the request body is too large and exceeds the maximum permissible limit of
# 4.00MiB" (wasmCloud/wash#268, oras-project/rust-oci-client#37, ocx-sh/ocx#237).
KNOWN_BODY_LIMITS = {"ghcr.io": 4 * MiB}
SMALLEST_ADAPTED_CHUNK = 64 * 1024  # halving on unexplained 416s stops here
MAX_CHUNK_REFUSALS = 6  # 416s one upload survives before it gives up
# Overrides the chunk size (bytes) of clients made without an explicit one: tests use small
# chunks to exercise many PATCHes with small blobs; registries with request-size limits need it.
CHUNK_SIZE_ENV = "BOOTC_PIPELINE_CHUNK_SIZE"
_SESSION_GONE = frozenset({"BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID"})
_CONTENT_MISMATCH = frozenset({"DIGEST_INVALID", "SIZE_INVALID"})
_RANGE_RE = re.compile(r"^(?:bytes=)?0-(-?\d+)$")
_LIMIT_RE = re.compile(r"limit of ([0-9]+(?:\.[0-9]+)?)\s*(B|KiB|MiB|GiB|KB|MB|GB)\b", re.I)
_UNITS = {"b": 1, "kib": 1024, "mib": MiB, "gib": 1024 * MiB, "kb": 1000, "mb": 10**6, "gb": 10**9}


def chunk_size_from_env(environ: Mapping[str, str] | None = None) -> int:
    """$BOOTC_PIPELINE_CHUNK_SIZE if set (a positive whole number of bytes), else the default."""
    text = (os.environ if environ is None else environ).get(CHUNK_SIZE_ENV, "").strip()
    if not text:
        return DEFAULT_CHUNK_SIZE
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"{CHUNK_SIZE_ENV}={text!r} is not a positive whole number of bytes")
    return int(text)


def chunk_size_for(registry: str, configured: int) -> int:
    """The configured chunk size, capped where the registry's body limit is known."""
    host = registry.rsplit("@", 1)[-1].split(":", 1)[0].lower()
    return min(configured, KNOWN_BODY_LIMITS.get(host, configured))


def stated_limit(message: str) -> int | None:
    """The byte limit a refusal states ("... maximum permissible limit of 4.00MiB"), if any."""
    match = _LIMIT_RE.search(message)
    if match is None:
        return None
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


@dataclass
class ChunkSizing:
    """The PATCH size for one registry, learnt as uploads go; one per client, shared by uploads.

    `minimum` is the registry's `OCI-Chunk-Min-Length` once it stated one (every chunk but the
    last must be at least that long); `refused()` adapts to a 416 refusing a chunk.
    """

    size: int
    minimum: int = 0

    def learn(self, headers: Mapping[str, str]) -> None:
        text = (headers.get("OCI-Chunk-Min-Length") or "").strip()
        if text.isdigit() and int(text) > 0:
            self.minimum = int(text)
            self.size = max(self.size, self.minimum)

    def refused(self, length: int, message: str) -> None:
        """A chunk of `length` bytes got a 416 although the registry held its start."""
        limit = stated_limit(message)
        if limit is not None and limit < length:
            self.size = max(limit, self.minimum, 1)
        elif self.minimum and length < self.minimum:
            self.size = self.minimum
        else:
            self.size = max(min(self.size, length) // 2, SMALLEST_ADAPTED_CHUNK, self.minimum)


def reconcile(range_end: int | None, acked: int, sent_end: int) -> int:
    """Where a failed PATCH of bytes [acked, sent_end) leaves the upload, given the status
    GET's `Range: 0-N` (`range_end` N, None if absent).

    The registry holds at least what it acknowledged and at most what was sent. N+1 bytes is
    the plain reading; docker-registry 2.8 also says `0-0` for nothing held, so for N=0 both 0
    and 1 are candidates, and the one within those bounds wins (0 if both are). A Range
    beyond `sent_end` is returned as is (the caller knows that cannot be); one below `acked`
    is stale (ECR) and the acknowledged offset stands: the final digest check is the proof.
    """
    if range_end is None:
        return acked
    candidates = sorted({range_end + 1, 0} if range_end <= 0 else {range_end + 1})
    within = [held for held in candidates if acked <= held <= sent_end]
    if within:
        return within[0]
    held = range_end + 1
    return held if held > sent_end else acked


def acknowledged(range_end: int | None, before: int, end: int) -> int:
    """Where an accepted PATCH of bytes [before, end) leaves the upload.

    No Range, or one that did not advance past `before` (ECR's stuck Range, or docker-registry's
    `0-0`): the acknowledgement stands, all of it is held. A Range between: the registry took
    part of the chunk, go on from there. Beyond `end` is returned as is (more than was sent).
    """
    if range_end is None or range_end <= 0 or range_end + 1 <= before:
        return end
    return range_end + 1


@dataclass
class UploadStats:
    """What an upload cost: bytes put on the wire (re-sends included) and how often it recovered."""

    bytes_sent: int = 0
    resumes: int = 0  # failed PATCHes recovered by asking the registry where it stands
    new_sessions: int = 0  # upload sessions started again because the old one was gone
    restarts: int = 0  # whole-blob restarts after the registry rejected the digest
    resumed_from: int = 0  # bytes an earlier run's session already held when this run took it up
    stale_resume: bool = False  # an earlier run's session was offered but the registry forgot it
    refusals: int = 0  # chunks the registry refused with a 416 (then resized)
    stale_ranges: int = 0  # accepted chunks whose Range answer did not advance (ECR)


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
        chunk_size: int | ChunkSizing = DEFAULT_CHUNK_SIZE,
        progress: Callable[[int], None] | None = None,
        on_location: Callable[[str, int], None] | None = None,
    ) -> None:
        """`on_location(url, offset)`: told each upload URL and the bytes the registry then held.

        `chunk_size`: bytes per PATCH, or the client's ChunkSizing (what this upload learns
        about the registry's limits is then kept for the next).
        """
        if isinstance(chunk_size, int):
            chunk_size = ChunkSizing(chunk_size)
        if chunk_size.size < 1:
            raise ValueError("chunk_size must be positive")
        self.t = transport
        self.repository = repository
        self.source = source
        self.digest = digest
        self.chunks = chunk_size
        self.progress = progress
        self.on_location = on_location
        self.stats = UploadStats()
        self._reported = 0  # high-water mark of bytes reported to `progress`
        self._scope = push_scope(repository)
        self._where = where(transport.registry, repository)

    def run(
        self,
        first_location: str | None = None,
        *,
        resume: str | None = None,
        resume_offset: int = 0,
    ) -> UploadStats:
        """Upload and commit the blob; a digest mismatch gets one fresh restart.

        `resume`: an upload URL from an earlier run, which the registry had acknowledged up to
        `resume_offset`; the registry is asked how much of it it holds and the upload goes on
        from there (a forgotten session is not an error).
        `first_location`: a session already opened (a refused mount), used if not resuming.
        """
        try:
            self._upload_and_commit(first_location, resume, resume_offset)
        except _ContentMismatch as first:
            self.stats.restarts += 1
            log.warning(
                "%s: upload of %s went wrong (%s); uploading again",
                self._where,
                self.digest,
                first.what,
            )
            try:
                self._upload_and_commit(None, None, 0)
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

    def _upload_and_commit(self, location: str | None, resume: str | None, acked: int) -> None:
        offset = 0
        taken_up = self._take_up(resume, acked) if resume is not None else None
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

    def _take_up(self, location: str, acked: int) -> tuple[str, int] | None:
        """The URL and offset of an earlier run's session, or None if the registry forgot it.

        Any client error (404 BLOB_UPLOAD_UNKNOWN/INVALID, a 400 for a mangled URL, a session
        holding more than the blob) means "start afresh"; connection failures and exhausted
        retries are real failures and propagate.
        """
        try:
            # The killed run may have sent anything up to the end: only the blob bounds it.
            return self._status(location, acked, self.source.size, oversize_is_gone=True)
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
            self.chunks.learn(response.headers)
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
            end = min(offset + self.chunks.size, self.source.size)
            response, failure = self._patch(location, offset, end)
            if response is not None and response.status_code in (201, 202):  # ECR says 201
                location = self._location(response, location)
                range_end = parse_range_end(response.headers.get("Range"))
                response.close()
                held = acknowledged(range_end, offset, end)
                if held > end:
                    # More bytes than we sent: a chunk was stored twice (a proxy replayed it).
                    raise _ContentMismatch(f"registry holds {held} bytes after {end} sent")
                if range_end is not None and held == end and range_end + 1 < end:
                    self.stats.stale_ranges += 1
                offset = held
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
                if response.status_code == 416:
                    location, offset = self._refused(location, offset, end, response)
                    continue
                codes = set(error_codes(response))
                recoverable = (
                    response.status_code in RETRYABLE_STATUSES
                    or response.status_code == 401
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
            location, offset = self._resume(location, offset, end)
            self._remember(location, offset)
        return location

    def _refused(
        self, location: str, offset: int, end: int, response: requests.Response
    ) -> tuple[str, int]:
        """A 416 for bytes [offset, end): resize the chunks, ask where the upload stands."""
        failure = describe_response(response)
        self.chunks.learn(response.headers)
        response.close()
        self.stats.refusals += 1
        if self.stats.refusals > MAX_CHUNK_REFUSALS:
            raise RegistryError(
                f"{self._where}: upload of {self.digest} refused {self.stats.refusals} times "
                f"at byte {offset}: {failure}",
                status=416,
            )
        location, held = self._resume(location, offset, end)
        if held == offset:  # the chunk itself was refused, not its position
            self.chunks.refused(end - offset, failure)
        log.info(
            "registry %s: chunk at byte %d refused (%s); going on from byte %d in chunks of %d",
            self.t.registry,
            offset,
            failure,
            held,
            self.chunks.size,
        )
        self._remember(location, held)
        return location, held

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

    def _resume(self, location: str, acked: int, sent_end: int) -> tuple[str, int]:
        """Ask where the session stands after bytes [acked, sent_end) may or may not have
        arrived; start a new session if it is gone."""
        self.stats.resumes += 1
        try:
            return self._status(location, acked, sent_end)
        except _SessionGone:
            self.stats.new_sessions += 1
            log.info("registry %s: upload session gone; starting a new one", self.t.registry)
            return self._start(), 0

    def _status(
        self, location: str, acked: int, sent_end: int, *, oversize_is_gone: bool = False
    ) -> tuple[str, int]:
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
            offset = reconcile(parse_range_end(response.headers.get("Range")), acked, sent_end)
            if offset > self.source.size:
                if oversize_is_gone:
                    raise _SessionGone()
                raise RegistryError(
                    f"{self._where}: upload holds "
                    f"{offset} bytes, more than the blob's {self.source.size}"
                )
            if offset > sent_end:
                raise _ContentMismatch(f"registry holds {offset} bytes after {sent_end} sent")
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
