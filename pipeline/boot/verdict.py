"""A boot's verdict for its caller: the result when it passed, else one line of failure, with
the guest console's last lines logged first (publish's boot gate and `boot REF` alike)."""

from __future__ import annotations

from pipeline.boot.guest import BootResult, console_tail
from pipeline.core.errors import PipelineError
from pipeline.core.progress import Reporter


def fail_if_bad(result: BootResult, reporter: Reporter) -> BootResult:
    """Raise the boot failure as one line, with the console's last lines in the log first."""
    if result.ok:
        return result
    lines = console_tail(result.console_log)
    if lines:
        reporter.info(f"    last {len(lines)} lines of the {result.arch.value} guest console:")
        for line in lines:
            reporter.info(f"      | {line}")
    raise PipelineError(
        f"boot check failed for {result.arch.value}: {result.failure()}",
        hint=f"the guest console log is {result.console_log}",
    )
