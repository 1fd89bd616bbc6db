"""The project names no package registry's or mirror's host (issue 14: debootstrap's command
lines named the Debian mirror; debootstrap's own default needs none, and apt, pip and go use the
machine's own configuration). Every tracked text file is read for a URL whose host is of a
package archive, index, proxy or mirror kind."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# a URL (or a bare host after a scheme) whose host names a package archive or index kind
PACKAGE_HOST = re.compile(
    r"\b[a-z][a-z0-9+.-]*://(?:[a-z0-9-]+\.)*"
    r"[a-z0-9-]*(?:debian|ubuntu|mirror|pypi|pythonhosted|golang|npmjs|maven|crates)"
    r"[a-z0-9-]*(?:\.[a-z0-9-]+)*",
    re.IGNORECASE,
)


def offenders(paths: list[Path], root: Path = ROOT) -> list[str]:
    found = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # not text (or gone from the work tree)
        for n, line in enumerate(text.splitlines(), 1):
            found += [
                f"{path.relative_to(root)}:{n}: {m.group(0)}" for m in PACKAGE_HOST.finditer(line)
            ]
    return found


def test_no_tracked_file_names_a_package_mirror_host() -> None:
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True
    ).stdout.decode()
    paths = [ROOT / name for name in listed.split("\0") if name]
    assert len(paths) > 100  # the whole tree was read
    assert offenders([p for p in paths if p != Path(__file__).resolve()]) == []


def test_the_check_finds_a_mirror_on_a_debootstrap_line(tmp_path: Path) -> None:
    """The defect as it was: a mirror's URL on debootstrap's command line."""
    text = (ROOT / "tests" / "support" / "images.py").read_text()
    line = 'argv = ["debootstrap", "bookworm", "/t", "http://deb.example-mirror.org/debian"]'
    planted = tmp_path / "images.py"
    planted.write_text(text + line + "\n")
    assert offenders([planted], tmp_path) == [
        f"images.py:{len(text.splitlines()) + 1}: http://deb.example-mirror.org"
    ]
