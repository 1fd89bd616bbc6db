"""Planned manifests and indexes: exact bytes, judged by the official OCI schemas and our policy."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core import mediatypes as mt
from pipeline.core.arch import Arch
from pipeline.core.digest import Blob
from pipeline.core.errors import PipelineError
from pipeline.model import plan, schemas
from tests.factories import fedora
from tests.support import oci_official

PROV = plan.Provenance("2026-11-28T05:00:00Z", "0123456789abcdef0123456789abcdef01234567")
HEX = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)


def disk(arch: Arch, n: int = 1) -> plan.DiskArtifact:
    return plan.DiskArtifact(
        arch,
        Blob("sha256:" + f"{n:x}" * 64 if n < 16 else "sha256:" + "a" * 64, 770370809),
        Blob("sha256:" + "b" * 64, 2147483648),
        "sha256:" + "c" * 64,
    )


def test_manifest_has_the_seed_shape() -> None:
    doc = plan.artifact_manifest(fedora(), disk(Arch.ARM64), PROV).json()
    assert doc["mediaType"] == mt.OCI_MANIFEST
    assert doc["artifactType"] == mt.ARTIFACT_TYPE
    assert doc["config"] == {
        "mediaType": "application/vnd.oci.empty.v1+json",
        "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        "size": 2,
        "data": "e30=",
    }
    (layer,) = doc["layers"]
    assert layer["mediaType"] == "application/x-qemu-qcow2+zstd"
    assert layer["annotations"] == {
        "org.opencontainers.image.title": "fedora-bootc-lima-40.1.0-arm64.qcow2.zst"
    }
    ann = doc["annotations"]
    assert ann["org.opencontainers.image.created"] == PROV.created
    assert ann["org.opencontainers.image.revision"] == PROV.revision
    assert ann["org.opencontainers.image.base.name"] == "quay.io/fedora/fedora-bootc:40"
    assert ann[mt.ANN_UNCOMPRESSED_SIZE] == "2147483648"
    assert ann[mt.ANN_UNCOMPRESSED_DIGEST] == "sha256:" + "b" * 64


def test_empty_descriptor_constants_are_consistent() -> None:
    import base64

    assert "sha256:" + hashlib.sha256(mt.EMPTY_JSON).hexdigest() == mt.EMPTY_DIGEST
    assert base64.b64decode(mt.EMPTY_DATA_B64) == mt.EMPTY_JSON


def test_digest_is_of_the_exact_bytes() -> None:
    doc = plan.artifact_manifest(fedora(), disk(Arch.AMD64), PROV)
    assert doc.digest == "sha256:" + hashlib.sha256(doc.body).hexdigest()
    assert doc.size == len(doc.body)
    again = plan.artifact_manifest(fedora(), disk(Arch.AMD64), PROV)
    assert again.body == doc.body  # deterministic: a re-run yields the same digest


def test_index_points_at_each_manifest() -> None:
    r = fedora()
    docs = [(a, plan.artifact_manifest(r, disk(a, i + 1), PROV)) for i, a in enumerate(Arch)]
    index = plan.artifact_index(r, docs, PROV).json()
    assert index["artifactType"] == mt.ARTIFACT_TYPE
    assert [(m["platform"], m["digest"], m["size"]) for m in index["manifests"]] == [
        ({"architecture": a.value, "os": "linux"}, d.digest, d.size) for a, d in docs
    ]
    assert oci_official.errors("index", index) == []


def test_index_refuses_duplicate_architecture() -> None:
    doc = plan.artifact_manifest(fedora(), disk(Arch.AMD64), PROV)
    with pytest.raises(PipelineError, match="two manifests for one architecture"):
        plan.artifact_index(fedora(), [(Arch.AMD64, doc), (Arch.AMD64, doc)], PROV)


def test_policy_violation_is_caught_before_push() -> None:
    bad = dataclasses.replace(disk(Arch.AMD64), base_digest="not-a-digest")
    with pytest.raises(PipelineError, match="base.digest"):
        plan.artifact_manifest(fedora(), bad, PROV)


def test_oversized_manifest_is_refused() -> None:
    huge = dataclasses.replace(
        fedora(), annotations=fedora().annotations | {"authors": "x" * 5_000_000}
    )
    with pytest.raises(PipelineError, match="over the 4194304 bytes"):
        plan.artifact_manifest(huge, disk(Arch.AMD64), PROV)


@settings(max_examples=60, deadline=None)
@given(
    version=st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._+-]{0,20}\Z"),
    name=st.from_regex(r"\A[a-z0-9]+([._-][a-z0-9]+){0,3}\Z"),
    archs=st.lists(st.sampled_from(list(Arch)), min_size=1, max_size=2, unique=True),
    layer=HEX,
    size=st.integers(min_value=1, max_value=2**50),
    description=st.text(min_size=1, max_size=80),
)
def test_any_valid_release_plans_to_valid_documents(
    version: str, name: str, archs: list[Arch], layer: str, size: int, description: str
) -> None:
    r = dataclasses.replace(fedora(), version=version, name=name, description=description)
    docs = []
    for arch in archs:
        d = plan.DiskArtifact(
            arch,
            Blob("sha256:" + layer, size),
            Blob("sha256:" + layer, size + 1),
            "sha256:" + layer,
        )
        doc = plan.artifact_manifest(r, d, PROV)
        parsed = json.loads(doc.body)
        assert oci_official.errors("manifest", parsed) == []
        assert schemas.problems(schemas.ARTIFACT_MANIFEST, parsed) == []
        assert parsed["layers"][0]["size"] == size
        assert parsed["annotations"][mt.ANN_DESCRIPTION] == description
        docs.append((arch, doc))
    index = plan.artifact_index(r, docs, PROV)
    assert oci_official.errors("index", index.json()) == []
    assert [m["digest"] for m in index.json()["manifests"]] == [d.digest for _, d in docs]


def test_official_schema_is_a_real_judge() -> None:
    """The independent judge must reject what the spec forbids, or it proves nothing."""
    doc = plan.artifact_manifest(fedora(), disk(Arch.AMD64), PROV).json()
    doc["layers"][0]["digest"] = "sha256 without colon"
    assert oci_official.errors("manifest", doc)
    del doc["config"]
    assert oci_official.errors("manifest", doc)
