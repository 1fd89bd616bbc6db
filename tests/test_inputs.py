"""The inputs record behind "up to date": what changes it and what does not."""

from __future__ import annotations

import json
import os
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from pipeline.core import mediatypes as mt
from pipeline.core.arch import Arch
from pipeline.core.digest import of_bytes
from pipeline.core.errors import PipelineError
from pipeline.publishing import inputs
from pipeline.registry.client import FetchedManifest

ARCHS = (Arch.AMD64, Arch.ARM64)


def _context(root: Path) -> Path:
    (root / "lima").mkdir(parents=True)
    (root / "fedora.Containerfile").write_text("ARG BASE\nFROM ${BASE}\n")
    (root / "lima" / "setup.sh").write_text("#!/bin/sh\n")
    return root


def test_build_context_digest_follows_content_names_and_modes(tmp_path: Path) -> None:
    root = _context(tmp_path / "ctx")
    first = inputs.tree_digest(root)
    assert inputs.tree_digest(_context(tmp_path / "copy")) == first  # not the location
    os.utime(root / "lima" / "setup.sh", (0, 0))
    assert inputs.tree_digest(root) == first  # not the times
    (root / "lima" / "setup.sh").chmod(0o755)
    executable = inputs.tree_digest(root)
    assert executable != first
    (root / "lima" / "setup.sh").write_text("#!/bin/sh\necho changed\n")
    assert inputs.tree_digest(root) not in (first, executable)
    (root / "lima" / "setup.sh").rename(root / "lima" / "other.sh")
    assert inputs.tree_digest(root) not in (first, executable)


def _fetched(document: dict[str, Any], media_type: str) -> FetchedManifest:
    body = json.dumps(document).encode()
    return FetchedManifest(body, media_type, of_bytes(body).digest)


def test_base_digest_per_architecture_from_a_list() -> None:
    digests = {arch: "sha256:" + str(n) * 64 for n, arch in enumerate(("amd64", "arm64"), 1)}
    listing: dict[str, Any] = {
        "mediaType": mt.DOCKER_MANIFEST_LIST,
        "manifests": [
            {"digest": "sha256:" + "9" * 64, "platform": {"os": "linux", "architecture": "s390x"}},
            *({"digest": d, "platform": {"os": "linux", "architecture": a}}
              for a, d in digests.items()),
        ],
    }  # fmt: skip
    found = inputs._per_arch(_fetched(listing, mt.DOCKER_MANIFEST_LIST), ARCHS, "b:1")
    assert found == digests
    single = _fetched({"mediaType": mt.OCI_MANIFEST}, mt.OCI_MANIFEST)
    assert inputs._per_arch(single, ARCHS, "b:1") == {
        "amd64": single.digest,
        "arm64": single.digest,
    }
    del listing["manifests"][2]
    with pytest.raises(PipelineError, match="the base image b:1 has no arm64 image"):
        inputs._per_arch(_fetched(listing, mt.OCI_INDEX), ARCHS, "b:1")


def test_inputs_digest_is_canonical() -> None:
    a = {"base": "x", "baseDigests": {"amd64": "1", "arm64": "2"}}
    b = {"baseDigests": {"arm64": "2", "amd64": "1"}, "base": "x"}
    assert inputs.digest_of(a) == inputs.digest_of(b)
    assert inputs.digest_of(a) != inputs.digest_of(a | {"base": "y"})


def test_a_new_version_of_the_code_is_a_new_input(tmp_path: Path) -> None:
    """The record names the installed package's version (its metadata, not a constant) and a
    digest of the code that runs: a change of the code with the version left alone still
    changes the inputs, so the next publish republishes."""
    assert inputs.pipeline_version() == metadata.version("bootc-pipeline")
    copy = tmp_path / "pipeline"
    shutil.copytree(inputs.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "__pycache__").mkdir(exist_ok=True)
    (copy / "__pycache__" / "inputs.cpython-311.pyc").write_bytes(b"not code that is read")
    live = inputs.pipeline_code()
    assert inputs.pipeline_code(copy) == live  # the same code anywhere, bytecode ignored
    stage = copy / "publishing" / "stages" / "compress.py"
    stage.write_text(stage.read_text() + "\n# a new version of the code\n")
    assert inputs.pipeline_code(copy) != live
    (copy / "model" / "schemas" / "arch-result.schema.json").write_text("{}")
    assert inputs.pipeline_code(copy) != live
