"""Blob download, streamed and verified: nothing unverified is ever returned or left at `dest`.

`iter_blob` yields a blob's bytes from any offset and carries on with an HTTP Range request
(`bytes=N-`) where a connection broke mid-body, so a reset or a truncated answer costs only the
bytes in flight, not the whole blob (bounded by the RetryPolicy). `fetch_blob` builds on it: the
bytes are hashed as they arrive and written to a temporary file beside `dest`, which is renamed
into place only when both size and sha256 match.

Redirects (registries hand blobs to a CDN or object storage: ghcr.io answers 307, quay.io 302)
are followed by requests, which drops the Authorization header whenever the redirect leaves the
registry's host (`Session.rebuild_auth`), so a registry token never reaches blob storage; the
Range header is kept.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import requests
import urllib3

from pipeline.core.digest import Sha256
from pipeline.registry.errors import RegistryError, response_error, where
from pipeline.registry.transport import (
    NETWORK_ERRORS,
    ConnectionFailed,
    Transport,
    describe_exception,
)

log = logging.getLogger(__name__)

_BLOCK = 1024 * 1024
DEFAULT_MAX_IN_MEMORY = 64 * 1024 * 1024  # fetch into memory is for configs and small files
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def iter_blob(
    transport: Transport,
    repository: str,
    digest: str,
    *,
    size: int | None,
    start: int = 0,
    block: int = _BLOCK,
) -> Iterator[bytes]:
    """The bytes of blob `digest` from offset `start` on, resuming with Range where a
    connection breaks. Verifies nothing but lengths: the caller hashes what it gets.

    The retry budget bounds each streak of failures, as for uploads: it starts afresh whenever
    an attempt got further than any before it, so a long download over a flaky link survives
    any number of breaks that each made progress, while one that never advances still fails in
    bounded attempts and time. A break after progress resumes at once (the registry was
    answering; the link broke): only a streak without progress backs off."""
    here = where(transport.registry, repository)
    budget = transport.retry.start()
    offset = start
    while size is None or offset < size:
        reached = offset
        try:
            with _open(transport, repository, digest, size, offset) as response:
                for chunk in _arrived(response, block):
                    offset += len(chunk)
                    if size is not None and offset > size:
                        raise RegistryError(f"{here}: blob {digest} is longer than {size} bytes")
                    yield chunk
            if size is None or offset >= size:
                return
            reason = f"answer ended at byte {offset} of {size}"
        except NETWORK_ERRORS as exc:
            # Broken mid-body (the transport already retried failures before the headers).
            reason = describe_exception(exc)
        progressed = offset > reached
        if progressed:
            budget = transport.retry.start()
        wait = budget.next_wait()
        if wait is None:
            raise ConnectionFailed(
                f"{here}: downloading {digest} failed at byte {offset} after "
                f"{budget.attempts} attempts without progress: {reason}",
                reason=reason,
            )
        log.info("registry %s: %s at byte %d; resuming", transport.registry, reason, offset)
        if not progressed:
            budget.wait(wait)


def _arrived(response: requests.Response, block: int) -> Iterator[bytes]:
    """The answer's body as it arrives, in pieces of at most `block` bytes (`read1`: one recv
    each), so a break loses nothing that arrived: every byte before it has been yielded when
    the error is raised (as requests' `iter_content` raises it), and the Range request asks
    for the rest from the very byte it reached. `iter_content` fills whole blocks, so a break
    dropped the part of the block it fell in (up to 1 MiB a break). On loopback a recv brings
    0.9 MiB on average; on a slower link pieces are smaller, and the link is what waits."""
    raw = response.raw
    try:
        while data := raw.read1(block, decode_content=True):
            yield data
    except urllib3.exceptions.ProtocolError as exc:  # reset, or closed before its length
        raise requests.exceptions.ChunkedEncodingError(exc) from None
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise requests.exceptions.ConnectionError(exc) from None
    except urllib3.exceptions.SSLError as exc:
        raise requests.exceptions.SSLError(exc) from None


def _open(
    transport: Transport, repository: str, digest: str, size: int | None, offset: int = 0
) -> requests.Response:
    """GET the blob (from `offset` with a Range request); the response is at `offset`."""
    url = transport.url(f"/v2/{repository}/blobs/{digest}")
    headers = {"Range": f"bytes={offset}-"} if offset else None
    response = transport.request(
        "GET",
        url,
        scope=pull_scope(repository),
        action=f"downloading {digest}",
        repository=repository,
        headers=headers,
        stream=True,
    )
    here = where(transport.registry, repository)
    if response.status_code == 206 and offset:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if match is None or int(match.group(1)) != offset:
            response.close()
            raise RegistryError(
                f"{here}: blob {digest}: answer to bytes={offset}- is another range"
            )
        return response
    if response.status_code != 200:
        with response:
            raise response_error(transport.registry, repository, f"downloading {digest}", response)
    announced = response.headers.get("Content-Length")
    if size is not None and announced is not None and announced.isdigit():
        if int(announced) != size:
            response.close()
            raise RegistryError(f"{here}: blob {digest} is {announced} bytes, expected {size}")
    if offset:  # the server ignored Range: skip what we already have
        log.info("registry %s: Range ignored; skipping %d bytes", transport.registry, offset)
        _skip(response, offset)
    return response


def _skip(response: requests.Response, count: int) -> None:
    while count > 0:
        chunk = response.raw.read(min(count, _BLOCK))
        if not chunk:
            raise requests.exceptions.ChunkedEncodingError("answer ended while skipping")
        count -= len(chunk)


def fetch_blob(
    transport: Transport,
    repository: str,
    digest: str,
    dest: Path | None,
    *,
    size: int | None,
    progress: Callable[[int], None] | None,
    max_in_memory: int = DEFAULT_MAX_IN_MEMORY,
) -> bytes | Path:
    """Download `digest` to `dest` (returned) or into memory (bytes returned)."""
    blocks = iter_blob(transport, repository, digest, size=size)
    if dest is None:
        buffer = bytearray()
        _check(transport, repository, digest, size, _copy(blocks, buffer, progress, max_in_memory))
        return bytes(buffer)
    fd, temp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            got = _copy(blocks, out, progress, None)
        _check(transport, repository, digest, size, got)
        os.replace(temp, dest)
    finally:
        temp.unlink(missing_ok=True)
    return dest


def _copy(
    blocks: Iterator[bytes],
    out: IO[bytes] | bytearray,
    progress: Callable[[int], None] | None,
    limit: int | None,
) -> tuple[str, int]:
    hasher = Sha256()
    for block in blocks:
        if limit is not None and hasher.size + len(block) > limit:
            raise RegistryError(f"blob larger than {limit} bytes: fetch it to a file instead")
        hasher.update(block)
        if isinstance(out, bytearray):
            out += block
        else:
            out.write(block)
        if progress is not None:
            progress(len(block))
    got = hasher.blob()
    return got.digest, got.size


def _check(
    transport: Transport, repository: str, digest: str, size: int | None, got: tuple[str, int]
) -> None:
    here = where(transport.registry, repository)
    received, total = got
    if size is not None and total != size:
        raise RegistryError(f"{here}: blob {digest} gave {total} bytes, expected {size}")
    if received != digest:
        raise RegistryError(f"{here}: blob {digest} has wrong content (sha256 is {received})")
