"""Release manifests: the shipped ones load; every kind of bad input gets one precise message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from pipeline.core.arch import Arch
from pipeline.core.errors import UsageError
from pipeline.model import release, schemas
from tests.factories import ROOT, manifest_data, write_manifest


@pytest.mark.parametrize("variant", ["fedora-40", "fedora-42", "centos-stream9", "centos-stream10"])
def test_shipped_manifests_load(variant: str) -> None:
    r = release.load(release.find(variant, ROOT / "manifests"))
    assert r.variant == variant
    assert r.architectures == (Arch.AMD64, Arch.ARM64)
    assert r.containerfile.is_file()
    assert r.base.startswith("quay.io/")
    assert 1 <= r.zstd_level <= 19


def test_shipped_bases_are_the_users() -> None:
    bases = {release.load(p).base for p in (ROOT / "manifests").glob("*.yaml")}
    # the user's two (asked for by name) and the current releases of each distribution
    assert bases == {
        "quay.io/fedora/fedora-bootc:40",
        "quay.io/fedora/fedora-bootc:42",
        "quay.io/centos-bootc/centos-bootc:stream9",
        "quay.io/centos-bootc/centos-bootc:stream10",
    }


def test_shipped_manifests_never_move_the_same_tag_of_one_repository() -> None:
    """Two variants publishing to one repository must not both move a tag (`latest`)."""
    seen: dict[tuple[str, str], str] = {}
    for path in sorted((ROOT / "manifests").glob("*.yaml")):
        r = release.load(path)
        for tag in r.all_tags:
            other = seen.setdefault((r.repository, tag), r.variant)
            assert other == r.variant, f"{r.repository}:{tag} from {other} and {r.variant}"


def test_check_command_passes_on_every_shipped_manifest() -> None:
    manifests = sorted(str(p) for p in (ROOT / "manifests").glob("*.yaml"))
    assert len(manifests) == 6  # four releases and two nightlies
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "check", *manifests],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for path in manifests:
        assert f"{path}: ok" in proc.stderr + proc.stdout


def test_defaults_come_from_the_schema(tmp_path: Path) -> None:
    data = manifest_data()
    del data["compression"], data["builder"], data["moving_tags"], data["lima"]
    r = release.load(write_manifest(tmp_path, data))
    assert (r.zstd_level, r.rootfs, r.disk_type) == (10, "ext4", "qcow2")
    assert r.moving_tags == ()
    assert r.guest_install_prefix == "/var/usrlocal"
    assert r.bib_config == {}


def _error(tmp_path: Path, data: Any) -> str:
    path = write_manifest(tmp_path, data)
    with pytest.raises(UsageError) as info:
        release.load(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"architectures": ["amd64", "riscv64"]}, "architectures[1]: 'riscv64' is not one of"),
        ({"compression": {"level": 25}}, "compression.level: 25 is greater than the maximum"),
        ({"builder": {"rootfs": "zfs"}}, "builder.rootfs: 'zfs' is not one of"),
        ({"builder": {"config": {"customizations": {"kernel": {"args": "x"}}}}}, "unknown key"),
        (
            {
                "builder": {
                    "config": {
                        "customizations": {"filesystem": [{"mountpoint": "/opt", "minsize": 1}]}
                    }
                }
            },
            "builder.config.customizations.filesystem[0].mountpoint",
        ),
        ({"tags": []}, "tags: [] should be non-empty"),
        ({"tags": ["bad tag"]}, "tags[0]: 'bad tag' does not match"),
        ({"repository": "no-registry"}, "repository: 'no-registry' does not match"),
        ({"colour": "blue"}, "unknown key ('colour' was unexpected)"),
        ({"version": 40}, "version: 40 is not of type 'string'"),
    ],
)
def test_bad_manifest_names_key_path(tmp_path: Path, change: dict[str, Any], expected: str) -> None:
    assert expected in _error(tmp_path, manifest_data(**change))


def test_missing_required_key(tmp_path: Path) -> None:
    data = manifest_data()
    del data["repository"]
    assert "'repository' is a required property" in _error(tmp_path, data)


def test_several_problems_are_counted(tmp_path: Path) -> None:
    message = _error(tmp_path, manifest_data(version=1, name="UPPER"))
    assert "(and 1 more problem(s))" in message


def test_tag_both_release_and_moving(tmp_path: Path) -> None:
    message = _error(tmp_path, manifest_data(tags=["1.0", "latest"], moving_tags=["latest"]))
    assert "moving_tags: latest also listed in tags" in message


@pytest.mark.parametrize(
    ("text", "where"),
    [
        # the flow sequence is still open at the end of the stream: YAML's mark is there
        ("name: [unclosed\n", "(line 2, column 1): expected ',' or ']', but got '<stream end>'"),
        ("name: x\nversion: '1'\ntags: [a, b\nother: 1\n",
         "(line 4, column 6): expected ',' or ']', but got ':'"),
    ],
)  # fmt: skip
def test_invalid_yaml_names_line(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "manifests" / "test-variant.yaml"
    assert _error(tmp_path, text) == f"{path} {where}"


def test_top_level_not_a_mapping(tmp_path: Path) -> None:
    assert "is not of type 'object'" in _error(tmp_path, "- just\n- a list\n")


def test_containerfile_must_exist(tmp_path: Path) -> None:
    message = _error(tmp_path, manifest_data(containerfile="containerfiles/nope.Containerfile"))
    assert "containerfile:" in message and "does not exist" in message


def test_missing_file_and_unknown_variant(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such release manifest"):
        release.load(tmp_path / "absent.yaml")
    with pytest.raises(UsageError, match=r"unknown variant 'nope' .*fedora-40"):
        release.find("nope", ROOT / "manifests")


@pytest.mark.parametrize(
    "user",
    [
        {"name": "core", "password": "S3cretPW!"},  # a mapping where a list belongs
        [{"name": "core", "password": 12345678}],  # a number where a string belongs
        [{"name": "core", "password": "S3cretPW!", "shell": "/bin/sh"}],  # unknown key beside
    ],
)
def test_errors_never_echo_a_password(tmp_path: Path, user: Any) -> None:
    config = {"customizations": {"user": user}}
    message = _error(tmp_path, manifest_data(builder={"config": config}))
    assert "builder.config.customizations.user" in message
    assert "S3cretPW!" not in message and "12345678" not in message


# bootc-image-builder's mountpoint rule, from osbuild/images at commit
# 1146ec23cd9c5d4b8d161bde7f0827f8da7c8ded, pkg/distro/generic/bootc_imagetype.go: mountpointPolicy
# ("/" and "/boot" exact, /var and below except symlinks/state dirs), checkMountpoints (/var itself
# refused), mountpointMinimalPolicy for btrfs (only / and /boot); pkg/pathpolicy (absolute,
# canonical paths). bib's README "Allowed mountpoints and sizes" says the same.
BIB_ACCEPTS = ["/", "/boot", "/var/data", "/var/lib/containers", "/var/log", "/var/tmp/x"]
BIB_REFUSES = [
    "/var",  # /var itself
    "/var/home", "/var/home/core", "/var/run", "/var/lock", "/var/mail", "/var/mnt",
    "/var/roothome", "/var/srv", "/var/usrlocal", "/var/usrlocal/bin",  # symlinks/state in bootc
    "/opt", "/usr", "/etc", "/home", "/boot/efi", "/data",  # outside / , /boot and /var
    "/var/", "/var//data", "/var/./data", "/var/../etc", "var/data",  # not absolute and canonical
]  # fmt: skip


def _with_mountpoint(mountpoint: str, rootfs: str) -> dict[str, Any]:
    fs = [{"mountpoint": mountpoint, "minsize": "10 GiB"}]
    return manifest_data(
        builder={"rootfs": rootfs, "config": {"customizations": {"filesystem": fs}}}
    )


@pytest.mark.parametrize("rootfs", ["ext4", "xfs"])
@pytest.mark.parametrize("mountpoint", BIB_ACCEPTS)
def test_mountpoints_bib_accepts_load(tmp_path: Path, mountpoint: str, rootfs: str) -> None:
    r = release.load(write_manifest(tmp_path, _with_mountpoint(mountpoint, rootfs)))
    assert r.bib_config["customizations"]["filesystem"][0]["mountpoint"] == mountpoint


@pytest.mark.parametrize("mountpoint", BIB_REFUSES)
def test_mountpoints_bib_refuses_are_refused(tmp_path: Path, mountpoint: str) -> None:
    message = _error(tmp_path, _with_mountpoint(mountpoint, "ext4"))
    key = "builder.config.customizations.filesystem[0].mountpoint"
    assert f"{key}: {mountpoint!r} is not a mountpoint bootc-image-builder accepts" in message


@pytest.mark.parametrize("mountpoint", ["/", "/boot"])
def test_btrfs_accepts_only_root_and_boot(tmp_path: Path, mountpoint: str) -> None:
    assert release.load(write_manifest(tmp_path, _with_mountpoint(mountpoint, "btrfs")))


@pytest.mark.parametrize("mountpoint", ["/var/data", "/var/lib/containers"])
def test_btrfs_refuses_var_subdirectories(tmp_path: Path, mountpoint: str) -> None:
    message = _error(tmp_path, _with_mountpoint(mountpoint, "btrfs"))
    assert f"mountpoint: {mountpoint!r} is not allowed with rootfs btrfs" in message
    assert "(and" not in message  # the only problem


def test_the_schema_alone_refuses_what_bib_refuses() -> None:
    """The published schema is the rule (other tools validate with it), not only our loader."""
    validator = Draft202012Validator(schemas.load(schemas.RELEASE_MANIFEST))
    for mountpoint in BIB_ACCEPTS:
        assert validator.is_valid(_with_mountpoint(mountpoint, "xfs")), mountpoint
    for mountpoint in BIB_REFUSES:
        assert not validator.is_valid(_with_mountpoint(mountpoint, "xfs")), mountpoint
    assert not validator.is_valid(_with_mountpoint("/var/data", "btrfs"))


def test_kernel_arguments_are_per_architecture(tmp_path: Path) -> None:
    """Each machine's own serial console: bib's config for each disk carries its arch's append."""
    fs = [{"mountpoint": "/var/data", "minsize": "1 GiB"}]
    appends = {"amd64": "console=ttyS0,115200n8", "arm64": "console=ttyAMA0,115200n8"}
    data = manifest_data(
        builder={"config": {"customizations": {"filesystem": fs}}, "kernel_append": appends}
    )
    r = release.load(write_manifest(tmp_path, data))
    for arch in (Arch.AMD64, Arch.ARM64):
        config = r.bib_config_for(arch)
        assert config["customizations"]["kernel"] == {"append": appends[arch.value]}
        assert config["customizations"]["filesystem"] == fs
    assert "kernel" not in r.bib_config["customizations"]  # the shared config is left alone


