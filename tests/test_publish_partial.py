"""`--arch` with fewer architectures than the release: the index is pushed by digest, and no tag
moves unless --force (a one-arch index under `latest` would break the other arch's users)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.factories import ROOT
from tests.support.published import Access, judge_index, snapshot, tags
from tests.support.registry import RunningRegistry
from tests.support.workdirs import DiskCache, cli_env, make_workdir, push_argv, run_push

pytestmark = pytest.mark.integration
REPO = "bootc-lima/fedora-bootc-lima"


def test_partial_release_takes_no_tag_unless_forced(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    (tmp_path / "disks").mkdir()
    workdir = make_workdir(tmp_path / "work", DiskCache(tmp_path / "disks"))
    access = Access(registry.host)
    env = cli_env(tmp_path / "home", chunk_size=1 << 20)
    # A repository of its own (the registry is shared by the session), in a manifest copy.
    repo = "partial/fedora-bootc-lima"
    manifest = tmp_path / "manifests" / "fedora-40.yaml"
    manifest.parent.mkdir()
    manifest.write_text((ROOT / "manifests" / "fedora-40.yaml").read_text().replace(REPO, repo))
    (tmp_path / "containerfiles").symlink_to(ROOT / "containerfiles")

    proc = run_push(push_argv(workdir, registry.host, "--arch", "arm64", manifest=manifest), env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "partial release (arm64 of amd64, arm64)" in proc.stderr
    report = json.loads(workdir.report_path.read_text())
    assert report["index"]["tags"] == []
    assert tags(access, repo) == []
    partial = judge_index(access, repo, report["index"]["digest"])
    assert list(partial.manifests) == ["linux/arm64"]

    forced = push_argv(workdir, registry.host, "--arch", "arm64", "--force", manifest=manifest)
    proc = run_push(forced, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {state.index for state in snapshot(access, repo).values()} == {partial.index}
