"""The stage runner (publishing/stages/runner.py): chained ids, the gate's record, what may run
after what. Unit tier: stamps in a temporary work directory, no engine, no registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.core.arch import Arch
from pipeline.core.errors import PipelineError
from pipeline.publishing.stages import runner
from pipeline.shared.state import ArchDir, arch_dir


def _chain(tmp_path: Path) -> ArchDir:
    d = arch_dir(tmp_path, "v", Arch.AMD64)
    for stage in ("build", "disk", "compress"):
        runner.record(d, stage, runner.chained_id(d, stage, {"n": 1}), {"stage": stage})
    return d


def test_an_id_is_made_of_the_inputs_and_the_ids_before_it(tmp_path: Path) -> None:
    d = _chain(tmp_path)
    compress = runner.chained_id(d, "compress", {"n": 1})
    assert d.key_of("compress") == compress
    assert runner.reusable(d, "compress", compress) == {"stage": "compress"}
    assert runner.chained_id(d, "compress", {"n": 2}) != compress  # its own inputs
    runner.record(d, "disk", runner.chained_id(d, "disk", {"n": 2}), {"stage": "disk"})
    assert runner.chained_id(d, "compress", {"n": 1}) != compress  # the stage before it
    assert runner.reusable(d, "compress", runner.chained_id(d, "compress", {"n": 1})) is None
    assert d.stale_link(runner.ORDER[:3]) == "compress"


def test_a_passed_boot_is_reused_a_failed_one_runs_again(tmp_path: Path) -> None:
    d = _chain(tmp_path)
    gate = runner.gate_id(d)
    runner.record(d, runner.GATE, gate, {"booted": True, "ok": False, "error": "no ssh"})
    assert runner.reusable(d, runner.GATE, gate) is None  # a failure is booted again
    runner.record(d, runner.GATE, gate, {"booted": True, "ok": True})
    assert runner.reusable(d, runner.GATE, gate) == {"booted": True, "ok": True}
    assert runner.require_gate(d) == {"booted": True, "ok": True}
    # a new disk: the pass was for the old one
    runner.record(d, "compress", runner.chained_id(d, "compress", {"n": 2}), {})
    assert runner.reusable(d, runner.GATE, runner.gate_id(d)) is None
    with pytest.raises(PipelineError, match="no boot check on record"):
        runner.require_gate(d)


def test_nothing_passes_the_gate_but_a_pass_or_a_recorded_skip(tmp_path: Path) -> None:
    d = _chain(tmp_path)
    with pytest.raises(PipelineError, match="no boot check on record"):
        runner.require_gate(d)
    failed = {"booted": False, "ok": False, "error": "the firmware found nothing to boot"}
    runner.record(d, runner.GATE, runner.gate_id(d), failed)
    with pytest.raises(PipelineError, match="failed its boot check .the firmware found nothing"):
        runner.require_gate(d)
    not_run = {"skipped": True, "reason": "not run"}
    runner.record(d, runner.GATE, runner.gate_id(d), not_run)
    with pytest.raises(PipelineError, match="failed its boot check"):
        runner.require_gate(d)
    assert runner.record_skip(d) == {"skipped": True, "reason": "--skip-boot"}
    assert runner.require_gate(d) == {"skipped": True, "reason": "--skip-boot"}
    assert runner.reusable(d, runner.GATE, runner.gate_id(d)) is None  # a skip is no pass
