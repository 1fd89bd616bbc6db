"""What the UEFI firmware's own console lines say (OVMF and AAVMF print the same BdsDxe lines).

A disk without a boot loader is over in the firmware's first minute: BdsDxe fails to load the
disk's boot option (`BdsDxe: failed to load Boot0001 "UEFI Misc Device" from ...: Not Found`)
and falls through to what is left: the EFI shell, network boot (`Start PXE over IPv4`, `Start
HTTP Boot over IPv4`) or nothing (`No bootable option or device was found`). Waiting for ssh
after that only waits out the budget.
"""

from __future__ import annotations

import re

NOTHING_TO_BOOT = "the firmware found nothing to boot on the disk"
FAILED_LOAD = re.compile(r"BdsDxe: failed to load (Boot[0-9A-Fa-f]{4} \"[^\"]*\".*?Not Found)")
FELL_THROUGH = re.compile(
    r"BdsDxe: No bootable option or device was found"
    r"|Start (?:PXE|HTTP Boot) over IPv[46]"
    r"|BdsDxe: starting Boot[0-9A-Fa-f]{4} \"EFI Internal Shell\""
    r"|UEFI Interactive Shell"
)


def nothing_to_boot(console: str, firmware: str) -> str | None:
    """The failure, quoting the firmware, once it failed to load the disk's boot option and
    moved on to something that is not the disk; None while it may still boot."""
    failed = FAILED_LOAD.search(console)
    if failed is None or FELL_THROUGH.search(console, failed.end()) is None:
        return None
    return f"{NOTHING_TO_BOOT} ({firmware}: {failed.group(1)})"
