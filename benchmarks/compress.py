#!/usr/bin/env python3
"""Compression benchmark on a real OS disk: the pipeline's zstd against the zstd CLI.

    python3 benchmarks/compress.py [DISK.qcow2] [--levels 3,6,10,14,19]

Without DISK it builds one (cached in /var/tmp/bootc-pipeline-bench): a Debian bookworm
system with systemd, openssh-server, sshfs, sudo and a kernel, made by debootstrap, as an ext4
filesystem in a qcow2, the same shape as a bootc disk. For each level it reports seconds and
ratio for the pipeline (python-zstandard, all cores, hashing both sides) and for `zstd -T0` run
in the same script on the same file, and the pipeline/CLI time ratio.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.core import zstdfile  # noqa: E402

CACHE = Path("/var/tmp/bootc-pipeline-bench")


def make_debian_disk() -> Path:
    disk = CACHE / "debian-bookworm.qcow2"
    if disk.exists():
        return disk
    CACHE.mkdir(parents=True, exist_ok=True)
    rootfs = CACHE / "rootfs"
    if not (rootfs / "etc" / "os-release").exists():
        include = "systemd,systemd-sysv,openssh-server,sshfs,sudo,linux-image-amd64"
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={include}",
                "bookworm",
                str(rootfs),  # debootstrap's own default mirror
            ],
            check=True,
        )
    used = int(
        subprocess.run(
            ["du", "-sb", str(rootfs)], capture_output=True, text=True, check=True
        ).stdout.split()[0]
    )
    raw = CACHE / "disk.raw"
    size_mib = used * 13 // 10 // (1 << 20) + 256
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-d", str(rootfs), "-L", "root", str(raw), f"{size_mib}M"],
        check=True,
    )
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(disk)], check=True
    )
    raw.unlink()
    return disk


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("disk", nargs="?", type=Path)
    parser.add_argument("--levels", default="3,6,10,14,19")
    args = parser.parse_args()
    disk = args.disk or make_debian_disk()
    size = disk.stat().st_size
    print(f"disk: {disk} ({size / 2**20:.0f} MiB), {os.cpu_count()} cores")
    print(
        f"{'level':>5} {'pipeline s':>10} {'cli s':>8} {'time ratio':>10} "
        f"{'pipeline ratio':>14} {'cli ratio':>9}"
    )
    with tempfile.TemporaryDirectory(dir=CACHE if CACHE.exists() else None) as tmp:
        out = Path(tmp) / "out.zst"
        for level in (int(x) for x in args.levels.split(",")):
            start = time.perf_counter()
            result = zstdfile.compress(disk, out, level=level)
            ours = time.perf_counter() - start
            start = time.perf_counter()
            subprocess.run(
                ["zstd", "-q", "-f", f"-{level}", "-T0", str(disk), "-o", str(out)], check=True
            )
            cli = time.perf_counter() - start
            cli_size = out.stat().st_size
            print(
                f"{level:>5} {ours:>10.2f} {cli:>8.2f} {ours / cli:>10.2f} "
                f"{result.compressed.size / size:>14.3f} {cli_size / size:>9.3f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
