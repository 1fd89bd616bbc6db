"""`boot REF`: pull a published disk (verified as `pull` verifies it) and boot it as publish
would, with the release's own Lima settings (its guestInstallPrefix: the boot checks what Lima
will do in it). The pull and boot record is written to WORKDIR/boot-published/ARCH/boot-report.json
whether the boot passed or not, and handed to the caller before a failure is raised."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pipeline.boot.checks import OriginExpectation
from pipeline.boot.guest import boot_disk, disk_info
from pipeline.boot.verdict import fail_if_bad
from pipeline.consume import pull
from pipeline.core.arch import Arch
from pipeline.core.progress import Reporter
from pipeline.model import lima_settings
from pipeline.model.plan import OsImageRef
from pipeline.shared.context import Options


def boot_published(
    reference: str,
    *,
    arch: Arch,
    options: Options,
    reporter: Reporter,
    emit: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Pull REFERENCE's `arch` disk into the work directory, boot it, record it, then raise
    the boot failure (after `emit` saw the record) if it did not pass."""
    work = options.workdir / "boot-published" / arch.value
    with reporter.stage(f"boot:{arch.value}", f"boot {reference} ({arch.platform})"):
        pulled = pull.pull(
            reference,
            arch=arch,
            output=f"{work}/",
            keep_compressed=False,
            options=options,
            reporter=reporter,
        )
        settings = lima_settings.of_release(pulled.chosen.lima, reference, reporter.info)
        try:
            disk_info(pulled.path, f"{reference}: the {arch.platform} disk")
            result = boot_disk(
                pulled.path,
                arch,
                work / "boot",
                install_prefix=settings.guest_install_prefix,
                reporter=reporter,
                origin=origin_of(pulled.chosen.os_image),
            )
        finally:
            pulled.path.unlink(missing_ok=True)
        # the pulled disk is gone once booted: the record names it by digest, not by path
        record = {k: v for k, v in pulled.as_json().items() if k != "path"}
        record["boot"] = result.to_dict()
        report = work / "boot-report.json"
        report.write_text(json.dumps(record, indent=2) + "\n")
        reporter.info(f"    {arch.value}: boot report {report}")
        if emit is not None:
            emit(record)
        fail_if_bad(result, reporter)
    return record


def origin_of(image: OsImageRef | None) -> OriginExpectation | None:
    """bootc-origin for a published disk: its origin names the OS image's repository path and
    tag (on whichever registry it was published to), and the image its disk names resolves
    from inside the guest at the registry it was read from (None: the release names none)."""
    if image is None:
        return None
    return OriginExpectation.of(image.origin, image.reference, any_host=True)
