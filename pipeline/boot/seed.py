"""The NoCloud `cidata` seed, shaped like the one Lima writes (lima-vm/lima
pkg/cidata/cidata.TEMPLATE.d: user-data, meta-data, network-config), for a boot on plain QEMU.

The user-data keys are Lima's for a Linux guest with passwordless sudo: growpart, one user with
uid, homedir, shell, sudo, lock_passwd and ssh-authorized-keys, and the per-boot script that
mounts the seed by label and runs its boot.sh. Lima's boot.sh runs Lima's own boot scripts; here
it only records that it ran (the `lima-boot-hook` check), since the guest agent is Lima's part.
"""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import dataclass

from pipeline.boot.machine import MAC

BOOT_MARKER = "/run/bootc-pipeline-lima-boot.sh-ran"
SLIRP_NIC = "eth0"  # Lima's SlirpNICName
MOUNT_OPTIONS = "ro,mode=0700,dmode=0700,overriderockperm,exec,uid=0"


@dataclass(frozen=True)
class SeedUser:
    name: str
    uid: int

    @property
    def home(self) -> str:
        return f"/home/{self.name}.linux"  # Lima's default guest home


def host_user() -> SeedUser:
    """Lima copies the host user's name and uid; root has none worth copying."""
    uid = os.getuid()
    name = getpass.getuser() if uid != 0 else "lima"
    return SeedUser(name=name, uid=uid if uid >= 1000 else 1000)


def _q(text: str) -> str:
    return json.dumps(text)  # Lima quotes with Go's %q: the same for these strings


def user_data(user: SeedUser, public_key: str) -> str:
    return f"""#cloud-config
# vim:syntax=yaml

growpart:
  mode: auto
  devices: ['/']

users:
  - name: "{user.name}"
    uid: "{user.uid}"
    homedir: "{user.home}"
    shell: /bin/bash
    sudo: ALL=(ALL) NOPASSWD:ALL
    lock_passwd: true
    ssh-authorized-keys:
      - {_q(public_key.strip())}
write_files:
 - content: |
      #!/bin/sh
      set -eux
      LIMA_CIDATA_MNT="/mnt/lima-cidata"
      LIMA_CIDATA_DEV="/dev/disk/by-label/cidata"
      mkdir -p -m 700 "${{LIMA_CIDATA_MNT}}"
      mount -o {MOUNT_OPTIONS} "${{LIMA_CIDATA_DEV}}" "${{LIMA_CIDATA_MNT}}"
      export LIMA_CIDATA_MNT
      exec "${{LIMA_CIDATA_MNT}}"/boot.sh
   owner: root:root
   path: /var/lib/cloud/scripts/per-boot/00-lima.boot.sh
   permissions: '0755'
"""


def meta_data(instance_id: str, hostname: str) -> str:
    return f"instance-id: {instance_id}\nlocal-hostname: {hostname}\n"


def network_config() -> str:
    return f"""version: 2
ethernets:
  {SLIRP_NIC}:
    match:
      macaddress: '{MAC}'
    dhcp4: true
    set-name: {SLIRP_NIC}
    dhcp4-overrides:
      route-metric: 200
    dhcp-identifier: mac
"""


def boot_sh() -> str:
    """Stands in for Lima's boot.sh (which runs boot.Linux/*.sh): proves the hook ran as root."""
    return f'#!/bin/sh\nset -eu\necho "$(id -u) $LIMA_CIDATA_MNT" > {BOOT_MARKER}\n'
