"""RegistryClient: the registry operations the publish code needs, over one Transport.

Blobs go up skip-if-present → cross-repository mount → resumable chunked upload; manifests go up
as the exact bytes the caller planned (the digest is the sha256 of those bytes, so the caller
knows it before pushing and the registry's answer is checked against it).
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload
from urllib.parse import quote, urljoin

from pipeline.core.digest import of_bytes
from pipeline.core.errors import PipelineError
from pipeline.core.mediatypes import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    MAX_MANIFEST_BYTES,
    OCI_INDEX,
    OCI_MANIFEST,
)
from pipeline.core.reference import is_digest, validate_digest, validate_tag
from pipeline.registry import downloads
from pipeline.registry.access import RegistryAccess
from pipeline.registry.credentials import Credentials
from pipeline.registry.errors import (
    RegistryError,
    describe_response,
    error_codes,
    response_error,
    where,
)
from pipeline.registry.journal import UploadJournal, may_record
from pipeline.registry.redact import one_line
from pipeline.registry.retry import RetryPolicy, Timeouts
from pipeline.registry.sources import BlobSource
from pipeline.registry.transport import Transport
from pipeline.registry.uploads import (
    ChunkSizing,
    Uploader,
    cancel_upload,
    chunk_size_for,
    chunk_size_from_env,
    push_scope,
)

log = logging.getLogger(__name__)

_MAX_TAG_PAGES = 1000  # bounds the Link-header pagination of tags/list


class BlobAction(enum.StrEnum):
    SKIPPED = "skipped"  # the repository already had it
    MOUNTED = "mounted"  # linked from another repository of the same registry
    UPLOADED = "uploaded"


@dataclass(frozen=True)
class BlobPushResult:
    digest: str
    size: int
    action: BlobAction
    bytes_sent: int = 0  # on the wire, re-sent chunks included
    resumes: int = 0  # failed chunks recovered by asking the registry where it stood
    new_sessions: int = 0  # upload sessions begun again because the registry forgot one
    restarts: int = 0  # whole-blob restarts after a digest mismatch
    mounted_from: str | None = None
    resumed_from: int = 0  # bytes an earlier (killed) run's upload session already held
    resume_lost: bool = False  # an earlier run's session was recorded, but the registry forgot it


@dataclass(frozen=True)
class FetchedManifest:
    body: bytes = field(repr=False)
    media_type: str
    digest: str

    def json(self) -> Any:
        return json.loads(self.body)


class RegistryClient:
    """Talks to one registry (`host[:port]`). See pipeline/registry/__init__.py for the parts."""

    def __init__(
        self,
        registry: str,
        *,
        plain_http: bool = False,
        force_plain_http: bool = False,
        ca_bundle: Path | None = None,
        registry_config: Path | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        chunk_size: int | None = None,
        credentials: Credentials | None = None,
        access: RegistryAccess | None = None,
    ) -> None:
        """A client of `registry`, reached as `access` (access.py) decides. Without `access`,
        `registry` is the target of the other settings, and the environment's credentials are
        its own; `credentials`, if given, replace the lookup (environment, docker config).

        `chunk_size` defaults to $BOOTC_PIPELINE_CHUNK_SIZE, else 16 MiB; capped where the
        registry's request-body limit is known (ghcr.io: 4 MiB), and adapted to what the
        registry refuses or asks for as uploads go (uploads.ChunkSizing).
        """
        if chunk_size is None:
            chunk_size = chunk_size_from_env()
        if chunk_size < 1:
            raise ValueError("chunk size must be positive")  # $BOOTC_PIPELINE_CHUNK_SIZE is checked
        self.registry = registry
        self.chunks = ChunkSizing(chunk_size_for(registry, chunk_size))
        if access is None:
            access = RegistryAccess(
                target=registry,
                environment_host=registry,
                plain_http=plain_http,
                force_plain_http=force_plain_http,
                ca_bundle=ca_bundle,
                registry_config=registry_config,
                credentials=credentials,
            )
        self._t = Transport(
            access,
            registry,
            retry=retry or RetryPolicy(),
            timeouts=timeouts or Timeouts(),
        )

    def __repr__(self) -> str:
        return f"RegistryClient({self._t.endpoint.base_url!r})"

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._t.close()

    # -- blobs ----------------------------------------------------------------------------------

    def _blob_head(self, repository: str, digest: str, action: str, *, anonymous: bool) -> int:
        validate_digest(digest)
        response = self._t.request(
            "HEAD",
            self._t.url(f"/v2/{repository}/blobs/{digest}"),
            scope=downloads.pull_scope(repository),
            action=action,
            repository=repository,
            anonymous=anonymous,
        )
        with response:
            if response.status_code not in (200, 404) and not anonymous:
                raise response_error(self.registry, repository, action, response)
            return response.status_code

    def blob_exists(self, repository: str, digest: str) -> bool:
        action = f"checking blob {digest}"
        return self._blob_head(repository, digest, action, anonymous=False) == 200

    def anonymous_blob_status(self, repository: str, digest: str) -> int:
        """The HTTP status of `HEAD /v2/<repository>/blobs/<digest>` sent with no credentials.

        What a consumer without registry auth sees (Lima's HTTP downloader has no token flow):
        200 if anyone may download the blob, 401 if the registry wants authentication, 404 if
        it is not there. It goes through the transport, so timeouts, TLS settings, redirects
        and retries (for 429/5xx) apply, but no Authorization header is ever sent, whatever
        credentials this client has. Raises RegistryError only when there is no answer at all.
        """
        action = f"checking anonymous access to blob {digest}"
        return self._blob_head(repository, digest, action, anonymous=True)

    def check_push_access(self, repository: str) -> None:
        """Prove that this client may push to `repository`, before anything is built.

        Starts a blob upload session (`POST /v2/<repository>/blobs/uploads/`), which needs the
        push scope, and cancels it at once (`DELETE` its Location), so nothing is left behind
        (unless the credentials may push but not delete: then the registry purges it later).
        Raises a one-line RegistryError naming the registry, repository and push scope (with a
        hint) when the registry refuses (401/403), and the usual errors otherwise.
        """
        scope = push_scope(repository)
        action = "checking push access"
        url = self._t.url(f"/v2/{repository}/blobs/uploads/")
        try:
            response = self._t.request(
                "POST",
                url,
                scope=scope,
                action=action,
                repository=repository,
                headers={"Content-Length": "0"},
            )
        except RegistryError as exc:
            if exc.status not in (401, 403):
                raise
            raise self._push_refused(
                repository, scope, exc.reason or exc.message, exc.status
            ) from None
        with response:
            if response.status_code in (401, 403):
                raise self._push_refused(
                    repository, scope, describe_response(response), response.status_code
                )
            if response.status_code != 202:
                raise response_error(self.registry, repository, action, response)
            location = response.headers.get("Location")
        log.info("registry %s: push access to %s confirmed", self.registry, repository)
        if not location or not cancel_upload(self._t, repository, urljoin(url, location)):
            log.info(
                "registry %s: could not cancel the upload session opened to check push access "
                "to %s; the registry purges it on its own",
                self.registry,
                repository,
            )

    def _push_refused(
        self, repository: str, scope: str, reason: str, status: int | None
    ) -> RegistryError:
        _, hint = self._t.auth.origin()
        return RegistryError(
            f"{where(self.registry, repository)}: no push access (scope {scope}): "
            f"{one_line(reason)}",
            status=status,
            hint=f"publishing needs pull and push rights on {repository}; {hint}",
            reason=reason,
        )

    def push_blob(
        self,
        repository: str,
        source: Path | bytes,
        digest: str,
        size: int,
        *,
        mount_from: Sequence[str] = (),
        progress: Callable[[int], None] | None = None,
        journal: UploadJournal | None = None,
    ) -> BlobPushResult:
        """Make `digest` present in `repository`, sending as few bytes as possible.

        In order: HEAD (already there), a cross-repository mount from each of `mount_from`,
        the upload session an earlier run left in `journal` (resumed where the registry
        stopped), else a new chunked upload. `journal` records the session as it advances and
        forgets it once the blob is committed.

        `progress(n)` is told about bytes the registry newly holds; over a whole upload the
        calls add up to `size` exactly (re-sent bytes are counted in `bytes_sent` instead).
        """
        validate_digest(digest)
        blob = BlobSource(source)
        if blob.size != size:
            # The pipeline measured this file itself: it changed since, or a bug. Not bad input.
            raise PipelineError(
                f"blob {digest}: {source if isinstance(source, Path) else 'the data'} has "
                f"{blob.size} bytes, expected {size}",
                hint="the file changed since it was measured; re-run the stage that made it",
            )
        if self.blob_exists(repository, digest):
            log.info("registry %s: %s already in %s", self.registry, digest, repository)
            if journal is not None:
                journal.clear(self.registry, repository, digest)
            return BlobPushResult(digest, size, BlobAction.SKIPPED)
        pending_location: str | None = None
        for origin in dict.fromkeys(mount_from):
            if origin == repository:
                continue
            mounted, opened = self._mount(repository, origin, digest)
            if opened is not None:
                if pending_location is not None:  # one open session is enough
                    cancel_upload(self._t, repository, pending_location)
                pending_location = opened
            if mounted:
                log.info("registry %s: %s mounted from %s", self.registry, digest, origin)
                if journal is not None:
                    journal.clear(self.registry, repository, digest)
                return BlobPushResult(digest, size, BlobAction.MOUNTED, mounted_from=origin)
        resume: str | None = None
        resume_offset = 0
        on_location: Callable[[str, int], None] | None = None
        if journal is not None:
            entry = journal.load(self.registry, repository, digest)
            origin_url = self._t.endpoint.base_url
            if entry is not None and may_record(entry.location, origin_url):
                resume, resume_offset = entry.location, entry.offset
                log.info(
                    "registry %s: resuming the upload of %s an earlier run left at byte %d",
                    self.registry,
                    digest,
                    entry.offset,
                )

            def on_location(location: str, offset: int) -> None:
                journal.save(self.registry, repository, digest, location, offset, origin_url)

        uploader = Uploader(
            self._t,
            repository,
            blob,
            digest,
            chunk_size=self.chunks,
            progress=progress,
            on_location=on_location,
        )
        stats = uploader.run(pending_location, resume=resume, resume_offset=resume_offset)
        if journal is not None:
            journal.clear(self.registry, repository, digest)
        return BlobPushResult(
            digest,
            size,
            BlobAction.UPLOADED,
            bytes_sent=stats.bytes_sent,
            resumes=stats.resumes,
            new_sessions=stats.new_sessions,
            restarts=stats.restarts,
            resumed_from=stats.resumed_from,
            resume_lost=stats.stale_resume,
        )

    def _mount(self, repository: str, origin: str, digest: str) -> tuple[bool, str | None]:
        """Try a cross-repository mount; a refusal is not an error (we upload instead).

        A registry that cannot mount answers 202 with a fresh upload session: its URL is
        returned so that session is used rather than abandoned.
        """
        url = self._t.url(f"/v2/{repository}/blobs/uploads/")
        scope = f"{push_scope(repository)} {downloads.pull_scope(origin)}"
        try:
            response = self._t.request(
                "POST",
                url,
                scope=scope,
                action=f"mounting {digest} from {origin}",
                repository=repository,
                params=[("mount", digest), ("from", origin)],
                headers={"Content-Length": "0"},
            )
        except RegistryError as exc:
            if exc.status != 401:
                raise
            log.info("registry %s: no access to mount from %s; uploading", self.registry, origin)
            return False, None
        with response:
            if response.status_code == 201:
                return True, None
            location = response.headers.get("Location")
            if response.status_code == 202 and location:
                return False, urljoin(response.url, location)
            return False, None

    def mount_blob(self, repository: str, origin: str, digest: str) -> bool:
        """Mount `digest` from `origin` into `repository` (same registry); False where the
        registry does not (the upload session it opened instead is cancelled)."""
        validate_digest(digest)
        mounted, opened = self._mount(repository, origin, digest)
        if opened is not None:
            cancel_upload(self._t, repository, opened)
        return mounted

    def delete(self, repository: str, kind: str, digest: str) -> bool:
        """DELETE a manifest or blob (`kind`: "manifests" or "blobs") by digest (distribution
        spec "Deleting tags/manifests/blobs"); False when it was already gone (404)."""
        validate_digest(digest)
        url = self._t.url(f"/v2/{repository}/{kind}/{digest}")
        response = self._t.request(
            "DELETE",
            url,
            scope=f"{push_scope(repository)},delete",
            action=f"deleting {kind[:-1]} {digest}",
            repository=repository,
        )
        with response:
            if response.status_code == 404:
                return False
            if response.status_code not in (200, 202):
                raise response_error(
                    self.registry, repository, f"deleting {kind[:-1]} {digest}", response
                )
        return True

    @overload
    def fetch_blob(
        self,
        repository: str,
        digest: str,
        dest: None = None,
        *,
        size: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> bytes: ...

    @overload
    def fetch_blob(
        self,
        repository: str,
        digest: str,
        dest: Path,
        *,
        size: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Path: ...

    def fetch_blob(
        self,
        repository: str,
        digest: str,
        dest: Path | None = None,
        *,
        size: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> bytes | Path:
        """Download a blob, verified against `digest` (and `size` if given).

        With `dest` it is streamed to a temporary file renamed to `dest` once verified;
        without, the bytes are returned (refused beyond 64 MiB).
        """
        validate_digest(digest)
        return downloads.fetch_blob(self._t, repository, digest, dest, size=size, progress=progress)

    def iter_blob(
        self, repository: str, digest: str, *, size: int | None, start: int = 0
    ) -> Iterator[bytes]:
        """A blob's bytes from `start` on, resumed with Range requests where a connection
        breaks (see downloads.iter_blob). Unverified: the caller hashes them."""
        validate_digest(digest)
        return downloads.iter_blob(self._t, repository, digest, size=size, start=start)

    # -- manifests ------------------------------------------------------------------------------

    def push_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        """PUT exactly `body` as `media_type` under a tag or digest; return its digest."""
        digest = of_bytes(body).digest
        here = where(self.registry, repository)
        if len(body) > MAX_MANIFEST_BYTES:
            raise RegistryError(
                f"{here}: manifest {digest} is {len(body)} bytes; registries accept at most "
                f"{MAX_MANIFEST_BYTES} (4 MiB)"
            )
        _validate_manifest_reference(reference)
        if is_digest(reference) and reference != digest:
            raise ValueError(f"{here}: pushing manifest {digest} under digest {reference}")
        url = self._t.url(f"/v2/{repository}/manifests/{quote(reference, safe=':')}")
        budget = self._t.retry.start()
        while True:
            response = self._t.request(
                "PUT",
                url,
                scope=push_scope(repository),
                action=f"pushing manifest {reference}",
                repository=repository,
                headers={"Content-Type": media_type},
                data=body,
            )
            with response:
                echoed = response.headers.get("Docker-Content-Digest")
                if response.status_code in (200, 201, 202):
                    break
                error = response_error(
                    self.registry, repository, f"pushing manifest {reference}", response
                )
            if not _unknown_blob(error) or not self._holds_all(repository, body):
                raise error
            # The registry named a blob unknown that it holds: Debian's docker-registry 2.8
            # does so while another client links the same blob (see _unknown_blob).
            wait = budget.next_wait()
            if wait is None:
                raise RegistryError(
                    f"{error.message} ({budget.attempts} tries, though every blob and manifest "
                    "it names is there)",
                    status=error.status,
                    codes=error.codes,
                )
            log.info("%s; trying again in %.1fs", error.message, wait)
            budget.wait(wait)
        if echoed and echoed != digest:
            raise RegistryError(
                f"{here}: registry stored manifest {reference} as {echoed}, "
                f"but the bytes sent hash to {digest}"
            )
        return digest

    def _holds_all(self, repository: str, body: bytes) -> bool:
        """Whether every blob and manifest that manifest `body` names answers HEAD here."""
        blobs, manifests = _descriptor_digests(body)
        if not blobs and not manifests:
            return False  # not a manifest whose references can be checked: keep the error
        return all(self.blob_exists(repository, d) for d in blobs) and all(
            self.manifest_digest(repository, d) == d for d in manifests
        )

    def get_manifest(
        self,
        repository: str,
        reference: str,
        accept: Sequence[str] = (OCI_MANIFEST, OCI_INDEX),
    ) -> FetchedManifest:
        """GET a manifest's bytes; its digest is checked against a digest reference and the
        registry's Docker-Content-Digest."""
        _validate_manifest_reference(reference)
        here = where(self.registry, repository)
        url = self._t.url(f"/v2/{repository}/manifests/{quote(reference, safe=':')}")
        response = self._t.request(
            "GET",
            url,
            scope=downloads.pull_scope(repository),
            action=f"fetching manifest {reference}",
            repository=repository,
            headers={"Accept": ", ".join(accept)},
            read_limit=MAX_MANIFEST_BYTES,
        )
        with response:
            if response.status_code != 200:
                raise response_error(
                    self.registry, repository, f"fetching manifest {reference}", response
                )
            body = response.content
            media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            echoed = response.headers.get("Docker-Content-Digest")
        if len(body) > MAX_MANIFEST_BYTES:
            raise RegistryError(f"{here}: manifest {reference} is larger than 4 MiB")
        digest = of_bytes(body).digest
        if is_digest(reference) and digest != reference:
            raise RegistryError(f"{here}: manifest {reference} has wrong content ({digest})")
        if echoed and echoed.startswith("sha256:") and echoed != digest:
            raise RegistryError(
                f"{here}: manifest {reference} hashes to {digest}, registry says {echoed}"
            )
        return FetchedManifest(body, media_type, digest)

    def manifest_digest(
        self,
        repository: str,
        reference: str,
        accept: Sequence[str] = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST),
    ) -> str | None:
        """The digest a tag (or digest) resolves to, by HEAD; None if there is no such manifest."""
        _validate_manifest_reference(reference)
        url = self._t.url(f"/v2/{repository}/manifests/{quote(reference, safe=':')}")
        response = self._t.request(
            "HEAD",
            url,
            scope=downloads.pull_scope(repository),
            action=f"checking manifest {reference}",
            repository=repository,
            headers={"Accept": ", ".join(accept)},
        )
        with response:
            if response.status_code == 404:
                return None
            if response.status_code != 200:
                raise response_error(
                    self.registry, repository, f"checking manifest {reference}", response
                )
            echoed = response.headers.get("Docker-Content-Digest")
        if echoed and is_digest(echoed):
            return echoed
        return self.get_manifest(repository, reference, accept).digest  # header is optional

    def referrers(self, repository: str, digest: str) -> dict[str, Any] | None:
        """The referrers API's index for `digest` (distribution-spec v1.1), None where the
        registry has no such API (404 / 405 / not an index: use the `sha256-HEX` tag)."""
        validate_digest(digest)
        url = self._t.url(f"/v2/{repository}/referrers/{digest}")
        response = self._t.request(
            "GET",
            url,
            scope=downloads.pull_scope(repository),
            action=f"listing referrers of {digest}",
            repository=repository,
            headers={"Accept": OCI_INDEX},
            read_limit=MAX_MANIFEST_BYTES,
        )
        with response:
            if response.status_code in (404, 405):
                return None
            if response.status_code != 200:
                raise response_error(
                    self.registry, repository, f"listing referrers of {digest}", response
                )
            media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            try:
                body = response.json()
            except ValueError:
                return None
        if media_type != OCI_INDEX or not isinstance(body, dict):
            return None
        return body

    def list_tags(self, repository: str) -> list[str]:
        """All tags of a repository (following pagination); [] if the repository is unknown."""
        url: str | None = self._t.url(f"/v2/{repository}/tags/list")
        tags: list[str] = []
        for _ in range(_MAX_TAG_PAGES):
            if url is None:
                return tags
            response = self._t.request(
                "GET",
                url,
                scope=downloads.pull_scope(repository),
                action="listing tags",
                repository=repository,
            )
            with response:
                if response.status_code == 404 and "NAME_UNKNOWN" in error_codes(response):
                    return []
                if response.status_code != 200:
                    raise response_error(self.registry, repository, "listing tags", response)
                try:
                    page = response.json().get("tags") or []
                except (ValueError, AttributeError):
                    raise RegistryError(
                        f"{where(self.registry, repository)}: tags list is not JSON"
                    ) from None
                tags.extend(str(tag) for tag in page)
                next_link = response.links.get("next", {}).get("url")
                url = urljoin(response.url, next_link) if next_link else None
        raise RegistryError(
            f"{where(self.registry, repository)}: more than {_MAX_TAG_PAGES} pages of tags"
        )


