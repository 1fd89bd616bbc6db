"""The disk builders a release manifest can choose (`builder.tool`), each with its contract.

bootc-image-builder stays the default: its code now lives in osbuild/image-builder and its
container is built from there, and upstream says it "will stay available"
(osbuild/image-builder#2610); image-builder's own bootc form is newer and its bootc migration
guide (doc/20-advanced/20-bootc/50-migration.md) is still only a title. Switch the default when
a release of image-builder's container says bib is going.
"""

from __future__ import annotations

import enum
from pathlib import Path

from pipeline.core.mediatypes import DiskFormat
from pipeline.model import bib, image_builder
from pipeline.model.bib import BuilderRun, DiskJob


class Builder(enum.StrEnum):
    BIB = "bootc-image-builder"
    IMAGE_BUILDER = "image-builder"

    @property
    def default_image(self) -> str:
        return {
            Builder.BIB: bib.DEFAULT_BUILDER_IMAGE,
            Builder.IMAGE_BUILDER: image_builder.DEFAULT_IMAGE,
        }[self]

    def run(self, job: DiskJob) -> BuilderRun:
        """The builder's container run for JOB (its `chown` is used only by bib)."""
        if self is Builder.BIB:
            return bib.builder_run(job)
        return image_builder.builder_run(job)

    def output_disk(self, output_dir: Path, disk_format: DiskFormat) -> Path:
        if self is Builder.BIB:
            return bib.output_disk(output_dir, disk_format)
        return image_builder.output_disk(output_dir, disk_format)
