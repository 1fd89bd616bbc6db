"""Clients this project did not write, used to judge what it published."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

TIMEOUT = 300


def _run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(argv, capture_output=True, timeout=TIMEOUT, check=False, **kw)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode()[-2000:]}"
        )
    return proc


def skopeo_raw(host: str, name: str) -> bytes:
    """`skopeo inspect --raw`: the manifest bytes exactly as the registry serves them."""
    return _run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{host}/{name}"]
    ).stdout


def curl_get(url: str, dest: Path) -> Path:
    _run(["curl", "-fsSL", "--max-time", "120", "-o", str(dest), url])
    return dest


def sha256sum(path: Path) -> str:
    return "sha256:" + _run(["sha256sum", str(path)]).stdout.split()[0].decode()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def zstd_test_and_decompress(src: Path, dest: Path) -> Path:
    _run(["zstd", "-q", "-t", str(src)])
    _run(["zstd", "-q", "-d", "-f", str(src), "-o", str(dest)])
    return dest


def qemu_img_check(path: Path) -> dict[str, Any]:
    """`qemu-img check` must pass; returns `qemu-img info` as JSON."""
    _run(["qemu-img", "check", "-f", "qcow2", str(path)])
    info: dict[str, Any] = json.loads(_run(["qemu-img", "info", "--output=json", str(path)]).stdout)
    return info


def qcow2_to_raw(path: Path, dest: Path) -> Path:
    _run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(path), str(dest)])
    return dest


def root_partition(raw: Path) -> str:
    """The root filesystem of a partitioned raw disk (the last GPT partition, as bib lays it out),
    named the way e2fsprogs opens a filesystem at an offset: `DISK?offset=BYTES`."""
    table = json.loads(_run(["sfdisk", "--json", str(raw)]).stdout)["partitiontable"]
    sector = int(table.get("sectorsize", 512))
    return f"{raw}?offset={int(table['partitions'][-1]['start']) * sector}"


def debugfs(raw: Path, request: str) -> bytes:
    """Read from the root filesystem inside a raw disk with e2fsprogs' debugfs (read-only)."""
    proc = _run(["debugfs", "-R", request, root_partition(raw)])
    return proc.stdout


def elf_machine(data: bytes) -> int:
    """ELF e_machine: 62 is x86-64, 183 is AArch64."""
    assert data[:4] == b"\x7fELF", data[:16]
    return int.from_bytes(data[18:20], "little")
