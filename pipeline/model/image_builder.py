"""osbuild's `image-builder` (bootc-image-builder's successor), its contract as data.

Pure: the argv and mounts of one container run; engine.py runs it (the same way as bib).
Read from osbuild/image-builder at commit a1f35083b02774adbd51da7e96494c56ef1323ee:

- The container (`Containerfile`): ENTRYPOINT `/usr/bin/image-builder`, WORKDIR `/output`,
  VOLUMEs `/output`, `/var/cache/image-builder/store`, `/var/lib/containers/storage`; published
  as `ghcr.io/osbuild/image-builder-cli` (doc/00-installation.md, README.image-builder.md; the
  release workflow `.github/workflows/container.yaml` also pushes `ghcr.io/osbuild/image-builder`
  with the release tags). It must run `--privileged` (doc/00-installation.md: "due to the way
  filesystems work in Linux"; pkg/setup/setup.go EnsureEnvironment mounts a devtmpfs and a tmpfs
  and relabels osbuild with `install_exec_t`, hence `label=type:unconfined_t` as for bib).
- The command (cmd/image-builder/cmd.go setupBuildCmd, setupManifestCmd): `build <image-type>`
  with `--bootc-ref REF` (not with `--distro`), `--bootc-default-fs FS` (the root filesystem when
  the image names none; a `disk.yaml` in the image wins, main.go getImage), `--arch` (cross-arch
  through qemu-user), `--blueprint FILE` (`.toml` or `.json`, unknown keys refused:
  internal/blueprintload), `--output-dir`, `--output-name`, `--with-sbom` (SPDX), `--with-manifest`,
  `--progress auto|verbose|term`. There is no `--chown`: the output is root's.
- The image comes from the local container storage unless `--bootc-pull-container`
  (doc/01-usage.md "bootc": "must be in the container storage of the user running image-builder
  before the start of the build"): the storage is mounted at /var/lib/containers/storage.
- Output names (cmd/image-builder/build.go buildImage, main.go basenameFor): osbuild's export
  `<output-dir>/<export>/disk.qcow2` is renamed to `<output-dir>/<output-name>.qcow2`; SBOMs are
  `<output-name>.<pipeline>.spdx.json`, the manifest `<output-name>.osbuild-manifest.json`.
- Failure: `log.Fatalf("error: %s")` (main.go main): one stderr line `error: MESSAGE`, status 1.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core.mediatypes import DiskFormat
from pipeline.model.bib import STORAGE, BuilderRun, DiskJob

NAME = "image-builder"
DEFAULT_IMAGE = "ghcr.io/osbuild/image-builder-cli:latest"
OUTPUT = "/output"
BLUEPRINT = "/blueprint.json"  # bib's config keys are a subset of the blueprint's
OUTPUT_NAME = "disk"


def builder_run(job: DiskJob) -> BuilderRun:
    """`image-builder build --bootc-ref IMAGE ... qcow2`: the image from the mounted storage."""
    command = (
        "build",
        "--bootc-ref",
        job.bootc_image,
        "--bootc-default-fs",
        job.rootfs,
        "--arch",
        job.arch.uname,
        "--blueprint",
        BLUEPRINT,
        "--output-dir",
        OUTPUT,
        "--output-name",
        OUTPUT_NAME,
        "--progress",
        "verbose",
        job.disk_format.value,
    )
    mounts = (
        (job.graph_root, STORAGE, "rw"),
        (job.output_dir, OUTPUT, "rw"),
        (job.config_path, BLUEPRINT, "ro"),
    )
    return BuilderRun(job.builder_image, command, mounts, name=NAME)


def output_disk(output_dir: Path, disk_format: DiskFormat) -> Path:
    return output_dir / f"{OUTPUT_NAME}.{disk_format.value}"
