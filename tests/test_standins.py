"""The test stand-ins behave like what they replace: fake bootc bases and bootc-image-builder.

Fast tests check the bib stand-in's pieces in-process (command line, config, layer unpacking);
integration tests build on the fake bases through the Podman service (arm64 under qemu) and run
the bib stand-in through the Docker SDK exactly as the product does.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from pipeline.model import bib as pipeline_bib
from tests.standins.bib import bootc_image_builder as bib
from tests.support import judges
from tests.support.containers import run_to_end
from tests.support.images import FLAVOURS, FakeBases
from tests.support.podman import PodmanService, run_checked

ERROR_LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d error: (?P<message>.*)$")
CONTAINER_TIMEOUT = 300


# --- bib stand-in: command line and config (in-process) -----------------------------------------


def test_bib_args_podman_desktop_style() -> None:
    argv = (
        "quay.io/x/y:1 --output /output/ --progress verbose --type qcow2 --type raw "
        "--target-arch aarch64 --rootfs xfs --chown 1000:100"
    ).split()
    opts = bib.parse_args(argv)
    assert opts.image == "quay.io/x/y:1"
    assert opts.types == ("qcow2", "raw")
    assert opts.target_arch == "arm64"
    assert opts.rootfs == "xfs"
    assert opts.progress == "verbose"
    assert opts.chown == (1000, 100)
    assert opts.output == Path("/output")


def test_bib_args_defaults_and_build_subcommand() -> None:
    opts = bib.parse_args(["build", "--local", "--tls-verify=false", "img"])
    assert (opts.types, opts.target_arch, opts.rootfs, opts.output) == (
        ("qcow2",),
        None,
        None,
        Path("/output"),
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--type", "qcow3", "img"], 'unsupported image type "qcow3"'),
        (["--type", "qcow2,raw", "img"], 'unsupported image type "qcow2,raw"'),
        ([], "accepts 1 arg(s), received 0"),
        (["a", "b"], "accepts 1 arg(s), received 2"),
        (["--local=false", "img"], "--local=false is no longer supported"),
        (["--rootfs", "zfs", "img"], 'unsupported rootfs "zfs"'),
        (["--target-arch", "riscv64", "img"], 'unsupported target architecture "riscv64"'),
        (["--progress", "fancy", "img"], 'unknown --progress "fancy"'),
        (["--chown", "me", "img"], 'cannot parse --chown "me"'),
        (["--bogus", "img"], "unrecognized arguments: --bogus"),
    ],
)
def test_bib_bad_usage_exits_1_with_bib_error_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bib.main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    match = ERROR_LINE.match(lines[-1])
    assert match, lines
    assert message in match.group("message")


def test_bib_config_accepts_documented_keys() -> None:
    config = bib.parse_config(
        {
            "customizations": {
                "user": [{"name": "alice", "key": "ssh-ed25519 AAA", "groups": ["wheel"]}],
                "kernel": {"append": "console=ttyS0"},
                "filesystem": [
                    {"mountpoint": "/", "minsize": "10 GiB"},
                    {"mountpoint": "/var/data", "minsize": 1024},
                ],
                "files": [{"path": "/etc/x", "data": "y"}],
            }
        }
    )
    assert config.users[0].name == "alice" and config.users[0].groups == ("wheel",)
    assert config.kernel_append == "console=ttyS0"
    assert config.filesystems == (("/", 10 * 2**30), ("/var/data", 1024))


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"customizations": {"usr": []}}, "unknown keys found: [customizations.usr]"),
        ({"blueprint": {}}, "unknown keys found: [blueprint]"),
        (
            {"customizations": {"user": [{"name": "a", "sshkey": "k"}]}},
            "unknown keys found: [customizations.user.sshkey]",
        ),
        ({"customizations": {"kernel": {"append": 3}}}, "customizations.kernel.append"),
        (
            {"customizations": {"filesystem": [{"mountpoint": "/etc", "minsize": 1}]}},
            'mountpoints are not supported ["/etc"]',
        ),
        (
            {"customizations": {"filesystem": [{"mountpoint": "/var/home", "minsize": 1}]}},
            'not supported ["/var/home"]',
        ),
        ({"customizations": {"user": [{"key": "k"}]}}, "name is required"),
    ],
)
def test_bib_config_rejects(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(bib.BibError, match=re.escape(message)):
        bib.parse_config(doc)


@pytest.mark.parametrize(
    ("mountpoint", "allowed"),
    [
        ("/", True),
        ("/boot", True),
        ("/var", False),  # checkMountpoints refuses /var itself
        ("/var/log", True),
        ("/var/lib/x", True),
        ("/usr", False),
        ("/boot/efi", False),
        ("/var/run", False),
        ("/var/roothome/x", False),
        ("/variable", False),
        ("/var/./log", False),  # not canonical
    ],
)
def test_bib_mountpoint_policy(mountpoint: str, allowed: bool) -> None:
    assert bib.mountpoint_allowed(mountpoint) is allowed


def test_bib_progress_auto_is_verbose_without_a_terminal() -> None:
    assert bib.Progress("auto", interactive=False).verbose
    assert not bib.Progress("auto", interactive=True).verbose
    assert not bib.Progress("term").verbose and bib.Progress("debug").verbose


def test_bib_environment_checks() -> None:
    bib.check_privileged("CapEff:\t000001ffffffffff\n")
    with pytest.raises(bib.BibError, match="requires a privileged container"):
        bib.check_privileged("CapEff:\t00000000a80425fb\n")  # podman's default capabilities
    bib.check_rootful("         0          0 4294967295\n")
    with pytest.raises(bib.BibError, match=r"rootful \(not rootless\)"):
        bib.check_rootful("         0       1000          1\n         1     100000      65536\n")
    with pytest.raises(bib.BibError, match="could not access container storage"):
        bib.check_storage("22 1 0:21 / / rw - overlay overlay rw\n")


# --- bib stand-in: layers and whiteouts (in-process) --------------------------------------------


def _layer(path: Path, entries: list[tuple[str, str, str]]) -> Path:
    """A layer tarball: (name, kind in file|dir|symlink|link, content or link target)."""
    with tarfile.open(path, "w") as tar:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            info.uid, info.gid = os.getuid(), os.getgid()
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, data
                tar.addfile(info)
            elif kind == "link":
                info.type, info.linkname = tarfile.LNKTYPE, data
                tar.addfile(info)
            else:
                payload = data.encode()
                info.size, info.mode = len(payload), 0o640
                tar.addfile(info, io.BytesIO(payload))
    return path


def test_unpack_layers_honours_whiteouts(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    lower = _layer(
        tmp_path / "l1.tar",
        [
            ("etc", "dir", ""),
            ("etc/keep", "file", "k"),
            ("etc/gone", "file", "g"),
            ("etc/cloud", "dir", ""),
            ("etc/cloud/old.cfg", "file", "o"),
            ("usr", "dir", ""),
            ("usr/bin", "dir", ""),
            ("bin", "symlink", "usr/bin"),
            ("usr/bin/tool", "file", "v1"),
        ],
    )
    upper = _layer(
        tmp_path / "l2.tar",
        [
            ("etc/.wh.gone", "file", ""),
            ("etc/cloud/new.cfg", "file", "n"),  # listed before the opaque marker on purpose
            ("etc/cloud/.wh..wh..opq", "file", ""),
            ("bin/tool", "file", "v2"),  # through the symlink, as the image sees it
            ("etc/tool-link", "link", "usr/bin/tool"),
        ],
    )
    assert bib.unpack_layer(lower, root) == 9
    bib.unpack_layer(upper, root)
    assert (root / "etc/keep").read_text() == "k"
    assert not (root / "etc/gone").exists()
    assert sorted(p.name for p in (root / "etc/cloud").iterdir()) == ["new.cfg"]
    assert (root / "bin").is_symlink() and (root / "usr/bin/tool").read_text() == "v2"
    assert (root / "etc/tool-link").stat().st_ino == (root / "usr/bin/tool").stat().st_ino
    assert oct((root / "etc/keep").stat().st_mode & 0o777) == oct(0o640)
    assert not list(root.rglob(".wh.*"))


def test_unpack_never_writes_outside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    layer = _layer(
        tmp_path / "evil.tar",
        [
            ("escape", "symlink", str(outside)),
            ("escape/pwned", "file", "x"),
            ("up", "symlink", "../../.."),
            ("up/pwned2", "file", "y"),
        ],
    )
    bib.unpack_layer(layer, root)
    assert not list(outside.iterdir())
    assert (root / str(outside).lstrip("/") / "pwned").read_text() == "x"
    assert (root / "pwned2").read_text() == "y"


def test_default_rootfs_read_from_bootc_install_config(tmp_path: Path) -> None:
    assert bib.default_rootfs(tmp_path) is None
    conf = tmp_path / "usr/lib/bootc/install"
    conf.mkdir(parents=True)
    (conf / "00-rootfs.toml").write_text('[install.filesystem.root]\ntype = "xfs"\n')
    assert bib.default_rootfs(tmp_path) == "xfs"
    (conf / "50-override.toml").write_text('[install.filesystem.root]\ntype = "btrfs"\n')
    assert bib.default_rootfs(tmp_path) == "btrfs"


# --- integration: fake bases --------------------------------------------------------------------


def _inspect(podman: PodmanService, fmt: str, image: str) -> str:
    return podman.cli("image", "inspect", "--format", fmt, image).stdout.decode().strip()


@pytest.mark.integration
@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_fake_base_is_a_manifest_list_of_amd64_and_arm64(
    podman: PodmanService, fake_bases: FakeBases, flavour: str
) -> None:
    listed = json.loads(podman.cli("manifest", "inspect", fake_bases[flavour]).stdout)
    assert sorted(m["platform"]["architecture"] for m in listed["manifests"]) == ["amd64", "arm64"]
    for arch in ("amd64", "arm64"):
        instance = fake_bases.instance(flavour, arch)
        assert _inspect(podman, "{{.Architecture}}", instance) == arch
        labels = json.loads(_inspect(podman, "{{json .Labels}}", instance))
        assert labels["containers.bootc"] == "1"
        uname = podman.cli("run", "--rm", "--arch", arch, fake_bases[flavour], "uname", "-m")
        assert uname.stdout.decode().strip() == {"amd64": "x86_64", "arm64": "aarch64"}[arch]


def _sh(podman: PodmanService, image: str, script: str) -> subprocess.CompletedProcess[bytes]:
    return podman.cli("run", "--rm", "--network=none", image, "sh", "-c", script, check=False)


def _ok(podman: PodmanService, image: str, script: str) -> str:
    """Run SCRIPT in IMAGE, asserting it succeeds; its stdout."""
    proc = _sh(podman, image, script)
    assert proc.returncode == 0, f"{script}: {proc.stderr.decode(errors='replace')}"
    return proc.stdout.decode()


@pytest.mark.integration
def test_fake_dnf_systemctl_bootc_behave_per_flavour(
    podman: PodmanService, fake_bases: FakeBases
) -> None:
    centos = fake_bases.instance("centos", "amd64")
    fedora = fake_bases.instance("fedora", "amd64")

    # CentOS: sshfs only from EPEL.
    proc = _sh(podman, centos, "dnf -y install cloud-init fuse-sshfs")
    assert proc.returncode == 1
    assert b"No match for argument: fuse-sshfs" in proc.stderr
    assert b"Error: Unable to find a match: fuse-sshfs" in proc.stderr
    _ok(
        podman,
        centos,
        "dnf -y install epel-release && dnf install -y fuse-sshfs && "
        "test -x /usr/bin/sshfs && test -f /usr/lib/fake-dnf/installed/fuse-sshfs",
    )
    # Fedora: sshfs in the base repositories, no EPEL.
    _ok(podman, fedora, "dnf -y install fuse-sshfs && test -x /usr/bin/sshfs")
    proc = _sh(podman, fedora, "dnf -y install epel-release")
    assert proc.returncode == 1 and b"No match for argument: epel-release" in proc.stderr
    # Without -y, on the closed stdin of a build, dnf aborts.
    proc = _sh(podman, fedora, "dnf install cloud-init </dev/null")
    assert proc.returncode == 1 and b"Operation aborted." in proc.stdout

    # Preinstalled like the real bases; cloud-init is not.
    _ok(
        podman,
        fedora,
        "test -x /usr/sbin/sshd && test -x /usr/bin/newuidmap && "
        "test -x /usr/bin/newgidmap && test ! -e /usr/bin/cloud-init",
    )

    # systemctl enable creates systemd's symlink, and refuses a unit that does not exist.
    wants = _ok(
        podman,
        fedora,
        "dnf -y install cloud-init >/dev/null && systemctl enable sshd "
        "cloud-init.service && readlink /etc/systemd/system/multi-user.target.wants/"
        "cloud-init.service",
    )
    assert wants.strip() == "/usr/lib/systemd/system/cloud-init.service"
    proc = _sh(podman, fedora, "systemctl enable cloud-init")
    assert proc.returncode == 1 and b"cloud-init.service does not exist" in proc.stderr
    masked = _ok(podman, fedora, "systemctl mask sshd && readlink /etc/systemd/system/sshd.service")
    assert masked.strip() == "/dev/null"

    # bootc container lint passes on the base and fails without the package database.
    _ok(podman, fedora, "bootc container lint")
    assert _sh(podman, fedora, "rm -rf /usr/lib/fake-dnf && bootc container lint").returncode == 1

    # Only CentOS names a default root filesystem; os-release names the flavour.
    _ok(
        podman,
        centos,
        "grep -q 'type = \"xfs\"' /usr/lib/bootc/install/00-rootfs.toml && "
        "grep -qx ID=centos /etc/os-release",
    )
    _ok(
        podman,
        fedora,
        "test ! -e /usr/lib/bootc/install && grep -qx ID=fedora /etc/os-release "
        "&& grep -qx VERSION_ID=40 /etc/os-release",
    )


DERIVED_CONTAINERFILE = """\
FROM {base}
RUN uname -m > /etc/built-on
RUN dnf -y install cloud-init fuse-sshfs && dnf -y remove sudo && dnf clean all \\
 && systemctl enable sshd cloud-init && bootc container lint
