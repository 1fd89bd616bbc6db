"""Compression judged by the zstd CLI and coreutils, not by our own decoder."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import BinaryIO

import pytest
import zstandard

from pipeline.core import zstdfile
from pipeline.core.digest import Blob
from pipeline.core.errors import PipelineError


def _sample(path: Path, size: int) -> None:
    """Disk-like content: long zero runs, repeated text, and incompressible noise."""
    chunk = (b"\0" * 65536) + (b"bootc lima " * 3000) + os.urandom(16384)
    with path.open("wb") as f:
        written = 0
        while written < size:
            piece = chunk[: size - written]
            f.write(piece)
            written += len(piece)


def _sha256sum(path: Path) -> str:
    out = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True)
    return "sha256:" + out.stdout.split()[0]


def test_roundtrip_and_hashes_agree_with_cli_tools(tmp_path: Path) -> None:
    src, dest = tmp_path / "disk.qcow2", tmp_path / "disk.qcow2.zst"
    _sample(src, 9 * 1024 * 1024 + 123)
    seen: list[int] = []
    result = zstdfile.compress(src, dest, level=3, progress=seen.append)
    assert sum(seen) == src.stat().st_size
    assert result.uncompressed.digest == _sha256sum(src)
    assert result.uncompressed.size == src.stat().st_size
    assert result.compressed.digest == _sha256sum(dest)
    assert result.compressed.size == dest.stat().st_size < src.stat().st_size
    subprocess.run(["zstd", "-q", "-t", str(dest)], check=True)
    out = tmp_path / "back"
    subprocess.run(["zstd", "-q", "-d", str(dest), "-o", str(out)], check=True)
    assert out.read_bytes() == src.read_bytes()
    listing = subprocess.run(["zstd", "-lv", str(dest)], capture_output=True, text=True, check=True)
    assert "Check: XXH64" in listing.stdout  # frames carry a checksum consumers verify


def test_level_changes_the_output(tmp_path: Path) -> None:
    import random

    rng = random.Random(7)
    words = [bytes(rng.choices(b"abcdefghij", k=rng.randint(2, 9))) for _ in range(500)]
    src = tmp_path / "disk"
    src.write_bytes(b" ".join(rng.choice(words) for _ in range(400_000)))
    low = zstdfile.compress(src, tmp_path / "1.zst", level=1)
    high = zstdfile.compress(src, tmp_path / "19.zst", level=19)
    assert low.uncompressed == high.uncompressed
    assert high.compressed.size < low.compressed.size


def test_missing_source_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="cannot read disk image .*absent"):
        zstdfile.compress(tmp_path / "absent", tmp_path / "out.zst", level=3)
    assert not list(tmp_path.iterdir())


def test_memory_stays_bounded(tmp_path: Path) -> None:
    """A 192 MiB file compresses in a child whose peak RSS stays far below the file's size.

    VmHWM, not ru_maxrss: Linux carries the parent's high-water mark into ru_maxrss across
    fork and exec, so a large pytest process would be measured instead of the child.
    """
    src = tmp_path / "big"
    _sample(src, 192 * 1024 * 1024)
    code = (
        "import sys; from pathlib import Path; from pipeline.core import zstdfile; "
        "zstdfile.compress(Path(sys.argv[1]), Path(sys.argv[2]), level=3); "
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", code, str(src), str(tmp_path / "big.zst")],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
        timeout=300,
    )
    peak_mib = int(out.stdout.strip()) / 1024
    assert peak_mib < 150, f"peak RSS {peak_mib:.0f} MiB for a 192 MiB input"


def test_full_disk_leaves_nothing_behind(tmp_path: Path) -> None:
    """Needs root to mount a small tmpfs (CI runs as root)."""
    src = tmp_path / "disk"
    src.write_bytes(os.urandom(4 * 1024 * 1024))  # incompressible: more than the 1 MiB target
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        with pytest.raises(PipelineError, match="no space left on device while writing"):
            zstdfile.compress(src, small / "disk.zst", level=1)
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_streamed_digest_agrees_with_whole_bytes() -> None:
    from pipeline.core import digest

    data = b"abc" * 1000
    streamed = digest.Sha256()
    for start in range(0, len(data), 7):
        streamed.update(memoryview(data)[start : start + 7])
    assert streamed.blob() == digest.of_bytes(data)
    assert digest.of_bytes(data).hex == hashlib.sha256(data).hexdigest()


def _decompress_peak_mib(src: Path, dest: Path, packed: zstdfile.Compressed) -> float:
    code = (
        "import sys; from pathlib import Path; from pipeline.core import zstdfile; "
        "from pipeline.core.digest import Blob; "
        "zstdfile.decompress(Path(sys.argv[1]), Path(sys.argv[2]), "
        "compressed=Blob(sys.argv[3], int(sys.argv[4])), uncompressed=None); "
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(src), str(dest),
         packed.compressed.digest, str(packed.compressed.size)],
        capture_output=True, text=True, check=True, timeout=300,
        cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    return int(out.stdout.strip()) / 1024


def test_decompression_memory_stays_bounded(tmp_path: Path) -> None:
    """Decompressing 192 MiB through the threads and their queues (a run of zeros expands a
    thousandfold per block) peaks far below the output's size, and writes it exactly."""
    src = tmp_path / "big"
    _sample(src, 192 * 1024 * 1024)
    packed = zstdfile.compress(src, tmp_path / "big.zst", level=3)
    out = tmp_path / "back"
    peak_mib = _decompress_peak_mib(tmp_path / "big.zst", out, packed)
    assert peak_mib < 150, f"peak RSS {peak_mib:.0f} MiB decompressing 192 MiB"
    assert _sha256sum(out) == packed.uncompressed.digest


