"""The stage runner (publishing/stages/runner.py): chained ids, the gate's record, what may run
after what. Unit tier: stamps in a temporary work directory, no engine, no registry."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from pipeline.core.arch import Arch
from pipeline.core.errors import PipelineError
from pipeline.core.progress import Reporter
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


class Log(Reporter):
    """The real reporter, its plain lines kept."""

    def __init__(self) -> None:
        super().__init__(stream=io.StringIO(), live=False)

    @property
    def lines(self) -> list[str]:
        stream = self.stream
        assert isinstance(stream, io.StringIO)
        return stream.getvalue().splitlines()


def _run_all(d: ArchDir, inputs: dict[str, dict[str, int]], log: Log) -> list[str]:
    """Every stamped stage in its order through runner.run; the stages that ran (not skipped)."""
    ran: list[str] = []
    for stage in ("build", "sbom", "disk", "compress"):
        previous = runner.before(stage)
        if previous:
            runner.require(d, previous, "v")
        made: dict[str, Any] = {"made": stage}
        done = runner.run(d, stage, inputs.get(stage, {}), made.copy, reporter=log)
        ran += [] if done.reused else [stage]
    return ran


def test_run_skips_what_did_not_change_and_reruns_a_change_and_all_after_it(
    tmp_path: Path,
) -> None:
    d, log = arch_dir(tmp_path, "v", Arch.AMD64), Log()
    assert _run_all(d, {}, log) == ["build", "sbom", "disk", "compress"]
    assert _run_all(d, {}, log) == []  # nothing changed: every stage skipped, and says so
    assert [line.split(": ", 1)[1] for line in log.lines] == [
        f"{s} unchanged since the last run" for s in ("build", "sbom", "disk", "compress")
    ]
    assert _run_all(d, {"disk": {"n": 2}}, log) == ["disk", "compress"]  # not build nor sbom
    assert _run_all(d, {"disk": {"n": 2}, "build": {"n": 2}}, log) == [
        "build", "sbom", "disk", "compress",
    ]  # fmt: skip
    assert runner.current(d, "sbom") == {"made": "sbom"}
    # outputs that are gone are made again, though the id is the same
    done = runner.run(d, "compress", {}, lambda: {"made": "again"}, reporter=log,
                      kept=lambda outputs: False)  # fmt: skip
    assert not done.reused and d.load_stamp("compress") == {"made": "again"}


def test_a_stage_is_handed_only_current_outputs(tmp_path: Path) -> None:
    d, log = arch_dir(tmp_path, "v", Arch.AMD64), Log()
    with pytest.raises(PipelineError, match="no disk of v for amd64") as missing:
        runner.require(d, "disk", "v")
    assert missing.value.hint == "run `bootc-pipeline disk` first"
    _run_all(d, {}, log)
    runner.run(d, "build", {"n": 3}, lambda: {}, reporter=log)  # a new build, nothing after it
    assert runner.current(d, "sbom") is None
    with pytest.raises(PipelineError, match="the disk stage is older than the one before it"):
        runner.require(d, "compress", "v")
    with pytest.raises(PipelineError, match="no compressed disk of v"):
        runner.require(d, "compress", "v", kept=lambda outputs: False)


def test_a_failed_gate_stops_what_follows_and_is_booted_again(tmp_path: Path) -> None:
    d, log = _chain(tmp_path), Log()
    check = {"name": "lima-tools", "ok": False, "detail": "missing: sshfs"}
    failed: dict[str, Any] = {"booted": True, "ok": False, "error": None, "checks": [check]}
    ran = runner.run(d, runner.GATE, {}, lambda: failed, reporter=log)
    assert not ran.reused and runner.gate_record(d) == failed  # on record, failure and all
    assert runner.before("push") == runner.GATE
    with pytest.raises(PipelineError, match=r"failed its boot check \(lima-tools: missing: sshfs"):
        runner.require(d, runner.before("push") or "", "v")
    booted: list[int] = []

    def boot() -> dict[str, Any]:
        booted.append(1)
        return {"ok": True}

    again = runner.run(d, runner.GATE, {}, boot, reporter=log)
    assert booted == [1] and not again.reused  # a failure is no reason to skip the boot
    assert runner.require(d, runner.GATE, "v") == {"ok": True}
    skipped = runner.run(d, runner.GATE, {}, lambda: {}, reporter=log)
    assert skipped.reused and log.lines[-1].endswith("passed its boot check already, not rebooted")
