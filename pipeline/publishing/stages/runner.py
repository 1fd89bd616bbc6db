"""The stage runner: one place owns each stage's stamp, its chained id and what may run after what.

The stages of one architecture run in ORDER. Each stage's id is made of its own inputs and the
id of the stage before it (osbuild's way), so an id names the whole chain up to that stage: a
stage whose id is unchanged and whose outputs are still there is skipped, and a stage never
consumes outputs older than its predecessor's.

The boot check is a gate: its stamp is written whether it passed or failed (so a failed boot is
on record and is booted again on the next run), or as a recorded skip (`--skip-boot`). Nothing
after the gate (the upload of a disk, a tag) runs unless the gate's record for the current disk
is a pass or a recorded skip.
"""

from __future__ import annotations

from typing import Any

from pipeline.core.errors import PipelineError
from pipeline.shared.state import ArchDir, inputs_key

ORDER = ("build", "disk", "compress", "boot")
GATE = "boot"
SKIP_REASON = "--skip-boot"


def before(stage: str) -> str | None:
    """The stage whose outputs `stage` consumes (None for the first)."""
    position = ORDER.index(stage)
    return ORDER[position - 1] if position else None


def chained_id(directory: ArchDir, stage: str, inputs: dict[str, Any]) -> str:
    """`stage`'s id: its own inputs and the id the stage before it last ran with."""
    previous = before(stage)
    after = directory.key_of(previous) if previous else None
    return inputs_key({"stage": stage, "inputs": inputs, "after": after})


def passed(record: dict[str, Any] | None) -> bool:
    """A gate record that lets later stages run: a pass, or a skip that says who skipped it."""
    if not record:
        return False
    if record.get("skipped") is True:
        return record.get("reason") == SKIP_REASON
    return record.get("ok") is True


def reusable(directory: ArchDir, stage: str, stage_id: str) -> dict[str, Any] | None:
    """The outputs of an earlier run of `stage` with this very id (for the gate: a pass only,
    a failed or skipped check runs again)."""
    outputs = directory.load_stamp(stage, stage_id)
    if outputs is None:
        return None
    if stage == GATE and not (passed(outputs) and not outputs.get("skipped")):
        return None
    return outputs


def record(directory: ArchDir, stage: str, stage_id: str, outputs: dict[str, Any]) -> None:
    """`stage` finished (for the gate: passed, failed or was skipped) with this id."""
    previous = before(stage)
    after = directory.key_of(previous) if previous else None
    directory.save_stamp(stage, stage_id, outputs, after=after)


def gate_id(directory: ArchDir) -> str:
    """The boot check's id: nothing of its own but the disk it boots (the compress stage)."""
    return chained_id(directory, GATE, {})


def record_skip(directory: ArchDir) -> dict[str, Any]:
    """`--skip-boot`: the skip itself is the gate's record for the current disk."""
    skipped = {"skipped": True, "reason": SKIP_REASON}
    record(directory, GATE, gate_id(directory), skipped)
    return skipped


def gate_record(directory: ArchDir) -> dict[str, Any] | None:
    """The gate's record for the current disk, if it has one (pass, failure or skip)."""
    return directory.load_stamp(GATE, gate_id(directory))


def require_gate(directory: ArchDir) -> dict[str, Any]:
    """The gate's record for the current disk, which must be a pass or a recorded skip; else a
    PipelineError saying what to run (nothing is sent)."""
    arch = directory.arch.value
    found = gate_record(directory)
    if found is None:
        raise PipelineError(
            f"the {arch} disk in {directory.root} has no boot check on record: nothing is sent "
            "before the disk booted",
            hint="run `bootc-pipeline boot` first, or pass --skip-boot to send it unbooted "
            "(the release report records the skip)",
        )
    if not passed(found):
        why = found.get("error") or "; ".join(
            f"{c.get('name')}: {c.get('detail')}"
            for c in found.get("checks") or []
            if c.get("required", True) and not c.get("ok")
        )
        raise PipelineError(
            f"the {arch} disk in {directory.root} failed its boot check ({why or 'not a pass'}): "
            "nothing is sent",
            hint="fix the image and re-run; --skip-boot sends it unbooted (the report says so)",
        )
    return found
