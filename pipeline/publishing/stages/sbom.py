"""SBOM stage: an SPDX JSON SBOM of each architecture's built OS image, made by syft.

syft reads the image from a docker-archive the engine saves (`docker save` through the Docker
API, which Podman serves too), so it needs no access to the engine's store or socket and works
with any base the build used (the stand-ins under tests/ included). The SBOM is a stage of the
runner (pipeline/stages/runner.py) after the build it describes (a rebuild makes a new one),
and is attached to that architecture's disk manifest as an OCI
1.1 referrer by the push stage (pipeline/trust/referrers.py). The OS image of issue 15, once
published, becomes another subject of the same SBOM.

syft is found as $BOOTC_PIPELINE_SYFT, else on PATH; without it the publish says so once and
the report records that no SBOM was made (`go install github.com/anchore/syft/cmd/syft@v1.57.1`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from pipeline.core.arch import Arch
from pipeline.core.errors import PipelineError
from pipeline.core.files import atomic_write
from pipeline.publishing.stages import runner
from pipeline.publishing.stages.build import built_image
from pipeline.shared.context import Context

SYFT_ENV = "BOOTC_PIPELINE_SYFT"
SBOM_NAME = "sbom.spdx.json"
SYFT_TIMEOUT_SECONDS = 1800
INSTALL_HINT = "go install github.com/anchore/syft/cmd/syft@v1.57.1 (or set BOOTC_PIPELINE_SYFT)"


def syft_binary() -> str | None:
    return os.environ.get(SYFT_ENV) or shutil.which("syft")


def sbom_path(ctx: Context, arch: Arch) -> Path:
    return ctx.arch_dir(arch).root / SBOM_NAME


def made_sbom(ctx: Context, arch: Arch) -> Path | None:
    """The SBOM of the image the disk was made from, if one was made for that very build."""
    path = sbom_path(ctx, arch)
    made = runner.current(ctx.arch_dir(arch), "sbom") is not None
    return path if made and path.is_file() else None


def syft_argv(syft: str, archive: Path) -> list[str]:
    return [syft, "scan", f"docker-archive:{archive}", "-o", "spdx-json", "-q"]


def sbom(ctx: Context, arch: Arch) -> Path | None:
    syft = syft_binary()
    if syft is None:
        ctx.reporter.info(f"    {arch.value}: no SBOM: syft not found ({INSTALL_HINT})")
        return None
    built = built_image(ctx, arch)
    directory = ctx.arch_dir(arch)
    path = sbom_path(ctx, arch)

    def act() -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="sbom-", dir=directory.root) as temp:
            archive = ctx.engine.save_image(built.tag, Path(temp) / "image.tar")
            done = subprocess.run(
                syft_argv(syft, archive),
                capture_output=True,
                timeout=SYFT_TIMEOUT_SECONDS,
                env=os.environ | {"SYFT_CHECK_FOR_APP_UPDATE": "false"},
                check=False,
            )
        if done.returncode != 0:
            last = (done.stderr.decode(errors="replace").strip().splitlines() or ["?"])[-1][:300]
            raise PipelineError(f"syft could not make the SBOM of {built.tag}: {last}")
        atomic_write(path, done.stdout)
        return {"image": built.id, "path": str(path)}

    runner.run(
        directory,
        "sbom",
        {"image": built.id},
        act,
        reporter=ctx.reporter,
        kept=lambda outputs: path.is_file(),
        shown="SBOM",
    )
    return path
