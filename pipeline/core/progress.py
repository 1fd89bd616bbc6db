"""Progress for long work: a live display on a terminal, plain timestamped lines elsewhere (CI).

Stages are timed here, so the report's stage timings and what the user saw agree.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # rich is imported for a live display only: 0.08 s a plain run need not pay
    from rich.console import Console


@dataclass
class Reporter:
    """Reports stages and byte counts; `timings[key]` holds each finished stage's seconds."""

    stream: TextIO = field(default_factory=lambda: sys.stderr)
    verbose: bool = False
    live: bool | None = None  # None: live display only on a terminal
    timings: dict[str, float] = field(default_factory=dict)
    # Concurrent architectures share one reporter: a line is written whole, never interleaved.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.live is None:
            self.live = self.stream.isatty()
        self._started = time.monotonic()

    @functools.cached_property
    def console(self) -> Console:
        from rich.console import Console

        # markup off: tool log lines such as `error: [/usr] is read-only` are text, not markup
        return Console(file=self.stream, highlight=False, markup=False, force_terminal=self.live)

    def _stamp(self) -> str:
        return f"[{time.monotonic() - self._started:7.1f}s]"

    def info(self, message: str) -> None:
        if self.live:
            self.console.print(message)
            return
        line = f"{self._stamp()} {message}\n"
        with self._lock:
            self.stream.write(line)
            self.stream.flush()

    def detail(self, line: str) -> None:
        """A line of a tool's own log: shown with --verbose, kept quiet otherwise."""
        if self.verbose:
            self.info(f"    {line}")

    @contextlib.contextmanager
    def stage(self, key: str, title: str) -> Iterator[None]:
        """Announce, time and close a stage; a failure is reported with its elapsed time."""
        self.info(f"==> {title}")
        start = time.monotonic()
        try:
            yield
        except BaseException:
            self.info(f"<== {title}: failed after {time.monotonic() - start:.1f}s")
            raise
        elapsed = time.monotonic() - start
        self.timings[key] = round(elapsed, 3)
        self.info(f"<== {title}: done in {elapsed:.1f}s")

    @contextlib.contextmanager
    def plain(self) -> Iterator[None]:
        """Plain timestamped lines meanwhile: the live bars of concurrent work cannot share a
        terminal, while lines (each naming its architecture) interleave readably."""
        live, self.live = self.live, False
        try:
            yield
        finally:
            self.live = live

    @contextlib.contextmanager
    def transfer(self, title: str, total: int) -> Iterator[Callable[[int], None]]:
        """Yield `advance(nbytes)`; a bar on a terminal, a line per 10% elsewhere."""
        if self.live:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            columns = (
                TextColumn("    {task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
            )
            with Progress(*columns, console=self.console, transient=True) as bar:
                task = bar.add_task(title, total=total)
                yield lambda n: bar.advance(task, n)
            return
        done = 0
        next_mark = 10
        started = time.monotonic()

        def advance(n: int) -> None:
            nonlocal done, next_mark
            done += n
            percent = 100 * done // total if total else 100
            if percent < next_mark or next_mark > 100:
                return
            elapsed = time.monotonic() - started
            rate = f", {done / elapsed / 2**20:.1f} MiB/s" if elapsed > 0 else ""
            while percent >= next_mark and next_mark <= 100:
                self.info(f"    {title}: {next_mark}% of {total} bytes ({done} done{rate})")
                next_mark += 10

        yield advance