def test_writer_thread_error_reaches_the_caller(tmp_path: Path) -> None:
    """A full disk met by the thread that writes the decompressed bytes is one clear error in
    the caller, and nothing is left (needs root to mount a small tmpfs; CI runs as root)."""
    src = tmp_path / "disk"
    _sample(src, 16 * 1024 * 1024)
    packed = zstdfile.compress(src, tmp_path / "disk.zst", level=3)
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(small)], check=True)
    try:
        with pytest.raises(PipelineError, match="no space left on device while writing"):
            zstdfile.decompress(
                tmp_path / "disk.zst", small / "disk", compressed=packed.compressed,
                uncompressed=None,
            )  # fmt: skip
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_bad_stream_and_wrong_digest_are_refused(tmp_path: Path) -> None:
    src = tmp_path / "disk"
    _sample(src, 3 * 1024 * 1024)
    packed = zstdfile.compress(src, tmp_path / "disk.zst", level=3)
    junk = tmp_path / "junk.zst"
    junk.write_bytes(os.urandom(5 * 1024 * 1024))
    with pytest.raises(PipelineError, match="not a valid zstd stream"):
        zstdfile.decompress(
            junk, tmp_path / "out", compressed=Blob(_sha256sum(junk), 5 * 1024 * 1024),
            uncompressed=None,
        )  # fmt: skip
    with pytest.raises(PipelineError, match="is not the recorded bytes"):
        zstdfile.decompress(
            tmp_path / "disk.zst", tmp_path / "out", compressed=packed.uncompressed,
            uncompressed=None,
        )  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk", "disk.zst", "junk.zst"]


def test_concatenated_frames_truncation_and_leaving_midway(tmp_path: Path) -> None:
    """Two frames one after the other (what `cat a.zst b.zst` makes, and zstd -d reads) come
    out whole; a stream cut short is refused; a caller that leaves midway is not kept waiting
    by the threads (the decompressing one may hold every output buffer)."""
    first, second = os.urandom(3 * 1024 * 1024), b"\0" * (9 * 1024 * 1024)
    joined = zstandard.ZstdCompressor().compress(first) + zstandard.ZstdCompressor().compress(
        second
    )
    with (tmp_path / "out").open("wb") as out, zstdfile.Decompressor(out) as unpack:
        for start in range(0, len(joined), 64 * 1024):
            unpack.feed(joined[start : start + 64 * 1024])
        plain = unpack.finish()
    assert (tmp_path / "out").read_bytes() == first + second
    assert plain.digest == "sha256:" + hashlib.sha256(first + second).hexdigest()
    cut = joined[: len(joined) // 3]
    with pytest.raises(PipelineError, match="ends early"), zstdfile.Decompressor(None) as unpack:
        unpack.feed(cut)
        unpack.finish()
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="caller failed"), zstdfile.Decompressor(None) as unpack:
        unpack.feed(zstandard.ZstdCompressor().compress(b"\0" * (64 * 1024 * 1024)))
        raise RuntimeError("caller failed")
    assert time.monotonic() - started < 10


class _FailingFile:
    """A slow file whose 20th write fails, as a disk filling up behind a faster zstd."""

    def __init__(self, real: BinaryIO) -> None:
        self._real, self.writes = real, 0

    def fileno(self) -> int:
        return self._real.fileno()

    def write(self, data: bytes | memoryview) -> int:
        self.writes += 1
        time.sleep(0.01)
        if self.writes == 20:
            raise OSError(28, "No space left on device")
        return self._real.write(data)


def test_a_write_failing_behind_a_faster_zstd_reaches_the_caller_at_once(tmp_path: Path) -> None:
    """Every output buffer queued for the writer when its write fails: the error reaches the
    feeding caller (it was a hang: the decompressing thread waited for a buffer forever)."""
    data = zstandard.ZstdCompressor().compress(b"\0" * (256 * 1024 * 1024))
    started = time.monotonic()
    with (tmp_path / "out").open("wb") as real, pytest.raises(OSError, match="No space left"):
        with zstdfile.Decompressor(_FailingFile(real)) as unpack:  # type: ignore[arg-type]
            for start in range(0, len(data), 1024):
                unpack.feed(data[start : start + 1024])
            unpack.finish()
    assert time.monotonic() - started < 20
