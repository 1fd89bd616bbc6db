"""The boot gate nothing can bypass, judged on real parts: the real CLI over a work directory, a
real QEMU boot (amd64, OVMF, TCG) and a real registry.

The disk is one the firmware cannot boot: a GPT disk whose EFI System Partition is empty (no boot
loader, as a builder that wrote none leaves it). The boot check must fail from the firmware's own
console lines (not at the end of its 900 s budget) and the guest must stay off network boot; then
`push` must refuse to send that disk, `push` over a disk with no boot record at all too, a skip is
sent only as a recorded skip, and the join refuses a result whose boot failed.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline.boot.firmware import NOTHING_TO_BOOT, nothing_to_boot
from pipeline.core import zstdfile
from pipeline.core.arch import Arch
from pipeline.model import release
from pipeline.shared.state import arch_dir
from tests.factories import ROOT
from tests.support.published import Access, curl, tags
from tests.support.registry import RunningRegistry
from tests.support.workdirs import (
    DiskCache,
    Workdir,
    cli_env,
    error_lines,
    make_workdir,
    manifest_path,
    push_argv,
    run_push,
)

pytestmark = pytest.mark.integration
AMD64 = Arch.AMD64
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
ESP_START, ESP_SECTORS = 2048, 61440  # a 30 MiB FAT32 ESP in a 64 MiB disk


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, timeout=120, check=False)
    if proc.returncode != 0:
        pytest.fail(
            f"{argv[0]}: {proc.stderr.decode()[-500:]} (scripts/setup-debian.sh installs it)"
        )


def no_loader_disk(directory: Path, level: int) -> zstdfile.Compressed:
    """A GPT disk with one empty FAT32 ESP: nothing for the firmware to load."""
    raw, esp = directory / "no-loader.raw", directory / "esp.img"
    raw.write_bytes(b"")
    _run(["truncate", "-s", "64M", str(raw)])
    table = f"label: gpt\nstart={ESP_START}, size={ESP_SECTORS}, type={ESP_TYPE}\n"
    proc = subprocess.run(["sfdisk", "-q", str(raw)], input=table.encode(), capture_output=True)
    assert proc.returncode == 0, proc.stderr
    _run(["truncate", "-s", str(ESP_SECTORS * 512), str(esp)])
    _run(["mkfs.vfat", "-F", "32", str(esp)])
    _run(["dd", f"if={esp}", f"of={raw}", "bs=512", f"seek={ESP_START}", "conv=notrunc"])
    qcow2 = directory / "no-loader.qcow2"
    _run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)])
    return zstdfile.compress(qcow2, directory / "no-loader.qcow2.zst", level=level)


@dataclass(frozen=True)
class Failed:
    workdir: Workdir
    boot: subprocess.CompletedProcess[str]
    env: dict[str, str]
    record: dict[str, Any]  # the boot stamp the failed boot left


def _boot_record(workdir: Workdir) -> dict[str, Any]:
    stamp = json.loads(
        arch_dir(workdir.root, workdir.variant, AMD64).stamp_path("boot").read_text()
    )
    outputs: dict[str, Any] = stamp["outputs"]
    return outputs


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def failed(tmp_path_factory: pytest.TempPathFactory) -> Failed:
    tmp = tmp_path_factory.mktemp("gate")
    (tmp / "disks").mkdir()
    level = release.load(manifest_path("fedora-40")).zstd_level
    disk = no_loader_disk(tmp / "disks", level)
    workdir = make_workdir(
        tmp / "work", DiskCache(tmp / "disks"), archs=(AMD64,), sources={AMD64: disk}
    )
    env = cli_env(tmp / "home", chunk_size=1 << 20)
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
    boot = _cli(
        "boot", "--variant", "fedora-40", "--arch", "amd64", "--workdir", str(workdir.root),
        env=env,
    )  # fmt: skip
    return Failed(workdir, boot, env, _boot_record(workdir))


def test_a_disk_the_firmware_cannot_boot_fails_from_the_firmware_lines(failed: Failed) -> None:
    assert failed.boot.returncode == 1, failed.boot.stderr[-3000:]
    [line] = error_lines(failed.boot.stderr)
    assert NOTHING_TO_BOOT in line, line
    # the cause is the firmware's own line, quoted, not the ssh budget running out
    assert 'OVMF: Boot0001 "UEFI Misc Device"' in line and "Not Found" in line, line
    assert "no ssh login within" not in failed.boot.stderr
    record = failed.record
    assert record["ok"] is False and record["booted"] is False
    assert NOTHING_TO_BOOT in record["error"]
    console = Path(record["consoleLog"]).read_text(errors="replace")
    assert nothing_to_boot(console, "OVMF") is not None
    # kept off network boot: the disk is the only boot option, the NIC has no option ROM
    assert "PXE" not in console and "HTTP Boot" not in console, console[-2000:]


def test_push_refuses_a_disk_whose_boot_failed(failed: Failed, registry: RunningRegistry) -> None:
    repo = "gate-failed/fedora-bootc-lima"
    manifest = _manifest_for(failed.workdir.root.parent, repo)
    argv = push_argv(failed.workdir, registry.host, "--arch", "amd64", "--force",
                     manifest=manifest, skip_boot=False)  # fmt: skip
    proc = run_push(argv, failed.env)
    assert proc.returncode == 1, proc.stderr[-3000:]
    [line] = error_lines(proc.stderr)
    assert "failed its boot check" in line and NOTHING_TO_BOOT in line, line
    _assert_nothing_sent(registry, repo, failed.workdir)


def test_push_refuses_a_disk_that_never_booted(registry: RunningRegistry, tmp_path: Path) -> None:
    (tmp_path / "disks").mkdir()
    workdir = make_workdir(tmp_path / "work", DiskCache(tmp_path / "disks"))
    repo = "gate-unbooted/fedora-bootc-lima"
    manifest = _manifest_for(tmp_path, repo)
    env = cli_env(tmp_path / "home", chunk_size=1 << 20)
    proc = run_push(push_argv(workdir, registry.host, manifest=manifest, skip_boot=False), env)
    assert proc.returncode == 1, proc.stderr[-3000:]
    [line] = error_lines(proc.stderr)
    assert "has no boot check on record" in line, line
    _assert_nothing_sent(registry, repo, workdir)


def test_a_skip_is_sent_only_as_a_recorded_skip_and_the_join_refuses_a_failed_boot(
    failed: Failed, registry: RunningRegistry, tmp_path: Path
) -> None:
    repo = "gate-skip/fedora-bootc-lima"
    manifest = _manifest_for(tmp_path, repo)
    workdir = dataclasses.replace(failed.workdir, root=tmp_path / "work")
    shutil.copytree(failed.workdir.root, workdir.root)  # the failed record stays as it was
    argv = push_argv(workdir, registry.host, "--arch", "amd64", manifest=manifest)
    proc = run_push(argv, failed.env)  # --skip-boot: the skip becomes the disk's record
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _boot_record(workdir) == {"skipped": True, "reason": "--skip-boot"}
    result_path = workdir.variant_dir / "result-amd64.json"
    result = json.loads(result_path.read_text())
    assert result["boot"] == {"skipped": True, "reason": "--skip-boot"}
    # a result file that carries the failed boot (as one from another machine could)
    result["boot"] = failed.record
    forged = tmp_path / "result-amd64.json"
    forged.write_text(json.dumps(result))
    join = tmp_path / "join"
    proc = _cli(
        "index", str(forged), "--manifest", str(manifest), "--workdir", str(join),
        "--registry", registry.host, "--plain-http", env=failed.env,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    [line] = error_lines(proc.stderr)
    assert "failed its boot check" in line and str(forged) in line, line
    assert not (join / "fedora-40" / "release-report.json").exists()


def _manifest_for(directory: Path, repo: str) -> Path:
    """fedora-40's manifest in a repository of its own (the registry is the session's)."""
    manifest = directory / "manifests" / "fedora-40.yaml"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    text = (ROOT / "manifests" / "fedora-40.yaml").read_text()
    manifest.write_text(text.replace("bootc-lima/fedora-bootc-lima", repo))
    if not (directory / "containerfiles").exists():
        (directory / "containerfiles").symlink_to(ROOT / "containerfiles")
    return manifest


def _assert_nothing_sent(registry: RunningRegistry, repo: str, workdir: Workdir) -> None:
    access = Access(registry.host)
    assert tags(access, repo) == []
    for disk in workdir.disks.values():
        status = curl(access, f"/v2/{repo}/blobs/{disk.compressed.digest}", head=True)
        assert status == 404, f"the layer {disk.compressed.digest} was sent ({status})"
