"""Referrers: the signed SLSA provenance is attached to the index as an OCI 1.1 referrer on
all three registries (olareg: referrers API; docker-registry 2.8 and distribution v3: the
`sha256-HEX` fallback tag), judged by `oras discover` and the official OCI schemas; two
concurrent attachers both end up listed in the fallback index."""

from __future__ import annotations

import base64
import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pipeline.model.plan import Document
from pipeline.registry.client import RegistryClient
from pipeline.trust import attestations, referrers
from pipeline.trust.subjects import Subject
from tests.support import gotools, oci_official
from tests.support.registry import RunningRegistry
from tests.support.trust import Signed

pytestmark = pytest.mark.integration


def oras_discover(reference: str) -> dict[str, Any]:
    argv = [gotools.go_tool("oras"), "discover", "--plain-http", "--format", "json", reference]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def raw(host: str, reference: str) -> dict[str, Any]:
    out = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{host}/{reference}"],
        capture_output=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    body: dict[str, Any] = json.loads(out)
    return body


def test_provenance_is_a_referrer_of_the_index(signed: Signed) -> None:
    record = next(s for s in signed.report["signatures"] if "manifest" in s and "storedAs" in s)
    kind = signed.registry.kind
    assert record["storedAs"] == ("api" if kind.has_referrers_api else "tag")
    found = oras_discover(f"{signed.name}@{signed.index}")
    listed = {r["digest"]: r for r in found.get("referrers") or found.get("manifests") or []}
    assert record["manifest"] in listed, found
    assert listed[record["manifest"]]["artifactType"] == attestations.PROVENANCE_ARTIFACT_TYPE
    manifest = raw(signed.registry.host, f"{signed.repo}@{record['manifest']}")
    assert oci_official.errors("manifest", manifest) == []
    assert manifest["subject"]["digest"] == signed.index
    if not kind.has_referrers_api:
        fallback = raw(
            signed.registry.host, f"{signed.repo}:{referrers.fallback_tag(signed.index)}"
        )
        assert oci_official.errors("index", fallback) == []
    # the envelope's signature verifies with the release key (cryptography, DSSE's PAE)
    layer = manifest["layers"][0]
    blob = subprocess.run(
        ["curl", "-fsS", f"{signed.registry.url}/v2/{signed.repo}/blobs/{layer['digest']}"],
        capture_output=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    envelope = json.loads(blob)
    payload = base64.b64decode(envelope["payload"])
    public = serialization.load_pem_public_key(signed.key.public.read_bytes())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(
        base64.b64decode(envelope["signatures"][0]["sig"]),
        attestations.pae(envelope["payloadType"], payload),
        ec.ECDSA(hashes.SHA256()),
    )
    statement = json.loads(payload)
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    named = {s["digest"]["sha256"] for s in statement["subject"]}
    # what the release is: the disks' index and manifests, and the OS image's (issue 15)
    os_image = [s["digest"] for s in signed.report["signatures"]
                if str(s.get("subject", "")).startswith("os-image")]  # fmt: skip
    assert len(os_image) == 3
    assert named == {d.split(":")[1] for d in (signed.index, signed.manifest("amd64"),
                                              signed.manifest("arm64"), *os_image)}  # fmt: skip


def _subject(registry: RunningRegistry, repo: str) -> Subject:
    index = Document(
        "application/vnd.oci.image.index.v1+json",
        json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                    "manifests": []}).encode(),
    )  # fmt: skip
    with RegistryClient(registry.host, plain_http=True) as client:
        client.push_manifest(repo, index.digest, index.body, index.media_type)
    return Subject("index", registry.host, repo, index)


def test_two_concurrent_attachers_are_both_listed(
    any_registry: RunningRegistry, repository_name: str
) -> None:
    subject = _subject(any_registry, repository_name)
    made = []
    for n in range(2):
        layer = json.dumps({"attacher": n}).encode()
        made.append(
            (
                attestations.referrer_manifest(
                    subject, "application/vnd.example.n", "text/plain", layer, {"n": str(n)}
                ),
                layer,
            )  # fmt: skip
        )
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def attach(manifest: Document, layer: bytes) -> None:
        try:
            with RegistryClient(any_registry.host, plain_http=True) as client:
                barrier.wait(10)
                referrers.attach(client, repository_name, subject.digest, manifest, layer)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=attach, args=pair) for pair in made]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with RegistryClient(any_registry.host, plain_http=True) as client:
        how, listed = referrers.list_referrers(client, repository_name, subject.digest)
    assert how == ("api" if any_registry.kind.has_referrers_api else "tag")
    assert {m.digest for m, _ in made} <= {e["digest"] for e in listed}
    found = oras_discover(f"{any_registry.host}/{repository_name}@{subject.digest}")
    assert {m.digest for m, _ in made} <= {r["digest"] for r in found.get("referrers") or []}


def test_official_schema_accepts_the_planned_referrer(tmp_path: Path) -> None:
    subject = Subject("index", "r", "x", Document("application/vnd.oci.image.index.v1+json", b"{}"))
    manifest = attestations.referrer_manifest(
        subject, attestations.SBOM_ARTIFACT_TYPE, attestations.SBOM_ARTIFACT_TYPE, b"{}", {}
    )
    assert oci_official.errors("manifest", manifest.json()) == []
