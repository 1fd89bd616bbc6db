"""FrameScanner (pipeline/core/zstdframes.py) on streams the zstd CLI writes, judged by the zstd
CLI: a stream is whole exactly when `zstd -t` takes it, and the content sizes the frames
declare are the bytes `zstd -d` gives."""

from __future__ import annotations

import os
import random
import struct
import subprocess
from pathlib import Path

import pytest

from pipeline.core.errors import PipelineError
from pipeline.core.zstdfile import Decompressor
from pipeline.core.zstdframes import FrameScanner


def _zstd(*args: str, data: bytes) -> bytes:
    return subprocess.run(
        ["zstd", "-q", *args], input=data, capture_output=True, check=True, timeout=60
    ).stdout


def _cli_takes(stream: bytes) -> bool:
    """`zstd -t`: whether the zstd CLI reads the stream as whole and valid."""
    return (
        subprocess.run(
            ["zstd", "-q", "-t"], input=stream, capture_output=True, timeout=60
        ).returncode
        == 0
    )


def _scan(stream: bytes, piece: int | None = None) -> FrameScanner:
    scanner = FrameScanner()
    step = piece or max(1, len(stream))
    for start in range(0, len(stream), step):
        scanner.feed(memoryview(stream)[start : start + step])
    return scanner


def _skippable(payload: bytes) -> bytes:
    """A skippable frame (RFC 8878, 3.1.2): magic 0x184D2A5?, a 4-byte size, the bytes."""
    return struct.pack("<II", 0x184D2A53, len(payload)) + payload


def _streams(tmp_path: Path) -> dict[str, tuple[bytes, bytes, int, bool]]:
    """name -> (stream, its content, zstd frames, whether the frames declare their sizes)."""
    rng = random.Random(7)
    text = b"".join(b"line %d of a disk\n" % rng.randrange(999) for _ in range(40000))
    noise = os.urandom(300 * 1024)  # raw blocks
    zeros = b"\0" * (2 * 1024 * 1024)  # RLE blocks
    source = tmp_path / "source"
    source.write_bytes(text)
    whole = subprocess.run(  # from a file: the frame declares its size, with a checksum
        ["zstd", "-q", "-c", "-19", str(source)], capture_output=True, check=True, timeout=60
    ).stdout
    a, b = _zstd("-c", "-3", data=noise), _zstd("-c", "--no-check", "-1", data=zeros)
    return {
        "one frame, size and checksum": (whole, text, 1, True),
        "from a pipe: no size declared": (_zstd("-c", data=text), text, 1, False),
        "threaded": (_zstd("-c", "-T2", "-6", data=text + noise), text + noise, 1, False),
        "two frames, raw and RLE blocks": (a + b, noise + zeros, 2, False),
        "skippable frames around one": (
            _skippable(b"meta") + whole + _skippable(b""),
            text,
            1,
            True,
        ),
    }


def test_whole_streams_are_whole_with_the_sizes_their_frames_declare(tmp_path: Path) -> None:
    for name, (stream, content, frames, sized) in _streams(tmp_path).items():
        assert _cli_takes(stream), name
        assert _zstd("-d", "-c", data=stream) == content, name
        for piece in (None, 1, 3, 4096):  # headers split across every kind of boundary
            if piece == 1 and len(stream) > 200_000:
                piece = 7
            scanner = _scan(stream, piece)
            assert scanner.problem is None and scanner.complete, (name, piece)
            assert scanner.frames == frames, name
            if sized:
                assert scanner.declared == len(content), name
            elif "pipe" in name:
                assert scanner.declared is None, name


def test_a_stream_is_complete_exactly_where_the_zstd_cli_takes_it(tmp_path: Path) -> None:
    """Every cut of a small stream (a skippable frame, two zstd frames): complete only at a
    frame's end, as `zstd -t` says (an empty stream is not)."""
    first = _zstd("-c", "-3", data=os.urandom(700))  # a raw block
    second = _zstd("-c", "-3", data=b"abc" * 400)  # a compressed one
    stream = _skippable(b"x") + first + second
    ends = {len(_skippable(b"x")), len(_skippable(b"x")) + len(first), len(stream)}
    judged = {len(_skippable(b"x")), len(_skippable(b"x")) + 1, *ends, len(stream) - 1, 9}
    assert not _cli_takes(b"") and not _scan(b"").complete
    for cut in range(len(stream) + 1):
        scanner = _scan(stream[:cut], 5)
        assert scanner.complete == (cut in ends), cut
        if cut in judged:  # the CLI agrees (a sample: it takes a process per cut)
            assert _cli_takes(stream[:cut]) == scanner.complete, cut


def test_bytes_that_are_no_frame_are_named_where_they_begin(tmp_path: Path) -> None:
    whole = _zstd("-c", data=b"disk" * 1000)
    scanner = _scan(whole + b"trailing junk", 2)
    assert scanner.problem == f"no zstd frame begins at byte {len(whole)}"
    assert not scanner.complete and not _cli_takes(whole + b"trailing junk")
    reserved = bytearray(whole)
    reserved[4] |= 0x08  # the frame header descriptor's reserved bit
    assert "reserved bit" in str(_scan(bytes(reserved)).problem)


def test_the_decompressor_refuses_a_stream_cut_inside_a_later_frame(tmp_path: Path) -> None:
    """python-zstandard's reader ends quietly there; the frames' headers do not."""
    first, second = os.urandom(200 * 1024), b"\0" * (3 * 1024 * 1024)
    stream = _zstd("-c", data=first) + _zstd("-c", "--no-check", data=second)
    cut = stream[: len(stream) - 20]
    assert not _cli_takes(cut)
    with pytest.raises(PipelineError, match=r"ends early: at byte \d+, inside frame 2"):
        with Decompressor(None) as unpack:
            unpack.feed(cut)
            unpack.finish()
    with Decompressor(None) as unpack:
        unpack.feed(stream)
        assert unpack.finish().size == len(first) + len(second)
