"""How publish schedules the per-architecture pipelines: bounded by --jobs, joined before the
index, a failure reported only after the others finished. The stages themselves are replaced by
a recorder here; tests/test_publish_e2e.py runs the real ones concurrently."""

from __future__ import annotations

import dataclasses
import io
import threading
import time
from pathlib import Path

import pytest

from pipeline.core.arch import Arch
from pipeline.core.errors import PipelineError
from pipeline.core.progress import Reporter
from pipeline.model import release
from pipeline.model.plan import Provenance
from pipeline.model.published import ArchRelease
from pipeline.publishing import publish
from pipeline.shared.context import Context, Options
from tests.factories import manifest_data, write_manifest

PROV = Provenance("2026-01-01T00:00:00Z", "abc")


class Recorder:
    """Stands in for an architecture's pipeline: records how many run at once. With `together`,
    each call first waits (up to 10 s) until that many run at once, then `seconds` more, so a
    pool that allows more starts them meanwhile, and one that allows fewer never gets there."""

    def __init__(self, seconds: float, fail: Arch | None = None, together: int = 0) -> None:
        self.seconds, self.fail, self.together = seconds, fail, together
        self.lock = threading.Condition()
        self.running = 0
        self.most = 0
        self.finished: list[Arch] = []

    def __call__(
        self, ctx: Context, arch: Arch, provenance: Provenance, siblings: tuple[str, ...]
    ) -> ArchRelease:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.lock.notify_all()
            self.lock.wait_for(lambda: self.most >= self.together, timeout=10)
        try:
            if arch == self.fail:
                raise PipelineError(f"{arch.value} failed")
            time.sleep(self.seconds)
            with self.lock:
                self.finished.append(arch)
            return ArchRelease(arch, None, None, 0, None, 0)  # type: ignore[arg-type]
        finally:
            with self.lock:
                self.running -= 1


def _context(tmp_path: Path, jobs: int, out: io.StringIO) -> Context:
    r = release.load(write_manifest(tmp_path, manifest_data()))
    return Context(r, Options(workdir=tmp_path / "w", jobs=jobs), Reporter(stream=out, live=False))


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_at_most_jobs_architectures_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    """Four pipelines (each architecture twice: the scheduler runs what it is given, whatever
    the architecture), so a bound of 2 or 3 shows: with two, an unbounded pool also ran 2."""
    recorder = Recorder(0.3, together=jobs)
    monkeypatch.setattr(publish, "arch_pipeline", recorder)
    ctx = _context(tmp_path, jobs, io.StringIO())
    ctx.options = dataclasses.replace(ctx.options, archs=(Arch.AMD64, Arch.ARM64) * 2)
    sent = publish.run_arch_pipelines(ctx, PROV)
    assert [r.arch for r in sent] == [Arch.AMD64, Arch.ARM64] * 2  # release order, always
    assert recorder.most == jobs
    assert len(recorder.finished) == 4


def test_a_failure_waits_for_the_others_and_is_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(0.5, fail=Arch.ARM64)
    monkeypatch.setattr(publish, "arch_pipeline", recorder)
    out = io.StringIO()
    with pytest.raises(PipelineError, match="arm64 failed"):
        publish.run_arch_pipelines(_context(tmp_path, 2, out), PROV)
    assert recorder.finished == [Arch.AMD64]  # not abandoned: its stages are kept for a re-run
    assert "an architecture failed: waiting for the others" in out.getvalue()
