"""Pytest plugin: the test images that stand in for what cannot be pulled here (no registry access).

Fixtures (session scope, loaded through tests/support/podman.py):
- `fake_bases(podman, binfmt_arm64) -> FakeBases`: local manifest lists standing in for
  quay.io/fedora/fedora-bootc:40 and quay.io/centos-bootc/centos-bootc:stream9, each with an
  amd64 and an arm64 instance made of busybox-static plus stub dnf/systemctl/bootc
  (tests/standins/fakebase/).
- `bib_standin(podman) -> str`: the bootc-image-builder stand-in image (tests/standins/bib/),
  built on a debootstrapped Debian rootfs.
- `image_builder_standin(podman) -> str`: the image-builder stand-in (tests/standins/
  image_builder/), on the same rootfs, sharing the bib stand-in's disk writer.

Everything is built once per store and reused while a content hash of its sources (kept in the
label SOURCE_LABEL) still matches; downloads (busybox-static debs, the debootstrap tarball) are
cached under the test root's cache/ directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.podman import PodmanService, cache_dir, run_checked

STANDINS = Path(__file__).resolve().parent.parent / "standins"
FAKEBASE_SOURCES = STANDINS / "fakebase"
BIB_SOURCES = STANDINS / "bib"
IMAGE_BUILDER_SOURCES = STANDINS / "image_builder"

SOURCE_LABEL = "org.bootc-pipeline.test.source-hash"
ARCHS = ("amd64", "arm64")
BIB_STANDIN_IMAGE = "localhost/test/bootc-image-builder:standin"
IMAGE_BUILDER_STANDIN_IMAGE = "localhost/test/image-builder:standin"
BIB_PACKAGES = (
    "python3",
    "e2fsprogs",
    "qemu-utils",
    "skopeo",
    "containernetworking-plugins",
    "fdisk",
    "dosfstools",
    "mtools",
)
BUILD_TIMEOUT = 900.0

_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_EPOCH = 1_700_000_000  # fixed mtime: the same sources give the same layer bytes


@dataclass(frozen=True)
class Flavour:
    """One fake bootc base: what differs between the Fedora and the CentOS Stream stand-ins."""

    name: str  # also the fake dnf's flavour: which packages its "repositories" have
    ref: str  # the local manifest list
    stands_for: str  # the real image it replaces
    os_release: str
    repo_file: str  # /etc/yum.repos.d/NAME.repo
    default_rootfs: str | None  # /usr/lib/bootc/install/00-rootfs.toml root type, if any

    def instance(self, arch: str) -> str:
        """The per-architecture image the manifest list points at."""
        return f"{self.ref}-{arch}"


FLAVOURS: dict[str, Flavour] = {
    "fedora": Flavour(
        name="fedora",
        ref="localhost/fake/fedora-bootc:40",
        stands_for="quay.io/fedora/fedora-bootc:40",
        os_release=(
            'NAME="Fedora Linux"\nVERSION="40 (Fake bootc base)"\nID=fedora\nVERSION_ID=40\n'
            'PRETTY_NAME="Fedora Linux 40 (fake bootc base for tests)"\nVARIANT_ID=bootc\n'
        ),
        repo_file="fedora",
        default_rootfs=None,  # fedora-bootc has none: bib needs --rootfs
    ),
    "centos": Flavour(
        name="centos",
        ref="localhost/fake/centos-bootc:stream9",
        stands_for="quay.io/centos-bootc/centos-bootc:stream9",
        os_release=(
            'NAME="CentOS Stream"\nVERSION="9"\nID=centos\nID_LIKE="rhel fedora"\nVERSION_ID=9\n'
            'PRETTY_NAME="CentOS Stream 9 (fake bootc base for tests)"\n'
        ),
        repo_file="centos",
        default_rootfs="xfs",
    ),
}

# What the real bases already contain (fake dnf records them as installed).
PREINSTALLED = ("openssh-server", "shadow-utils", "sudo", "systemd", "kmod", "bash")


@dataclass(frozen=True)
class FakeBases:
    """Names of the fake base manifest lists (and their per-arch instances) in the test store."""

    fedora: str
    centos: str

    def __getitem__(self, flavour: str) -> str:
        return self.refs[flavour]

    def instance(self, flavour: str, arch: str) -> str:
        return FLAVOURS[flavour].instance(arch)

    @property
    def refs(self) -> dict[str, str]:
        return {"fedora": self.fedora, "centos": self.centos}


# --- busybox-static per architecture ------------------------------------------------------------


def _dpkg_arch() -> str:
    return run_checked(["dpkg", "--print-architecture"], timeout=30).stdout.decode().strip()


def _host_busybox() -> tuple[Path, str]:
    """The host's busybox-static binary and package version (amd64 on these machines)."""
    proc = run_checked(
        ["dpkg-query", "-W", "-f", "${Status}\t${Version}", "busybox-static"], check=False
    )
    status, _, version = proc.stdout.decode().partition("\t")
    if proc.returncode != 0 or "installed" not in status.split():
        pytest.fail("busybox-static is not installed: apt-get install -y busybox-static")
    files = run_checked(["dpkg", "-L", "busybox-static"], timeout=30).stdout.decode().split()
    binary = next((Path(f) for f in files if f.endswith("/bin/busybox")), None)
    if binary is None or not binary.exists():
        pytest.fail("busybox-static is installed but its bin/busybox is missing: reinstall it")
    return binary, version


