"""osbuild image-builder as a disk builder: its invocation from the release manifest, as its
docs and source state the contract (model/image_builder.py), and its stand-in's refusals."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from pipeline.core.errors import UsageError
from pipeline.core.mediatypes import DiskFormat
from pipeline.core.progress import Reporter
from pipeline.model import image_builder
from pipeline.model.builders import Builder
from pipeline.model.release import parse
from pipeline.shared.context import Context, Options
from tests import factories
from tests.standins.image_builder import image_builder as standin


def _run(tool: Builder) -> tuple[tuple[str, ...], set[tuple[Path, str, str]]]:
    run = tool.run(factories.disk_job("ghcr.io/osbuild/image-builder-cli:latest"))
    return run.command, set(run.mounts)


def test_image_builder_invocation_follows_its_contract() -> None:
    command, mounts = _run(Builder.IMAGE_BUILDER)
    assert command == (
        "build", "--bootc-ref", "localhost/bootc-pipeline/fedora-40:1-arm64",
        "--bootc-default-fs", "ext4", "--arch", "aarch64", "--blueprint", "/blueprint.json",
        "--output-dir", "/output", "--output-name", "disk", "--progress", "verbose", "qcow2",
    )  # fmt: skip
    assert "--bootc-pull-container" not in command  # the image comes from the mounted storage
    assert "--chown" not in command  # image-builder has no such option
    assert mounts == {
        (Path("/srv/storage"), "/var/lib/containers/storage", "rw"),
        (Path("/w/disk"), "/output", "rw"),
        (Path("/w/bib-config.json"), "/blueprint.json", "ro"),
    }
    assert Builder.IMAGE_BUILDER.output_disk(Path("/o"), DiskFormat.QCOW2) == Path("/o/disk.qcow2")
    assert Builder.BIB.output_disk(Path("/o"), DiskFormat.QCOW2) == Path("/o/qcow2/disk.qcow2")
    bib_command, _ = _run(Builder.BIB)
    assert bib_command[:2] == ("--type", "qcow2") and "--chown" in bib_command


def test_the_manifest_chooses_the_builder_and_bib_stays_the_default(tmp_path: Path) -> None:
    doc = factories.manifest_data()
    default = parse(doc, path=tmp_path / "manifests/x.yaml", variant="x")
    assert default.builder is Builder.BIB
    doc["builder"] = {"tool": "image-builder", "rootfs": "xfs"}
    chosen = parse(doc, path=tmp_path / "manifests/x.yaml", variant="x")
    assert chosen.builder is Builder.IMAGE_BUILDER and chosen.rootfs == "xfs"
    reporter = Reporter(stream=io.StringIO())
    ctx = Context(chosen, Options(), reporter)
    assert ctx.builder_image == image_builder.DEFAULT_IMAGE
    assert Context(default, Options(), reporter).builder_image.endswith(
        "bootc-image-builder:latest"
    )
    assert Context(chosen, Options(builder_image="x/y:z"), reporter).builder_image == "x/y:z"
    doc["builder"] = {"tool": "osbuild"}
    with pytest.raises(UsageError, match=r"builder\.tool"):
        parse(doc, path=tmp_path / "manifests/x.yaml", variant="x")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["build", "--bootc-ref", "x", "--colour", "blue", "qcow2"], "unknown flag: --colour"),
        (["build", "--bootc-ref", "x"], "accepts 1 arg(s), received 0"),
        (["build", "--bootc-ref", "x", "qcow2", "raw"], "accepts 1 arg(s), received 2"),
        (["build", "--bootc-ref", "x", "--distro", "fedora-43", "qcow2"], "cannot use --distro"),
        (["build", "--bootc-ref", "x", "--bootc-pull-container", "qcow2"], "not implemented"),
        (["build", "--bootc-ref", "x", "--bootc-default-fs", "zfs", "qcow2"], "zfs"),
        (["build", "--bootc-ref"], "flag needs an argument: --bootc-ref"),
        (["build", "qcow2"], "pass --bootc-ref"),
    ],
)
def test_standin_refuses_bad_usage_like_image_builder(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert standin.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_standin_parses_the_pipelines_command_and_names_the_output() -> None:
    command, _ = _run(Builder.IMAGE_BUILDER)
    opts = standin.parse_args(list(command))
    assert (opts.bootc_ref, opts.default_fs, opts.arch) == (
        "localhost/bootc-pipeline/fedora-40:1-arm64",
        "ext4",
        "arm64",
    )
    assert opts.output_dir == Path("/output") and opts.progress == "verbose"
    assert standin.basename(opts, "arm64") == "disk"
    named = standin.parse_args(["build", "--bootc-ref=r", "--output-name=foo.n.0.qcow2", "qcow2"])
    assert standin.basename(named, "amd64") == "foo.n.0"  # main.go basenameFor strips .qcow2


def test_standin_blueprint_keys_refused_as_the_loader_does(tmp_path: Path) -> None:
    good = tmp_path / "bp.json"
    good.write_text(json.dumps({"name": "x", "customizations": {"kernel": {"append": "a=1"}}}))
    assert standin.load_blueprint(good).kernel_append == "a=1"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"customizations": {"colour": "blue"}}))
    with pytest.raises(standin.Refused, match=r'cannot decode ".*bad.json": .*colour'):
        standin.load_blueprint(bad)
    other = tmp_path / "bp.yaml"
    other.write_text("{}")
    with pytest.raises(standin.Refused, match="please use .toml or .json"):
        standin.load_blueprint(other)


def test_standin_privilege_check_reads_sys() -> None:
    standin.check_privileged("sysfs /sys sysfs rw,nosuid 0 0\n")
    with pytest.raises(standin.Refused, match="requires a privileged container"):
        standin.check_privileged("sysfs /sys sysfs ro,nosuid 0 0\n")
