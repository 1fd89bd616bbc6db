"""The `licenses` annotation describes what the artifact holds (OCI image-spec annotations.md:
org.opencontainers.image.licenses is the "License(s) under which contained software is
distributed as an SPDX License Expression"): the disk, a Fedora Linux or CentOS Stream system.
The artifacts said `MIT`, which is neither the distribution's licensing nor this project's
(Apache-2.0, pyproject.toml), and this project's code is not in the disk at all."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from pipeline.core.errors import UsageError
from pipeline.model import release
from pipeline.model.plan import Provenance, release_annotations
from tests.factories import ROOT, manifest_data, write_manifest

MANIFESTS = sorted((ROOT / "manifests").glob("*.yaml"))
# the distribution each base is: its packages each carry their own licence, which no SPDX-list
# identifier covers, so a LicenseRef- (SPDX's form for a licence off the list) names it
DISTRIBUTIONS = {
    "quay.io/fedora/fedora-bootc": "LicenseRef-Fedora-Linux",
    "quay.io/centos-bootc/centos-bootc": "LicenseRef-CentOS-Stream",
}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.stem)
def test_each_release_names_the_distribution_its_disk_holds(path: Path) -> None:
    r = release.load(path)
    assert r.annotations["licenses"] == DISTRIBUTIONS[r.base.rsplit(":", 1)[0]]
    published = release_annotations(r, Provenance("2026-01-01T00:00:00Z", "abc"))
    assert published["org.opencontainers.image.licenses"] == r.annotations["licenses"]


def test_not_the_projects_own_licence() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]["text"]
    assert project == "Apache-2.0"
    assert {release.load(p).annotations["licenses"] for p in MANIFESTS}.isdisjoint({project, "MIT"})


@pytest.mark.parametrize(
    "value",
    ["LicenseRef-Fedora-Linux", "MIT", "GPL-2.0-or-later WITH Linux-syscall-note",
     "(MIT OR Apache-2.0) AND BSD-3-Clause"],
)  # fmt: skip
def test_an_spdx_expression_is_accepted(tmp_path: Path, value: str) -> None:
    data = manifest_data(annotations=manifest_data()["annotations"] | {"licenses": value})
    assert release.load(write_manifest(tmp_path, data)).annotations["licenses"] == value


@pytest.mark.parametrize("value", ["MIT license", "Apache 2.0", "see LICENSE", ""])
def test_anything_else_is_refused_with_the_key_named(tmp_path: Path, value: str) -> None:
    data = manifest_data(annotations=manifest_data()["annotations"] | {"licenses": value})
    with pytest.raises(UsageError) as info:
        release.load(write_manifest(tmp_path, data))
    assert f"annotations.licenses: {value!r} is not an SPDX license expression" in str(info.value)
