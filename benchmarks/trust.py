#!/usr/bin/env python3
"""What signing adds to a publish and verification to a pull, on three real registries.

    python3 benchmarks/trust.py [--rounds 3] [--disk-mib 64]

A synthetic release (two architectures, incompressible disks of --disk-mib each,
tests/support/workdirs.py) is pushed by the real CLI (`push`) to a fresh repository, unsigned
and signed (--signing-key: three cosign signatures, read back and verified, plus the SLSA
provenance referrer), alternating which goes first; then pulled (`pull --platform linux/amd64`)
without and with `--public-key`. Prints the median seconds and the signed/unsigned ratio per
registry; the `sign` stage's own seconds from the signed push's report; and, closer up, the
resolution of the reference (shared/readback.py `resolve`) without and with the signature check
(10 rounds each), which is all verification adds to a pull. And the load average, since the
machine is shared. Needs distribution v3 and olareg
(scripts/go-tools.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.core.arch import Arch  # noqa: E402
from pipeline.core.progress import Reporter  # noqa: E402
from pipeline.core.reference import parse_reference  # noqa: E402
from pipeline.registry.client import RegistryClient  # noqa: E402
from pipeline.shared import readback  # noqa: E402
from pipeline.trust.keys import load_public_key  # noqa: E402
from pipeline.trust.verify import TrustPolicy  # noqa: E402
from tests.support.keys import make_key_pair  # noqa: E402
from tests.support.registry import RegistryKind, start_registry  # noqa: E402
from tests.support.workdirs import (  # noqa: E402
    DiskCache,
    cli_env,
    make_workdir,
    manifest_for,
    push_argv,
)

ROOT = Path(__file__).resolve().parent.parent


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, check=True, timeout=600)
    return time.perf_counter() - start


def resolve_ms(host: str, repo: str, public: Path, rounds: int = 10) -> tuple[float, float]:
    """Median milliseconds of `readback.resolve` without and with the signature check."""
    reporter = Reporter(stream=open(os.devnull, "w"), live=False)  # noqa: SIM115
    key = load_public_key(public, source="benchmark")
    ref = parse_reference(f"{host}/{repo}:40.1.0")
    found: dict[bool, list[float]] = {False: [], True: []}
    with RegistryClient(host, plain_http=True) as client:
        for _ in range(rounds):
            for verified in (False, True):
                policy = TrustPolicy(key if verified else None, reporter)
                start = time.perf_counter()
                readback.resolve(client, ref, Arch("amd64"), trust=policy)
                found[verified].append(time.perf_counter() - start)
    return statistics.median(found[False]) * 1000, statistics.median(found[True]) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--disk-mib", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-trust-") as temp:
        tmp = Path(temp)
        key = make_key_pair(tmp / "keys")
        (tmp / "disks").mkdir()
        disks = DiskCache(tmp / "disks")
        env = cli_env(tmp / "home", chunk_size=16 << 20)
        print(f"load average {os.getloadavg()[0]:.2f}; disks {args.disk_mib} MiB x 2")
        print(
            "registry        | push s | signed push s | ratio | sign stage s | pull s | "
            "verified pull s | ratio | resolve ms | + verify ms"
        )
        for kind in RegistryKind:
            registry = start_registry(tmp / f"reg-{kind}", kind=kind)
            try:
                push: dict[bool, list[float]] = {False: [], True: []}
                stage: list[float] = []
                last = ""
                pull: dict[bool, list[float]] = {False: [], True: []}
                for n in range(args.rounds):
                    for signed in (n % 2 == 0, n % 2 != 0):
                        repo = f"bench/trust-{secrets.token_hex(4)}"
                        case = tmp / f"{kind}-{n}-{signed}"
                        work = make_workdir(case / "work", disks, size=args.disk_mib << 20)
                        extra = ["--signing-key", str(key.private)] if signed else []
                        argv = push_argv(
                            work, registry.host, *extra, manifest=manifest_for(case, repo)
                        )
                        push[signed].append(timed(argv, env))
                        if signed:
                            report = json.loads(work.report_path.read_text())
                            stage.append(float(report["timings"]["sign"]))
                            last = repo
                        pull_argv = [
                            sys.executable, "-m", "pipeline", "pull",
                            f"{registry.host}/{repo}:40.1.0", "--plain-http", "--quiet",
                            "--platform", "linux/amd64", "-o", str(case / "out.qcow2"),
                        ]  # fmt: skip
                        if signed:
                            pull_argv += ["--public-key", str(key.public)]
                        pull[signed].append(timed(pull_argv, env))
                plain_ms, verified_ms = resolve_ms(registry.host, last, key.public)
            finally:
                registry.stop()
            a, b = statistics.median(push[False]), statistics.median(push[True])
            c, d = statistics.median(pull[False]), statistics.median(pull[True])
            print(
                f"{kind:<15} | {a:6.2f} | {b:13.2f} | {b / a:5.2f} | "
                f"{statistics.median(stage):12.2f} | {c:6.2f} | {d:15.2f} | {d / c:5.2f} | "
                f"{plain_ms:10.1f} | {verified_ms - plain_ms:11.1f}"
            )


if __name__ == "__main__":
    main()
