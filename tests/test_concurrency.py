"""How publish schedules the per-architecture pipelines: bounded by --jobs, joined before the
index, a failure reported only after the others finished. The stages themselves are replaced by
a recorder here; tests/test_publish_e2e.py runs the real ones concurrently."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import pytest

from pipeline import publish, release
from pipeline.arch import Arch
from pipeline.context import Context, Options
from pipeline.errors import PipelineError
from pipeline.plan import Provenance
from pipeline.progress import Reporter
from pipeline.published import ArchRelease
from tests.factories import manifest_data, write_manifest

PROV = Provenance("2026-01-01T00:00:00Z", "abc")


class Recorder:
    def __init__(self, seconds: float, fail: Arch | None = None) -> None:
        self.seconds, self.fail = seconds, fail
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.finished: list[Arch] = []

    def __call__(
        self, ctx: Context, arch: Arch, provenance: Provenance, siblings: tuple[str, ...]
    ) -> ArchRelease:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
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


@pytest.mark.parametrize("jobs", [1, 2])
def test_at_most_jobs_architectures_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    recorder = Recorder(0.3)
    monkeypatch.setattr(publish, "arch_pipeline", recorder)
    sent = publish.run_arch_pipelines(_context(tmp_path, jobs, io.StringIO()), PROV)
    assert [r.arch for r in sent] == [Arch.AMD64, Arch.ARM64]  # release order, always
    assert recorder.most == jobs


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
