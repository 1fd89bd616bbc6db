"""The bib stand-in's disk layout, judged by sfdisk, mtools and debugfs (no container, no boot):
bib's qcow2 partition table (osbuild/images bootc partition tables) with a UEFI boot loader."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.standins.bib import bootc_image_builder as bib
from tests.support import judges


def _tree(root: Path, short: str) -> None:
    (root / "usr/lib/systemd/boot/efi").mkdir(parents=True)
    (root / f"usr/lib/systemd/boot/efi/systemd-boot{short}.efi").write_bytes(b"MZ fake loader")
    (root / "boot").mkdir()
    (root / "boot/vmlinuz-6.1.0-test").write_bytes(b"kernel")
    (root / "boot/initrd.img-6.1.0-test").write_bytes(b"initrd")
    (root / "etc").mkdir()
    (root / "etc/os-release").write_text("ID=fedora\n")


def _mtype(esp: Path, path: str) -> str:
    proc = subprocess.run(
        ["mtype", "-i", str(esp), f"::{path}"], capture_output=True, timeout=60, check=True
    )
    return proc.stdout.decode()


@pytest.mark.parametrize(
    ("arch", "short", "names"),
    [
        ("x86_64", "x64", ["bios", "esp", "boot", "root"]),
        ("aarch64", "aa64", ["esp", "boot", "root"]),
    ],
)
def test_disk_is_gpt_with_esp_boot_and_root_last(
    tmp_path: Path, arch: str, short: str, names: list[str]
) -> None:
    root = tmp_path / "rootfs"
    _tree(root, short)
    raw = tmp_path / "disk.raw"
    fs = bib.root_image(raw)
    with fs.open("wb") as f:
        f.truncate(64 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-L", "root", "-d", str(root), str(fs)], check=True)
    notes = bib.write_partitioned_disk(
        root, fs, raw, arch, "root=LABEL=root rw", bib.Progress("auto")
    )
    assert any("systemd-boot" in n for n in notes), notes

    table = json.loads(subprocess.run(["sfdisk", "--json", str(raw)], capture_output=True,
                                      check=True).stdout)["partitiontable"]  # fmt: skip
    assert table["label"] == "gpt"
    parts = table["partitions"]
    assert [p["name"] for p in parts] == names
    types = {p["name"]: p["type"].upper() for p in parts}
    assert types["esp"] == bib.GPT_TYPES["esp"]
    assert types["root"] == bib.GPT_TYPES[f"root-{arch}"]
    esp = next(p for p in parts if p["name"] == "esp")
    assert esp["size"] * 512 == bib.ESP_MIB << 20

    esp_image = f"{raw}@@{esp['start'] * 512}"
    efi = "BOOTX64.EFI" if arch == "x86_64" else "BOOTAA64.EFI"
    assert _mtype(Path(esp_image), f"EFI/BOOT/{efi}") == "MZ fake loader"
    entry = _mtype(Path(esp_image), "loader/entries/bootc.conf")
    assert "linux /vmlinuz-6.1.0-test" in entry and "initrd /initrd.img-6.1.0-test" in entry
    assert "options root=LABEL=root rw" in entry
    assert judges.debugfs(raw, "cat /etc/os-release") == b"ID=fedora\n"


def test_an_image_without_a_kernel_gets_the_layout_without_a_loader(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    raw = tmp_path / "disk.raw"
    fs = bib.root_image(raw)
    with fs.open("wb") as f:
        f.truncate(16 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-L", "root", "-d", str(root), str(fs)], check=True)
    bib.write_partitioned_disk(root, fs, raw, "x86_64", "root=LABEL=root", bib.Progress("auto"))
    assert "written without a boot loader" in capsys.readouterr().err
    assert [p["name"] for p in json.loads(subprocess.run(
        ["sfdisk", "--json", str(raw)], capture_output=True, check=True
    ).stdout)["partitiontable"]["partitions"]] == ["bios", "esp", "boot", "root"]  # fmt: skip


def test_the_image_builder_stand_in_writes_its_disk_with_this_same_code() -> None:
    """Both stand-ins' disks come from one writer, so the layout checks above judge both (and
    tests/test_image_builder_standin.py compares the two disks of one image)."""
    from tests.standins.image_builder import image_builder

    assert image_builder.DISK_WRITER is bib
