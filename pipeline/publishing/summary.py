"""The table a publish or a join ends with: one row per architecture."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from pipeline.model.published import Published
from pipeline.publishing.outputs import arch_timings, boot_records
from pipeline.shared.context import Context


def summary(ctx: Context, published: Published) -> Table:
    """One row per architecture; the boot column when the boot check ran (a skip is said in the
    caption, which keeps the table within 80 columns for the digests)."""
    table = Table(title=f"{published.repository} {ctx.release.version}")
    boots = None if ctx.options.skip_boot else boot_records(ctx)
    columns = ["arch", "manifest", "layer bytes", "disk bytes", "sent bytes", "seconds"]
    if boots is not None:
        columns.insert(5, "boot")
    for column in columns:
        table.add_column(column)
    for r in published.archs:
        seconds = sum(arch_timings(ctx, r.arch).values())
        cells = [
            r.arch.value,
            r.manifest.digest[:19],
            str(r.layer.size),
            str(r.uncompressed.size),
            str(r.bytes_sent),
            f"{seconds:.1f}",
        ]
        if boots is not None:
            cells.insert(5, boot_cell(boots.get(r.arch.value, {})))
        table.add_row(*cells)
    table.caption = f"index {published.index.digest}  tags: {', '.join(published.tags)}"
    if boots is None:
        table.caption += "  boot: skipped (--skip-boot)"
    return table


def boot_cell(record: dict[str, Any]) -> str:
    if record.get("skipped"):
        return "skipped"  # why is in the report
    if not record.get("ok"):
        return "FAILED"
    return f"ok, ssh {record.get('secondsToSsh')} s ({record.get('accelerator')})"
