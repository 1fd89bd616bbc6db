"""Media types, annotation keys and the fixed descriptors this project publishes."""

from __future__ import annotations

import enum

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
# Docker's schema 2 types: accepted when reading a registry, never published.
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

# The empty JSON `{}` that artifact manifests carry as config (image-spec v1.1 empty descriptor).
EMPTY_JSON = b"{}"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
EMPTY_DATA_B64 = "e30="

# This project's artifact type: a bootable VM disk made from a bootc image, ready for Lima.
ARTIFACT_TYPE = "application/vnd.bootc-pipeline.vm-disk.v1"


class DiskFormat(enum.StrEnum):
    QCOW2 = "qcow2"

    @property
    def bib_output(self) -> str:
        """Where bootc-image-builder writes this format, relative to its output directory."""
        return {DiskFormat.QCOW2: "qcow2/disk.qcow2"}[self]

    @property
    def media_type(self) -> str:
        return {DiskFormat.QCOW2: "application/x-qemu-qcow2"}[self]


class Compression(enum.StrEnum):
    ZSTD = "zstd"

    def extension(self) -> str:
        return {Compression.ZSTD: ".zst"}[self]

    def media_type(self, disk: DiskFormat) -> str:
        """The layer media type: the disk's type with the compression as suffix (`+zstd`)."""
        return f"{disk.media_type}+{self.value}"


# Standard annotation keys (image-spec annotations.md).
A = "org.opencontainers.image."
ANN_CREATED = A + "created"
ANN_TITLE = A + "title"
ANN_DESCRIPTION = A + "description"
ANN_VERSION = A + "version"
ANN_REVISION = A + "revision"
ANN_SOURCE = A + "source"
ANN_LICENSES = A + "licenses"
ANN_VENDOR = A + "vendor"
ANN_URL = A + "url"
ANN_DOCUMENTATION = A + "documentation"
ANN_AUTHORS = A + "authors"
ANN_BASE_NAME = A + "base.name"
ANN_BASE_DIGEST = A + "base.digest"

# This project's own keys: what the layer holds once decompressed (as coreos-assembler's meta.json).
ANN_UNCOMPRESSED_DIGEST = "org.bootc-pipeline.disk.uncompressed-digest"
ANN_UNCOMPRESSED_SIZE = "org.bootc-pipeline.disk.uncompressed-size"
# the boot check of this architecture's disk before it was pushed: passed, or skipped
ANN_BOOT_CHECK = "org.bootc-pipeline.boot-check"
# sha256 of the release's inputs record (publishing/inputs.py): equal inputs, nothing to rebuild
ANN_INPUTS = "org.bootc-pipeline.inputs"
# What a consumer's Lima template needs beyond the images (the release manifest's `lima:`), on the
# index and every manifest, so `lima REF` and `boot REF` use the release's own settings
ANN_LIMA_MINIMUM_VERSION = "org.bootc-pipeline.lima.minimum-version"
ANN_LIMA_GUEST_INSTALL_PREFIX = "org.bootc-pipeline.lima.guest-install-prefix"

# The release's bootc container image (README "Where the OS image lives"): an OCI image per
# architecture under an OCI index, in its own repository; the disk names it.
OCI_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
# Named by repository path on the disks' own registry, not by host: the same inputs pushed to
# another registry (--registry, a mirror) give the same manifests, as the disks' own do.
ANN_OS_IMAGE = "org.bootc-pipeline.os-image"  # REPO-os@sha256:<this arch's image manifest>
# the disk's bootc origin is ostree-unverified-registry:<registry>/<REPO-os>:<this tag>
ANN_OS_IMAGE_ORIGIN_TAG = "org.bootc-pipeline.os-image.origin-tag"
ANN_OS_IMAGE_INDEX = "org.bootc-pipeline.os-image.index"  # on the disk index: REPO-os@<index>
# bootc's origin for an image installed from a registry under the unverified signature policy
# (bootc crates/ostree-ext/src/container/mod.rs): this, then REGISTRY/REPO:TAG
ORIGIN_PREFIX = "ostree-unverified-registry:"

# Registries must accept manifests up to 4 MiB (distribution-spec); docker-registry rejects more.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
