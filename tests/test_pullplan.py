"""Choosing what to pull (pipeline/model/pullplan.py): pure functions over fetched documents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.consume.pull import parse_platform
from pipeline.core import mediatypes as mt
from pipeline.core.arch import Arch
from pipeline.core.digest import Blob
from pipeline.core.errors import PipelineError
from pipeline.model import plan
from pipeline.model.pullplan import (
    LAYER_MEDIA_TYPE,
    arch_release,
    choose_layer,
    choose_manifest,
    compressed_name,
    linux_archs,
    linux_digests,
    output_path,
    safe_title,
)
from tests.factories import fedora

D1, D2, D3 = ("sha256:" + c * 64 for c in "123")


def entry(arch: str, digest: str, artifact_type: str | None = None) -> dict[str, Any]:
    e: dict[str, Any] = {
        "mediaType": mt.OCI_MANIFEST,
        "digest": digest,
        "size": 500,
        "platform": {"os": "linux", "architecture": arch},
    }
    if artifact_type:
        e["artifactType"] = artifact_type
    return e


def test_manifest_is_chosen_by_platform() -> None:
    index = {"manifests": [entry("amd64", D1), entry("arm64", D2)]}
    assert choose_manifest(index, Arch("arm64"), "i") == (D2, 500)
    assert choose_manifest(index, Arch("amd64"), "i") == (D1, 500)


def test_several_matches_are_narrowed_by_this_projects_artifact_type() -> None:
    index = {"manifests": [entry("arm64", D1, "other/type"), entry("arm64", D2, mt.ARTIFACT_TYPE)]}
    assert choose_manifest(index, Arch("arm64"), "i")[0] == D2
    both = {"manifests": [entry("arm64", D1), entry("arm64", D3)]}
    with pytest.raises(PipelineError, match="2 linux/arm64 manifests"):
        choose_manifest(both, Arch("arm64"), "i")


def test_missing_platform_lists_what_is_there() -> None:
    with pytest.raises(PipelineError, match=r"no linux/arm64 manifest \(it has linux/amd64\)"):
        choose_manifest({"manifests": [entry("amd64", D1)]}, Arch("arm64"), "i")


@pytest.mark.parametrize("index", [[], {"manifests": "x"}, {"manifests": [{"digest": "nope"}]}])
def test_garbage_index_is_one_error(index: Any) -> None:
    with pytest.raises(PipelineError):
        choose_manifest(index, Arch("amd64"), "i")


def manifest(*layers: dict[str, Any]) -> dict[str, Any]:
    return {"layers": list(layers)}


def layer(media_type: str = LAYER_MEDIA_TYPE, **annotations: str) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": D1, "size": 10, "annotations": annotations}


def test_layer_with_uncompressed_annotations() -> None:
    chosen = choose_layer(
        manifest(
            layer(
                **{
                    mt.ANN_TITLE: "x.qcow2.zst",
                    mt.ANN_UNCOMPRESSED_DIGEST: D2,
                    mt.ANN_UNCOMPRESSED_SIZE: "42",
                }
            )  # fmt: skip
        ),
        "m",
    )
    assert chosen.blob.digest == D1 and chosen.blob.size == 10
    assert chosen.title == "x.qcow2.zst"
    assert chosen.uncompressed is not None and chosen.uncompressed.size == 42
    assert chosen.uncompressed_digest == D2


def test_seed_layer_has_no_uncompressed_facts() -> None:
    chosen = choose_layer(
        manifest(layer(**{mt.ANN_TITLE: "fedora-bootc-cloud-eln.qcow2.zst"})), "m"
    )
    assert chosen.uncompressed is None and chosen.uncompressed_digest is None


def test_one_disk_layer_is_required() -> None:
    with pytest.raises(PipelineError, match="0 layers of type"):
        choose_layer(manifest(layer("application/vnd.oci.image.layer.v1.tar")), "m")
    with pytest.raises(PipelineError, match="2 layers of type"):
        choose_layer(manifest(layer(), layer()), "m")


@pytest.mark.parametrize(
    "title",
    ["", ".", "..", "../x.zst", "/etc/passwd", "a/b.zst", "a\\b.zst", ".bashrc", "-rf",
     "a\0b", "line\nbreak", "x" * 300],
)  # fmt: skip
def test_unsafe_titles(title: str) -> None:
    with pytest.raises(PipelineError, match="refusing layer title"):
        safe_title(title, "m")


def test_names_come_from_the_title_or_the_repository() -> None:
    titled = choose_layer(manifest(layer(**{mt.ANN_TITLE: "disk.qcow2"})), "m")
    assert compressed_name(titled, "a/b", Arch("arm64"), "m") == "disk.qcow2.zst"
    untitled = choose_layer(manifest(layer()), "m")
    assert compressed_name(untitled, "org/fedora", Arch("arm64"), "m") == "fedora-arm64.qcow2.zst"
    assert compressed_name(untitled, "org/fedora", None, "m") == "fedora.qcow2.zst"


def test_output_path(tmp_path: Path) -> None:
    assert output_path(str(tmp_path), "n") == tmp_path / "n"
    assert output_path(f"{tmp_path}/new/", "n") == tmp_path / "new" / "n"
    assert output_path(str(tmp_path / "file.qcow2"), "n") == tmp_path / "file.qcow2"


def test_platforms() -> None:
    assert parse_platform("linux/arm64") is Arch.ARM64
    assert parse_platform("x86_64") is Arch.AMD64
    with pytest.raises(PipelineError):
        parse_platform("darwin/arm64")


# -- a release read back: pullplan.arch_release over the bytes publish planned ----------------

PROVENANCE = plan.Provenance("2026-11-28T05:00:00Z", "0123456789abcdef0123456789abcdef01234567")
LAYER = Blob(D1, 10)
PLAIN = Blob(D2, 4096)


def planned(arch: Arch) -> plan.Document:
    disk = plan.DiskArtifact(arch, LAYER, PLAIN, D3)
    return plan.artifact_manifest(fedora(), disk, PROVENANCE)


def test_this_projects_manifest_gives_the_uncompressed_disk_to_verify() -> None:
    """publish writes the uncompressed digest and size on the manifest, not on the layer: a pull
    that read only the layer's annotations verified the qcow2 against nothing."""
    chosen = choose_layer(planned(Arch.AMD64).json(), "m")
    assert chosen.uncompressed == PLAIN
    assert chosen.uncompressed_digest == PLAIN.digest


