"""Registries the releases go to, emulated in front of docker-registry by the fault proxy.

No public registry is reachable from the tests, so each behaviour below is what public reports
say the real one does, reproduced exactly on a FaultProxy (tests/support/faultproxy.py):

- ghcr.io caps every upload request body at 4 MiB: a larger PATCH gets
  `416 REQUESTED_RANGE_NOT_SATISFIABLE` "the request body is too large and exceeds the maximum
  permissible limit of 4.00MiB" (wasmCloud/wash#268, oras-project/rust-oci-client#35 and #37,
  cirruslabs/tart#159 "Had to lower the chunk size" for ghcr.io, ocx-sh/ocx#237).
- A minimum chunk size, as the OCI distribution spec allows: `OCI-Chunk-Min-Length` in the POST
  answer, and every chunk but the last at least that long; a chunk out of line gets a 416 with
  the upload's current `Range` (spec "Pushing a blob in chunks").
- AWS ECR answers a chunk PATCH with 201 instead of 202 (jdx/mise#11376: "AWS ECR returns
  `201 Created`"), and the `Range` of its PATCH answers can stay stuck at the first chunk's end
  while every chunk is stored (aws/containers-roadmap#2831: "Range was stuck at `0-10485759`
  throughout, yet all four chunks were stored perfectly").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping

from tests.support.faultproxy import FaultProxy, Rule

MiB = 1024 * 1024
GHCR_BODY_LIMIT = 4 * MiB
GHCR_TOO_LARGE = json.dumps(
    {
        "errors": [
            {
                "code": "REQUESTED_RANGE_NOT_SATISFIABLE",
                "message": "the request body is too large and exceeds the maximum permissible "
                "limit of 4.00MiB",
            }
        ]
    }
).encode()
UPLOADS = r"/blobs/uploads/"
SECONDS = 600.0  # emulations last the whole test (each rule is still bounded)
TIMES = 10_000


def _length(headers: Mapping[str, str]) -> int:
    return int(headers.get("content-length") or 0)


def ghcr(proxy: FaultProxy) -> list[Rule]:
    """ghcr.io: a PATCH body over 4 MiB is refused with ghcr.io's 416 (read, never stored)."""
    return [
        proxy.add(
            "respond", method="PATCH", path=UPLOADS, when=lambda h: _length(h) > GHCR_BODY_LIMIT,
            status=416, headers={"Content-Type": "application/json"}, body=GHCR_TOO_LARGE,
            times=TIMES, seconds=SECONDS, label="ghcr-416",
        )
    ]  # fmt: skip


def min_chunk(
    proxy: FaultProxy, minimum: int, blob_sizes: Collection[int], *, advertise: bool = True
) -> list[Rule]:
    """A registry with a minimum chunk: stated in the POST answer (if `advertise`) and in its
    416s; a chunk shorter than `minimum` that does not end a blob (of `blob_sizes`) is refused
    with the upload's current Range."""
    stated = {"OCI-Chunk-Min-Length": str(minimum)}

    def too_small(headers: Mapping[str, str]) -> bool:
        end = headers.get("content-range", "").rpartition("-")[2]
        final = end.isdigit() and int(end) + 1 in blob_sizes
        return _length(headers) < minimum and not final

    rules = [
        proxy.add(
            "respond", method="PATCH", path=UPLOADS, when=too_small, status=416,
            headers=stated, current_range=True, times=TIMES, seconds=SECONDS,
            label="min-chunk-416",
        )
    ]  # fmt: skip
    if advertise:
        rules.append(
            proxy.add(
                "rewrite", method="POST", path=UPLOADS, headers=stated, times=TIMES,
                seconds=SECONDS, label="min-chunk-advertised",
            )
        )  # fmt: skip
    return rules


def ecr(proxy: FaultProxy) -> list[Rule]:
    """AWS ECR: 201 for an accepted chunk, and a PATCH Range stuck at the first chunk's end."""
    return [
        proxy.add(
            "rewrite", method="PATCH", path=UPLOADS, answer_status=201, stick_range=True,
            times=TIMES, seconds=SECONDS, label="ecr-201-stuck-range",
        )
    ]  # fmt: skip


# name -> installer(proxy, blob sizes); the minimum is above the default 16 MiB chunk so that
# it bites (benchmarks/registries.py).
EMULATIONS: dict[str, Callable[[FaultProxy, Collection[int]], list[Rule]]] = {
    "docker-registry": lambda proxy, sizes: [],
    "ghcr.io": lambda proxy, sizes: ghcr(proxy),
    "min-chunk-32MiB": lambda proxy, sizes: min_chunk(proxy, 32 * MiB, sizes),
    "min-chunk-32MiB-on-416": lambda proxy, sizes: min_chunk(
        proxy, 32 * MiB, sizes, advertise=False
    ),
    "ecr": lambda proxy, sizes: ecr(proxy),
}
