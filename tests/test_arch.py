from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.core.arch import Arch
from pipeline.core.errors import PipelineError, UsageError
from pipeline.publishing.stages.build import check_cross_arch


def test_names_in_each_ecosystem() -> None:
    assert [(a.value, a.uname, a.lima, a.platform) for a in Arch] == [
        ("amd64", "x86_64", "x86_64", "linux/amd64"),
        ("arm64", "aarch64", "aarch64", "linux/arm64"),
    ]


def test_parse_list() -> None:
    assert Arch.parse_list("arm64,amd64") == [Arch.ARM64, Arch.AMD64]
    assert Arch.parse_list("aarch64, x86_64,arm64") == [Arch.ARM64, Arch.AMD64]
    with pytest.raises(
        UsageError, match="unknown architecture 'riscv64': expected one of amd64, arm64"
    ):
        Arch.parse_list("amd64,riscv64")
    with pytest.raises(UsageError, match="empty architecture"):
        Arch.parse_list("amd64,")


def test_cross_arch_needs_binfmt(tmp_path: Path) -> None:
    check_cross_arch(Arch.AMD64, Arch.AMD64, tmp_path)  # native: nothing needed
    with pytest.raises(PipelineError, match="needs qemu-user-static") as info:
        check_cross_arch(Arch.ARM64, Arch.AMD64, tmp_path)
    assert info.value.hint and "apt-get install qemu-user-static" in info.value.hint
    (tmp_path / "qemu-aarch64").write_text("disabled\ninterpreter /usr/bin/qemu-aarch64-static\n")
    with pytest.raises(PipelineError):
        check_cross_arch(Arch.ARM64, Arch.AMD64, tmp_path)
    (tmp_path / "qemu-aarch64").write_text("enabled\ninterpreter /usr/bin/qemu-aarch64-static\n")
    check_cross_arch(Arch.ARM64, Arch.AMD64, tmp_path)