@pytest.mark.parametrize("arch", list(Arch))
def test_a_planned_manifest_reads_back_as_its_release(arch: Arch) -> None:
    manifest = planned(arch)
    found = arch_release(manifest, "m", arch=arch, level=10)
    assert (found.arch, found.layer, found.uncompressed, found.manifest) == (
        arch,
        LAYER,
        PLAIN,
        manifest,
    )


def test_a_manifest_read_as_another_architecture_is_refused() -> None:
    with pytest.raises(PipelineError, match=r"\(an amd64 disk\), not an arm64 disk"):
        arch_release(planned(Arch.AMD64), "m", arch=Arch.ARM64)


def test_a_manifest_without_the_uncompressed_annotations_is_no_release() -> None:
    body = planned(Arch.AMD64).json()
    del body["annotations"][mt.ANN_UNCOMPRESSED_SIZE]
    del body["annotations"][mt.ANN_UNCOMPRESSED_DIGEST]
    document = plan.Document(mt.OCI_MANIFEST, plan.encode(body))
    with pytest.raises(PipelineError, match="not a disk manifest this project published"):
        arch_release(document, "m", arch=Arch.AMD64)


def test_a_manifest_that_is_not_json_is_one_error() -> None:
    with pytest.raises(PipelineError, match="^m: not valid JSON$"):
        arch_release(plan.Document(mt.OCI_MANIFEST, b"<html>"), "m", arch=Arch.AMD64)


def test_index_platforms() -> None:
    other = entry("s390x", D3)
    attestation = {**entry("amd64", D2), "platform": {"os": "unknown", "architecture": "unknown"}}
    index = {"manifests": [entry("arm64", D1), attestation, other, entry("arm64", D2)]}
    assert linux_digests(index, "i") == {"arm64": D1, "s390x": D3}
    assert linux_archs(index, "i") == [Arch.ARM64]