RUN rm -rf /etc/ssh && mkdir /etc/ssh && echo replaced > /etc/ssh/only-this
LABEL containers.bootc=1
"""


@pytest.fixture(scope="module")
def client(podman: PodmanService) -> Iterator[Any]:
    c = docker.DockerClient(base_url=podman.url, timeout=CONTAINER_TIMEOUT)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def derived_arm64(
    client: Any, fake_bases: FakeBases, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An arm64 image built on the fedora fake base through the Docker SDK (RUN under qemu)."""
    context = tmp_path_factory.mktemp("derived")
    (context / "Containerfile").write_text(DERIVED_CONTAINERFILE.format(base=fake_bases.fedora))
    tag = "localhost/test/standins-derived:arm64"
    client.images.build(
        path=str(context),
        dockerfile="Containerfile",
        tag=tag,
        platform="linux/arm64",
        rm=True,
        forcerm=True,
    )
    yield tag
    client.images.remove(tag, force=True)


@pytest.mark.integration
def test_arm64_build_on_fake_base_runs_under_qemu(
    podman: PodmanService, client: Any, derived_arm64: str
) -> None:
    assert client.images.get(derived_arm64).attrs["Architecture"] == "arm64"
    script = "cat /etc/built-on; ls /usr/lib/fake-dnf/installed; test -e /usr/bin/sudo || echo no"
    lines = _ok(podman, derived_arm64, script).split()
    assert lines[0] == "aarch64"
    assert {"cloud-init", "fuse-sshfs", "openssh-server", "no"} <= set(lines)
    assert "sudo" not in lines


