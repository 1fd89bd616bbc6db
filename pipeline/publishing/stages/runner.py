"""The stage runner: one place owns each stage's stamp, its chained id and what may run after what.

Each stage consumes the outputs of one stage before it (`AFTER`): build, then disk, compress and
the boot check in a line, and the SBOM beside the disk, from the same build. A stage's id is made
of its own inputs and the id of the stage before it (osbuild's way), so an id names the whole
chain up to that stage: `run` skips a stage whose id is unchanged and whose outputs are still
there, and runs it (and so, through the ids, every stage after it) otherwise. `require` hands a
stage the outputs of the one before it only when the whole chain up to it is of one run: a stage
never consumes outputs older than its predecessor's.

The boot check is a gate: its stamp is written whether it passed or failed (so a failed boot is
on record and is booted again on the next run), or as a recorded skip (`--skip-boot`). Nothing
after the gate (the upload of a disk, a tag) runs unless the gate's record for the current disk
is a pass or a recorded skip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.core.errors import PipelineError
from pipeline.core.progress import Reporter
from pipeline.shared.state import ArchDir, inputs_key

ORDER = ("build", "disk", "compress", "boot")
AFTER: dict[str, str | None] = {
    "build": None,
    "sbom": "build",
    "disk": "build",
    "compress": "disk",
    "boot": "compress",
    "push": "boot",  # not stamped: the registry holds what it sent
}
# what each stage leaves, in "no ... of VARIANT for ARCH"
NOUNS = {"build": "build", "sbom": "SBOM", "disk": "disk", "compress": "compressed disk"}
GATE = "boot"
SKIP_REASON = "--skip-boot"


def before(stage: str) -> str | None:
    """The stage whose outputs `stage` consumes (None for the first)."""
    return AFTER[stage]


def lineage(stage: str) -> tuple[str, ...]:
    """The stages from the first to `stage`, each consuming the one before it."""
    chain: list[str] = []
    current: str | None = stage
    while current is not None:
        chain.insert(0, current)
        current = before(current)
    return tuple(chain)


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


def why_not(record: dict[str, Any]) -> str:
    """What a gate record that is not a pass says went wrong, in one line."""
    why = record.get("error") or "; ".join(
        f"{c.get('name')}: {c.get('detail')}"
        for c in record.get("checks") or []
        if isinstance(c, dict) and c.get("required", True) and not c.get("ok")
    )
    return str(why or record.get("reason") or "not a pass")


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


@dataclass(frozen=True)
class Ran:
    outputs: dict[str, Any]
    reused: bool  # skipped: the outputs of an earlier run with the same chained id


def run(
    directory: ArchDir,
    stage: str,
    inputs: dict[str, Any],
    act: Callable[[], dict[str, Any]],
    *,
    reporter: Reporter,
    kept: Callable[[dict[str, Any]], bool] = lambda outputs: True,
    shown: str | None = None,
) -> Ran:
    """Run `stage` (`act` returns its outputs) unless an earlier run with the same chained id
    left outputs that are still there (`kept`); either way its stamp then names this chain."""
    stage_id = chained_id(directory, stage, inputs)
    reused = reusable(directory, stage, stage_id)
    if reused is not None and kept(reused):
        arch = directory.arch.value
        if stage == GATE:
            reporter.info(f"    {arch}: this disk passed its boot check already, not rebooted")
        else:
            reporter.info(f"    {arch}: {shown or stage} unchanged since the last run")
        return Ran(reused, True)
    outputs = act()
    record(directory, stage, stage_id, outputs)
    return Ran(outputs, False)


def current(directory: ArchDir, stage: str) -> dict[str, Any] | None:
    """`stage`'s last outputs if every stage up to it is of one run (each made from the
    last run of the one before it); None otherwise."""
    outputs = directory.load_stamp(stage)
    if outputs is None or directory.stale_link(lineage(stage)):
        return None
    return outputs


def require(
    directory: ArchDir,
    stage: str,
    variant: str,
    kept: Callable[[dict[str, Any]], bool] = lambda outputs: True,
) -> dict[str, Any]:
    """What the stage after `stage` may consume: `stage`'s outputs, still there (`kept`) and the
    whole chain up to it of one run (for the gate: a pass or a recorded skip for the current
    disk); else a PipelineError naming the stage to run."""
    if stage == GATE:
        return require_gate(directory)
    arch, root = directory.arch.value, directory.root
    outputs = directory.load_stamp(stage)
    if outputs is None or not kept(outputs):
        raise PipelineError(
            f"no {NOUNS[stage]} of {variant} for {arch} in {root}",
            hint=f"run `bootc-pipeline {stage}` first",
        )
    stale = directory.stale_link(lineage(stage))
    if stale:
        raise PipelineError(
            f"the {arch} outputs in {root} are from different runs: the {stale} stage is older "
            "than the one before it",
            hint=f"run `bootc-pipeline {stale}` again (and the stages after it)",
        )
    return outputs


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
        raise PipelineError(
            f"the {arch} disk in {directory.root} failed its boot check ({why_not(found)}): "
            "nothing is sent",
            hint="fix the image and re-run; --skip-boot sends it unbooted (the report says so)",
        )
    return found


def published_record(boot_check: str | None) -> dict[str, Any] | None:
    """The gate's record a published disk manifest carries (`org.bootc-pipeline.boot-check`,
    written by the push past the gate), for a result file read back from the registry."""
    if boot_check == "passed":
        return {"ok": True, "recordedIn": "the published manifest (boot-check: passed)"}
    if boot_check == "skipped":
        return {"skipped": True, "reason": SKIP_REASON}
    return None
