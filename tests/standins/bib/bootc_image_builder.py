#!/usr/bin/python3
"""bootc-image-builder stand-in for bootc-pipeline's tests (as /usr/bin/bootc-image-builder).

The real bootc-image-builder (quay.io/centos-bootc/bootc-image-builder) cannot be pulled here, so
the tests run this script in an image built by tests/support/images.py. It honours bib's contract as
REFERENCE.md states it: the command line (`[build] --type T... [--target-arch A] [--rootfs FS]
[--progress P] [--chown UID:GID] [--output DIR] IMAGE`), the refusals (not privileged, rootless,
container storage not mounted, image not in it, not a bootc image, wrong architecture, no root
filesystem type), /config.toml or /config.json with unknown keys rejected, failures as exit status 1
with a stderr line `<YYYY/MM/DD HH:MM:SS> error: MESSAGE`, osbuild stage names on stdout with
`--progress verbose`, and its outputs: OUTPUT/manifest-<types>.json and OUTPUT/qcow2/disk.qcow2
(raw and ami: image/disk.raw, vmdk: vmdk/disk.vmdk, vhd: vpc/disk.vhd).

What it really does: reads the image out of the containers-storage mounted at
/var/lib/containers/storage with skopeo, unpacks its layers in order (OCI whiteouts honoured),
applies the config (users with password hash and ssh key, kernel arguments in /etc/kernel/cmdline)
and writes a real disk image in bib's qcow2 partition layout: GPT, a BIOS boot partition on x86_64,
an EFI System Partition holding systemd-boot from the image (EFI/BOOT/BOOTX64.EFI or BOOTAA64.EFI)
with a loader entry for the image's kernel and initrd, an ext4 /boot, and the root filesystem
(LABEL "root") last, built without loop devices (sfdisk on a raw file, mkfs.vfat + mcopy, mke2fs -d,
dd) and converted with qemu-img. An image without systemd-boot or a kernel gets the same layout
without a boot loader (and a warning). Whatever --rootfs says, the root filesystem is ext4; the
requested type is recorded in the manifest (stage org.osbuild.mkfs.<type>, metadata.rootfs).
Filesystem customizations other than "/" (whose minsize sets the filesystem size) are only recorded.
Nothing in the image is executed, so cross-architecture builds need no emulator here, but like bib
it refuses --target-arch when the host has no qemu-user-static binfmt handler for it.

Standalone: Python 3.11 standard library, skopeo, mkfs.ext4 (e2fsprogs), qemu-img (qemu-utils),
sfdisk (fdisk), mkfs.vfat (dosfstools) and mtools.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import posixpath
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

STORAGE = Path("/var/lib/containers/storage")
CONFIG_TOML = Path("/config.toml")
CONFIG_JSON = Path("/config.json")
BINFMT = Path("/proc/sys/fs/binfmt_misc")
CAP_SYS_ADMIN = 21
COMMAND_TIMEOUT = 1800  # seconds, for each external command
STANDIN_VERSION = "bootc-image-builder stand-in (bootc-pipeline tests)"

# --type -> (output subdirectory, file name, qemu-img format)
IMAGE_TYPES: dict[str, tuple[str, str, str]] = {
    "qcow2": ("qcow2", "disk.qcow2", "qcow2"),
    "raw": ("image", "disk.raw", "raw"),
    "ami": ("image", "disk.raw", "raw"),
    "vmdk": ("vmdk", "disk.vmdk", "vmdk"),
    "vhd": ("vpc", "disk.vhd", "vpc"),
}
NOT_IMPLEMENTED_TYPES = ("anaconda-iso", "iso", "gce")  # real bib types the stand-in does not make
ROOTFS_TYPES = ("ext4", "xfs", "btrfs")
PROGRESS_MODES = ("auto", "verbose", "term", "debug")
LOG_LEVELS = ("trace", "debug", "info", "warn", "warning", "error", "fatal", "panic")
ARCHS = {"amd64": "amd64", "x86_64": "amd64", "arm64": "arm64", "aarch64": "arm64"}
UNAME = {"amd64": "x86_64", "arm64": "aarch64"}

# bib's mountpoint policy: "/" and "/boot" exactly, /var and below except these.
DENIED_UNDER_VAR = (
    "/var/home",
    "/var/lock",
    "/var/mail",
    "/var/mnt",
    "/var/roothome",
    "/var/run",
    "/var/srv",
    "/var/usrlocal",
)


class BibError(Exception):
    """A failure reported as bib does: one `<timestamp> error: MESSAGE` line, exit status 1."""


def _timestamp() -> str:
    return time.strftime("%Y/%m/%d %H:%M:%S")


def log_error(message: str) -> None:
    print(f"{_timestamp()} error: {message}", file=sys.stderr, flush=True)


def log_warning(message: str) -> None:
    print(f"{_timestamp()} WARNING {message}", file=sys.stderr, flush=True)


# --- command line -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    image: str
    types: tuple[str, ...]
    target_arch: str | None  # OCI name (amd64, arm64)
    rootfs: str | None
    progress: str
    chown: tuple[int, int] | None
    output: Path
    log_level: str


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise BibError(message)


def _bool_flag(argv: list[str], name: str) -> tuple[list[str], bool | None]:
    """Take cobra-style `--NAME`, `--NAME=true|false` out of ARGV (argparse lacks the `=` form)."""
    rest: list[str] = []
    value: bool | None = None
    for arg in argv:
        if arg == f"--{name}":
            value = True
        elif arg.startswith(f"--{name}="):
            text = arg.split("=", 1)[1].lower()
            if text not in ("true", "false", "1", "0"):
                raise BibError(f'invalid argument "{text}" for "--{name}" flag: not a boolean')
            value = text in ("true", "1")
        else:
            rest.append(arg)
    return rest, value


def parse_args(argv: list[str]) -> Options:
    """bib's `build` command line; BibError on bad usage."""
    args = list(argv)
    if args[:1] == ["build"]:
        args = args[1:]
    args, local = _bool_flag(args, "local")
    if local is False:
        raise BibError(
            "--local=false is no longer supported, remove it and make sure to pull the "
            "container before running bib"
        )
    if local:
        log_warning("--local is deprecated and the default now, you can remove it")
    args, _ = _bool_flag(args, "tls-verify")  # a no-op in bib since it stopped pulling

    parser = _Parser(prog="bootc-image-builder build", allow_abbrev=False)
    parser.add_argument("images", nargs="*", metavar="IMAGE")
    parser.add_argument("--type", action="append", dest="types", default=[])
    parser.add_argument("--target-arch", dest="target_arch")
    parser.add_argument("--rootfs")
    parser.add_argument("--progress", default="auto")
    parser.add_argument("--chown")
    parser.add_argument("--output", default="/output")
    parser.add_argument("--log-level", dest="log_level", default="error")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--config")  # bib's alternative to /config.toml; refused below
    ns = parser.parse_intermixed_args(args)

    if len(ns.images) != 1:
        raise BibError(f"accepts 1 arg(s), received {len(ns.images)}")
    if ns.config is not None:
        raise BibError(
            "--config is not supported by the stand-in: mount /config.toml or /config.json"
        )
    types: list[str] = []
    for t in ns.types or ["qcow2"]:
        if t in NOT_IMPLEMENTED_TYPES:
            raise BibError(
                f'image type "{t}" is not implemented by the bootc-image-builder stand-in'
            )
        if t not in IMAGE_TYPES:
            valid = ", ".join(sorted([*IMAGE_TYPES, *NOT_IMPLEMENTED_TYPES]))
            raise BibError(f'unsupported image type "{t}", valid types are {valid}')
        if t not in types:
            types.append(t)
    target = None
    if ns.target_arch is not None:
        target = ARCHS.get(ns.target_arch)
        if target is None:
            raise BibError(f'unsupported target architecture "{ns.target_arch}"')
    if ns.rootfs is not None and ns.rootfs not in ROOTFS_TYPES:
        raise BibError(
            f'unsupported rootfs "{ns.rootfs}", valid types are {", ".join(ROOTFS_TYPES)}'
        )
    if ns.progress not in PROGRESS_MODES:
        raise BibError(f'unknown --progress "{ns.progress}", valid: {", ".join(PROGRESS_MODES)}')
    level = "info" if ns.verbose else ns.log_level
    if level not in LOG_LEVELS:
        raise BibError(f'not a valid logrus Level: "{level}"')
    chown = None
    if ns.chown is not None:
        m = re.fullmatch(r"(\d+)(?::(\d+))?", ns.chown)
        if m is None:
            raise BibError(f'cannot parse --chown "{ns.chown}": expected UID:GID')
        chown = (int(m.group(1)), int(m.group(2) if m.group(2) is not None else m.group(1)))
    return Options(
        image=ns.images[0],
        types=tuple(types),
        target_arch=target,
        rootfs=ns.rootfs,
        progress=ns.progress,
        chown=chown,
        output=Path(ns.output),
        log_level=level,
    )


