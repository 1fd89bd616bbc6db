"""Streaming zstd compression of a file, hashing both sides in the same pass."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

import zstandard

from pipeline.core.digest import Blob, Sha256
from pipeline.core.errors import PipelineError
from pipeline.core.files import WriteBehind, atomic_output
from pipeline.core.overlap import Stage, Stopped
from pipeline.core.zstdframes import FrameScanner

CHUNK = 4 * 1024 * 1024  # read size; memory stays bounded by this plus zstd's window per thread
OUT_BLOCK = 1024 * 1024  # a Decompressor's output buffers (README "pull": measured)
BUFFERS = 8  # of them: the store thread's queue and the one zstd is filling
QUEUE_DEPTH = 4  # compressed blocks waiting for the decompressing thread


@dataclass(frozen=True)
class Compressed:
    path: Path
    uncompressed: Blob
    compressed: Blob
    level: int


class _HashingWriter:
    """A write-only file that hashes and counts what passes through to the real file."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.digest = Sha256()

    def write(self, data: bytes | memoryview) -> int:
        self.digest.update(data)
        return self._out.write(data)

    def flush(self) -> None:
        self._out.flush()


def compress(
    src: Path,
    dest: Path,
    *,
    level: int,
    threads: int = -1,
    progress: Callable[[int], None] | None = None,
) -> Compressed:
    """zstd-compress `src` into `dest` (atomically), with sha256 and size of both sides.

    `threads=-1` uses every core (zstd's multi-threaded mode). The frame records the content
    size and a checksum, so `zstd -t` and `zstd -d` verify it on the consumer side.
    """
    if not 1 <= level <= 22:
        raise PipelineError(f"zstd level {level} is out of range 1-22")
    try:
        total = src.stat().st_size
        source = src.open("rb")
    except OSError as exc:
        raise PipelineError(f"cannot read disk image {src}: {exc.strerror}") from None
    cctx = zstandard.ZstdCompressor(level=level, threads=threads, write_checksum=True)
    plain = Sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with source, atomic_output(dest) as out:
        sink = _HashingWriter(out)
        with cctx.stream_writer(cast(BinaryIO, sink), size=total, closefd=False) as writer:
            while n := source.readinto(buf):
                plain.update(view[:n])
                writer.write(view[:n])
                if progress:
                    progress(n)
    uncompressed = plain.blob()
    if uncompressed.size != total:
        raise PipelineError(
            f"{src} changed size while being compressed ({total} -> {uncompressed.size} bytes)"
        )
    return Compressed(dest, uncompressed, sink.digest.blob(), level)


