#!/usr/bin/env python3
"""Bytes sent and requests made to push one large layer to each emulated registry.

    python3 benchmarks/registries.py [--mib 350] [--chunk-mib 16]

Each registry of tests/support/emulated.py (ghcr.io's 4 MiB body cap, a minimum chunk size,
AWS ECR's 201 and stuck Range) is emulated by the loopback fault proxy in front of a fresh
docker-registry; plain docker-registry is the baseline, run in the same script. One client
with the default chunk size pushes the same seeded, incompressible layer to each; the proxy
counts request-body bytes and requests. Reported: bytes sent, their ratio to the layer, and
requests (all / PATCH / 416 refusals). Not a timed test: seconds are shown only for context.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.registry import RegistryClient  # noqa: E402
from pipeline.registry.uploads import chunk_size_for  # noqa: E402
from tests.support.emulated import EMULATIONS, MiB  # noqa: E402
from tests.support.faultproxy import FaultProxy  # noqa: E402
from tests.support.registry import start_registry  # noqa: E402


def make_layer(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    block = 4 * MiB
    with path.open("wb") as out:
        for index in range(0, size, block):
            data = hashlib.shake_256(index.to_bytes(8, "big")).digest(min(block, size - index))
            digest.update(data)
            out.write(data)
    return "sha256:" + digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=350, help="layer size in MiB")
    parser.add_argument("--chunk-mib", type=int, default=16, help="client chunk size in MiB")
    args = parser.parse_args()
    size = args.mib * MiB
    os.environ.pop("BOOTC_PIPELINE_CHUNK_SIZE", None)
    with tempfile.TemporaryDirectory(prefix="bootc-pipeline-bench-") as tmp:
        layer = Path(tmp) / "layer.bin"
        digest = make_layer(layer, size)
        print(f"layer: {size} bytes, client chunk {args.chunk_mib} MiB")
        print(f"{'registry':24} {'bytes sent':>12} {'x layer':>8} {'requests':>8} "
              f"{'PATCH':>6} {'416':>4} {'seconds':>8}")  # fmt: skip
        runs = [(name, install, args.chunk_mib * MiB) for name, install in EMULATIONS.items()]
        # The client caps chunks for a host named ghcr.io before the first refusal; the proxy
        # is on 127.0.0.1, so that case is shown with the capped size given explicitly.
        capped = chunk_size_for("ghcr.io", args.chunk_mib * MiB)
        runs.insert(2, ("ghcr.io (host known)", EMULATIONS["ghcr.io"], capped))
        for name, install, chunk in runs:
            registry = start_registry(Path(tmp) / name.replace(" ", "-"))
            try:
                with FaultProxy(registry.host) as proxy:
                    install(proxy, {size})
                    started = time.monotonic()
                    with RegistryClient(proxy.host, plain_http=True, chunk_size=chunk) as client:
                        client.push_blob("bench/layer", layer, digest, size)
                    seconds = time.monotonic() - started
                    sent = proxy.bytes_received()
                    refused = sum(1 for e in proxy.log if e.status == 416)
                    print(
                        f"{name:24} {sent:>12} {sent / size:>8.4f} {len(proxy.log):>8} "
                        f"{proxy.count('PATCH'):>6} {refused:>4} {seconds:>8.1f}"
                    )
            finally:
                registry.stop()


if __name__ == "__main__":
    main()