# --- config -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    name: str
    password: str | None = None
    key: str | None = None
    groups: tuple[str, ...] = ()
    uid: int | None = None
    gid: int | None = None
    home: str | None = None
    shell: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class Config:
    users: tuple[User, ...] = ()
    kernel_append: str | None = None
    filesystems: tuple[tuple[str, int], ...] = ()  # (mountpoint, minsize bytes)
    recorded: dict[str, Any] = field(default_factory=dict)  # everything, for the manifest


_USER_KEYS: dict[str, type] = {
    "name": str,
    "description": str,
    "password": str,
    "key": str,
    "home": str,
    "shell": str,
    "groups": list,
    "uid": int,
    "gid": int,
    "expiredate": int,
}
_SIZE_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


def parse_size(value: object, where: str) -> int:
    """A blueprint size: bytes as an integer, or a string like "10 GiB"."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", value)
        if m and m.group(2).upper() in _SIZE_UNITS:
            return int(m.group(1)) * _SIZE_UNITS[m.group(2).upper()]
    raise BibError(f"cannot load config: {where}: invalid size {value!r}")


def mountpoint_allowed(mountpoint: str) -> bool:
    """osbuild/images bootc_imagetype.go: mountpointPolicy plus checkMountpoints (never /var)."""
    if mountpoint in ("/", "/boot"):
        return True
    if not mountpoint.startswith("/var/") or posixpath.normpath(mountpoint) != mountpoint:
        return False
    return not any(mountpoint == d or mountpoint.startswith(d + "/") for d in DENIED_UNDER_VAR)


def _expect(value: object, kind: type, where: str) -> None:
    if kind is int and isinstance(value, bool):
        raise BibError(f"cannot load config: {where}: expected {kind.__name__}")
    if not isinstance(value, kind):
        raise BibError(f"cannot load config: {where}: expected {kind.__name__}")


def _table_list(value: object, where: str) -> list[dict[str, Any]]:
    items: list[object] = list(value) if isinstance(value, list) else [value]
    tables: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict):
            raise BibError(f"cannot load config: {where}: expected a table")
        tables.append(item)
    return tables


def parse_config(doc: object) -> Config:
    """Validate a bib config document (TOML or JSON); unknown keys are an error, as in bib."""
    _expect(doc, dict, "config")
    assert isinstance(doc, dict)
    unknown: list[str] = [k for k in doc if k != "customizations"]
    custom = doc.get("customizations", {})
    _expect(custom, dict, "customizations")
    known = ("user", "group", "kernel", "filesystem", "directories", "files")
    unknown += [f"customizations.{k}" for k in custom if k not in known]

    users: list[User] = []
    for entry in _table_list(custom.get("user", []), "customizations.user"):
        unknown += [f"customizations.user.{k}" for k in entry if k not in _USER_KEYS]
        for k, kind in _USER_KEYS.items():
            if k in entry:
                _expect(entry[k], kind, f"customizations.user.{k}")
        if "name" not in entry or not entry["name"]:
            raise BibError("cannot load config: customizations.user: name is required")
        groups = entry.get("groups", [])
        for g in groups:
            _expect(g, str, "customizations.user.groups")
        users.append(
            User(
                name=entry["name"],
                password=entry.get("password"),
                key=entry.get("key"),
                groups=tuple(groups),
                uid=entry.get("uid"),
                gid=entry.get("gid"),
                home=entry.get("home"),
                shell=entry.get("shell"),
                description=entry.get("description"),
            )
        )
    for entry in _table_list(custom.get("group", []), "customizations.group"):
        unknown += [f"customizations.group.{k}" for k in entry if k not in ("name", "gid")]

    kernel = custom.get("kernel", {})
    _expect(kernel, dict, "customizations.kernel")
    unknown += [f"customizations.kernel.{k}" for k in kernel if k not in ("name", "append")]
    append = kernel.get("append")
    if append is not None:
        _expect(append, str, "customizations.kernel.append")

    filesystems: list[tuple[str, int]] = []
    for entry in _table_list(custom.get("filesystem", []), "customizations.filesystem"):
        unknown += [
            f"customizations.filesystem.{k}" for k in entry if k not in ("mountpoint", "minsize")
        ]
        mountpoint = entry.get("mountpoint")
        _expect(mountpoint, str, "customizations.filesystem.mountpoint")
        size = parse_size(entry.get("minsize", 0), "customizations.filesystem.minsize")
        filesystems.append((str(mountpoint), size))

    if unknown:
        raise BibError(
            f"cannot load config: unknown keys found: [{' '.join(sorted(set(unknown)))}]"
        )
    mountpoints = [m for m, _ in filesystems]
    bad = [m for m in mountpoints if not mountpoint_allowed(m)]
    if bad:
        quoted = " ".join(f'"{m}"' for m in bad)
        raise BibError(f"The following custom mountpoints are not supported [{quoted}]")
    dupes = sorted({m for m in mountpoints if mountpoints.count(m) > 1})
    if dupes:
        raise BibError(f"duplicate mountpoints in customizations.filesystem: {', '.join(dupes)}")
    # customizations.directories/files are accepted and ignored by the stand-in.
    return Config(
        users=tuple(users),
        kernel_append=append,
        filesystems=tuple(filesystems),
        recorded=dict(custom),
    )


def load_config() -> Config:
    toml_there, json_there = CONFIG_TOML.exists(), CONFIG_JSON.exists()
    if toml_there and json_there:
        raise BibError("found config.json and also config.toml, only a single one is supported")
    try:
        if toml_there:
            return parse_config(tomllib.loads(CONFIG_TOML.read_text()))
        if json_there:
            return parse_config(json.loads(CONFIG_JSON.read_text()))
    except (tomllib.TOMLDecodeError, ValueError, OSError) as exc:
        raise BibError(f"cannot load config: {exc}") from None
    return Config()


# --- environment checks -------------------------------------------------------------------------


def check_privileged(status: str | None = None) -> None:
    text = status if status is not None else Path("/proc/self/status").read_text()
    for line in text.splitlines():
        if line.startswith("CapEff:") and int(line.split()[1], 16) & (1 << CAP_SYS_ADMIN):
            return
    raise BibError("this command requires a privileged container")


def check_rootful(uid_map: str | None = None) -> None:
    text = uid_map if uid_map is not None else Path("/proc/self/uid_map").read_text()
    if text.split() != ["0", "0", "4294967295"]:
        raise BibError("must be run in rootful (not rootless) podman")


STORAGE_MISSING = (
    "could not access container storage, did you forget "
    "-v /var/lib/containers/storage:/var/lib/containers/storage?"
)


def check_storage(mountinfo: str | None = None, message: str = STORAGE_MISSING) -> None:
    text = mountinfo if mountinfo is not None else Path("/proc/self/mountinfo").read_text()
    mounted = any(
        len(fields) > 4 and fields[4] == str(STORAGE)
        for fields in (line.split() for line in text.splitlines())
    )
    if not mounted or not (STORAGE / "overlay-images").is_dir():
        raise BibError(message)


def check_binfmt(target: str) -> None:
    """Cross builds need the host's qemu-user-static handler, as with bib (osbuild runs code)."""
    entry = BINFMT / f"qemu-{UNAME[target]}"
    if not (BINFMT / "status").exists():
        subprocess.run(
            ["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)],
            capture_output=True,
            timeout=30,
            check=False,
        )
    if not (BINFMT / "status").exists():
        log_warning(f"cannot see {BINFMT}: assuming qemu-{UNAME[target]} is registered")
        return
    try:
        enabled = entry.read_text().splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        enabled = False
    if not enabled:
        raise BibError(
            f"cannot build for {UNAME[target]}: the host has no enabled binfmt_misc handler "
            f"qemu-{UNAME[target]} (install qemu-user-static)"
        )


# --- reading the image --------------------------------------------------------------------------


@dataclass
class Skopeo:
    """skopeo reading the mounted containers-storage (overlay driver)."""

    workdir: Path
    debug: bool = False
    absent: str = (
        "bootc-image-builder no longer pulls images, make sure to pull it before "
        "running bootc-image-builder: sudo podman pull {image}"
    )

    def __post_init__(self) -> None:
        self.storage_conf = self.workdir / "storage.conf"
        self.storage_conf.write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{STORAGE}"\n'
            f'runroot = "/run/containers/storage"\n'
        )
        self.policy = self.workdir / "policy.json"
        self.policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}\n')

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, CONTAINERS_STORAGE_CONF=str(self.storage_conf))
        argv = ["skopeo", "--policy", str(self.policy), *args]
        if self.debug:
            print("+ " + " ".join(argv), flush=True)
        try:
            return subprocess.run(
                argv,
                env=env,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise BibError(f"skopeo {args[0]} did not finish in {COMMAND_TIMEOUT} s") from None

    def inspect(self, image: str) -> dict[str, Any]:
        proc = self.run("inspect", f"containers-storage:{image}")
        if proc.returncode != 0:
            err = proc.stderr
            if any(
                s in err
                for s in (
                    "does not resolve to an image ID",
                    "image not known",
                    "identifier is not an image",
                    "no such image",
                )
            ):
                raise BibError(self.absent.format(image=image))
            raise BibError(f"cannot inspect {image} in container storage: {err.strip()}")
        doc: dict[str, Any] = json.loads(proc.stdout)
        return doc

    def copy_to_dir(self, image: str, dest: Path) -> None:
        proc = self.run("copy", "--quiet", f"containers-storage:{image}", f"dir:{dest}")
        if proc.returncode != 0:
            raise BibError(f"cannot read {image} from container storage: {proc.stderr.strip()}")


def layer_paths(image_dir: Path) -> tuple[list[Path], dict[str, Any]]:
    """The layer blobs (in order) and the config of an image copied with `skopeo copy dir:`."""
    manifest = json.loads((image_dir / "manifest.json").read_text())

    def blob(digest: str) -> Path:
        return image_dir / digest.split(":", 1)[1]

    config = json.loads(blob(manifest["config"]["digest"]).read_text())
    return [blob(layer["digest"]) for layer in manifest["layers"]], config


# --- unpacking layers (OCI whiteouts) -----------------------------------------------------------

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def resolve_in_root(root: Path, path: str, *, follow_last: bool = True) -> Path:
    """PATH inside ROOT as the image sees it: symlinks followed with ROOT as "/", never out."""
    todo = _parts(path)
    done: list[str] = []
    hops = 0
    while todo:
        part = todo.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = root.joinpath(*done, part)
        if (todo or follow_last) and candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise BibError(f"too many levels of symbolic links resolving {path} in the image")
            target = os.readlink(candidate)
            if target.startswith("/"):
                done = []
            todo = _parts(target) + todo
            continue
        done.append(part)
    return root.joinpath(*done)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def _apply_metadata(path: Path, member: tarfile.TarInfo) -> None:
    os.lchown(path, member.uid, member.gid)
    if not member.issym():
        os.chmod(path, member.mode & 0o7777)  # after chown, which clears set-id bits
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            try:
                os.setxattr(
                    path,
                    key[len("SCHILY.xattr.") :],
                    value.encode("utf-8", "surrogateescape"),
                    follow_symlinks=False,
                )
            except OSError:
                pass  # e.g. security.selinux where the kernel refuses it
    if not member.isdir():
        os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)


