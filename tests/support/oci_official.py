"""The official OCI image-spec v1.1.1 JSON schemas, loaded as an independent judge.

They live in ../shared/oci-image-spec-v1.1.1 beside the checkout (never copied into the project);
OCI_IMAGE_SPEC_DIR overrides the location.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import referencing
import referencing.jsonschema

ALIASES = {
    "content-descriptor.json": [
        "https://opencontainers.org/schema/descriptor",
        "https://opencontainers.org/schema/image/content-descriptor.json",
    ],
    "defs-descriptor.json": [
        "https://opencontainers.org/schema/image/descriptor/mediaType",
        "https://opencontainers.org/schema/defs-descriptor.json",
        "https://opencontainers.org/schema/image/defs-descriptor.json",
    ],
    "defs.json": [
        "https://opencontainers.org/schema/defs.json",
        "https://opencontainers.org/schema/image/defs.json",
        "https://opencontainers.org/schema/image/descriptor/defs.json",
    ],
    "image-manifest-schema.json": ["https://opencontainers.org/schema/image/manifest"],
    "image-index-schema.json": ["https://opencontainers.org/schema/image/index"],
    "config-schema.json": ["https://opencontainers.org/schema/image/config"],
    "image-layout-schema.json": ["https://opencontainers.org/schema/image/layout"],
}


def spec_dir() -> Path:
    default = Path(__file__).resolve().parents[3] / "shared" / "oci-image-spec-v1.1.1"
    path = Path(os.environ.get("OCI_IMAGE_SPEC_DIR", default))
    if not (path / "image-manifest-schema.json").is_file():
        raise RuntimeError(f"official OCI schemas not found in {path} (set OCI_IMAGE_SPEC_DIR)")
    return path


@functools.cache
def _validators() -> dict[str, jsonschema.Draft4Validator]:
    base = spec_dir()
    pairs = []
    loaded = {}
    for name, aliases in ALIASES.items():
        contents = json.loads((base / name).read_text())
        loaded[name] = contents
        resource = referencing.jsonschema.DRAFT4.create_resource(contents)
        for uri in [name, *aliases]:
            pairs.append((uri, resource))
    registry: referencing.Registry[Any] = referencing.Registry().with_resources(pairs).crawl()
    return {
        kind: jsonschema.Draft4Validator(loaded[file], registry=registry)
        for kind, file in (
            ("manifest", "image-manifest-schema.json"),
            ("index", "image-index-schema.json"),
        )
    }


def errors(kind: str, document: Any) -> list[str]:
    """The official schema's complaints about a manifest (`kind="manifest"`) or an index."""
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in _validators()[kind].iter_errors(document)
    ]