# --- integration: the bootc-image-builder stand-in ----------------------------------------------


@dataclass(frozen=True)
class BibRun:
    status: int
    stdout: str
    stderr: str

    @property
    def error(self) -> str:
        """The message of bib's `<timestamp> error: MESSAGE` line (asserting there is one)."""
        for line in self.stderr.splitlines():
            match = ERROR_LINE.match(line)
            if match:
                return match.group("message")
        raise AssertionError(f"no bib error line in stderr:\n{self.stderr}")


def run_bib(
    client: Any,
    image: str,
    args: list[str],
    *,
    output: Path | None = None,
    config: Path | None = None,
    privileged: bool = True,
    storage: bool = True,
) -> BibRun:
    """Run the stand-in as the product does: Docker SDK, privileged, storage and output mounted."""
    volumes: dict[str, dict[str, str]] = {}
    if storage:
        root = client.info()["DockerRootDir"]
        volumes[root] = {"bind": "/var/lib/containers/storage", "mode": "rw"}
    if output is not None:
        volumes[str(output)] = {"bind": "/output", "mode": "rw"}
    if config is not None:
        volumes[str(config)] = {"bind": f"/config{config.suffix}", "mode": "ro"}
    status, stdout, stderr = run_to_end(client, image, args, volumes, privileged=privileged)
    return BibRun(status, stdout, stderr)


