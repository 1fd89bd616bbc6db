"""Where a zstd stream's frames begin and end, read from their headers (RFC 8878, section 3.1)
without decompressing: whether a stream ends exactly at the end of a frame, and the content
sizes its frames declare.

python-zstandard's stream_reader ends quietly when its input stops inside a frame after the
first, so the Decompressor could not tell a stream cut there from a whole one; the frames'
own headers can. Each block header names its size, so the scan hops from header to header:
a few steps for each block of up to 128 KiB.

A frame is a magic number (0xFD2FB528), a frame header (descriptor, window descriptor unless
single-segment, dictionary id, content size), blocks (a 3-byte header: last-block bit, type,
size; raw and compressed blocks carry `size` bytes, an RLE block one), and a 4-byte checksum
when the descriptor says so. A skippable frame (magic 0x184D2A5?) is a 4-byte size and that
many bytes.
"""

from __future__ import annotations

import enum

ZSTD_MAGIC = 0xFD2FB528
SKIPPABLE_MASK, SKIPPABLE_MAGIC = 0xFFFFFFF0, 0x184D2A50
_FCS_BYTES = (0, 2, 4, 8)  # by Frame_Content_Size_flag (0: none, or 1 byte if single-segment)
_DID_BYTES = (0, 1, 2, 4)  # by Dictionary_ID_flag


class _At(enum.Enum):
    MAGIC = enum.auto()
    DESCRIPTOR = enum.auto()
    HEADER_REST = enum.auto()
    BLOCK = enum.auto()
    CHECKSUM = enum.auto()
    SKIPPABLE_SIZE = enum.auto()


class FrameScanner:
    """Fed the stream's bytes in any pieces; then `complete`, `declared` and `problem` say what
    the headers showed. It never holds more than a 14-byte header."""

    def __init__(self) -> None:
        self.frames = 0  # zstd frames that ended (skippable ones are not counted)
        self._ended = False  # a frame of either kind did
        self.declared: int | None = 0  # content sizes the frames declare; None if one does not
        self.problem: str | None = None  # bytes that are not a zstd frame (the first place)
        self._at = _At.MAGIC
        self._need = 4
        self._header = bytearray()
        self._skip = 0  # bytes of a block (or skippable frame) still to pass over
        self._checksum = False
        self._single_segment = False
        self._fcs = 0  # bytes of the frame's content size field
        self._did = 0  # bytes of its dictionary id
        self._offset = 0  # of the stream, for messages

    @property
    def complete(self) -> bool:
        """The stream ends where a frame (zstd or skippable) ends, and has one at least."""
        return (
            self.problem is None
            and self._at is _At.MAGIC
            and not self._header
            and not self._skip
            and self._ended
        )

    @property
    def offset(self) -> int:
        return self._offset

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        size, pos = len(data), 0
        while pos < size and self.problem is None:
            if self._skip:
                step = min(self._skip, size - pos)
                self._skip -= step
                pos += step
                continue
            step = min(self._need - len(self._header), size - pos)
            self._header += data[pos : pos + step]
            pos += step
            if len(self._header) == self._need:
                header, at = bytes(self._header), self._offset + pos - self._need
                self._header.clear()
                self._step(header, at)
        self._offset += size

    def _step(self, header: bytes, at: int) -> None:
        value = int.from_bytes(header, "little")
        if self._at is _At.MAGIC:
            if value == ZSTD_MAGIC:
                self._expect(_At.DESCRIPTOR, 1)
            elif value & SKIPPABLE_MASK == SKIPPABLE_MAGIC:
                self._expect(_At.SKIPPABLE_SIZE, 4)
            else:
                self.problem = f"no zstd frame begins at byte {at}"
        elif self._at is _At.SKIPPABLE_SIZE:
            self._skip = value
            self._ended = True  # once its bytes are passed over: `complete` checks _skip
            self._expect(_At.MAGIC, 4)
        elif self._at is _At.DESCRIPTOR:
            self._descriptor(value, at)
        elif self._at is _At.HEADER_REST:
            self._header_rest(header)
        elif self._at is _At.BLOCK:
            self._block(value, at)
        else:  # the checksum closes the frame
            self._end_frame()

    def _expect(self, at: _At, need: int) -> None:
        self._at, self._need = at, need

    def _descriptor(self, descriptor: int, at: int) -> None:
        if descriptor & 0x08:
            self.problem = f"a zstd frame header at byte {at} sets its reserved bit"
            return
        self._single_segment = bool(descriptor & 0x20)
        self._checksum = bool(descriptor & 0x04)
        self._fcs = _FCS_BYTES[descriptor >> 6] or (1 if self._single_segment else 0)
        self._did = _DID_BYTES[descriptor & 0x03]
        rest = (0 if self._single_segment else 1) + self._did + self._fcs
        if not self._fcs:
            self.declared = None
        if rest:
            self._expect(_At.HEADER_REST, rest)
        else:
            self._expect(_At.BLOCK, 3)

    def _header_rest(self, header: bytes) -> None:
        if self._fcs and self.declared is not None:
            size = int.from_bytes(header[len(header) - self._fcs :], "little")
            self.declared += size + (256 if self._fcs == 2 else 0)
        self._expect(_At.BLOCK, 3)

    def _block(self, header: int, at: int) -> None:
        kind, size = (header >> 1) & 0x03, header >> 3
        if kind == 3:
            self.problem = f"a zstd block at byte {at} has the reserved type"
            return
        self._skip = 1 if kind == 1 else size
        if not header & 0x01:
            self._expect(_At.BLOCK, 3)
        elif self._checksum:
            self._expect(_At.CHECKSUM, 4)
        else:
            self._end_frame()

    def _end_frame(self) -> None:
        self.frames += 1
        self._ended = True
        self._expect(_At.MAGIC, 4)
