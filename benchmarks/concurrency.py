#!/usr/bin/env python3
"""Wall time of `publish` for amd64 + arm64: one architecture after the other (--jobs 1)
against both at once (--jobs 2), on this machine, in the same script.

    python3 benchmarks/concurrency.py [--rounds 2]

It starts what the integration tests use (a private Podman service, a docker-registry on
127.0.0.1, the fake bases and the bootc-image-builder stand-in from tests/support), publishes
once to warm Podman's build cache, then alternates sequential and concurrent publishes, each in
an empty work directory and to a repository of its own (so every layer is really uploaded),
with --rebuild (the inputs are the same every time). Prints each run and the ratio of medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.images import ensure_bib_standin, ensure_fake_bases  # noqa: E402
from tests.support.podman import PodmanService, ensure_binfmt, podman_service  # noqa: E402
from tests.support.registry import start_registry  # noqa: E402

REPO = "bootc-lima/fedora-bootc-lima"


def publish(
    podman: PodmanService, base: str, builder: str, registry: str, tmp: Path, name: str, jobs: int
) -> float:
    manifests = tmp / name / "manifests"
    manifests.mkdir(parents=True)
    (tmp / name / "containerfiles").symlink_to(ROOT / "containerfiles")
    text = (ROOT / "manifests" / "fedora-40.yaml").read_text()
    (manifests / "fedora-40.yaml").write_text(text.replace(REPO, f"bench/{name}"))
    argv = [
        sys.executable, "-m", "pipeline", "publish",
        "--manifest", str(manifests / "fedora-40.yaml"),
        "--arch", "amd64,arm64", "--jobs", str(jobs), "--rebuild", "--skip-boot",
        "--engine", podman.url, "--workdir", str(tmp / name / "work"),
        "--base-image", base, "--builder-image", builder,
        "--registry", registry, "--plain-http",
        "--revision", "bench", "--created", "2026-01-01T00:00:00Z",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-4000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    ensure_binfmt()
    with podman_service() as podman, tempfile.TemporaryDirectory(prefix="bench-") as temp:
        tmp = Path(temp)
        bases = ensure_fake_bases(podman)
        builder = ensure_bib_standin(podman)
        registry = start_registry(tmp / "registry")
        try:
            warm = publish(podman, bases.fedora, builder, registry.host, tmp, "warm", 2)
            print(f"warm-up (build cache): {warm:.1f}s", flush=True)
            times: dict[int, list[float]] = {1: [], 2: []}
            for n in range(args.rounds):
                for jobs in (1, 2):
                    name = f"jobs{jobs}-{n}"
                    seconds = publish(podman, bases.fedora, builder, registry.host, tmp, name, jobs)
                    times[jobs].append(seconds)
                    print(f"--jobs {jobs}: {seconds:.1f}s", flush=True)
        finally:
            registry.stop()
    seq, conc = statistics.median(times[1]), statistics.median(times[2])
    print(f"median sequential {seq:.1f}s, concurrent {conc:.1f}s, concurrent/sequential "
          f"{conc / seq:.2f} on {os.cpu_count()} cores")  # fmt: skip


if __name__ == "__main__":
    main()
