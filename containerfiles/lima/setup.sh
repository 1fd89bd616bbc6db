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

# Lima's 30-install-packages.sh links fusermount to fusermount3 when user containerd is on and
# /usr/bin/fusermount is missing (a stargz-snapshotter workaround); on a read-only /usr that write
# fails at every boot, so make the link here, as that script would.
if [ ! -e /usr/bin/fusermount ] && [ -e /usr/bin/fusermount3 ]; then
    ln -s fusermount3 /usr/bin/fusermount
fi

# Prove every command Lima's boot scripts look for is here: a missing one fails the build, not the
# user's first boot (on a read-only /usr, Lima's `dnf install` of it fails at every boot).
# Read from lima-vm/lima pkg/cidata/cidata.TEMPLATE.d/ at commit
# 183a60d721bf9cd969f366301bf90710b8c6a28e (boot.sh, boot.Linux/*.sh); "PACKAGE: WHY" per line.
# Looked for there but not required: growpart, resize2fs (only for Lima's additionalDisks and
# data volumes), resolvectl (mDNS only; CentOS has no systemd-resolved), patch (prompt colour),
# selinuxenabled (only with user containerd, off in the template), dnf (upgradePackages only).
missing=""
need() { # need TEST PACKAGE WHY: TEST is a command name, or an absolute path Lima tests with -e
    case "$1" in
    /*) [ -e "$1" ] ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
    esac && return 0
    echo "setup.sh: $1 is missing (package $2): $3" >&2
    missing="$missing $1"
}
need /usr/sbin/sshd openssh-server "Lima reaches the guest over ssh"
need cloud-init cloud-init "Lima configures the guest through a NoCloud cidata seed"
need sudo sudo "boot.sh, 25-guestagent-base.sh and 40-install-containerd.sh run sudo"
need sshfs fuse-sshfs "30-install-packages.sh installs it for reverse-sshfs mounts"
need mount.fuse3 fuse3 "30-install-packages.sh installs fuse3 when it is missing"
need fusermount3 fuse3 "sshfs 3 mounts and unmounts through fusermount3"
need /usr/bin/fusermount fuse3 "30-install-packages.sh links it at boot when it is missing"
need newuidmap shadow-utils "30-install-packages.sh installs shadow-utils when it is missing"
need newgidmap shadow-utils "rootless containers map group ids with it (uidmap's pair)"
need chpasswd shadow-utils "boot.sh sets the user's password with it"
need rsync rsync "30-install-packages.sh installs it at every boot when it is missing (Lima 2.x)"
need tar tar "30-install-packages.sh installs it on dnf systems when it is missing"
need /usr/sbin/iptables iptables-nft "30-install-packages.sh installs it when it is missing; 09-host-dns-setup.sh uses it"
need systemctl systemd "most boot scripts do nothing without it"
need loginctl systemd "20-rootless-base.sh enables lingering with it"
need modprobe kmod "00-modprobe.sh loads fuse, tun, bridge, iptables modules with it"
need bash bash "25-guestagent-base.sh, 40-install-containerd.sh and others are bash scripts"
if [ -n "$missing" ]; then
    echo "setup.sh: not Lima-ready, missing:$missing" >&2
    exit 1
fi