def _foreign_busybox(arch: str) -> tuple[Path, str]:
    """busybox-static for ARCH from Debian's mirror (the .deb cached under the test root)."""
    debs = cache_dir("debs")
    found = sorted(debs.glob(f"busybox-static_*_{arch}.deb"), key=lambda p: p.stat().st_mtime)
    if not found:
        foreign = run_checked(["dpkg", "--print-foreign-architectures"], timeout=30)
        if arch not in foreign.stdout.decode().split():
            run_checked(["dpkg", "--add-architecture", arch], timeout=60)
            run_checked(["apt-get", "update", "-q"], timeout=600)
        fetch = ["apt-get", "download", "-q", f"busybox-static:{arch}"]
        if run_checked(fetch, cwd=debs, check=False, timeout=300).returncode != 0:
            run_checked(["apt-get", "update", "-q"], timeout=600)  # lists may lack ARCH yet
            run_checked(fetch, cwd=debs, timeout=300)
        found = sorted(debs.glob(f"busybox-static_*_{arch}.deb"), key=lambda p: p.stat().st_mtime)
        if not found:
            pytest.fail(f"apt-get download busybox-static:{arch} left no .deb in {debs}")
    deb = found[-1]
    version = run_checked(["dpkg-deb", "-f", str(deb), "Version"], timeout=30).stdout.decode()
    out = debs / f"busybox-{arch}-{version.strip()}"
    binary = out / "bin" / "busybox"
    if not binary.exists():
        shutil.rmtree(out, ignore_errors=True)
        run_checked(["dpkg-deb", "-x", str(deb), str(out)], timeout=60)
    return binary, version.strip()


def busybox_for(arch: str) -> tuple[Path, str]:
    """A static busybox binary for ARCH and its Debian version."""
    return _host_busybox() if arch == _dpkg_arch() else _foreign_busybox(arch)


# --- fake bootc bases ---------------------------------------------------------------------------


