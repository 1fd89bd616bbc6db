"""Work on a stream of blocks in threads joined by bounded queues, so the steps overlap.

A `Stage` runs one function over the blocks put into it, in its own thread, in order (or
hands a consumer that pulls, such as a decompressor, an iterator of them). Its
queue holds at most `depth` blocks: a feeder faster than the stage waits, so memory stays
bounded by depth × block size per stage, whatever the stream's length. CPython runs the
threads' Python code one at a time, but socket reads, file writes, hashlib (on buffers of
2 KiB and more) and python-zstandard's (de)compression release the GIL, so the heavy parts
of each stage run on their own core.

An exception in the stage's thread is raised in the feeder at its next `put` or at `close`;
`abort` stops the thread when the feeder fails (or gives up) instead.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")

_END = object()
_POLL_SECONDS = 0.1
_JOIN_SECONDS = 60.0


class Stopped(Exception):
    """The stage was aborted: what fed it has failed already."""


class Stage(Generic[T]):
    def __init__(
        self,
        name: str,
        work: Callable[[T], None] | None = None,
        *,
        depth: int,
        consume: Callable[[Iterator[T]], None] | None = None,
    ) -> None:
        """`work` is called on each block in turn; or `consume` once, on an iterator of the
        blocks (for a consumer that pulls, such as a decompressor reading its input)."""
        if (work is None) == (consume is None):
            raise ValueError("a Stage takes either work or consume")
        self._work = work
        self._consume = consume
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def __enter__(self) -> Stage[T]:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.abort()

    def put(self, block: T) -> None:
        """Hand `block` to the stage, waiting while its queue is full."""
        self._put(block)

    def _put(self, block: object) -> None:
        while True:
            self._check()
            try:
                self._queue.put(block, timeout=_POLL_SECONDS)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """No more blocks: wait until the stage has done all of them; raise what it raised."""
        self._put(_END)
        self._thread.join(_JOIN_SECONDS)
        self._check()
        if self._thread.is_alive():
            raise TimeoutError(f"{self._thread.name} did not finish")

    def cancel(self) -> None:
        """Ask the stage to stop without finishing; its `put`s fail from now on."""
        self._stop.set()

    def abort(self) -> None:
        """Stop the stage without finishing, and wait for its thread (idempotent; a no-op after
        `close`). Cancel every stage of a chain first: one may be waiting on the next's queue."""
        self.cancel()
        if self._thread.is_alive():
            self._thread.join(_JOIN_SECONDS)

    def check(self) -> None:
        """Raise what the stage's thread raised, or Stopped once it was aborted (for a thread
        that waits on this stage other than through `put`)."""
        self._check()

    def _check(self) -> None:
        if self._error is not None:
            raise self._error
        if self._stop.is_set():
            raise Stopped(self._thread.name)

    def _blocks(self) -> Iterator[T]:
        """The blocks put, in order, until `close`; Stopped once the stage is aborted."""
        while True:
            if self._stop.is_set():
                raise Stopped(self._thread.name)
            try:
                block = self._queue.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
            if block is _END:
                return
            yield block  # type: ignore[misc]

    def _run(self) -> None:
        try:
            if self._consume is not None:
                self._consume(self._blocks())
                return
            assert self._work is not None
            for block in self._blocks():
                self._work(block)
        except Stopped:
            pass  # aborted: the feeder has failed already
        except BaseException as exc:  # noqa: BLE001 - handed to the feeder, raised there
            self._error = exc
