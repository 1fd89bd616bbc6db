"""Blob download, streamed and verified: nothing unverified is ever returned or left at `dest`.

The bytes are hashed as they arrive and written to a temporary file beside `dest`, which is
renamed into place only when both size and sha256 match; a broken connection restarts the
download (bounded by the RetryPolicy) rather than returning a short file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import requests

from pipeline.digest import Sha256
from pipeline.registry.errors import RegistryError, response_error, where
from pipeline.registry.transport import (
    NETWORK_ERRORS,
    ConnectionFailed,
    Transport,
    describe_exception,
)

_BLOCK = 1024 * 1024
DEFAULT_MAX_IN_MEMORY = 64 * 1024 * 1024  # fetch into memory is for configs and small files


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


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
    here = where(transport.registry, repository)
    budget = transport.retry.start()
    while True:
        try:
            if dest is None:
                return _fetch_to_memory(
                    transport, repository, digest, size, progress, max_in_memory
                )
            _fetch_to_file(transport, repository, digest, dest, size, progress)
            return dest
        except NETWORK_ERRORS as exc:
            # Broken mid-body (the transport already retried failures before the headers).
            reason = describe_exception(exc)
            wait = budget.next_wait()
            if wait is None:
                raise ConnectionFailed(
                    f"{here}: downloading {digest} failed: {reason}", reason=reason
                ) from None
            budget.wait(wait)


def _open(
    transport: Transport, repository: str, digest: str, size: int | None
) -> requests.Response:
    url = transport.url(f"/v2/{repository}/blobs/{digest}")
    response = transport.request(
        "GET",
        url,
        scope=pull_scope(repository),
        action=f"downloading {digest}",
        repository=repository,
        stream=True,
    )
    if response.status_code != 200:
        with response:
            raise response_error(transport.registry, repository, f"downloading {digest}", response)
    announced = response.headers.get("Content-Length")
    if size is not None and announced is not None and announced.isdigit():
        if int(announced) != size:
            response.close()
            raise RegistryError(
                f"{where(transport.registry, repository)}: blob {digest} is {announced} bytes, "
                f"expected {size}"
            )
    return response


def _copy(
    response: requests.Response,
    out: IO[bytes] | bytearray,
    progress: Callable[[int], None] | None,
    limit: int | None,
) -> tuple[str, int]:
    hasher = Sha256()
    for block in response.iter_content(_BLOCK):
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
    transport: Transport, repository: str, digest: str, size: int | None, got: str, total: int
) -> None:
    here = where(transport.registry, repository)
    if size is not None and total != size:
        raise RegistryError(f"{here}: blob {digest} gave {total} bytes, expected {size}")
    if got != digest:
        raise RegistryError(f"{here}: blob {digest} has wrong content (sha256 is {got})")


def _fetch_to_memory(
    transport: Transport,
    repository: str,
    digest: str,
    size: int | None,
    progress: Callable[[int], None] | None,
    limit: int,
) -> bytes:
    buffer = bytearray()
    with _open(transport, repository, digest, size) as response:
        got, total = _copy(response, buffer, progress, limit)
    _check(transport, repository, digest, size, got, total)
    return bytes(buffer)


def _fetch_to_file(
    transport: Transport,
    repository: str,
    digest: str,
    dest: Path,
    size: int | None,
    progress: Callable[[int], None] | None,
) -> None:
    fd, temp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as out, _open(transport, repository, digest, size) as response:
            got, total = _copy(response, out, progress, None)
        _check(transport, repository, digest, size, got, total)
        os.replace(temp, dest)
    finally:
        temp.unlink(missing_ok=True)
