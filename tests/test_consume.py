"""Consumers of a published release (`lima REF`, `boot REF`) against a real docker-registry:
they use the release's own Lima settings (carried in it, model/lima_settings.py), fall back to
the defaults for a release from before that and say so once, and remote input that is not what
it should be (an index that is not JSON, a disk qemu-img cannot read) is one line naming the
reference, never "internal error"."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pipeline.core import mediatypes as mt
from pipeline.core.digest import of_bytes
from tests.factories import ROOT
from tests.support.faultproxy import FaultProxy
from tests.support.oci_push import push_seed_artifact
from tests.support.registry import RunningRegistry
from tests.support.workdirs import DiskCache, cli_env, make_workdir, push_argv, run_push

pytestmark = pytest.mark.integration

CLI_TIMEOUT = 120.0
DISK_BYTES = 1024 * 1024
NO_SETTINGS = "carries no Lima settings"


def cli(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *argv, "--plain-http"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )


def env_for(tmp_path: Path) -> dict[str, str]:
    return cli_env(
        tmp_path / "home", chunk_size=1 << 20, extra={"XDG_CACHE_HOME": str(tmp_path / "cache")}
    )


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("bootc-pipeline: error")]


def own_manifest(tmp_path: Path, repository: str) -> Path:
    """fedora-40's release manifest with Lima settings of its own, published to `repository`."""
    text = (ROOT / "manifests" / "fedora-40.yaml").read_text()
    text = re.sub(r"(?m)^repository: .*$", f"repository: ghcr.io/{repository}", text)
    text = text.replace('minimum_lima_version: "1.0.0"', 'minimum_lima_version: "1.1.0"')
    text = text.replace("guest_install_prefix: /var/usrlocal", "guest_install_prefix: /opt/own")
    assert "1.1.0" in text and "/opt/own" in text, "manifests/fedora-40.yaml changed shape"
    path = tmp_path / "manifests" / "fedora-40.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    shutil.copytree(ROOT / "containerfiles", tmp_path / "containerfiles")  # beside it, as in git
    return path


def test_lima_uses_the_releases_own_settings(
    registry: RunningRegistry, repository_name: str, tmp_path: Path
) -> None:
    manifest = own_manifest(tmp_path, repository_name)
    disks = DiskCache(tmp_path / "disks")
    (tmp_path / "disks").mkdir()
    work = make_workdir(tmp_path / "work", disks, size=DISK_BYTES)
    env = env_for(tmp_path)
    argv = push_argv(work, registry.host, manifest=manifest)
    pushed = run_push(argv, env)
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    template = tmp_path / "lima.yaml"
    ref = f"{registry.host}/{repository_name}:40.1.0"
    proc = cli("lima", ref, "--platform", "all", "-o", str(template), env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    document = yaml.safe_load(template.read_text())
    assert sorted(image["arch"] for image in document["images"]) == ["aarch64", "x86_64"]
    assert document["minimumLimaVersion"] == "1.1.0"
    assert document["guestInstallPrefix"] == "/opt/own"
    assert NO_SETTINGS not in proc.stderr
    # the same settings as the template publish wrote for this release
    published = yaml.safe_load((work.variant_dir / "lima-fedora-40.yaml").read_text())
    assert {k: v for k, v in document.items() if k != "images"} == {
        k: v for k, v in published.items() if k != "images"
    }


def _seed_release(registry: RunningRegistry, repository: str, tag: str, plain: bytes) -> None:
    """A release of the seed's shape (lima-vm/lima#2405): no Lima settings, no annotations of
    the uncompressed disk; its layer is `plain` zstd-compressed by the real zstd."""
    layer = subprocess.run(
        ["zstd", "-q", "-c", "-3"], input=plain, capture_output=True, check=True
    ).stdout
    push_seed_artifact(registry.host, repository, tag, layer, f"{tag}-amd64.qcow2.zst")


def test_a_release_from_before_gets_the_defaults_said_once(
    registry: RunningRegistry, repository_name: str, tmp_path: Path
) -> None:
    plain = subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", str(tmp_path / "d.qcow2"), "16M"], check=True
    )
    assert plain.returncode == 0
    _seed_release(registry, repository_name, "old", (tmp_path / "d.qcow2").read_bytes())
    template = tmp_path / "lima.yaml"
    ref = f"{registry.host}/{repository_name}:old"
    proc = cli("lima", ref, "--platform", "amd64", "-o", str(template), env=env_for(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    document = yaml.safe_load(template.read_text())
    assert (document["minimumLimaVersion"], document["guestInstallPrefix"]) == (
        "1.0.0",
        "/var/usrlocal",
    )
    said = [line for line in proc.stderr.splitlines() if NO_SETTINGS in line]
    assert len(said) == 1, proc.stderr
    assert ref in said[0] and "using the defaults" in said[0]


@pytest.fixture
def proxy(registry: RunningRegistry) -> Iterator[FaultProxy]:
    with FaultProxy(registry.host) as running:
        yield running


def test_lima_all_platforms_of_an_index_that_is_not_json_is_one_line(
    proxy: FaultProxy, repository_name: str, tmp_path: Path
) -> None:
    body = b"<html>not an index</html>"
    proxy.add(
        "respond",
        method="GET",
        path=re.escape(f"/v2/{repository_name}/manifests/broken") + "$",
        status=200,
        headers={"Content-Type": mt.OCI_INDEX, "Docker-Content-Digest": of_bytes(body).digest},
        body=body,
        times=10,
    )
    ref = f"{proxy.host}/{repository_name}:broken"
    proc = cli(
        "lima", ref, "--platform", "all", "-o", str(tmp_path / "t.yaml"), env=env_for(tmp_path)
    )
    assert proc.returncode == 1, proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    lines = error_lines(proc)
    assert len(lines) == 1 and f"{repository_name}: broken: not valid JSON" in lines[0], lines
    assert not (tmp_path / "t.yaml").exists()


def test_boot_of_a_disk_qemu_img_cannot_read_is_one_line(
    registry: RunningRegistry, repository_name: str, tmp_path: Path
) -> None:
    """A qcow2 header with a cluster size qemu-img refuses ("Unsupported cluster size")."""
    plain = b"QFI\xfb" + struct.pack(">I", 3) + b"\xff" * 504
    _seed_release(registry, repository_name, "bad", plain)
    ref = f"{registry.host}/{repository_name}:bad"
    proc = cli(
        "boot",
        ref,
        "--platform",
        "amd64",
        "--workdir",
        str(tmp_path / "work"),
        env=env_for(tmp_path),
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    lines = error_lines(proc)
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith(f"bootc-pipeline: error: {ref}: the linux/amd64 disk: ")
    assert "qemu-img cannot read it as a disk image" in lines[0]
    assert "Unsupported cluster size" in lines[0]
    # boot REF reads the release's Lima settings as lima REF does (this one has none)
    assert sum(NO_SETTINGS in line for line in proc.stderr.splitlines()) == 1