def unpack_layer(layer: Path, root: Path) -> int:
    """Apply one layer tarball (plain or gzip) to ROOT; returns the number of entries written."""
    written = 0
    with tarfile.open(layer, "r:*") as tar:
        members = tar.getmembers()
        # Whiteouts hide what lower layers had, never entries of this layer: apply them first.
        for member in members:
            parent, _, base = member.name.rstrip("/").rpartition("/")
            if base == OPAQUE_WHITEOUT:
                directory = resolve_in_root(root, parent)
                if directory.is_dir():
                    for child in list(directory.iterdir()):
                        _remove(child)
            elif base.startswith(WHITEOUT_PREFIX):
                parent_dir = resolve_in_root(root, parent)
                _remove(parent_dir / base[len(WHITEOUT_PREFIX) :])
        for member in members:
            parent, _, base = member.name.rstrip("/").rpartition("/")
            if base.startswith(WHITEOUT_PREFIX) or base in ("", ".", ".."):
                continue
            directory = resolve_in_root(root, parent)
            directory.mkdir(parents=True, exist_ok=True)
            dest = directory / base
            if os.path.lexists(dest) and not (
                member.isdir() and dest.is_dir() and not dest.is_symlink()
            ):
                _remove(dest)
            if member.isdir():
                dest.mkdir(exist_ok=True)
            elif member.isreg():
                src = tar.extractfile(member)
                assert src is not None
                with src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            elif member.issym():
                os.symlink(member.linkname, dest)
            elif member.islnk():
                os.link(resolve_in_root(root, member.linkname, follow_last=False), dest)
                written += 1
                continue  # a hard link shares the target's metadata
            elif member.ischr() or member.isblk():
                kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
                os.mknod(dest, kind | 0o600, os.makedev(member.devmajor, member.devminor))
            elif member.isfifo():
                os.mkfifo(dest)
            else:
                continue
            _apply_metadata(dest, member)
            written += 1
    return written


