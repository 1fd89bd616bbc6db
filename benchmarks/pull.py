#!/usr/bin/env python3
"""Pull benchmark on a real OS disk: `bootc-pipeline pull` against curl + zstd -d (+ sync).

    python3 benchmarks/pull.py [DISK.qcow2] [--rounds 3] [--level 10] [--resets 3]

The disk is the compress benchmark's (benchmarks/compress.py: a Debian system made by
debootstrap, as a qcow2, cached in /var/tmp/bootc-pipeline-bench), compressed at the release
level and published (blob + manifest with the uncompressed annotations) to a local
docker-registry on 127.0.0.1. Each round runs these, one after the other, in an order that
rotates from round to round (so none always goes first on a cold or a warm page cache):

- `curl URL | zstd -d -o F`: nothing verified, not durable (zstd writes F sparse);
- `curl URL | zstd -d -o F && sync F`: durable, nothing verified: the baseline of the ratios;
- `bootc-pipeline pull REF -o DIR/ --quiet`: both digests verified, durable, resumable;
- `curl -o F.zst URL`, then `zstd -d`, then `sha256sum` of both: verified, not durable;
- `bootc-pipeline pull` through the loopback fault proxy (tests/support/faultproxy.py), which
  cuts the answer with a TCP reset `--resets` times (at 30 % of what each GET has left), so
  the pull resumes with Range requests.

It prints, as the README's table, each command's median seconds, its ratio to `curl | zstd -d
-o F && sync F`, its median CPU seconds (user + system, children included: GNU time), and the
peak resident memory (GNU time's %M, the largest of the rounds); then every round's seconds,
the cores and the load average, since the machine may be shared: on a loaded machine the CPU
column is what compares commands, on an idle one the seconds. `--compare TREE` adds the two
pull rows run with another checkout's code (e.g. main's) in the same rounds, for an A/B. Every
pull's output is checked against the disk's sha256.
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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.compress import CACHE, make_debian_disk  # noqa: E402
from pipeline.core import mediatypes as mt  # noqa: E402
from pipeline.core import zstdfile  # noqa: E402
from pipeline.core.digest import Blob  # noqa: E402
from pipeline.registry.client import RegistryClient  # noqa: E402
from tests.support.faultproxy import FaultProxy  # noqa: E402
from tests.support.registry import start_registry  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
REPO = "bench/debian-disk"
TAG = "bench"


@dataclass(frozen=True)
class Took:
    seconds: float
    cpu: float  # user + system seconds, of the command and its children
    rss: int  # peak resident bytes

    def __add__(self, other: Took) -> Took:  # commands run one after the other
        return Took(self.seconds + other.seconds, self.cpu + other.cpu, max(self.rss, other.rss))


def run(argv: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> Took:
    """Seconds, CPU seconds and peak RSS of one command; fails loudly on a non-zero exit.

    CPU and peak memory come from GNU time (`%U %S %M`): wait4 from this process would count
    the Python parent's pages the child had before exec.
    """
    with tempfile.NamedTemporaryFile("r") as report:
        start = time.perf_counter()
        subprocess.run(
            ["/usr/bin/time", "-f", "%U %S %M", "-o", report.name, *argv],
            env=env, cwd=cwd, stdout=subprocess.DEVNULL, check=True,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        user, system, rss = report.read().split()[-3:]
        return Took(seconds, float(user) + float(system), int(rss) * 1024)


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


BASELINE = "curl | zstd -d -o F && sync F"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("disk", nargs="?", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--level", type=int, default=10)
    parser.add_argument("--resets", type=int, default=3)
    parser.add_argument(
        "--compare", type=Path, metavar="TREE",
        help="also pull with the pipeline of another checkout (e.g. main's), for an A/B",
    )  # fmt: skip
    args = parser.parse_args()
    disk = args.disk or make_debian_disk()
    CACHE.mkdir(parents=True, exist_ok=True)
    zst = CACHE / f"{disk.name}.{args.level}.zst"
    result = _compressed(disk, zst, args.level)
    print(
        f"disk: {disk} ({result.uncompressed.size / 2**20:.0f} MiB, .zst "
        f"{result.compressed.size / 2**20:.0f} MiB at level {args.level}), "
        f"{os.cpu_count()} cores, load {_load()}",
        flush=True,
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    took: dict[str, list[Took]] = {}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        work = Path(tmp)
        registry = start_registry(work / "registry")
        try:
            digest = publish(registry.host, zst, result)
            with FaultProxy(registry.host) as proxy:
                commands = _commands(registry.host, proxy, digest, work, env, args.resets)
                if args.compare:
                    tree = args.compare.resolve()  # `-m` imports from the working directory
                    theirs = dict(env, PYTHONPATH=str(tree))
                    other = _commands(registry.host, proxy, digest, work, theirs, args.resets, tree)
                    for name in (PULL, _resets_row(args.resets)):
                        commands[f"{name}, {tree.name}'s code"] = other[name]
                for round_ in range(args.rounds):
                    names = list(commands)
                    shift = round_ % len(names)
                    for name in names[shift:] + names[:shift]:
                        out = work / "out"
                        subprocess.run(["rm", "-rf", str(out)], check=True)
                        out.mkdir()
                        took.setdefault(name, []).append(commands[name]())
                        produced = out / ("debian.qcow2" if "pull" in name else "d.qcow2")
                        _check(produced, result.uncompressed.digest)
                    loads.append(os.getloadavg()[0])
                    print(
                        f"round {round_ + 1}: "
                        + ", ".join(f"{n} {took[n][-1].seconds:.2f} s" for n in names)
                        + f"; load {_load()}",
                        flush=True,
                    )  # fmt: skip
        finally:
            registry.stop()
    print()
    print(table(took, args.rounds))
    print(f"\n{os.cpu_count()} cores, load average (1 min) {min(loads):.1f} to {max(loads):.1f} "
          f"over the run; uptime at the end: {_uptime()}")  # fmt: skip
    print(
        f"all rounds, seconds: { {n: [round(t.seconds, 2) for t in r] for n, r in took.items()} }"
    )
    return 0


def table(took: dict[str, list[Took]], rounds: int) -> str:
    """The README's table: medians, the ratio of seconds to the baseline's, peak RSS."""
    base = statistics.median(t.seconds for t in took[BASELINE])
    lines = [f"| command | seconds (median of {rounds}) | ratio | CPU seconds | peak RSS MiB |",
             "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for name, runs in took.items():
        seconds = statistics.median(t.seconds for t in runs)
        cpu = statistics.median(t.cpu for t in runs)
        peak = max(t.rss for t in runs) / 2**20
        lines.append(
            f"| {_cell(name)} | {seconds:.2f} | {seconds / base:.2f} | {cpu:.2f} | {peak:.0f} |"
        )
    return "\n".join(lines)


def _cell(name: str) -> str:
    return f"`{name}`".replace("|", "\\|")  # a pipe inside a table


PULL = "bootc-pipeline pull"


def _resets_row(resets: int) -> str:
    return f"{PULL}, {resets} resets (fault proxy)"


def _commands(
    host: str,
    proxy: FaultProxy,
    digest: str,
    work: Path,
    env: dict[str, str],
    resets: int,
    tree: Path = ROOT,
) -> dict[str, Callable[[], Took]]:
    """The commands of a round; the pulls run `tree`'s code (`-m` imports from the working
    directory, and `env` names it in PYTHONPATH)."""
    out = work / "out"
    url = f"http://{host}/v2/{REPO}/blobs/{digest}"
    pipe = f"set -o pipefail; curl -sSfL {url} | zstd -d -q -o {out}/d.qcow2"

    def pull(via: str) -> Took:
        return run(
            [sys.executable, "-m", "pipeline", "pull", f"{via}/{REPO}:{TAG}", "--plain-http",
             "-o", f"{out}/", "--quiet", "--retry-attempts", str(resets + 2)],
            env, tree,
        )  # fmt: skip

    def through_resets() -> Took:
        proxy.clear_rules()
        rule = proxy.add("truncate", method="GET", path="/blobs/", fraction=0.3, times=resets)
        took = pull(proxy.host)
        assert rule.injected == resets, f"{rule.injected} of {resets} resets injected"
        return took

    def separately() -> Took:
        total = Took(0.0, 0.0, 0)
        for argv in (
            ["curl", "-sSfL", "-o", f"{out}/d.qcow2.zst", url],
            ["zstd", "-d", "-q", f"{out}/d.qcow2.zst"],
            ["sha256sum", f"{out}/d.qcow2.zst", f"{out}/d.qcow2"],
        ):
            total += run(argv)
        return total

    return {
        "curl | zstd -d -o F": lambda: run(["bash", "-c", pipe]),
        BASELINE: lambda: run(["bash", "-c", f"{pipe} && sync {out}/d.qcow2"]),
        PULL: lambda: pull(host),
        "curl; zstd -d; sha256sum both": separately,
        _resets_row(resets): through_resets,
    }


def _compressed(disk: Path, zst: Path, level: int) -> zstdfile.Compressed:
    """The disk at `level`, compressed once: its digests are kept beside the .zst, valid while
    both files keep the size and time they had."""
    record = zst.with_name(zst.name + ".json")
    stamp = [[p.stat().st_size, p.stat().st_mtime_ns] for p in (disk, zst) if p.exists()]
    if record.exists():
        kept = json.loads(record.read_text())
        if kept["stamp"] == stamp:
            blobs = [Blob(**kept[side]) for side in ("uncompressed", "compressed")]
            return zstdfile.Compressed(zst, blobs[0], blobs[1], level)
    result = zstdfile.compress(disk, zst, level=level)
    stamp = [[p.stat().st_size, p.stat().st_mtime_ns] for p in (disk, zst)]
    record.write_text(json.dumps({"stamp": stamp, "uncompressed": asdict(result.uncompressed),
                                  "compressed": asdict(result.compressed)}))  # fmt: skip
    return result


def _check(path: Path, digest: str) -> None:
    hasher = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            hasher.update(block)
    assert "sha256:" + hasher.hexdigest() == digest, f"{path} is not the disk"


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