def _sources_hash(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()


def _fakebase_hash(busyboxes: dict[str, tuple[Path, str]]) -> str:
    stubs = sorted(p for p in FAKEBASE_SOURCES.iterdir() if p.is_file())
    return _sources_hash(
        [Path(__file__).read_bytes()]
        + [p.name.encode() + b"\0" + p.read_bytes() for p in stubs]
        + [f"{arch}={version}".encode() for arch, (_, version) in sorted(busyboxes.items())]
    )


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


# The bootc layout: merged /usr, state under /var (home, roothome, opt, ...).
_DIRS = """usr/bin usr/sbin usr/lib/systemd/system usr/lib/fake-dnf/installed usr/local/bin
etc/systemd/system etc/yum.repos.d var/home var/roothome var/tmp var/opt var/mnt var/srv run tmp
proc sys dev boot sysroot""".split()
_LINKS = dict(
    pair.split("->")
    for pair in """bin->usr/bin sbin->usr/sbin lib->usr/lib home->var/home root->var/roothome
    opt->var/opt mnt->var/mnt srv->var/srv var/run->../run""".split()
)


def _layout_rootfs(root: Path, flavour: Flavour, busybox: Path) -> None:
    """Lay out a merged-/usr bootc-like tree: busybox, stubs, os-release, preinstalled packages."""
    for d in _DIRS:
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "var/tmp").chmod(0o1777)
    for link, target in _LINKS.items():
        (root / link).symlink_to(target)

    shutil.copy2(busybox, root / "usr/bin/busybox")
    (root / "usr/bin/busybox").chmod(0o755)
    # The applet list comes from the binary itself (arm64 runs under qemu via binfmt_misc).
    applets = run_checked([str(busybox), "--list-full"], timeout=60).stdout.decode().split()
    for applet in applets:
        top, _, name = applet.rpartition("/")
        where = {"bin": "usr/bin", "sbin": "usr/sbin"}.get(top, top)
        if name and where in ("usr/bin", "usr/sbin"):
            dest = root / where / name
            if not dest.exists():
                dest.symlink_to("busybox" if where == "usr/bin" else "../bin/busybox")
    # No bash in busybox: scripts and SHELL lines naming bash get busybox ash (pipefail included).
    _write(root / "usr/bin/bash", '#!/bin/sh\nexec /bin/sh "$@"\n', 0o755)
    for stub in ("dnf", "systemctl", "bootc"):
        shutil.copyfile(FAKEBASE_SOURCES / stub, root / "usr/bin" / stub)
        (root / "usr/bin" / stub).chmod(0o755)

    _write(root / "etc/os-release", flavour.os_release)
    _write(root / "usr/lib/os-release", flavour.os_release)
    _write(
        root / "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\n"
        "nobody:x:65534:65534:Kernel Overflow User:/:/sbin/nologin\n",
    )
    _write(root / "etc/group", "root:x:0:\nwheel:x:10:\nnobody:x:65534:\n")
    _write(root / "etc/shadow", "root:!locked::0:99999:7:::\nnobody:!*:::::::\n", 0o000)
    _write(root / "etc/hostname", "localhost\n")
    _write(
        root / f"etc/yum.repos.d/{flavour.repo_file}.repo",
        f"[{flavour.name}]\nname={flavour.name} (fake: no repositories in tests)\nenabled=1\n",
    )
    for unit in ("multi-user.target", "graphical.target", "default.target"):
        _write(root / "usr/lib/systemd/system" / unit, f"[Unit]\nDescription={unit}\n")
    _write(root / "usr/lib/fake-dnf/flavour", f"{flavour.name}\n")
    if flavour.default_rootfs:
        _write(
            root / "usr/lib/bootc/install/00-rootfs.toml",
            f'[install.filesystem.root]\ntype = "{flavour.default_rootfs}"\n',
        )

    # Preinstall with the stub itself (host sh, FAKE_ROOT prefix), then leave no dnf cache or log.
    env = {"PATH": _PATH, "FAKE_ROOT": str(root)}
    dnf = str(root / "usr/bin/dnf")
    run_checked(["sh", dnf, "-y", "install", *PREINSTALLED], env=env, timeout=60)
    run_checked(["sh", dnf, "clean", "all"], env=env, timeout=60)
    (root / "var/log/dnf.log").unlink(missing_ok=True)