def _validate_manifest_reference(reference: str) -> None:
    if reference.startswith("sha256:"):
        validate_digest(reference)
    else:
        validate_tag(reference)


def _unknown_blob(error: RegistryError) -> bool:
    """A manifest refused for a blob (or child manifest) the registry did not find.

    Debian's docker-registry (distribution 2.8.2) also answers so for a blob it holds while a
    concurrent upload of the same blob rewrites the repository's link file: its filesystem
    driver's PutContent truncates the file in place (registry/storage/driver/filesystem/
    driver.go, Writer), blobstore.readlink then fails to parse the digest, and the manifest
    handler answers `400 DIGEST_INVALID; MANIFEST_BLOB_UNKNOWN` (handlers/manifests.go).
    """
    codes = set(error.codes)
    return error.status == 400 and "MANIFEST_BLOB_UNKNOWN" in codes and codes <= _UNKNOWN_BLOB_CODES


_UNKNOWN_BLOB_CODES = frozenset({"MANIFEST_BLOB_UNKNOWN", "BLOB_UNKNOWN", "DIGEST_INVALID"})


def _descriptor_digests(body: bytes) -> tuple[list[str], list[str]]:
    """The digests an image manifest's config and layers name (blobs), and those an index's
    manifests name; nothing for bytes that are not such a JSON object."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return [], []
    if not isinstance(document, dict):
        return [], []

    def digests(descriptors: object) -> list[str]:
        items = descriptors if isinstance(descriptors, list) else []
        found = [d.get("digest") for d in items if isinstance(d, dict)]
        return [d for d in found if isinstance(d, str) and is_digest(d)]

    layers = document.get("layers")
    blobs = [document.get("config"), *(layers if isinstance(layers, list) else [])]
    return digests(blobs), digests(document.get("manifests"))
