"""Blob bytes to upload, read one chunk at a time so memory stays bounded for multi-GB disks."""

from __future__ import annotations

import io
from pathlib import Path
from typing import IO

from pipeline.core.errors import PipelineError

# http.client reads the body in blocks of this size; the chunk itself is never held in memory.
_READ_BLOCK = 1024 * 1024


class ChunkReader:
    """A sized, read-once view of `[start, end)` of a file or buffer, counting what was read.

    It has `__len__` so requests sends a Content-Length instead of chunked transfer encoding
    (registries want the length), and `read()` so urllib3 streams it block by block. It is
    deliberately not an io.IOBase: requests would call its `tell()` and compute a length of 0.
    """

    def __init__(self, stream: IO[bytes], length: int) -> None:
        self._stream = stream
        self._remaining = length
        self._length = length
        self.consumed = 0  # bytes handed to the HTTP stack: an upper bound of bytes sent

    def __len__(self) -> int:
        return self._length

    def read(self, size: int | None = -1) -> bytes:
        if self._remaining <= 0:
            return b""
        want = self._remaining if size is None or size < 0 else min(size, self._remaining)
        data = self._stream.read(min(want, _READ_BLOCK))
        self._remaining -= len(data)
        self.consumed += len(data)
        return data

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> ChunkReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BlobSource:
    """A file or an in-memory buffer of known size that can hand out chunk readers."""

    def __init__(self, source: Path | bytes) -> None:
        self._path: Path | None = None
        self._data: bytes | None = None
        if isinstance(source, Path):
            self._path = source
            try:
                self.size = source.stat().st_size
            except OSError as exc:
                raise PipelineError(f"cannot read blob {source}: {exc.strerror}") from None
        else:
            self._data = bytes(source)
            self.size = len(self._data)

    def __repr__(self) -> str:
        what = str(self._path) if self._path is not None else "<bytes>"
        return f"BlobSource({what}, size={self.size})"

    def reader(self, start: int, end: int) -> ChunkReader:
        """A reader of bytes `[start, end)`."""
        if self._path is not None:
            try:
                handle = self._path.open("rb")
            except OSError as exc:
                raise PipelineError(f"cannot read blob {self._path}: {exc.strerror}") from None
            handle.seek(start)
            return ChunkReader(handle, end - start)
        assert self._data is not None
        return ChunkReader(io.BytesIO(self._data[start:end]), end - start)
