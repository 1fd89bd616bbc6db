"""What Lima needs from a booted guest, as shell commands run over ssh and how each is judged.

Sources: lima-vm/lima pkg/cidata/cidata.TEMPLATE.d (user-data; boot.Linux/30-install-packages.sh
tests for every tool in LIMA_TOOLS and installs it with dnf when missing, which cannot work on a
read-only /usr), and Lima's reverse-sshfs mounts (sshocker: the host's sftp-server connected
through the ssh session to `sshfs -o slave` in the guest).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from pipeline.boot.seed import BOOT_MARKER
from pipeline.core import mediatypes as mt

# What 30-install-packages.sh looks for on a dnf-based guest (`command -v NAME`, or `-e PATH`).
LIMA_TOOLS = (
    "sudo",
    "tar",
    "rsync",
    "sshfs",
    "newuidmap",
    "newgidmap",
    "mount.fuse3",
    "/usr/bin/fusermount",
    "/usr/sbin/iptables",
)
# What Lima's user containerd (containerd: {user: true}, its default) needs of the guest, set up
# as Lima's boot.Linux/20-rootless-base.sh sets it up (subuid/subgid ranges, Delegate=yes for
# user@.service, linger) and then tried as containerd-rootless-setuptool.sh checks it: a user
# namespace mapped through newuidmap/newgidmap, cgroup v2 controllers delegated to the user,
# overlayfs inside a user namespace; and 40-install-containerd.sh's step of unpacking programs
# under guestInstallPrefix and running them from PATH. nerdctl-full itself is not in the image.
ROOTLESS_SCRIPT = r"""
fail() { echo "$1"; exit 1; }
u=$(id -un); uid=$(id -u); gid=$(id -g); p=@PREFIX@
sudo -n sh -c "grep -qw $u /etc/subuid || echo $u:524288:65536 >>/etc/subuid
grep -qw $u /etc/subgid || echo $u:524288:65536 >>/etc/subgid
mkdir -p /etc/systemd/system/user@.service.d
printf '[Service]\nDelegate=yes\n' >/etc/systemd/system/user@.service.d/lima.conf
systemctl daemon-reload && loginctl enable-linger $u" \
  || fail "cannot set up subuid ranges, Delegate=yes and linger as Lima's 20-rootless-base.sh does"
i=0; until [ -S /run/user/$uid/systemd/private ]; do
  i=$((i+1)); [ $i -gt 60 ] && fail "the user's systemd manager did not start (linger)"; sleep 1
done
XDG_RUNTIME_DIR=/run/user/$uid systemctl --user show-environment >/dev/null \
  || fail "systemctl --user does not answer"
c=$(cat /sys/fs/cgroup/user.slice/user-$uid.slice/user@$uid.service/cgroup.controllers) \
  || fail "no cgroup v2 hierarchy for the user's manager"
for k in memory pids; do
  case " $c " in *" $k "*) ;; *) fail "cgroup v2 controller $k not delegated (has: $c)";; esac
done
unshare -U sleep 60 & pid=$!
i=0; while [ "$(readlink /proc/$pid/ns/user)" = "$(readlink /proc/self/ns/user)" ]; do
  i=$((i+1)); [ $i -gt 20 ] && fail "unshare -U did not make a user namespace"; sleep 0.5
done
# the ranges the user has: useradd may have allotted its own before Lima's script looked
su=$(awk -F: -v u=$u '$1 == u {print $2 " " $3; exit}' /etc/subuid)
sg=$(awk -F: -v u=$u '$1 == u {print $2 " " $3; exit}' /etc/subgid)
newuidmap $pid 0 $uid 1 1 $su && newgidmap $pid 0 $gid 1 1 $sg \
  || { kill $pid; fail "newuidmap/newgidmap refused $u's subuid range ($su) or subgid ($sg)"; }