@pytest.fixture(scope="module")
def not_bootc_image(
    podman: PodmanService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An image without the containers.bootc label."""
    tarball = tmp_path_factory.mktemp("plain") / "rootfs.tar"
    _layer(tarball, [("hello", "file", "hi")])
    name = "localhost/test/not-bootc:1"
    podman.cli("import", "--quiet", str(tarball), name)
    yield name
    podman.cli("rmi", "--force", name, check=False)


@pytest.mark.integration
def test_bib_standin_reads_the_services_graph_root(client: Any, podman: PodmanService) -> None:
    assert Path(client.info()["DockerRootDir"]) == podman.root


# What bib says when it refuses (REFERENCE.md), by the case that provokes it.
REFUSALS = {
    "unprivileged": "this command requires a privileged container",
    "no-storage": "could not access container storage, did you forget -v "
    "/var/lib/containers/storage:/var/lib/containers/storage?",
    "not-bootc": "image localhost/test/not-bootc:1 is not a bootc image",
    "absent": "bootc-image-builder no longer pulls images, make sure to pull it before "
    "running bootc-image-builder: sudo podman pull localhost/test/absent:1",
    "no-rootfs": "no default root filesystem type specified in container, please use "
    '"--rootfs" to set manually',
    "wrong-arch": 'image found is for unexpected architecture "aarch64" (expected "x86_64")',
    "bad-config": "unknown keys found: [customizations.colour]",
}


@pytest.mark.integration
@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_bib_standin_refuses_like_bib(
    client: Any,
    bib_standin: str,
    fake_bases: FakeBases,
    not_bootc_image: str,
    tmp_path: Path,
    case: str,
) -> None:
    fedora = fake_bases.instance("fedora", "amd64")
    image = {
        "not-bootc": not_bootc_image,
        "absent": "localhost/test/absent:1",
        "wrong-arch": fake_bases.instance("fedora", "arm64"),
    }.get(case, fedora)
    args = ["--type", "qcow2", image]
    if case not in ("no-rootfs", "wrong-arch"):
        args = ["--rootfs", "ext4", *args]
    config = None
    if case == "bad-config":
        config = tmp_path / "config.json"
        config.write_text(json.dumps({"customizations": {"colour": "blue"}}))
    output = tmp_path / "output"
    output.mkdir()
    run = run_bib(
        client,
        bib_standin,
        args,
        output=output,
        config=config,
        privileged=case != "unprivileged",
        storage=case != "no-storage",
    )
    assert run.status == 1, run
    assert REFUSALS[case] in run.error
    assert not (output / "qcow2").exists()


def _debugfs(raw: Path, request: str) -> subprocess.CompletedProcess[bytes]:
    return run_checked(["debugfs", "-R", request, judges.root_partition(raw)], timeout=60)


def ext4_read(raw: Path, path: str) -> bytes | None:
    """A file's content in an ext4 image, or None when absent (debugfs exits 0 either way)."""
    proc = _debugfs(raw, f"cat {path}")
    return None if b"not found" in proc.stderr else proc.stdout


@pytest.mark.integration
def test_bib_standin_writes_a_qcow2_of_the_image(
    client: Any, bib_standin: str, derived_arm64: str, tmp_path: Path
) -> None:
    output = tmp_path / "output"
    output.mkdir()
    config = tmp_path / "config.toml"
    config.write_text(
        '[[customizations.user]]\nname = "alice"\nkey = "ssh-ed25519 AAAAC3Nza alice@test"\n'
        'groups = ["wheel"]\n\n[customizations.kernel]\nappend = "console=ttyS0"\n\n'
        '[[customizations.filesystem]]\nmountpoint = "/"\nminsize = "300 MiB"\n'
    )
    args = "--type qcow2 --target-arch aarch64 --rootfs ext4 --progress verbose".split()
    args += ["--chown", "4321:4321", derived_arm64]
    run = run_bib(client, bib_standin, args, output=output, config=config)
    assert run.status == 0, run.stderr

    # The real stage names of a bootc qcow2 build with a user, in bib's order, then the end.
    announced = [s for s in map(pipeline_bib.stage_of, run.stdout.splitlines()) if s]
    assert announced == [*pipeline_bib.qcow2_stages("ext4", users=True), "Build complete!"]
    assert run.stdout.index("Build complete!") < run.stdout.index("Results saved in")

    qcow2 = output / "qcow2" / "disk.qcow2"
    assert (qcow2.stat().st_uid, qcow2.stat().st_gid) == (4321, 4321)
    run_checked(["qemu-img", "check", str(qcow2)], timeout=120)
    info = json.loads(run_checked(["qemu-img", "info", "--output=json", str(qcow2)]).stdout)
    assert info["format"] == "qcow2" and info["virtual-size"] >= 300 * 2**20

    manifest = json.loads((output / "manifest-qcow2.json").read_text())
    assert manifest["version"] == "2"
    assert [p["name"] for p in manifest["pipelines"]] == ["build", "image", "qcow2"]
    assert manifest["metadata"]["image"] == derived_arm64
    assert (manifest["metadata"]["arch"], manifest["metadata"]["rootfs"]) == ("aarch64", "ext4")

    raw = tmp_path / "disk.raw"
    run_checked(["qemu-img", "convert", "-O", "raw", str(qcow2), str(raw)], timeout=120)
    assert b"ID=fedora" in (ext4_read(raw, "/etc/os-release") or b"")
    assert ext4_read(raw, "/etc/built-on") == b"aarch64\n"
    assert ext4_read(raw, "/usr/bin/cloud-init") is not None
    assert ext4_read(raw, "/usr/bin/sudo") is None  # whiteout of a lower layer's file
    assert ext4_read(raw, "/etc/ssh/sshd_config") is None  # opaque directory
    assert ext4_read(raw, "/etc/ssh/only-this") == b"replaced\n"
    wants = _debugfs(raw, "stat /etc/systemd/system/multi-user.target.wants/cloud-init.service")
    assert b"/usr/lib/systemd/system/cloud-init.service" in wants.stdout
    assert ext4_read(raw, "/var/home/alice/.ssh/authorized_keys") == (
        b"ssh-ed25519 AAAAC3Nza alice@test\n"
    )
    assert b"alice" in (ext4_read(raw, "/etc/group") or b"").split(b"wheel:x:10:")[1]
    assert b"console=ttyS0" in (ext4_read(raw, "/etc/kernel/cmdline") or b"")


@pytest.mark.integration
def test_bib_standin_uses_the_image_default_rootfs_and_writes_raw(
    client: Any, bib_standin: str, fake_bases: FakeBases, tmp_path: Path
) -> None:
    output = tmp_path / "output"
    output.mkdir()
    run = run_bib(
        client,
        bib_standin,
        [
            "build",
            fake_bases.instance("centos", "amd64"),
            "--type=qcow2",
            "--type=raw",
            "--progress=term",
        ],
        output=output,
    )
    assert run.status == 0, run.stderr
    assert "Build complete!" in run.stdout and "org.osbuild.qemu" not in run.stdout  # no stages
    manifest = json.loads((output / "manifest-qcow2-raw.json").read_text())
    assert manifest["metadata"]["rootfs"] == "xfs"  # from the image's 00-rootfs.toml
    raw = output / "image" / "disk.raw"
    assert b"ID=centos" in (ext4_read(raw, "/etc/os-release") or b"")
    run_checked(["qemu-img", "check", str(output / "qcow2" / "disk.qcow2")], timeout=120)
