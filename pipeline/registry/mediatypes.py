"""Media types the transport negotiates; the artifact's own types live with the publish code."""

from __future__ import annotations

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

# Registries must accept manifests up to 4 MiB (distribution-spec); docker-registry rejects more.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