m=$(wc -l </proc/$pid/uid_map); kill $pid
[ "$m" = 2 ] || fail "the user namespace has $m uid mappings, not 2"
t=$(mktemp -d -p "$HOME"); mkdir $t/l $t/u $t/w $t/m
unshare --user --map-root-user --mount sh -c \
  "mount -t overlay overlay -o lowerdir=$t/l,upperdir=$t/u,workdir=$t/w $t/m && touch $t/m/f" \
  || { rm -rf $t; fail "overlayfs cannot be mounted in a user namespace (kernel $(uname -r))"; }
rm -rf $t
d=$(mktemp -d); mkdir $d/bin
printf '#!/bin/sh\necho unpacked-ok\n' >$d/bin/bootc-pipeline-probe; chmod 755 $d/bin/*
tar -C $d -cf - bin | sudo -n tar -C $p -xf - || fail "cannot unpack programs into $p"
r=$(bootc-pipeline-probe); sudo -n rm -f $p/bin/bootc-pipeline-probe; rm -rf $d
[ "$r" = unpacked-ok ] || fail "a program unpacked under $p does not run from PATH"
echo "ok: userns through newuidmap, cgroup v2 with $c delegated, overlayfs in a userns," \
  "programs unpacked under $p run from PATH"
"""
GROWN_FRACTION = 0.9  # of the VM's disk, less what the ESP and /boot take (bib: ~1.5 GiB)
NON_ROOT_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class Check:
    name: str
    what: str  # what it proves, for the report
    command: str  # run over ssh as the seed's user
    required: bool = True  # False: reported, but does not fail the boot check


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    required: bool = True

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "ok": self.ok, "required": self.required, "detail": self.detail}


# QEMU's user network: the guest reaches the host's loopback at this address (QEMU docs,
# "Network options", -netdev user: "the host at 10.0.2.2"), never at 127.0.0.1; over IPv6 at
# `ipv6-host`, default fec0::2, which libslirp (socket.c sotranslate_out) turns into ::1.
HOST_FROM_GUEST = "10.0.2.2"
HOST_FROM_GUEST_V6 = "[fec0::2]"
LOOPBACK_HOSTS = {"127.0.0.1": HOST_FROM_GUEST, "localhost": HOST_FROM_GUEST}
LOOPBACK_HOSTS_V6 = {"[::1]": HOST_FROM_GUEST_V6}
GUEST_REGISTRIES_CONF = "/tmp/bootc-pipeline-origin-registries.conf"
SECTION = "@@bootc-origin@@"


@dataclass(frozen=True)
class OriginExpectation:
    """What the bootc-origin check expects of the guest: its deployment's origin names `image`
    (the OS image's moving tag, `REG/REPO-os:40`), and `reference` (that repository at the digest
    pushed for this architecture, `REG/REPO-os@sha256:...`) resolves from inside the guest to
    exactly those bytes. At publish time the moving tag still names the previous release (tags
    move only after every gate): the digest is what proves the guest reaches what was pushed."""

    image: str
    reference: str
    # `boot REF`: the disk was made for the registry it was published to, which a disk's
    # annotations name by path only (it may be read from a mirror): the origin's host is free
    any_host: bool = False

    @classmethod
    def of(cls, origin: str, reference: str, *, any_host: bool = False) -> OriginExpectation:
        """From the origin a disk was given (`ostree-unverified-registry:REG/REPO:TAG`)."""
        return cls(origin.removeprefix(mt.ORIGIN_PREFIX), reference, any_host)

    @property
    def digest(self) -> str:
        return self.reference.rsplit("@", 1)[1]

    def names(self, origin: str) -> bool:
        """ORIGIN (`ostree-unverified-registry:REG/REPO:TAG`) is the one expected."""
        if not self.any_host:
            return origin == f"{mt.ORIGIN_PREFIX}{self.image}"
        name = origin.removeprefix(mt.ORIGIN_PREFIX)
        return name != origin and name.partition("/")[2] == self.image.partition("/")[2]

    def registries_conf(self) -> str | None:
        """A registries.conf for the guest's skopeo when the registry is on the host's loopback
        (containers-registries.conf(5): the longest matching `prefix` is rewritten to
        `location`; `insecure` allows plain HTTP), else None. Only for this check's own skopeo
        (--registries-conf): nothing is left in the guest's /etc."""
        host = self.reference.split("/", 1)[0]  # where the guest's skopeo goes
        if host.startswith("["):  # [::1]:5000
            name, _, port = host.partition("]")
            name, port = f"{name}]", port.removeprefix(":")
        else:
            name, _, port = host.partition(":")
        guest = (LOOPBACK_HOSTS | LOOPBACK_HOSTS_V6).get(name)
        if guest is None:
            return None
        location = f"{guest}:{port}" if port else guest
        return f'[[registry]]\nprefix = "{host}"\nlocation = "{location}"\ninsecure = true\n'


def origin_script(expect: OriginExpectation) -> str:
    """bootc's view of the booted deployment, its origin file (under /ostree, which on an ostree
    system is /sysroot/ostree), then the pushed image's manifest read from inside the guest with
    skopeo (what bootc's image proxy is) and hashed there."""
    conf = expect.registries_conf()
    flags = ""
    lines = [f"echo {SECTION}", "sudo -n bootc status --json", f"echo {SECTION}"]
    lines.append("cat /ostree/deploy/*/deploy/*.origin")
    lines.append(f"echo {SECTION}")
    if conf is not None:
        lines.append(f"printf %s {shlex.quote(conf)} > {GUEST_REGISTRIES_CONF}")
        flags = f" --registries-conf {GUEST_REGISTRIES_CONF}"
    manifest = "/tmp/bootc-pipeline-origin-manifest.json"
    lines.append(
        f"skopeo{flags} inspect --raw docker://{shlex.quote(expect.reference)} > {manifest} "
        f"&& sha256sum {manifest}"
    )
    return "\n".join(lines)


def judge_origin(status: int, output: str, expect: OriginExpectation) -> tuple[bool, str]:
    """The origin names the published image (both as bootc reports it and in the origin file)
    and the pushed digest resolves from the guest to those very bytes."""
    parts = output.split(SECTION)
    if len(parts) < 4:
        return False, f"the check did not run to its end: {output.strip()[-300:]}"
    _, status_json, origin_file, resolved = parts[:4]
    want = f"{mt.ORIGIN_PREFIX}{expect.image}"
    try:
        booted = json.loads(status_json)["status"]["booted"]["image"]["image"]
        seen = f"ostree-unverified-{booted['transport']}:{booted['image']}"
    except (ValueError, KeyError, TypeError):
        return False, f"`bootc status --json` gave no booted image: {status_json.strip()[:300]}"
    if not expect.names(seen):
        return False, f"bootc status: the booted image is {seen}, not {want}"
    key = "container-image-reference="
    named = [line.removeprefix(key) for line in origin_file.splitlines() if line.startswith(key)]
    if not any(expect.names(origin) for origin in named):
        return False, f"the deployment's origin file does not name {want}: {origin_file.strip()}"
    digest = resolved.split()[0] if resolved.split() else ""
    if status != 0 or f"sha256:{digest}" != expect.digest:
        found = f"sha256:{digest}" if status == 0 else resolved.strip()[-300:]
        return False, f"from the guest, {expect.reference} resolved to {found}"
    return True, f"origin {seen}; from the guest {expect.reference} resolves to those bytes"


def tools_script() -> str:
    """Prints each missing tool's name; run as root, as Lima's boot scripts are (sbin in PATH)."""
    tests = []
    for tool in LIMA_TOOLS:
        test = f"[ -e {tool} ]" if tool.startswith("/") else f"command -v {tool} >/dev/null"
        tests.append(f"{test} || echo {tool}")
    return "; ".join(tests)


def guest_checks(
    uid: int, install_prefix: str, origin: OriginExpectation | None = None
) -> list[Check]:
    """Every check, in order; `install_prefix` is the Lima template's guestInstallPrefix;
    `origin`: the published OS image, when there is one (then bootc-origin is required)."""
    prefix = shlex.quote(install_prefix)
    probe = shlex.quote(f"{install_prefix}/.bootc-pipeline-probe")
    bootc = (
        [
            Check(
                "bootc-origin",
                "the deployment's bootc origin names the published OS image, and the image "
                "pushed for this architecture resolves from inside the guest",
                origin_script(origin),
            )
        ]
        if origin is not None
        else []
    )
    return [
        Check(
            "cloud-init",
            "`cloud-init status` reports done without errors",
            "cloud-init status --wait --long; s=$?; exit $s",
        ),
        Check(
            "user",
            f"the seed's user exists with uid {uid} and passwordless sudo",
            f'test "$(id -u)" = {uid} && sudo -n true && echo "uid $(id -u), sudo -n ok"',
        ),
        Check(
            "usr-local",
            "/usr/local resolves into the writable prefix and guestInstallPrefix is writable",
            f"p=$(readlink -f {prefix}); l=$(readlink -f /usr/local); "
            f'echo "/usr/local -> $l, guestInstallPrefix -> $p"; '
            f'case "$l" in "$p"|"$p"/*) ;; *) echo "/usr/local is not under {install_prefix}"; '
            f"exit 1;; esac; sudo -n touch {probe} && sudo -n rm -f {probe}",
        ),
        Check(
            "lima-tools",
            "every tool Lima's boot scripts look for is present",
            f"m=$(sudo -n sh -c {shlex.quote(tools_script())}); "
            'if [ -n "$m" ]; then echo "missing:" $m; exit 1; fi; echo all present',
        ),
        Check(
            "lima-boot-hook",
            "cloud-init ran Lima's per-boot script, which mounted the cidata seed and ran boot.sh",
            f"cat {BOOT_MARKER}",
        ),
        Check(
            "disk-grown",
            "the root filesystem grew to the disk the VM was given",
            "findmnt -bno SIZE,SOURCE /",
            required=False,
        ),
        Check(
            "rootless-containerd",
            "what Lima's user containerd needs (recorded: the template turns containerd off)",
            ROOTLESS_SCRIPT.replace("@PREFIX@", prefix),
            required=False,
        ),
        *bootc,
    ]


def judge_cloud_init(status: int, output: str) -> tuple[bool, str]:
    """Done without errors: exit 0, or (cloud-init 23.4+) exit 2 "degraded done" whose only
    problems are recoverable warnings (`errors: []`), such as the deprecated key names Lima's own
    user-data uses."""
    first = next((line for line in output.splitlines() if line.startswith("status:")), "")
    done = first.strip() == "status: done"
    if done and status == 0:
        return True, "status: done"
    if done and status == 2 and "errors: []" in output:
        return True, "status: done (degraded: recoverable warnings only)"
    errors = [line.strip() for line in output.splitlines() if "error" in line.lower()]
    detail = "; ".join([first.strip(), *errors[:3]]).strip("; ")
    return False, detail or output.strip()[-300:] or f"exit status {status}"


def judge_grown(output: str, disk_bytes: int) -> tuple[bool, str]:
    fields = output.split()
    try:
        size = int(fields[0])
    except (IndexError, ValueError):
        return False, f"cannot read the root filesystem size: {output.strip()!r}"
    want = int((disk_bytes - NON_ROOT_BYTES) * GROWN_FRACTION)
    gib = 1024**3
    if size >= want:
        return True, f"/ is {size / gib:.1f} GiB of a {disk_bytes / gib:.0f} GiB disk"
    return False, (
        f"the root filesystem did not grow: {size / gib:.1f} GiB of a "
        f"{disk_bytes / gib:.0f} GiB disk"
    )