def _tar_rootfs(root: Path, out: Path) -> None:
    """A reproducible tarball of ROOT (sorted, root-owned, fixed mtimes)."""

    def normalize(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = _EPOCH
        return info

    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(root, arcname=".", filter=normalize)


def _manifest_digests(podman: PodmanService, ref: str) -> dict[str, str] | None:
    """arch -> instance digest of manifest list REF, or None when REF is no manifest list."""
    proc = podman.cli("manifest", "inspect", ref, check=False)
    if proc.returncode != 0:
        return None
    try:
        doc = json.loads(proc.stdout)
        return {m["platform"]["architecture"]: m["digest"] for m in doc["manifests"]}
    except (ValueError, KeyError, TypeError):
        return None


def _image_id(podman: PodmanService, name: str) -> str | None:
    proc = podman.cli("image", "inspect", "--format", "{{.Id}}", name, check=False)
    return proc.stdout.decode().strip() if proc.returncode == 0 else None


def _image_digest(podman: PodmanService, name: str) -> str:
    return podman.cli("image", "inspect", "--format", "{{.Digest}}", name).stdout.decode().strip()


def _fake_base_is_current(podman: PodmanService, flavour: Flavour, source_hash: str) -> bool:
    listed = _manifest_digests(podman, flavour.ref)
    if listed is None or set(listed) != set(ARCHS):
        return False
    for arch in ARCHS:
        if podman.image_label(flavour.instance(arch), SOURCE_LABEL) != source_hash:
            return False
        if listed[arch] != _image_digest(podman, flavour.instance(arch)):
            return False
    return True


def build_fake_base(
    podman: PodmanService,
    flavour: Flavour,
    busyboxes: dict[str, tuple[Path, str]],
    source_hash: str,
) -> None:
    """(Re)build FLAVOUR's per-arch images and its manifest list in the store."""
    podman.cli("manifest", "rm", flavour.ref, check=False)
    podman.cli("untag", flavour.ref, check=False)
    stale = [i for i in (_image_id(podman, flavour.instance(a)) for a in ARCHS) if i]
    with tempfile.TemporaryDirectory(prefix="fake-bootc-base-", dir="/var/tmp") as tmp:
        for arch in ARCHS:
            podman.cli("untag", flavour.instance(arch), check=False)
            root = Path(tmp) / arch / "rootfs"
            root.mkdir(parents=True)
            _layout_rootfs(root, flavour, busyboxes[arch][0])
            tarball = Path(tmp) / arch / "rootfs.tar"
            _tar_rootfs(root, tarball)
            changes = [
                "LABEL containers.bootc=1",
                "LABEL ostree.bootable=1",
                f"LABEL {SOURCE_LABEL}={source_hash}",
                f"LABEL org.opencontainers.image.title=fake {flavour.stands_for}",
                f"ENV PATH={_PATH}",
                'CMD ["/bin/sh"]',
            ]
            args = ["import", "--quiet", "--arch", arch, "--os", "linux"]
            for change in changes:
                args += ["--change", change]
            podman.cli(*args, str(tarball), flavour.instance(arch))
    podman.cli("manifest", "create", flavour.ref)
    for arch in ARCHS:
        podman.cli("manifest", "add", flavour.ref, f"containers-storage:{flavour.instance(arch)}")
    for image_id in stale:
        # Fails, harmlessly, while images built on the old base still need it as their parent.
        podman.cli("rmi", image_id, check=False)


def ensure_fake_bases(podman: PodmanService) -> FakeBases:
    """Build the fake bases unless the store already has them from the same sources."""
    busyboxes = {arch: busybox_for(arch) for arch in ARCHS}
    source_hash = _fakebase_hash(busyboxes)
    for flavour in FLAVOURS.values():
        if not _fake_base_is_current(podman, flavour, source_hash):
            build_fake_base(podman, flavour, busyboxes, source_hash)
            if not _fake_base_is_current(podman, flavour, source_hash):
                pytest.fail(f"fake base {flavour.ref} does not check out after building it")
    return FakeBases(fedora=FLAVOURS["fedora"].ref, centos=FLAVOURS["centos"].ref)


@pytest.fixture(scope="session")
def fake_bases(podman: PodmanService, binfmt_arm64: Path) -> FakeBases:
    """Manifest lists standing in for fedora-bootc:40 and centos-bootc:stream9 (amd64, arm64)."""
    return ensure_fake_bases(podman)


# --- the bootc-image-builder stand-in -----------------------------------------------------------


def debootstrap_tarball(
    cache_name: str, stem: str, packages: Sequence[str], *, arch: str | None = None
) -> Path:
    """A Debian bookworm minbase tree with PACKAGES as a .tar.zst under the test root's cache
    (debootstrap once, then reused). A foreign ARCH runs its second stage through
    qemu-user-static."""
    params = f"bookworm minbase {','.join(packages)}"
    key = hashlib.sha256(params.encode()).hexdigest()[:16]
    cache = cache_dir(cache_name)
    tarball = cache / f"{stem}-{key}.tar.zst"
    if tarball.exists():
        return tarball
    for tool, package in (("debootstrap", "debootstrap"), ("zstd", "zstd")):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found: apt-get install -y {package} (.ci/run must install it)")
    foreign = arch is not None and arch != _dpkg_arch()
    with tempfile.TemporaryDirectory(prefix="debootstrap-", dir=cache) as tmp:
        target = Path(tmp) / "rootfs"
        argv = ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}"]
        argv += [f"--arch={arch}"] if arch else []
        argv += ["--foreign"] if foreign else []
        # no mirror argument: debootstrap's own default (the project names no package mirror)
        run_checked([*argv, "bookworm", str(target)], timeout=BUILD_TIMEOUT * 2)
        emulator = target / "usr/libexec/qemu-binfmt/aarch64-binfmt-P"
        if foreign:
            # binfmt_misc without the F flag looks the interpreter up inside the chroot
            static = shutil.which("qemu-aarch64-static")
            if static is None:
                pytest.fail("qemu-aarch64-static not found: apt-get install -y qemu-user-static")
            emulator.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(static, emulator)
            second = ["chroot", str(target), "/debootstrap/debootstrap", "--second-stage"]
            try:
                run_checked(second, timeout=BUILD_TIMEOUT * 3)
            finally:  # a second stage cut short leaves /proc and /sys mounted in the tree
                for mount in ("proc", "sys"):
                    if os.path.ismount(target / mount):
                        run_checked(["umount", "-l", str(target / mount)], timeout=60)
            shutil.rmtree(emulator.parent)
        for junk in (
            "var/cache/apt/archives",
            "var/lib/apt/lists",
            "usr/share/doc",
            "usr/share/man",
            "usr/share/info",
            "usr/share/locale",
        ):
            shutil.rmtree(target / junk, ignore_errors=True)
        partial = Path(tmp) / "rootfs.tar.zst"
        tar = ["tar", "--numeric-owner", "--xattrs", "--zstd", "-C", str(target)]
        run_checked([*tar, "-cf", str(partial), "."], timeout=BUILD_TIMEOUT)
        partial.rename(tarball)
    return tarball