class Decompressor:
    """Streaming zstd decompression fed block by block, hashing both sides as they pass.

    Three steps overlap, each in its own thread joined by bounded queues (pipeline/core/overlap.py):
    the caller's thread hashes the compressed blocks it feeds; one thread decompresses them
    (zstd reads them as its input) straight into one of a few reused buffers of OUT_BLOCK; one
    hashes the decompressed bytes and writes them to `out` (None: only hash them), starting
    the file's write-back early (files.WriteBehind) so the caller's final fsync has little
    left, and hands the buffer back. Memory stays bounded whatever the ratio of a block (a run
    of zeros in a disk expands a thousandfold): QUEUE_DEPTH of the caller's blocks, the
    BUFFERS, and zstd's window.

    Bytes that are not zstd do not stop the compressed hash: the caller checks the digest
    first (bad bytes are a digest mismatch), then `finish()` reports the stream's problem, and
    checks, from the frames' own headers (core/zstdframes.py), that the stream ends where a
    frame ends and that the output has the content sizes the frames declare. Use it as a
    context manager: leaving the block without `finish()` stops the threads; an error in them
    is raised by `feed` or `finish`.
    """

    def __init__(self, out: BinaryIO | None) -> None:
        self.compressed = Sha256()
        self._plain = Sha256()
        self._out = out
        self._behind = WriteBehind(out.fileno()) if out is not None else None
        self._frames = FrameScanner()
        self._problem: str | None = None
        self._left = threading.Event()
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(BUFFERS):
            self._free.put(bytearray(OUT_BLOCK))
        self._store: Stage[tuple[bytearray, int]] = Stage(
            "zstd-store", self._store_block, depth=BUFFERS
        )
        self._unpack: Stage[bytes] = Stage(
            "zstd-unpack", consume=self._unpack_all, depth=QUEUE_DEPTH
        )

    def __enter__(self) -> Decompressor:
        return self

    def __exit__(self, *exc: object) -> None:
        self._left.set()
        for stage in (self._unpack, self._store):
            stage.cancel()  # both first: the unpack thread may be waiting on the store's queue
        for stage in (self._unpack, self._store):
            stage.abort()

    def feed(self, block: bytes) -> None:
        if not block:  # zstd would take an empty read for the end of its input
            return
        self.compressed.update(block)
        self._frames.feed(block)
        self._unpack.put(block)

    def finish(self) -> Blob:
        """The decompressed bytes' digest and size; PipelineError if the stream was bad."""
        self._unpack.close()
        self._store.close()
        if self._problem is not None:
            raise PipelineError(self._problem)
        frames = self._frames
        if frames.problem is not None:
            raise PipelineError(f"not a valid zstd stream ({frames.problem})")
        plain = self._plain.blob()
        if not frames.complete:
            raise PipelineError(
                f"zstd stream ends early: at byte {frames.offset}, inside frame "
                f"{frames.frames + 1} ({plain.size} bytes decompressed)"
            )
        if frames.declared is not None and plain.size != frames.declared:
            raise PipelineError(
                f"zstd stream decompressed to {plain.size} bytes; its frames declare "
                f"{frames.declared}"
            )
        return plain

    def _unpack_all(self, blocks: Iterator[bytes]) -> None:  # in the zstd-unpack thread
        source = _Blocks(blocks)
        reader = zstandard.ZstdDecompressor().stream_reader(
            cast(BinaryIO, source), read_size=CHUNK, read_across_frames=True, closefd=False
        )
        try:
            while True:
                buffer = self._free_buffer()
                count = reader.readinto(buffer)
                if not count:
                    return
                self._store.put((buffer, count))
        except zstandard.ZstdError as exc:
            self._problem = f"not a valid zstd stream ({exc})"
            for _ in blocks:  # the caller still hashes what it feeds: take it
                pass

    def _free_buffer(self) -> bytearray:
        """One handed back by the store thread (at most BUFFERS are out); what the store thread
        raised once it failed (a full disk), Stopped when the Decompressor is left meanwhile."""
        while True:
            try:
                return self._free.get(timeout=0.1)
            except queue.Empty:
                self._store.check()
                if self._left.is_set():
                    raise Stopped("zstd-unpack") from None

    def _store_block(self, item: tuple[bytearray, int]) -> None:  # in the zstd-store thread
        buffer, count = item
        try:
            with memoryview(buffer)[:count] as data:
                self._plain.update(data)
                if self._out is not None and self._behind is not None:
                    self._out.write(data)
                    self._behind.wrote(count)
        finally:
            self._free.put(buffer)


class _Blocks:
    """The blocks fed to a Decompressor, as the file zstd's stream_reader reads its input from."""

    def __init__(self, blocks: Iterator[bytes]) -> None:
        self._blocks = blocks

    def read(self, size: int = -1) -> bytes:
        del size  # a block as it came (zstd takes any length)
        return next(self._blocks, b"")


def decompress(src: Path, dest: Path, *, compressed: Blob, uncompressed: Blob | None) -> Blob:
    """Decompress `src` into `dest` (atomically), checking the .zst against `compressed` and the
    output against `uncompressed` when known; returns what was written. A mismatch is an error:
    the bytes are not the ones recorded (or published)."""
    try:
        source = src.open("rb")
    except OSError as exc:
        raise PipelineError(f"cannot read {src}: {exc.strerror}") from None
    with source, atomic_output(dest) as out, Decompressor(out) as unpack:
        while block := source.read(CHUNK):
            unpack.feed(block)
        packed = unpack.compressed.blob()
        if packed != compressed:
            raise _not_recorded(src.name, compressed, packed)
        plain = unpack.finish()
        if uncompressed is not None and plain != uncompressed:
            raise _not_recorded(dest.name, uncompressed, plain)
    return plain


def _not_recorded(name: str, want: Blob, got: Blob) -> PipelineError:
    return PipelineError(
        f"{name} is not the recorded bytes: {got.digest} ({got.size} bytes), "
        f"expected {want.digest} ({want.size} bytes)"
    )
