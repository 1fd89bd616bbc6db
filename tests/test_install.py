"""The package as users get it: installed (not editable) into a fresh virtual environment and
run as its console script in their own repository, away from this checkout.

`bootc-pipeline` finds `manifests/` in the current directory or its nearest parent (as git
finds its root), resolves a manifest's `containerfile:` against that repository root, and names
the directories it searched when there is none. The venv is made with `python3 -m venv` and the
package installed with pip from a copy of the sources (its dependencies from the package index,
as for any user).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.factories import ROOT

pytestmark = pytest.mark.integration

INSTALL_TIMEOUT = 600


@dataclass(frozen=True)
class Installed:
    venv: Path

    @property
    def script(self) -> Path:
        return self.venv / "bin" / "bootc-pipeline"

    def run(self, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        env = {"PATH": f"{self.venv / 'bin'}:/usr/bin:/bin", "HOME": str(cwd)}  # no PYTHONPATH
        return subprocess.run(
            [str(self.script), *args], cwd=cwd, env=env, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    python3 = shutil.which("python3")
    assert python3 is not None, "python3 not on PATH"
    base = tmp_path_factory.mktemp("install")
    source = base / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "pipeline", source / "pipeline", ignore=shutil.ignore_patterns("__pycache__")
    )
    venv = base / "venv"
    subprocess.run([python3, "-m", "venv", str(venv)], check=True, timeout=INSTALL_TIMEOUT)
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(source)],
        capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    yield Installed(venv)


@pytest.fixture
def user_repo(tmp_path: Path) -> Path:
    """A user's repository: manifests/ and containerfiles/ at its root, a nested work dir."""
    repo = tmp_path / "my-images"
    (repo / "manifests").mkdir(parents=True)
    (repo / "deep" / "down").mkdir(parents=True)
    shutil.copy(ROOT / "manifests" / "fedora-40.yaml", repo / "manifests" / "fedora-40.yaml")
    shutil.copytree(ROOT / "containerfiles", repo / "containerfiles")
    return repo


def test_the_installed_package_is_not_this_checkout(installed: Installed, tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-c", "import pipeline; print(pipeline.__file__)"],
        cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    location = Path(proc.stdout.strip())
    assert location.is_relative_to(installed.venv), location
    assert not location.is_relative_to(ROOT)


def test_manifests_found_from_a_subdirectory(installed: Installed, user_repo: Path) -> None:
    """From deep/down, `--variant fedora-40` is the repository's manifests/fedora-40.yaml, and
    the command gets as far as the stage (which wants a disk it has not got)."""
    work = user_repo / "work"
    proc = installed.run(
        "compress",
        "--variant",
        "fedora-40",
        "--workdir",
        str(work),
        cwd=user_repo / "deep" / "down",
    )
    assert proc.returncode == 1, proc.stderr
    assert "bootc-pipeline: error: no disk of fedora-40 for amd64" in proc.stderr
    assert "unknown variant" not in proc.stderr and "Traceback" not in proc.stderr


def test_containerfile_is_resolved_from_the_repository_root(
    installed: Installed, user_repo: Path
) -> None:
    (user_repo / "containerfiles" / "fedora.Containerfile").unlink()
    proc = installed.run("build", "--variant", "fedora-40", cwd=user_repo / "deep")
    assert proc.returncode == 2, proc.stderr
    expected = user_repo.resolve() / "containerfiles" / "fedora.Containerfile"
    assert f"containerfile: {expected} does not exist" in proc.stderr


def test_no_manifests_names_the_directories_searched(installed: Installed, tmp_path: Path) -> None:
    nowhere = tmp_path / "not-a-repo" / "sub"
    nowhere.mkdir(parents=True)
    proc = installed.run("publish", "--variant", "fedora-40", cwd=nowhere)
    assert proc.returncode == 2, proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("bootc-pipeline: error:")]
    assert "no manifests/ directory" in line
    for directory in (nowhere.resolve(), nowhere.resolve().parent, Path("/")):
        assert str(directory) in line
    assert "--manifests-dir" in proc.stderr