def _bib_rootfs_tarball() -> Path:
    """A Debian bookworm rootfs with what the stand-in runs."""
    return debootstrap_tarball("bib-standin", "rootfs-bookworm", BIB_PACKAGES)


def bib_sources_hash(*directories: Path) -> str:
    files = sorted(
        p
        for d in directories or (BIB_SOURCES,)
        for p in d.iterdir()
        if p.is_file() and p.suffix != ".pyc"
    )
    return _sources_hash(
        [Path(__file__).read_bytes(), " ".join(BIB_PACKAGES).encode()]
        + [p.name.encode() + b"\0" + p.read_bytes() for p in files]
    )


def _ensure_builder_standin(
    podman: PodmanService, image: str, containerfile: Path, context: Path, sources: list[Path]
) -> str:
    """Build a builder stand-in unless the store has it from the same sources."""
    source_hash = bib_sources_hash(*sources)
    if podman.image_label(image, SOURCE_LABEL) == source_hash:
        return image
    tarball = _bib_rootfs_tarball()
    base = f"localhost/test/bib-standin-rootfs:{tarball.name.split('.')[0]}"
    if not podman.image_exists(base):
        podman.cli("import", "--quiet", "--arch", _dpkg_arch(), str(tarball), base)
    stale = _image_id(podman, image)
    build = ["build", "--quiet", "--pull=never", "--network=none", "--layers=false"]
    build += ["--build-arg", f"BASE={base}", "--label", f"{SOURCE_LABEL}={source_hash}"]
    build += ["--tag", image, "--file", str(containerfile)]
    podman.cli(*build, str(context), timeout=BUILD_TIMEOUT)
    if podman.image_label(image, SOURCE_LABEL) != source_hash:
        pytest.fail(f"{image} lacks its source label after building it")
    if stale:
        podman.cli("rmi", stale, check=False)  # the previous stand-in, now untagged
    return image


def ensure_bib_standin(podman: PodmanService) -> str:
    """The bootc-image-builder stand-in (tests/standins/bib/)."""
    return _ensure_builder_standin(
        podman, BIB_STANDIN_IMAGE, BIB_SOURCES / "Containerfile", BIB_SOURCES, [BIB_SOURCES]
    )


def ensure_image_builder_standin(podman: PodmanService) -> str:
    """The image-builder stand-in (tests/standins/image_builder/, with the bib stand-in's disk
    writer: its build context is tests/standins/)."""
    return _ensure_builder_standin(
        podman,
        IMAGE_BUILDER_STANDIN_IMAGE,
        IMAGE_BUILDER_SOURCES / "Containerfile",
        STANDINS,
        [BIB_SOURCES, IMAGE_BUILDER_SOURCES],
    )


@pytest.fixture(scope="session")
def bib_standin(podman: PodmanService) -> str:
    """The bootc-image-builder stand-in image (name), built in the test store."""
    return ensure_bib_standin(podman)


@pytest.fixture(scope="session")
def image_builder_standin(podman: PodmanService) -> str:
    """The image-builder stand-in image (name), built in the test store."""
    return ensure_image_builder_standin(podman)
