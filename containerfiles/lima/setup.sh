#!/bin/sh
# Make a bootc image Lima-ready, after the distribution's packages are installed.
# Shared by every Containerfile here; runs at build time, where / and /usr are still writable.
set -eu

units=/usr/lib/systemd/system

# sshd: Lima talks to the guest over ssh.
systemctl enable sshd.service

# cloud-init: Lima attaches a NoCloud `cidata` ISO. Unit names changed in cloud-init 24.3
# (cloud-init.service became cloud-init-network.service, cloud-init-main.service appeared):
# enable whichever this version ships, and insist on the network stage being among them.
enabled=""
for unit in cloud-init-local.service cloud-init-main.service cloud-init-network.service \
            cloud-init.service cloud-config.service cloud-final.service; do
    if [ -e "$units/$unit" ]; then
        systemctl enable "$unit"
        enabled="$enabled $unit"
    fi
done
case "$enabled" in
    *cloud-init.service*|*cloud-init-network.service*) ;;
    *) echo "setup.sh: no cloud-init network unit found in $units" >&2; exit 1 ;;
esac

# Lima installs its guest agent under guestInstallPrefix (default /usr/local), but /usr is
# read-only at runtime. Point /usr/local at /var/usrlocal, as Fedora CoreOS does, and the
# generated Lima template sets guestInstallPrefix: /var/usrlocal, so both names work.
if [ -d /usr/local ] && [ ! -L /usr/local ]; then
    if [ -n "$(find /usr/local -type f -o -type l | head -n 1)" ]; then
        echo "setup.sh: /usr/local is not empty; refusing to replace it with a link" >&2
        exit 1
    fi
    rm -rf /usr/local
fi
[ -L /usr/local ] || ln -s ../var/usrlocal /usr/local

# Lima mounts the host's home at the same path; on macOS that is /Users/NAME, and / is
# read-only at runtime too, so give it a writable target under /var.
[ -e /Users ] || ln -s var/Users /Users

# /var is the machine's state, not the image's (bootc container lint warns on content there):
# systemd-tmpfiles creates these directories at boot instead.
mkdir -p /usr/lib/tmpfiles.d
cp /usr/share/bootc-lima/lima-guest.conf /usr/lib/tmpfiles.d/lima-guest.conf
chmod 0644 /usr/lib/tmpfiles.d/lima-guest.conf

# Prove the tools Lima needs are present: a missing one fails the build, not the first boot.
for tool in /usr/sbin/sshd /usr/bin/cloud-init /usr/bin/sshfs /usr/bin/sudo \
            /usr/bin/newuidmap /usr/bin/newgidmap; do
    [ -x "$tool" ] || { echo "setup.sh: $tool is missing" >&2; exit 1; }
done
