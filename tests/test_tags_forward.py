"""Moving tags move forwards only: re-running an older commit after a newer one is refused (exit 2,
no tag moved) unless --force. The real CLI over synthetic work directories, a real registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.factories import ROOT
from tests.support.published import Access, snapshot
from tests.support.registry import RunningRegistry
from tests.support.workdirs import (
    DiskCache,
    cli_env,
    error_lines,
    make_workdir,
    push_argv,
    run_push,
)

pytestmark = pytest.mark.integration
REPO = "forward/fedora-bootc-lima"
NEWER, OLDER = ("40.2.0", "2026-02-01T00:00:00Z"), ("40.1.0", "2026-01-01T00:00:00Z")


def _manifest(directory: Path, version: str) -> Path:
    text = (ROOT / "manifests" / "fedora-40.yaml").read_text()
    text = text.replace("bootc-lima/fedora-bootc-lima", REPO).replace("40.1.0", version)
    path = directory / "manifests" / "fedora-40.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    (directory / "containerfiles").symlink_to(ROOT / "containerfiles")
    return path


def test_an_older_commit_does_not_move_the_moving_tags_back(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    cache = DiskCache(tmp_path / "disks")
    cache.directory.mkdir()
    env = cli_env(tmp_path / "home", chunk_size=1 << 20)
    access = Access(registry.host)

    def push(version: str, created: str, *extra: str) -> tuple[int, str]:
        name = f"{version}-{len(extra)}"
        work = make_workdir(
            tmp_path / f"work-{name}", cache, layer_name=f"fedora-bootc-lima-{version}"
        )
        manifest = _manifest(tmp_path / f"release-{name}", version)
        argv = push_argv(work, registry.host, *extra, manifest=manifest, created=created)
        proc = run_push(argv, env)
        return proc.returncode, proc.stderr

    status, err = push(*NEWER)
    assert status == 0, err[-3000:]
    newer = snapshot(access, REPO)
    assert set(newer) == {"40", "latest", NEWER[0]}

    status, err = push(*OLDER)
    assert status == 2, err[-3000:]
    [line] = error_lines(err)
    assert "moving tags do not move backwards" in line and f"release {NEWER[0]}" in line, line
    assert snapshot(access, REPO) == newer  # nothing moved, no release tag for the older one

    status, err = push(*OLDER, "--force")
    assert status == 0, err[-3000:]
    forced = snapshot(access, REPO)
    assert forced["latest"].index == forced["40"].index == forced[OLDER[0]].index
    assert forced["latest"].index != newer["latest"].index