def default_rootfs(root: Path) -> str | None:
    """The root filesystem type /usr/lib/bootc/install/*.toml in the image names (later wins)."""
    found: str | None = None
    install_dir = resolve_in_root(root, "/usr/lib/bootc/install")
    if not install_dir.is_dir():
        return None
    for path in sorted(install_dir.glob("*.toml")):
        try:
            doc = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
            raise BibError(f"cannot parse {path.relative_to(root)} in the image: {exc}") from None
        value = doc.get("install", {}).get("filesystem", {}).get("root", {}).get("type")
        if isinstance(value, str):
            found = value
    return found


# --- customizations -----------------------------------------------------------------------------


def _read_table(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split(":") for line in path.read_text().splitlines() if line.strip()]


def _write_table(path: Path, rows: list[list[str]], mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(":".join(row) + "\n" for row in rows))
    os.chmod(path, mode)


def _hash_password(password: str) -> str:
    if password.startswith("$"):
        return password  # already a crypt(3) hash, as bib accepts
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # gone in Python 3.13, present in bookworm's 3.11

        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))
    except ImportError:
        return "$6$standin$" + hashlib.sha512(password.encode()).hexdigest()


def apply_users(root: Path, users: tuple[User, ...]) -> list[str]:
    """Add or update USERS in the image's /etc/passwd, shadow and group; install their ssh keys."""
    notes: list[str] = []
    passwd_path = resolve_in_root(root, "/etc/passwd")
    shadow_path = resolve_in_root(root, "/etc/shadow")
    group_path = resolve_in_root(root, "/etc/group")
    passwd, shadow, groups = (_read_table(p) for p in (passwd_path, shadow_path, group_path))
    for user in users:
        row = next((r for r in passwd if r[0] == user.name), None)
        if row is None:
            taken = {int(r[2]) for r in passwd if len(r) > 2 and r[2].isdigit()}
            uid = (
                user.uid
                if user.uid is not None
                else max([999, *(u for u in taken if u < 60000)]) + 1
            )
            gid = user.gid if user.gid is not None else uid
            if not any(g[0] == user.name for g in groups):
                groups.append([user.name, "x", str(gid), ""])
            home = user.home or ("/root" if user.name == "root" else f"/home/{user.name}")
            row = [
                user.name,
                "x",
                str(uid),
                str(gid),
                user.description or "",
                home,
                user.shell or "/bin/bash",
            ]
            passwd.append(row)
            notes.append(f"added user {user.name} (uid {uid})")
        while len(row) < 7:
            row.append("")
        uid, gid, home = int(row[2]), int(row[3]), row[5]
        if user.shell:
            row[6] = user.shell
        srow = next((r for r in shadow if r[0] == user.name), None)
        if srow is None:
            srow = [user.name, "!", "", "0", "99999", "7", "", "", ""]
            shadow.append(srow)
        if user.password is not None:
            srow[1] = _hash_password(user.password)
        for group in user.groups:
            grow = next((g for g in groups if g[0] == group), None)
            if grow is None:
                raise BibError(f'user {user.name}: group "{group}" does not exist in the image')
            while len(grow) < 4:
                grow.append("")
            members = [m for m in grow[3].split(",") if m]
            if user.name not in members:
                grow[3] = ",".join([*members, user.name])
        home_dir = resolve_in_root(root, home)
        if not home_dir.exists():
            home_dir.mkdir(parents=True, mode=0o700)
            os.chown(home_dir, uid, gid)
        if user.key:
            ssh_dir = home_dir / ".ssh"
            ssh_dir.mkdir(mode=0o700, exist_ok=True)
            keys = ssh_dir / "authorized_keys"
            keys.write_text(user.key.rstrip("\n") + "\n")
            os.chmod(keys, 0o600)
            for p in (ssh_dir, keys):
                os.chown(p, uid, gid)
            notes.append(f"installed ssh key for {user.name} in {home}/.ssh/authorized_keys")
    _write_table(passwd_path, passwd, 0o644)
    _write_table(shadow_path, shadow, 0o000)
    _write_table(group_path, groups, 0o644)
    return notes


