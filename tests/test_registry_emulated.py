"""Uploads to the registries releases go to, emulated in front of a real docker-registry.

Each emulation (tests/support/emulated.py) reproduces a publicly reported behaviour, cited there
and in the README's table: ghcr.io's 4 MiB request-body cap and its exact 416, a registry with a
minimum chunk size (OCI distribution spec), and AWS ECR's 201 on PATCH with a Range stuck at the
first chunk's end. The blob must arrive whole (read back straight from docker-registry), and the
bytes counted at the proxy show nothing is sent twice beyond what a refusal cost.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.registry import BlobAction, RegistryClient, RetryPolicy
from tests.support import emulated
from tests.support.emulated import GHCR_BODY_LIMIT, MiB
from tests.support.faultproxy import FaultProxy
from tests.support.registry import RunningRegistry

pytestmark = pytest.mark.integration


def make_blob(directory: Path, name: str, size: int, seed: int) -> tuple[Path, str, int]:
    path = directory / name
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return path, "sha256:" + hashlib.sha256(data).hexdigest(), size


@pytest.fixture
def proxy(registry: RunningRegistry) -> Iterator[FaultProxy]:
    with FaultProxy(registry.host) as running:
        yield running


def client_for(proxy: FaultProxy, chunk_size: int) -> RegistryClient:
    retry = RetryPolicy(max_attempts=5, total_seconds=60.0, base_delay=0.01, max_delay=0.05)
    return RegistryClient(proxy.host, plain_http=True, chunk_size=chunk_size, retry=retry)


def assert_stored(registry: RunningRegistry, repository: str, path: Path, digest: str) -> None:
    with RegistryClient(registry.host, plain_http=True) as direct:
        assert direct.fetch_blob(repository, digest) == path.read_bytes()


def patches(proxy: FaultProxy) -> list[tuple[int, int | None]]:
    """(body bytes received, status answered) of each PATCH, in order."""
    return [(e.received, e.status) for e in proxy.log if e.method == "PATCH"]


def test_ghcr_body_cap_shrinks_chunks_once_per_client(
    proxy: FaultProxy, registry: RunningRegistry, tmp_path: Path, repository_name: str
) -> None:
    """16 MiB chunks (the default) meet ghcr.io's 416 "exceeds the maximum permissible limit
    of 4.00MiB" (wasmCloud/wash#268, oras-project/rust-oci-client#37, cirruslabs/tart#159,
    ocx-sh/ocx#237): the client takes the stated limit, re-reads the status, goes on from
    what the registry holds, and keeps 4 MiB chunks for the next blob."""
    rules = emulated.ghcr(proxy)
    first = make_blob(tmp_path, "first", 10 * MiB + 123, seed=1)
    second = make_blob(tmp_path, "second", 9 * MiB + 7, seed=2)
    with client_for(proxy, 16 * MiB) as client:
        results = [client.push_blob(repository_name, *blob) for blob in (first, second)]
    assert [r.action for r in results] == [BlobAction.UPLOADED] * 2
    for path, digest, _ in (first, second):
        assert_stored(registry, repository_name, path, digest)
    sent = patches(proxy)
    assert sent[0] == (first[2], 416)  # the whole first try, refused, once
    assert rules[0].injected == 1
    assert all(size <= GHCR_BODY_LIMIT and status == 202 for size, status in sent[1:])
    assert len(sent) == 1 + math.ceil(first[2] / GHCR_BODY_LIMIT) + math.ceil(
        second[2] / GHCR_BODY_LIMIT
    )
    assert results[0].bytes_sent == 2 * first[2] and results[1].bytes_sent == second[2]


@pytest.mark.parametrize("advertise", [True, False], ids=["advertised", "on-416-only"])
def test_minimum_chunk_size_is_honoured(
    advertise: bool,
    proxy: FaultProxy,
    registry: RunningRegistry,
    tmp_path: Path,
    repository_name: str,
) -> None:
    """OCI distribution spec: `OCI-Chunk-Min-Length` in the POST answer; every chunk but the
    last at least that long. Stated up front the client never sends a short chunk; stated only
    in a 416 (with the current Range), it resizes and goes on from what the registry holds."""
    minimum = 8 * MiB
    blob = make_blob(tmp_path, "blob", 20 * MiB + 5, seed=3)
    rules = emulated.min_chunk(proxy, minimum, {blob[2]}, advertise=advertise)
    with client_for(proxy, 1 * MiB) as client:
        result = client.push_blob(repository_name, *blob)
    assert result.action is BlobAction.UPLOADED
    assert_stored(registry, repository_name, blob[0], blob[1])
    sent = patches(proxy)
    refused = [size for size, status in sent if status == 416]
    assert refused == ([] if advertise else [1 * MiB])
    assert rules[0].injected == len(refused)
    accepted = [size for size, status in sent if status == 202]
    assert accepted == [minimum, minimum, blob[2] - 2 * minimum]
    assert result.bytes_sent == blob[2] + sum(refused)


@pytest.mark.parametrize("lost", [None, 3], ids=["clean", "third-chunk-lost"])
def test_ecr_201_and_stuck_range_send_each_byte_once(
    lost: int | None,
    proxy: FaultProxy,
    registry: RunningRegistry,
    tmp_path: Path,
    repository_name: str,
) -> None:
    """AWS ECR answers a chunk with 201 (jdx/mise#11376) and its Range can stay at the first
    chunk's end while later chunks are stored (aws/containers-roadmap#2831). The client takes
    the 2xx as the acknowledgement, never re-sends on a Range that did not advance, and lets
    the final `PUT ?digest=` prove the blob. With a chunk lost on the way, the status GET
    (docker-registry's, truthful) decides where to go on."""
    if lost is not None:  # added first: the proxy applies the first rule that is due
        proxy.add("reset", method="PATCH", path=emulated.UPLOADS, skip=lost - 1, take=64 * 1024)
    emulated.ecr(proxy)
    chunk = 1 * MiB
    blob = make_blob(tmp_path, "blob", 5 * MiB + 77, seed=4)
    with client_for(proxy, chunk) as client:
        result = client.push_blob(repository_name, *blob)
    assert result.action is BlobAction.UPLOADED
    assert_stored(registry, repository_name, blob[0], blob[1])
    sent = patches(proxy)
    chunks = math.ceil(blob[2] / chunk)
    answered = [status for _, status in sent if status is not None]
    assert answered == [201] * chunks
    ranges = [e.answer_range for e in proxy.log if e.method == "PATCH" and e.status == 201]
    assert ranges == [f"0-{chunk - 1}"] * chunks  # stuck at the first chunk's end throughout
    assert proxy.bytes_received("PATCH") == blob[2] + (64 * 1024 if lost else 0)
    assert result.resumes == (1 if lost else 0)