def test_shipped_manifests_give_each_machine_its_serial_console() -> None:
    for path in sorted((ROOT / "manifests").glob("*.yaml")):
        r = release.load(path)
        assert "console=ttyS0" in r.bib_config_for(Arch.AMD64)["customizations"]["kernel"]["append"]
        arm = r.bib_config_for(Arch.ARM64)["customizations"]["kernel"]["append"]
        assert "console=ttyAMA0" in arm and "ttyS0" not in arm, path


@pytest.mark.parametrize(
    ("builder", "message"),
    [
        (
            {
                "kernel_append": {"amd64": "quiet", "arm64": "quiet"},
                "config": {"customizations": {"kernel": {"append": "quiet"}}},
            },
            "builder.kernel_append: set with builder.config.customizations.kernel too",
        ),
        ({"kernel_append": {"amd64": "quiet"}}, "builder.kernel_append: no kernel arguments for"),
        ({"kernel_append": {"riscv64": "quiet"}}, "builder.kernel_append"),
        ({"kernel_append": {"amd64": ""}}, "builder.kernel_append.amd64"),
    ],
)
def test_kernel_arguments_errors(tmp_path: Path, builder: dict[str, Any], message: str) -> None:
    assert message in _error(tmp_path, manifest_data(builder=builder))