# --- the disk -----------------------------------------------------------------------------------


def tree_usage(root: Path) -> tuple[int, int]:
    """(bytes in 4 KiB blocks, inode count) of the tree under ROOT."""
    blocks = inodes = 0
    for dirpath, dirnames, filenames in os.walk(root):
        inodes += 1
        blocks += 1
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            st = os.lstat(os.path.join(dirpath, name))
            inodes += 1
            if stat.S_ISREG(st.st_mode):
                blocks += (st.st_size + 4095) // 4096
    return blocks * 4096, inodes


def filesystem_size(content: int, inodes: int, minsize: int) -> int:
    """Content plus headroom (journal, metadata, room to boot), at least MINSIZE, in whole MiB."""
    mib = 1 << 20
    size = max(int(content * 1.3) + inodes * 512 + 64 * mib, minsize)
    return (size + mib - 1) // mib * mib


def run_tool(argv: list[str], debug: bool) -> None:
    if debug:
        print("+ " + " ".join(argv), flush=True)
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise BibError(f"{argv[0]} did not finish in {COMMAND_TIMEOUT} s") from None
    except FileNotFoundError:
        raise BibError(f"{argv[0]} is missing from the stand-in image") from None
    if proc.returncode != 0:
        raise BibError(f"{argv[0]} failed (exit status {proc.returncode}): {proc.stderr.strip()}")


# --- the partitioned disk -----------------------------------------------------------------------
# bib's qcow2 layout (osbuild/images partition tables for bootc disks): GPT; on x86_64 a 1 MiB BIOS
# boot partition first; a 501 MiB EFI System Partition; a 1 GiB /boot; the root filesystem last (so
# cloud-init's growpart can grow it). The stand-in boots with systemd-boot taken from the image
# (EFI/BOOT/BOOTX64.EFI or BOOTAA64.EFI) and a loader entry for the image's kernel and initrd.

MIB = 1 << 20
ESP_MIB, BOOT_MIB, BIOS_BOOT_MIB = 501, 1024, 1
GPT_TYPES = {
    "bios": "21686148-6449-6E6F-744E-656564454649",
    "esp": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
    "boot": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
    "root-x86_64": "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
    "root-aarch64": "B921B045-1DF0-41C3-AF44-4C6F280D3FAE",
}
EFI_NAMES = {"x86_64": ("x64", "BOOTX64.EFI"), "aarch64": ("aa64", "BOOTAA64.EFI")}


def root_image(raw: Path) -> Path:
    """Where the root filesystem is made before it is laid into the disk."""
    return raw.with_name("root.img")


@dataclass(frozen=True)
class Kernel:
    version: str
    vmlinuz: Path
    initrd: Path


def find_kernel(root: Path) -> Kernel | None:
    """The image's kernel and initrd: bootc's /usr/lib/modules/V/{vmlinuz,initramfs.img}, else a
    Debian-style /boot/vmlinuz-V with /boot/initrd.img-V (the test bases are Debian inside)."""
    modules = resolve_in_root(root, "/usr/lib/modules")
    for vmlinuz in sorted(modules.glob("*/vmlinuz")) if modules.is_dir() else []:
        initrd = vmlinuz.with_name("initramfs.img")
        if initrd.is_file():
            return Kernel(vmlinuz.parent.name, vmlinuz, initrd)
    boot = resolve_in_root(root, "/boot")
    for vmlinuz in sorted(boot.glob("vmlinuz-*")) if boot.is_dir() else []:
        version = vmlinuz.name[len("vmlinuz-") :]
        initrd = boot / f"initrd.img-{version}"
        if initrd.is_file():
            return Kernel(version, vmlinuz, initrd)
    return None


