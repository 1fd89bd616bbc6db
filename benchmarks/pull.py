#!/usr/bin/env python3
"""Pull benchmark on a real OS disk: `bootc-pipeline pull` against curl + zstd -d + sha256sum.

    python3 benchmarks/pull.py [DISK.qcow2] [--rounds 3] [--level 10]

The disk is the compress benchmark's (benchmarks/compress.py: a Debian system made by
debootstrap, as a qcow2), compressed at the release level and published (blob + manifest with
the uncompressed annotations) to a local docker-registry on 127.0.0.1. Each round runs, one
after the other and alternating which goes first:

- pull: `python3 -m pipeline pull REF --plain-http -o DIR/ --quiet` (download, sha256 of the
  .zst, decompress, sha256 of the qcow2, all checked, one pass);
- baseline: `curl -o disk.qcow2.zst BLOB_URL`, then `zstd -d`, then `sha256sum` of both files,
  run one after another (what a user would type).

It prints seconds (median of the rounds), the pull/baseline ratio, and the peak resident memory
of each (GNU time's %M), plus the load average, since the machine is shared.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.compress import CACHE, make_debian_disk  # noqa: E402
from pipeline import mediatypes as mt  # noqa: E402
from pipeline import zstdfile  # noqa: E402
from pipeline.registry.client import RegistryClient  # noqa: E402
from tests.support.registry import start_registry  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
REPO = "bench/debian-disk"
TAG = "bench"


def run(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Seconds and peak RSS (bytes) of one command; fails loudly on a non-zero exit.

    Peak memory comes from GNU time (`%M`): wait4 from this process would count the Python
    parent's pages the child had before exec.
    """
    with tempfile.NamedTemporaryFile("r") as report:
        start = time.perf_counter()
        subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", report.name, *argv],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, check=True,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        return seconds, int(report.read().split()[-1]) * 1024


def publish(host: str, zst: Path, result: zstdfile.Compressed) -> str:
    with RegistryClient(host, plain_http=True) as client:
        client.push_blob(REPO, mt.EMPTY_JSON, mt.EMPTY_DIGEST, len(mt.EMPTY_JSON))
        client.push_blob(REPO, zst, result.compressed.digest, result.compressed.size)
        manifest = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": mt.ARTIFACT_TYPE,
            "config": {"mediaType": mt.OCI_EMPTY, "digest": mt.EMPTY_DIGEST, "size": 2,
                       "data": mt.EMPTY_DATA_B64},
            "layers": [{
                "mediaType": "application/x-qemu-qcow2+zstd",
                "digest": result.compressed.digest,
                "size": result.compressed.size,
                "annotations": {
                    mt.ANN_TITLE: "debian.qcow2.zst",
                    mt.ANN_UNCOMPRESSED_DIGEST: result.uncompressed.digest,
                    mt.ANN_UNCOMPRESSED_SIZE: str(result.uncompressed.size),
                },
            }],
        }  # fmt: skip
        client.push_manifest(REPO, TAG, json.dumps(manifest).encode(), mt.OCI_MANIFEST)
    return result.compressed.digest


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("disk", nargs="?", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--level", type=int, default=10)
    args = parser.parse_args()
    disk = args.disk or make_debian_disk()
    CACHE.mkdir(parents=True, exist_ok=True)
    zst = CACHE / f"{disk.name}.{args.level}.zst"
    result = zstdfile.compress(disk, zst, level=args.level)
    print(
        f"disk: {disk} ({result.uncompressed.size / 2**20:.0f} MiB, .zst "
        f"{result.compressed.size / 2**20:.0f} MiB at level {args.level}), "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        work = Path(tmp)
        registry = start_registry(work / "registry")
        try:
            digest = publish(registry.host, zst, result)
            pull_dir, base_dir = work / "pull", work / "curl"
            ours: list[float] = []
            base: list[float] = []
            ours_rss = base_rss = 0
            for round_ in range(args.rounds):
                for which in ("pull", "base") if round_ % 2 == 0 else ("base", "pull"):
                    for directory in (pull_dir, base_dir):
                        subprocess.run(["rm", "-rf", str(directory)], check=True)
                        directory.mkdir()
                    if which == "pull":
                        seconds, rss = run(
                            [sys.executable, "-m", "pipeline", "pull",
                             f"{registry.host}/{REPO}:{TAG}", "--plain-http",
                             "-o", f"{pull_dir}/", "--quiet"],
                            env,
                        )  # fmt: skip
                        ours.append(seconds)
                        ours_rss = max(ours_rss, rss)
                        got = hashlib.sha256((pull_dir / "debian.qcow2").read_bytes()).hexdigest()
                        assert "sha256:" + got == result.uncompressed.digest
                        continue
                    total, peak = 0.0, 0
                    url = f"http://{registry.host}/v2/{REPO}/blobs/{digest}"
                    for argv in (
                        ["curl", "-sSfL", "-o", str(base_dir / "d.qcow2.zst"), url],
                        ["zstd", "-d", "-q", str(base_dir / "d.qcow2.zst")],
                        ["sha256sum", str(base_dir / "d.qcow2.zst"), str(base_dir / "d.qcow2")],
                    ):
                        seconds, rss = run(argv)
                        total += seconds
                        peak = max(peak, rss)
                    base.append(total)
                    base_rss = max(base_rss, peak)
                print(f"round {round_ + 1}: pull {ours[-1]:.2f} s, baseline {base[-1]:.2f} s, "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
        finally:
            registry.stop()
    o, b = statistics.median(ours), statistics.median(base)
    print()
    print("| | seconds (median) | pull/baseline | peak RSS MiB |")
    print("| --- | --- | --- | --- |")
    print(f"| `bootc-pipeline pull` | {o:.2f} | **{o / b:.2f}** | {ours_rss / 2**20:.0f} |")
    print(f"| curl + `zstd -d` + `sha256sum` both | {b:.2f} | 1.00 | {base_rss / 2**20:.0f} |")
    print(
        f"\nall rounds: pull {[round(x, 2) for x in ours]}, baseline {[round(x, 2) for x in base]}"
    )
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
