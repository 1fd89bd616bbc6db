"""The command line as a user meets it: exit statuses and one-line errors, nothing half done."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import main as cli_module
from tests.factories import ROOT, manifest_data, write_manifest
from tests.support.faultproxy import FaultProxy
from tests.support.registry import RunningRegistry


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(cwd)},
    )  # fmt: skip


def _one_error(proc: subprocess.CompletedProcess[str], code: int) -> str:
    assert proc.returncode == code, proc.stderr
    errors = [
        line for line in proc.stderr.splitlines() if line.startswith("bootc-pipeline: error:")
    ]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return errors[0]


def test_check_shipped_manifests() -> None:
    proc = cli("check", "manifests/fedora-40.yaml", "manifests/centos-stream9.yaml")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count(": ok (") == 2


def test_bad_manifest_exits_2_before_touching_the_engine(tmp_path: Path) -> None:
    path = write_manifest(tmp_path, manifest_data(architectures=["s390x"]))
    proc = cli("publish", "--manifest", str(path), "--engine", "unix:///nonexistent.sock")
    line = _one_error(proc, 2)
    assert str(path) in line and "architectures[0]" in line and "s390x" in line
    assert "engine" not in proc.stderr
    assert not (tmp_path / ".work").exists()


def test_unknown_arch_and_variant(tmp_path: Path) -> None:
    line = _one_error(cli("build", "--arch", "riscv64", cwd=tmp_path), 2)
    assert "unknown architecture 'riscv64'" in line
    # manifests/ of the repository the current directory is in, found from a subdirectory
    line = _one_error(cli("build", "--variant", "nope", cwd=ROOT / "containerfiles"), 2)
    assert "unknown variant 'nope'" in line
    assert "centos-stream9, centos-stream9-nightly, fedora-40" in line
    assert str(ROOT / "manifests") in line
    line = _one_error(cli("build", "--variant", "fedora-40", cwd=tmp_path), 2)
    assert "no manifests/ directory" in line and str(tmp_path) in line


def test_arch_not_in_manifest(tmp_path: Path) -> None:
    path = write_manifest(tmp_path, manifest_data(architectures=["amd64"]))
    line = _one_error(cli("build", "--manifest", str(path), "--arch", "arm64", cwd=tmp_path), 2)
    assert "architecture arm64 is not in" in line


def test_usage_error_is_one_line() -> None:
    line = _one_error(cli("publish", "--no-such-option"), 2)
    assert "unrecognized arguments: --no-such-option" in line


def test_unreachable_engine(tmp_path: Path) -> None:
    proc = cli(
        "build", "--arch", "amd64", "--engine", "unix:///nonexistent/podman.sock",
        "--workdir", str(tmp_path / "w"),
    )  # fmt: skip
    line = _one_error(proc, 1)
    assert "cannot reach the container engine at unix:///nonexistent/podman.sock" in line
    assert "hint:" in proc.stderr


def test_plain_http_refused_for_remote_registry(tmp_path: Path) -> None:
    line = _one_error(
        cli("validate", "registry.example.com/a/b:1", "--plain-http", cwd=tmp_path), 2
    )
    assert "registry.example.com" in line and "plain" in line.lower()


def test_stage_alone_without_predecessor(tmp_path: Path) -> None:
    """`compress` before any `disk` says which stage to run; nothing is written."""
    proc = cli("compress", "--arch", "amd64", "--workdir", str(tmp_path / "w"))
    line = _one_error(proc, 1)
    assert "no disk of fedora-40 for amd64" in line or "no build of fedora-40" in line
    assert "run `bootc-pipeline" in proc.stderr


@pytest.mark.parametrize("venv", [True, False], ids=["with-venv", "without-venv"])
def test_make_passes_the_users_variables_to_the_venvs_python(venv: bool, tmp_path: Path) -> None:
    """The Makefile runs .venv/bin/python (scripts/setup-debian.sh makes it), else python3."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    if venv:
        (tmp_path / ".venv" / "bin").mkdir(parents=True)
        (tmp_path / ".venv" / "bin" / "python").write_text("#!/bin/sh\n")
        (tmp_path / ".venv" / "bin" / "python").chmod(0o755)
    python = ".venv/bin/python" if venv else "python3"

    def make(*args: str) -> list[str]:
        return subprocess.run(
            ["make", "--no-print-directory", "-n", *args],
            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True,
        ).stdout.split()  # fmt: skip

    assert make(
        "publish", "ARCH=arm64,amd64", "VARIANT=centos-stream9", "REGISTRY=127.0.0.1:5000",
        "FLAGS=--plain-http",
    ) == [
        python, "-m", "pipeline", "publish", "--variant", "centos-stream9",
        "--arch", "arm64,amd64", "--registry", "127.0.0.1:5000", "--plain-http",
    ]  # fmt: skip
    assert make("test") == [python, "-m", "pytest"]


def test_stages_that_do_not_publish_need_no_git(tmp_path: Path) -> None:
    """Outside a git checkout, `build` reaches the engine; only publishing needs a revision."""
    path = write_manifest(tmp_path, manifest_data())
    common = ["--manifest", str(path), "--engine", "unix:///nonexistent.sock", "--arch", "amd64"]
    line = _one_error(cli("build", *common, cwd=tmp_path), 1)
    assert "cannot reach the container engine" in line
    line = _one_error(cli("push", *common, cwd=tmp_path), 2)
    assert "not a git checkout" in line


@pytest.mark.integration
def test_interrupt_exits_130_and_says_how_to_resume(registry: RunningRegistry) -> None:
    """SIGINT (Ctrl-C) while a request hangs: exit 130, one line, no traceback."""
    with FaultProxy(registry.host) as proxy:
        rule = proxy.add("stall", method="GET", path="/manifests/", delay=20.0, seconds=60.0)
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "validate", f"{proxy.host}/some/repo:tag",
             "--plain-http"],
            cwd=ROOT, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(ROOT)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert rule.fired.wait(60), "the request never reached the proxy"
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=60)
        finally:
            process.kill()
    assert process.returncode == 130, stderr
    assert "bootc-pipeline: interrupted; re-run to resume" in stderr
    assert "Traceback" not in stderr


def test_unexpected_exception_is_one_internal_error_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A bug (not a PipelineError): exit 1, `internal error: Type: first line`, a hint to use
    --debug, no traceback; with --debug the traceback is there."""

    def broken(*_: object) -> int:
        raise RuntimeError("the first line\nand a second one")

    monkeypatch.setattr(cli_module, "_check", broken)
    assert cli_module.main(["check", str(tmp_path / "m.yaml")]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "bootc-pipeline: internal error: RuntimeError: the first line",
        "bootc-pipeline: hint: re-run with --debug for the traceback",
    ]
    with pytest.raises(RuntimeError, match="the first line"):
        cli_module.main(["check", str(tmp_path / "m.yaml"), "--debug"])
