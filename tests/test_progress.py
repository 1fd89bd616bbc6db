"""Progress output: tool log lines are shown as they are, on a terminal and in CI."""

from __future__ import annotations

import io

import pytest

from pipeline.core.progress import Reporter


@pytest.mark.parametrize("live", [True, False])
def test_log_lines_are_not_markup(live: bool) -> None:
    out = io.StringIO()
    reporter = Reporter(stream=out, verbose=True, live=live)
    line = "error: [/usr] is read-only [bold]not bold[/bold] [/]"
    reporter.detail(line)
    with reporter.stage("k", "stage [x]"):
        reporter.info("[red]plain[/red]")
    text = out.getvalue()
    assert line in text
    assert "[red]plain[/red]" in text
    assert "stage [x]" in text
    assert reporter.timings["k"] >= 0


def test_transfer_reports_every_tenth_in_plain_mode() -> None:
    out = io.StringIO()
    reporter = Reporter(stream=out, live=False)
    with reporter.transfer("upload", 1000) as advance:
        for _ in range(10):
            advance(100)
    lines = [line.split(": ", 1)[1] for line in out.getvalue().splitlines()]
    assert [line.split(" (")[0] for line in lines] == [
        f"{p}% of 1000 bytes" for p in range(10, 101, 10)
    ]
    assert all(f"({p * 100} done" in line for p, line in enumerate(lines, 1))