def _vfat_image(path: Path, size: int, files: dict[str, Path | bytes], debug: bool) -> None:
    """A FAT32 ESP with FILES (ESP path -> source file or content), made with mtools (no mount)."""
    with path.open("wb") as f:
        f.truncate(size)
    run_tool(["mkfs.vfat", "-F", "32", "-n", "ESP", str(path)], debug)
    made: set[str] = set()
    staging = path.with_name(path.name + ".d")
    staging.mkdir(exist_ok=True)
    for dest, source in sorted(files.items()):
        parts = dest.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            directory = "/".join(parts[:i])
            if directory not in made:
                run_tool(["mmd", "-i", str(path), f"::{directory}"], debug)
                made.add(directory)
        if isinstance(source, bytes):
            tmp = staging / dest.replace("/", "_")
            tmp.write_bytes(source)
            source = tmp
        run_tool(["mcopy", "-i", str(path), str(source), f"::{dest}"], debug)
    shutil.rmtree(staging)


def write_partitioned_disk(
    rootfs: Path, root_fs: Path, raw: Path, arch: str, cmdline: str, progress: Progress
) -> list[str]:
    """Lay ROOT_FS into RAW under bib's GPT layout, with a boot loader when the image has one."""
    debug, notes = progress.debug, []
    short, efi_name = EFI_NAMES[arch]
    loader = resolve_in_root(rootfs, f"/usr/lib/systemd/boot/efi/systemd-boot{short}.efi")
    kernel = find_kernel(rootfs)
    esp_files: dict[str, Path | bytes] = {}
    boot_dir = raw.with_name("boot.d")
    boot_dir.mkdir()
    if loader.is_file() and kernel is not None:
        entry = (
            f"title {kernel.version}\nlinux /vmlinuz-{kernel.version}\n"
            f"initrd /initrd.img-{kernel.version}\noptions {cmdline}\n"
        )
        esp_files = {
            f"EFI/BOOT/{efi_name}": loader,
            f"EFI/systemd/systemd-boot{short}.efi": loader,
            "loader/loader.conf": b"default bootc.conf\ntimeout 0\n",
            "loader/entries/bootc.conf": entry.encode(),
            f"vmlinuz-{kernel.version}": kernel.vmlinuz,
            f"initrd.img-{kernel.version}": kernel.initrd,
        }
        for name, source in (("vmlinuz", kernel.vmlinuz), ("initrd.img", kernel.initrd)):
            shutil.copyfile(source, boot_dir / f"{name}-{kernel.version}")
        notes.append(f"boot loader: systemd-boot ({efi_name}), kernel {kernel.version}")
    else:
        missing = "systemd-boot" if not loader.is_file() else "a kernel and initrd"
        log_warning(f"the image has no {missing}: the disk is written without a boot loader")
    esp = raw.with_name("esp.img")
    _vfat_image(esp, ESP_MIB * MIB, esp_files, debug)
    boot = raw.with_name("boot.img")
    with boot.open("wb") as f:
        f.truncate(BOOT_MIB * MIB)
    run_tool(["mkfs.ext4", "-q", "-F", "-L", "boot", "-d", str(boot_dir), str(boot)], debug)
    shutil.rmtree(boot_dir)

    root_mib = (root_fs.stat().st_size + MIB - 1) // MIB
    parts: list[tuple[str, int, Path | None]] = []
    if arch == "x86_64":
        parts.append(("bios", BIOS_BOOT_MIB, None))
    parts += [("esp", ESP_MIB, esp), ("boot", BOOT_MIB, boot), (f"root-{arch}", root_mib, root_fs)]
    total_mib = 1 + sum(size for _, size, _ in parts) + 1  # GPT at both ends
    with raw.open("wb") as f:
        f.truncate(total_mib * MIB)
    script, start = ["label: gpt"], 1
    placed: list[tuple[int, Path]] = []
    for kind, size, image in parts:
        name = kind.split("-")[0]
        script.append(
            f"start={start * 2048}, size={size * 2048}, type={GPT_TYPES[kind]}, name={name}"
        )
        if image is not None:
            placed.append((start, image))
        start += size
    sfdisk = subprocess.run(
        ["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(raw)],
        input="\n".join(script) + "\n",
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    if sfdisk.returncode != 0:
        raise BibError(f"sfdisk failed: {sfdisk.stderr.strip()}")
    for start, image in placed:
        dd = ["dd", f"if={image}", f"of={raw}", "bs=1M", f"seek={start}", "conv=notrunc,sparse"]
        run_tool([*dd, "status=none"], debug)
        image.unlink()
    notes.append(f"disk: GPT, {', '.join(k for k, _, _ in parts)}; {total_mib} MiB")
    return notes


# --- progress and manifest ----------------------------------------------------------------------


@dataclass
class Stage:
    type: str
    options: dict[str, Any]
    id: str = ""


@dataclass
class Pipeline:
    name: str
    stages: list[Stage]
    build: str | None = "name:build"


def chain_ids(pipelines: list[Pipeline]) -> None:
    """osbuild-like ids: each stage's id hashes its type, options and the previous id."""
    previous = ""
    for pipeline in pipelines:
        for stage in pipeline.stages:
            blob = json.dumps([previous, stage.type, stage.options], sort_keys=True)
            stage.id = previous = hashlib.sha256(blob.encode()).hexdigest()


def manifest_document(
    pipelines: list[Pipeline], sources: dict[str, Any], meta: dict[str, Any]
) -> dict[str, Any]:
    return {
        "version": "2",
        "pipelines": [
            {
                "name": p.name,
                **({"build": p.build} if p.build else {"runner": "org.osbuild.linux"}),
                "stages": [{"type": s.type, "options": s.options} for s in p.stages],
            }
            for p in pipelines
        ],
        "sources": sources,
        "metadata": meta,
    }


class Progress:
    """stdout as bib shows it: osbuild's stage log with --progress verbose/debug, else a summary."""

    def __init__(self, mode: str, interactive: bool = False) -> None:
        if mode == "auto":  # as bib: a terminal gets progress bars, scripts the verbose log
            mode = "term" if interactive else "verbose"
        self.verbose = mode in ("verbose", "debug")
        self.debug = mode == "debug"

    def say(self, line: str) -> None:
        print(line, flush=True)

    def detail(self, line: str) -> None:
        if self.verbose:
            print(line, flush=True)

    def pipeline(self, pipeline: Pipeline, index: int, count: int) -> None:
        if self.verbose:
            self.say(
                f"Pipeline {pipeline.name}: {pipeline.stages[0].id if pipeline.stages else ''}"
            )
            self.say("Build\n  root: <host>\n  runner: org.osbuild.linux (org.osbuild.linux)")
        else:
            self.say(f"[{index}/{count}] pipeline {pipeline.name}")

    def stage_start(self, stage: Stage) -> float:
        if self.verbose:
            self.say(f"{stage.type}: {stage.id} " + json.dumps(stage.options, indent=2))
        return time.monotonic()

    def stage_end(self, started: float) -> None:
        self.detail(f"Duration: {time.monotonic() - started:.2f}s")


# --- the build ----------------------------------------------------------------------------------


def host_arch() -> str:
    machine = platform.machine()
    if machine not in ARCHS:
        raise BibError(f"unsupported host architecture {machine}")
    return ARCHS[machine]


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def build(opts: Options) -> None:
    """bib's build: its checks, then the disk, in bib's output layout."""
    check_privileged()
    check_rootful()
    config = load_config()
    check_storage()
    make_disk(
        DiskRequest(
            image=opts.image,
            types=opts.types,
            target=opts.target_arch or host_arch(),
            rootfs=opts.rootfs,
            config=config,
            output=opts.output,
            manifest_name=f"manifest-{'-'.join(opts.types)}.json",
            chown=opts.chown,
        ),
        Progress(opts.progress, interactive=sys.stdin.isatty()),
    )


@dataclass(frozen=True)
class DiskRequest:
    """What both builder front ends (bib's and image-builder's) ask of the one disk writer."""

    image: str
    types: tuple[str, ...]
    target: str  # OCI architecture name
    rootfs: str | None  # None: the image's own default
    config: Config
    output: Path
    manifest_name: str | None  # None: no osbuild manifest written
    chown: tuple[int, int] | None = None
    absent: str = Skopeo.absent  # the message when the image is not in the storage
    no_rootfs: str = (
        'no default root filesystem type specified in container, please use "--rootfs" '
        "to set manually"
    )


def make_disk(req: DiskRequest, progress: Progress) -> None:
    """Read REQ.image from the mounted storage and write the disk in bib's output layout
    (OUTPUT/qcow2/disk.qcow2, OUTPUT/image/disk.raw, ...), as osbuild's exports are."""
    opts, target, config = req, req.target, req.config
    work = Path(tempfile.mkdtemp(prefix="bib-standin-", dir="/var/tmp"))
    try:
        skopeo = Skopeo(work, debug=progress.debug, absent=req.absent)
        info = skopeo.inspect(opts.image)
        labels = info.get("Labels") or {}
        if labels.get("containers.bootc") != "1":
            raise BibError(f"image {opts.image} is not a bootc image")
        image_arch = ARCHS.get(str(info.get("Architecture")), str(info.get("Architecture")))
        if image_arch != target:
            found = UNAME.get(image_arch, image_arch)
            raise BibError(
                f'image found is for unexpected architecture "{found}" (expected '
                f'"{UNAME[target]}"), if that is intentional, please make sure --target-arch '
                "matches"
            )
        if target != host_arch():
            check_binfmt(target)

        image_dir = work / "image"
        skopeo.copy_to_dir(opts.image, image_dir)
        layers, image_config = layer_paths(image_dir)
        rootfs_dir = work / "rootfs"
        rootfs_dir.mkdir()
        os.chmod(rootfs_dir, 0o755)
        unpacked = [unpack_layer(layer, rootfs_dir) for layer in layers]
        shutil.rmtree(image_dir)  # the layers are in rootfs_dir now

        rootfs = opts.rootfs or default_rootfs(rootfs_dir)
        if rootfs is None:
            raise BibError(req.no_rootfs)
        if rootfs not in ROOTFS_TYPES:
            raise BibError(f'unsupported root filesystem type "{rootfs}" in the container')

        root_minsize = max([size for mp, size in config.filesystems if mp == "/"], default=0)
        content, inodes = tree_usage(rootfs_dir)
        disk_size = filesystem_size(content, inodes, root_minsize)
        image_id = (
            "sha256:"
            + hashlib.sha256(json.dumps(image_config, sort_keys=True).encode()).hexdigest()
        )
        cmdline = " ".join(filter(None, ["root=LABEL=root rw", config.kernel_append]))
        # The stages of a bootc qcow2 build, in bib's order (osbuild/images at commit
        # 1146ec23cd9c5d4b8d161bde7f0827f8da7c8ded; model/bib.py qcow2_stages has the sources).
        build_stages = [
            Stage("org.osbuild.container-deploy", {"image": opts.image, "layers": len(layers)}),
            Stage(
                "org.osbuild.selinux",
                {"file_contexts": "etc/selinux/targeted/contexts/files/file_contexts"},
            ),
        ]
        image_stages = [
            Stage("org.osbuild.truncate", {"filename": "disk.raw", "size": disk_size}),
            Stage("org.osbuild.sfdisk", {"label": "gpt"}),
            Stage("org.osbuild.mkfs.fat", {"label": "EFI-SYSTEM"}),
            Stage(f"org.osbuild.mkfs.{rootfs}", {"label": "boot"}),
            Stage(f"org.osbuild.mkfs.{rootfs}", {"label": "root"}),
            Stage("org.osbuild.bootc.install-to-filesystem", {"kernel-args": cmdline.split()}),
        ]
        units = ["-.mount", "boot-efi.mount", "boot.mount"]
        image_stages += [Stage("org.osbuild.systemd.unit.create", {"filename": u}) for u in units]
        image_stages.append(Stage("org.osbuild.systemd", {"enabled_services": units}))
        if config.users:
            names = sorted(u.name for u in config.users)
            image_stages.append(Stage("org.osbuild.mkdir", {"paths": ["/var/home"]}))
            image_stages.append(Stage("org.osbuild.users", {"users": names}))
        image_stages += [
            Stage("org.osbuild.selinux", {"target": f"tree://{d}"}) for d in ("/etc", "/var")
        ]
        pipelines = [Pipeline("build", build_stages, build=None), Pipeline("image", image_stages)]
        for t in opts.types:
            subdir, filename, fmt = IMAGE_TYPES[t]
            if fmt != "raw":
                qemu = Stage("org.osbuild.qemu", {"filename": filename, "format": {"type": fmt}})
                pipelines.append(Pipeline(subdir, [qemu]))
        chain_ids(pipelines)
        meta = {
            "generator": STANDIN_VERSION,
            "image": opts.image,
            "image_id": image_id,
            "arch": UNAME[target],
            "rootfs": rootfs,
            "filesystem_written": "ext4",
            "partition_table": "gpt",
            "image_types": list(opts.types),
            "exports": {t: f"{IMAGE_TYPES[t][0]}/{IMAGE_TYPES[t][1]}" for t in opts.types},
            "kernel_cmdline": cmdline,
            "filesystems": [{"mountpoint": m, "minsize": s} for m, s in config.filesystems],
            "customizations": config.recorded,
        }
        doc = manifest_document(
            pipelines, {"org.osbuild.containers-storage": {"items": {image_id: {}}}}, meta
        )
        manifest_name = req.manifest_name or "manifest"
        opts.output.mkdir(parents=True, exist_ok=True)
        progress.say(f"Generating manifest {manifest_name}")
        if req.manifest_name:
            encoded = json.dumps(doc, indent=2).encode() + b"\n"
            _write_atomic(opts.output / req.manifest_name, encoded)
        progress.say("DONE")
        progress.say(f"Building {manifest_name}")
        progress.detail("starting -")

        raw = work / "disk.raw"
        ctx = BuildContext(
            rootfs_dir, raw, opts.output, config, cmdline, unpacked, progress, UNAME[target]
        )
        count = len(pipelines)
        for index, pipeline in enumerate(pipelines, 1):
            progress.pipeline(pipeline, index, count)
            for stage in pipeline.stages:
                started = progress.stage_start(stage)
                _run_stage(ctx, pipeline, stage)
                progress.stage_end(started)
        for t in opts.types:
            subdir, filename, _ = IMAGE_TYPES[t]
            if IMAGE_TYPES[t][2] == "raw":
                dest_dir = opts.output / subdir
                dest_dir.mkdir(exist_ok=True)
                tmp = dest_dir / f".{filename}.tmp"
                run_tool(
                    ["qemu-img", "convert", "-f", "raw", "-O", "raw", str(raw), str(tmp)],
                    progress.debug,
                )
                tmp.replace(dest_dir / filename)
        if opts.chown is not None:
            uid, gid = opts.chown
            os.chown(opts.output, uid, gid)
            for dirpath, dirnames, filenames in os.walk(opts.output):
                for name in dirnames + filenames:
                    os.lchown(os.path.join(dirpath, name), uid, gid)
        progress.say("Build complete!")
        progress.say(f"Results saved in {opts.output}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


@dataclass(frozen=True)
class BuildContext:
    rootfs: Path  # the unpacked image
    raw: Path  # the filesystem image being made
    output: Path
    config: Config
    cmdline: str
    unpacked: list[int]  # entries per layer
    progress: Progress
    arch: str  # uname -m of the target


def _run_stage(ctx: BuildContext, pipeline: Pipeline, stage: Stage) -> None:
    """Do what the stand-in does for STAGE (most osbuild stages have nothing to do here)."""
    kind = stage.type
    progress, rootfs_dir, raw, unpacked = ctx.progress, ctx.rootfs, ctx.raw, ctx.unpacked
    if kind == "org.osbuild.container-deploy":
        for i, n in enumerate(unpacked, 1):
            progress.detail(f"layer {i}/{len(unpacked)}: {n} entries")
    elif kind == "org.osbuild.truncate":
        size = int(stage.options["size"])
        with root_image(raw).open("wb") as f:
            f.truncate(size)
        progress.detail(f"root filesystem: {size} bytes")
    elif kind == "org.osbuild.bootc.install-to-filesystem":
        # The stand-in writes one ext4 filesystem in one go (mkfs.ext4 -d), so what bib's later
        # stages do on the deployed tree (users, mounts) is applied to the tree here, first.
        for note in apply_users(rootfs_dir, ctx.config.users):
            progress.detail(note)
        path = resolve_in_root(rootfs_dir, "/etc/kernel/cmdline")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(ctx.cmdline + "\n")
        path = resolve_in_root(rootfs_dir, "/etc/fstab")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as fstab:
            fstab.write("LABEL=root / ext4 defaults 0 1\n")
            fstab.write("LABEL=boot /boot ext4 defaults,nofail 0 2\n")
        root = root_image(raw)
        _, inodes = tree_usage(rootfs_dir)
        inode_count = max(root.stat().st_size // 16384, inodes * 2 + 1024)
        mkfs = "mkfs.ext4 -q -F -b 4096 -I 256 -L root".split()
        run_tool([*mkfs, "-N", str(inode_count), "-d", str(rootfs_dir), str(root)], progress.debug)
        for note in write_partitioned_disk(rootfs_dir, root, raw, ctx.arch, ctx.cmdline, progress):
            progress.detail(note)
    elif kind == "org.osbuild.qemu":
        subdir = pipeline.name
        filename = str(stage.options["filename"])
        fmt = str(stage.options["format"]["type"])
        dest_dir = ctx.output / subdir
        dest_dir.mkdir(exist_ok=True)
        tmp = dest_dir / f".{filename}.tmp"
        run_tool(
            ["qemu-img", "convert", "-f", "raw", "-O", fmt, str(raw), str(tmp)], progress.debug
        )
        tmp.replace(dest_dir / filename)
    # sfdisk, mkfs.*, systemd.unit.create, systemd, mkdir, users, selinux: nothing more to do
    # (install-to-filesystem wrote the partitioned disk, users included).


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args[:1] in (["version"], ["--version"]):
            print(STANDIN_VERSION)
            return 0
        if args[:1] == ["manifest"]:
            raise BibError("the manifest command is not implemented by the stand-in")
        build(parse_args(args))
        return 0
    except BibError as exc:
        log_error(str(exc))
        return 1
    except Exception as exc:  # a bug in the stand-in: still bib's failure shape
        traceback.print_exc()
        log_error(f"internal error in the bootc-image-builder stand-in: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
