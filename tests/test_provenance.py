from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipeline.core.errors import PipelineError, UsageError
from pipeline.model import provenance


def _repo(path: Path) -> str:
    env = {"GIT_AUTHOR_DATE": "2024-01-31T12:57:14Z", "GIT_COMMITTER_DATE": "2024-01-31T12:57:14Z"}
    for cmd in (
        ["git", "init", "-q"],
        [
            "git",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ],
    ):
        subprocess.run(cmd, cwd=path, check=True, env={**env, "PATH": "/usr/bin:/bin"})
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_from_git_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    head = _repo(tmp_path)
    p = provenance.resolve(tmp_path, revision=None, created=None)
    assert (p.revision, p.created) == (head, "2024-01-31T12:57:14Z")
    assert provenance.resolve(tmp_path, revision=None, created=None) == p  # stable on re-run


def test_source_date_epoch_and_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    p = provenance.resolve(tmp_path, revision="abc", created=None)
    assert (p.revision, p.created) == ("abc", "1970-01-01T00:00:00Z")
    p = provenance.resolve(tmp_path, revision="abc", created="2025-02-03T04:05:06+01:00")
    assert p.created == "2025-02-03T04:05:06+01:00"
    with pytest.raises(UsageError, match="not an RFC 3339 time"):
        provenance.resolve(tmp_path, revision="abc", created="yesterday")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "soon")
    with pytest.raises(UsageError, match="SOURCE_DATE_EPOCH"):
        provenance.resolve(tmp_path, revision="abc", created=None)


def test_no_git_needs_revision(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a git checkout") as info:
        provenance.resolve(tmp_path, revision=None, created=None)
    assert info.value.hint and "--revision" in info.value.hint


def test_missing_git_binary_is_not_called_a_missing_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkout with no git on PATH: the error names git, not the checkout (exit 1)."""
    _repo(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools-here"))
    with pytest.raises(PipelineError) as caught:
        provenance.resolve(tmp_path, revision=None, created=None)
    assert not isinstance(caught.value, UsageError)
    assert "git is not installed" in caught.value.message
    assert "not a git checkout" not in caught.value.message
    assert provenance.uncommitted_changes(tmp_path) is False  # only a warning needs it
