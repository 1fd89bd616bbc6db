"""`bootc-pipeline validate REF` on malformed remote documents: a FAIL line, exit 1, no traceback.

A release is pushed to a real docker-registry with RegistryClient and validated with the real CLI.
Malformed variants of its documents are pushed the same way where docker-registry 2.8 stores
them (its Go parser ignores `config.data` and accepts bytes that are not UTF-8). What it refuses
to store (a body that is not an object, `layers`/`manifests` that are not arrays, entries that are
not objects; checked here first) other registries, proxies or caches can still serve: those are
answered by a loopback proxy in front of the same registry, which forwards everything else
(blob checks included) to it.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from pipeline.core import mediatypes as mt
from pipeline.core.arch import Arch
from pipeline.core.digest import Blob, of_bytes
from pipeline.model import plan
from pipeline.registry import RegistryClient
from pipeline.registry.errors import RegistryError
from tests.factories import ROOT, fedora
from tests.support.faultproxy import FaultProxy
from tests.support.registry import RunningRegistry

pytestmark = pytest.mark.integration

PROV = plan.Provenance("2026-11-28T05:00:00Z", "0123456789abcdef0123456789abcdef01234567")
LAYER = b"not really a qcow2, but bytes with a digest\n" * 200
TIMEOUT_SECONDS = 120


@dataclass
class Release:
    """A valid release in `repository`: one manifest (amd64) under an index tagged `good`."""

    registry: RunningRegistry
    client: RegistryClient
    repository: str
    manifest: plan.Document
    index: plan.Document

    def manifest_json(self) -> dict[str, Any]:
        return copy.deepcopy(self.manifest.json())

    def index_json(self) -> dict[str, Any]:
        return copy.deepcopy(self.index.json())

    def push(self, tag: str, body: bytes, media_type: str = mt.OCI_MANIFEST) -> str:
        self.client.push_manifest(self.repository, tag, body, media_type)
        return f"{self.registry.host}/{self.repository}:{tag}"


@pytest.fixture
def release(registry: RunningRegistry, repository_name: str) -> Iterator[Release]:
    client = RegistryClient(registry.host, plain_http=True)
    layer = of_bytes(LAYER)
    client.push_blob(repository_name, LAYER, layer.digest, layer.size)
    client.push_blob(repository_name, mt.EMPTY_JSON, mt.EMPTY_DIGEST, len(mt.EMPTY_JSON))
    disk = plan.DiskArtifact(
        Arch.AMD64, layer, Blob("sha256:" + "b" * 64, 4096), "sha256:" + "c" * 64
    )
    manifest = plan.artifact_manifest(fedora(), disk, PROV)
    client.push_manifest(repository_name, manifest.digest, manifest.body, mt.OCI_MANIFEST)
    index = plan.artifact_index(fedora(), [(Arch.AMD64, manifest)], PROV)
    client.push_manifest(repository_name, "good", index.body, mt.OCI_INDEX)
    with client:
        yield Release(registry, client, repository_name, manifest, index)


def validate(reference: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "validate", reference, "--plain-http", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )


def fail_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line.split(" FAIL ", 1)[1] for line in proc.stderr.splitlines() if " FAIL " in line]


def assert_reported(proc: subprocess.CompletedProcess[str], expected: str) -> list[str]:
    """Exit 1, the verdict line, no traceback, and a FAIL line containing `expected`."""
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output[-3000:]
    assert proc.returncode == 1, output[-3000:]
    assert "bootc-pipeline: error" not in output  # findings, not an aborted run
    assert re.search(r": INVALID \(\d+ checks passed, [1-9]\d* failed\)", proc.stderr), output
    fails = fail_lines(proc)
    assert any(expected in line for line in fails), f"no FAIL line with {expected!r}: {fails}"
    return fails


def encode(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def test_the_release_itself_is_valid(release: Release) -> None:
    """The control: the documents every malformed variant starts from validate clean."""
    proc = validate(f"{release.registry.host}/{release.repository}:good", "--fetch-blobs")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert fail_lines(proc) == [] and ": valid (" in proc.stderr


# -- stored by docker-registry itself --------------------------------------------------------------


@pytest.mark.parametrize("data", ["%%% not base64 %%%", "e30", "ë30=", "e3 0="])
def test_config_data_that_is_not_base64(release: Release, data: str) -> None:
    manifest = release.manifest_json()
    manifest["config"]["data"] = data
    reference = release.push("bad-data", encode(manifest))
    assert_reported(validate(reference), f"config data {data!r} is not base64")


def test_config_data_of_other_bytes_than_its_digest(release: Release) -> None:
    manifest = release.manifest_json()
    manifest["config"]["data"] = "W10="  # "[]", not "{}"
    reference = release.push("other-data", encode(manifest))
    assert_reported(validate(reference), "config data does not match its digest/size")


def test_manifest_that_is_not_utf8_json(release: Release) -> None:
    manifest = release.manifest_json()
    manifest["annotations"][mt.ANN_DESCRIPTION] = "PLACEHOLDER"
    body = encode(manifest).replace(b"PLACEHOLDER", b"\xff\xfe not UTF-8")
    reference = release.push("not-utf8", body)
    assert_reported(validate(reference), "not valid JSON")


def test_index_that_is_not_utf8_json(release: Release) -> None:
    index = release.index_json()
    index["annotations"][mt.ANN_DESCRIPTION] = "PLACEHOLDER"
    body = encode(index).replace(b"PLACEHOLDER", b"\xc3\x28")
    reference = release.push("index-not-utf8", body, mt.OCI_INDEX)
    assert_reported(validate(reference), f"index {of_bytes(body).digest}: not valid JSON")


def test_index_entry_for_a_manifest_with_bad_data(release: Release) -> None:
    """Through an index: the bad child is reported, the rest still checked."""
    manifest = release.manifest_json()
    manifest["config"]["data"] = "!!"
    child = encode(manifest)
    release.push(of_bytes(child).digest, child)
    index = release.index_json()
    good_entry = index["manifests"][0]
    bad_entry = dict(good_entry, digest=of_bytes(child).digest, size=len(child))
    index["manifests"] = [good_entry, bad_entry]
    reference = release.push("index-bad-child", encode(index), mt.OCI_INDEX)
    proc = validate(reference)
    assert_reported(proc, f"manifest {of_bytes(child).digest}: config data '!!' is not base64")
    assert f"manifest {good_entry['digest']}" not in "\n".join(fail_lines(proc))


# -- refused by docker-registry, served by a proxy in front of it ---------------------------------


@pytest.fixture
def proxy(release: Release) -> Iterator[FaultProxy]:
    with FaultProxy(release.registry.host) as running:
        yield running


def serve(proxy: FaultProxy, release: Release, ref: str, body: bytes, media_type: str) -> str:
    """Have the proxy answer GET .../manifests/<ref> with `body`; returns a reference via it."""
    proxy.add(
        "respond",
        method="GET",
        path=re.escape(f"/v2/{release.repository}/manifests/{ref}") + "$",
        status=200,
        headers={"Content-Type": media_type, "Docker-Content-Digest": of_bytes(body).digest},
        body=body,
        times=100,
    )
    return f"{proxy.host}/{release.repository}:{ref}"


def test_docker_registry_refuses_what_the_proxy_serves(release: Release) -> None:
    """Why the proxy: docker-registry 2.8 will not store these documents at all."""
    manifest = release.manifest_json()
    for body in (
        b"[1, 2]",
        encode(dict(manifest, layers="oops")),
        encode(dict(manifest, layers=[5])),
    ):
        with pytest.raises(RegistryError, match="400 MANIFEST_INVALID"):
            release.client.push_manifest(release.repository, "refused", body, mt.OCI_MANIFEST)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"[1, 2]", "the document is an array, not a JSON object"),
        (b"null", "the document is null, not a JSON object"),
        (b'"an index"', "the document is a string, not a JSON object"),
        (b"{not json", "not valid JSON"),
        (b'{"schemaVersion": 2, "manifests": "oops"}', "manifests is a string, not an array"),
        (b'{"schemaVersion": 2, "manifests": {"a": 1}}', "manifests is an object, not an array"),
        (b'{"schemaVersion": 2, "manifests": [5, null, "x"]}', "manifests[0] is a number, not"),
        (b'{"schemaVersion": 2, "manifests": [5, null, "x"]}', "manifests[1] is null, not"),
        (b'{"schemaVersion": 2, "manifests": [{"digest": 7}]}', "manifests[0]: digest 7 is not"),
        (b'{"manifests": [{"digest": "sha256:XYZ"}]}', "manifests[0]: digest 'sha256:XYZ'"),
    ],
)
def test_malformed_index(proxy: FaultProxy, release: Release, body: bytes, expected: str) -> None:
    reference = serve(proxy, release, "served", body, mt.OCI_INDEX)
    assert_reported(validate(reference), f"index {of_bytes(body).digest}: {expected}")


Doc = dict[str, Any]


def _layer(m: Doc) -> Doc:
    return dict(m["layers"][0])


MALFORMED_MANIFESTS: list[tuple[Callable[[Doc], Doc], str]] = [
    (lambda m: dict(m, layers={"0": _layer(m)}), "layers is an object, not an array"),
    (lambda m: dict(m, layers="oops"), "layers is a string, not an array"),
    (lambda m: dict(m, layers=[1, _layer(m)]), "layers[0] is a number, not an object"),
    (lambda m: dict(m, layers=[_layer(m), [_layer(m)]]), "layers[1] is an array, not an object"),
    (lambda m: dict(m, config="e30="), "config is a string, not an object"),
    (lambda m: dict(m, config=[m["config"]]), "config is an array, not an object"),
    (lambda m: dict(m, config=dict(m["config"], data=123)), "config data 123 is not base64"),
    (lambda m: dict(m, config=dict(m["config"], digest="md5:x")), "config: digest 'md5:x' is"),
    (lambda m: dict(m, layers=[dict(_layer(m), digest=None)]), "layers[0]: digest None is"),
    (
        lambda m: dict(m, layers=[dict(_layer(m), annotations="t")]),
        "read back: layer: annotations is not",
    ),
]

CASE_IDS = [expected for _, expected in MALFORMED_MANIFESTS]


@pytest.mark.parametrize(("mutate", "expected"), MALFORMED_MANIFESTS, ids=CASE_IDS)
def test_malformed_manifest_in_the_index(
    proxy: FaultProxy, release: Release, mutate: Callable[[Doc], Doc], expected: str
) -> None:
    """A child manifest served malformed, reached through an index entry (platform checks too)."""
    child = encode(mutate(release.manifest_json()))
    digest = of_bytes(child).digest
    serve(proxy, release, digest, child, mt.OCI_MANIFEST)
    index = release.index_json()
    index["manifests"][0].update(digest=digest, size=len(child))
    reference = serve(proxy, release, "served", encode(index), mt.OCI_INDEX)
    assert_reported(validate(reference), f"manifest {digest}: {expected}")


@pytest.mark.parametrize(("mutate", "expected"), MALFORMED_MANIFESTS[:4], ids=lambda v: str(v)[:40])
def test_malformed_manifest_at_the_top(
    proxy: FaultProxy, release: Release, mutate: Callable[[Doc], Doc], expected: str
) -> None:
    body = encode(mutate(release.manifest_json()))
    serve(proxy, release, of_bytes(body).digest, body, mt.OCI_MANIFEST)  # checked by digest too
    reference = serve(proxy, release, "served-manifest", body, mt.OCI_MANIFEST)
    assert_reported(validate(reference), f"manifest {of_bytes(body).digest}: {expected}")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"platform": "linux/amd64"}, "platform is a string, not an object"),
        ({"platform": {"architecture": 64, "os": "linux"}}, "platform 64 is not one this project"),
        # the amd64 manifest listed as arm64: its layer title says which disk it is
        (
            {"platform": {"architecture": "arm64", "os": "linux"}},
            "(an amd64 disk), not an arm64 disk",
        ),
        ({"size": "big"}, "index says 'big' bytes"),
        ({"digest": "sha256:" + "0" * 64}, "manifest unknown"),
    ],
)
def test_malformed_index_entry(
    proxy: FaultProxy, release: Release, change: dict[str, Any], expected: str
) -> None:
    index = release.index_json()
    index["manifests"][0].update(change)
    reference = serve(proxy, release, "served", encode(index), mt.OCI_INDEX)
    assert_reported(validate(reference), expected)


# -- --fetch-blobs: the blobs themselves, served wrong by a proxy in front of the registry ---------

BLOB_UNKNOWN = encode({"errors": [{"code": "BLOB_UNKNOWN", "message": "blob unknown to registry"}]})


def _blob_path(release: Release, digest: str) -> str:
    return re.escape(f"/v2/{release.repository}/blobs/{digest}") + "$"


def test_fetch_blobs_missing_layer(proxy: FaultProxy, release: Release) -> None:
    layer = of_bytes(LAYER).digest
    proxy.add(
        "respond", path=_blob_path(release, layer), status=404,
        headers={"Content-Type": "application/json"}, body=BLOB_UNKNOWN, times=100,
    )  # fmt: skip
    proc = validate(f"{proxy.host}/{release.repository}:good", "--fetch-blobs")
    fails = assert_reported(proc, f"layer {layer}")
    assert any(layer in line and "404" in line for line in fails), fails


def test_fetch_blobs_missing_config_blob(proxy: FaultProxy, release: Release) -> None:
    proxy.add(
        "respond", path=_blob_path(release, mt.EMPTY_DIGEST), status=404,
        headers={"Content-Type": "application/json"}, body=BLOB_UNKNOWN, times=100,
    )  # fmt: skip
    proc = validate(f"{proxy.host}/{release.repository}:good", "--fetch-blobs")
    fails = assert_reported(proc, f"config blob {mt.EMPTY_DIGEST}")
    assert f"layer {of_bytes(LAYER).digest}" not in "\n".join(fails)  # the layer is fine


def test_fetch_blobs_layer_bytes_not_matching_its_digest(
    proxy: FaultProxy, release: Release
) -> None:
    """Served with the right length but other bytes: only hashing them finds it."""
    layer = of_bytes(LAYER).digest
    other = b"X" + LAYER[1:]
    proxy.add(
        "respond", method="GET", path=_blob_path(release, layer), status=200,
        headers={"Content-Type": "application/octet-stream", "Docker-Content-Digest": layer},
        body=other, times=100,
    )  # fmt: skip
    proc = validate(f"{proxy.host}/{release.repository}:good", "--fetch-blobs")
    fails = assert_reported(proc, f"layer {layer}")
    assert any(layer in line and of_bytes(other).digest in line for line in fails), fails
    # Without --fetch-blobs only presence is checked (HEAD): it passes.
    assert validate(f"{proxy.host}/{release.repository}:good").returncode == 0
