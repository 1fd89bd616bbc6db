"""The release's own Lima settings travel in the release (model/lima_settings.py): published as
index and manifest annotations, read back by `lima REF` and `boot REF`."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.core import mediatypes as mt
from pipeline.core.arch import Arch
from pipeline.core.digest import Blob
from pipeline.core.errors import PipelineError
from pipeline.model import lima_settings, plan, schemas
from tests.factories import fedora

PROVENANCE = plan.Provenance("2026-11-28T05:00:00Z", "0123456789abcdef0123456789abcdef01234567")
OWN = lima_settings.Settings("1.2.3", "/opt/guest")


def test_the_release_carries_its_own_settings_on_index_and_manifests() -> None:
    release = dataclasses.replace(
        fedora(), minimum_lima_version="1.2.3", guest_install_prefix="/opt/guest"
    )
    disk = plan.DiskArtifact(
        Arch.AMD64,
        Blob("sha256:" + "a" * 64, 10),
        Blob("sha256:" + "b" * 64, 20),
        "sha256:" + "c" * 64,
    )
    manifest = plan.artifact_manifest(release, disk, PROVENANCE)  # schema-checked as planned
    index = plan.artifact_index(release, [(Arch.AMD64, manifest)], PROVENANCE)
    for document, schema in (
        (manifest, schemas.ARTIFACT_MANIFEST),
        (index, schemas.ARTIFACT_INDEX),
    ):
        body = document.json()
        assert schemas.problems(schema, body) == []
        assert lima_settings.from_annotations(body["annotations"], "d") == OWN


def test_a_release_from_before_carries_none_and_the_defaults_are_said_once() -> None:
    assert lima_settings.from_annotations({mt.ANN_VERSION: "40.1.0"}, "d") is None
    said: list[str] = []
    found = lima_settings.of_release(None, "ghcr.io/o/r:1", said.append)
    assert found == lima_settings.DEFAULTS == lima_settings.Settings.of(fedora())
    assert len(said) == 1 and said[0].startswith("ghcr.io/o/r:1 carries no Lima settings")
    assert lima_settings.of_release(OWN, "r", said.append) == OWN and len(said) == 1


@pytest.mark.parametrize(
    ("annotations", "key"),
    [
        ({mt.ANN_LIMA_MINIMUM_VERSION: "1.0.0"}, mt.ANN_LIMA_GUEST_INSTALL_PREFIX),
        ({mt.ANN_LIMA_GUEST_INSTALL_PREFIX: "/var/usrlocal"}, mt.ANN_LIMA_MINIMUM_VERSION),
        (OWN.annotations() | {mt.ANN_LIMA_MINIMUM_VERSION: "latest"}, mt.ANN_LIMA_MINIMUM_VERSION),
        (
            OWN.annotations() | {mt.ANN_LIMA_GUEST_INSTALL_PREFIX: "opt"},
            mt.ANN_LIMA_GUEST_INSTALL_PREFIX,
        ),
    ],
)
def test_half_or_wrong_settings_are_one_error_naming_the_key(
    annotations: dict[str, str], key: str
) -> None:
    with pytest.raises(PipelineError, match=f"^where: annotation {key} is "):
        lima_settings.from_annotations(annotations, "where")
