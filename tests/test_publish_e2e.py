"""End to end on real parts: `bootc-pipeline publish` for amd64 and arm64 against a real Podman
service and a real registry, judged by skopeo, curl, zstd, qemu-img, debugfs and the official
OCI schemas. Only the base images and bootc-image-builder are stand-ins (tests/standins)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.core import mediatypes as mt
from pipeline.model import schemas
from tests.support import gotools, judges, oci_official
from tests.support.images import FakeBases
from tests.support.podman import PodmanService
from tests.support.registry import RunningRegistry

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent
REPO = "bootc-lima/fedora-bootc-lima"  # the manifest's repository path, on the test registry


@dataclass
class Run:
    proc: subprocess.CompletedProcess[str]
    workdir: Path

    @property
    def report(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(
            (self.workdir / "fedora-40" / "release-report.json").read_text()
        )
        return data


def publish(
    podman: PodmanService,
    fake_bases: FakeBases,
    builder: str,
    registry: RunningRegistry,
    workdir: Path,
    *extra: str,
    variant: str = "fedora-40",
    base: str | None = None,
) -> Run:
    # --skip-boot: the busybox bases do not boot; tests/test_boot_e2e.py boots real disks
    args = [
        "publish", "--variant", variant, "--arch", "amd64,arm64",
        "--engine", podman.url, "--workdir", str(workdir),
        "--base-image", base or fake_bases.fedora, "--builder-image", builder,
        "--registry", registry.host, "--plain-http", "--skip-boot", *extra,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["BOOTC_PIPELINE_SYFT"] = gotools.go_tool("syft")  # the sbom stage's real tool
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=1800, env=env,
    )  # fmt: skip
    return Run(proc, workdir)


@pytest.fixture(scope="module")
def first(
    podman: PodmanService,
    fake_bases: FakeBases,
    bib_standin: str,
    registry: RunningRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> Run:
    run = publish(podman, fake_bases, bib_standin, registry, tmp_path_factory.mktemp("work"))
    assert run.proc.returncode == 0, run.proc.stderr[-6000:]
    return run


def test_progress_and_summary_are_shown(first: Run, registry: RunningRegistry) -> None:
    err = first.proc.stderr
    lines = err.splitlines()
    for arch in ("amd64", "arm64"):
        for title in (
            f"build localhost/bootc-pipeline/fedora-40:40.1.0-{arch}",
            f"disk {arch} (bootc-image-builder)",
            f"compress {arch} (zstd -10)",
        ):
            # its own line, done: a line naming both architectures would not do
            done = [
                line for line in lines if re.search(rf"\] <== {re.escape(title)}: done in", line)
            ]
            assert len(done) == 1, (title, done)
            assert ("amd64" if arch == "arm64" else "arm64") not in done[0]
    for stage in ("container-deploy", "bootc.install-to-filesystem", "qemu"):
        assert f"org.osbuild.{stage}" in err  # bib's progress is streamed, real stage names
    assert "Build complete!" in err
    # The summary table: its title, and one row per architecture with that architecture's
    # manifest digest (as the report has it) and layer size; none of it is in a stage title.
    table = first.proc.stdout + err
    assert f"{registry.host}/{REPO} 40.1.0" in table
    for arch in ("amd64", "arm64"):
        entry = first.report["architectures"][arch]
        row = [
            line
            for line in table.splitlines()
            # rich may shorten the digest column to fit 80 columns: its first 15 characters
            if entry["manifest"]["digest"][:15] in line and "<==" not in line
        ]
        assert len(row) == 1, (arch, row)
        assert arch in row[0] and str(entry["layer"]["size"]) in row[0]
    assert "boot check skipped (--skip-boot)" in err
    assert first.report["boot"] == {
        arch: {"skipped": True, "reason": "--skip-boot"} for arch in ("amd64", "arm64")
    }


def test_index_judged_by_skopeo_and_official_schema(first: Run, registry: RunningRegistry) -> None:
    report = first.report
    raw = judges.skopeo_raw(registry.host, f"{REPO}:40.1.0")
    assert judges.sha256(raw) == report["index"]["digest"]
    index = json.loads(raw)
    assert oci_official.errors("index", index) == []
    assert schemas.problems(schemas.ARTIFACT_INDEX, index) == []
    assert index["artifactType"] == mt.ARTIFACT_TYPE
    assert sorted(m["platform"]["architecture"] for m in index["manifests"]) == ["amd64", "arm64"]
    for tag in ("40", "latest"):
        assert (
            judges.sha256(judges.skopeo_raw(registry.host, f"{REPO}:{tag}"))
            == report["index"]["digest"]
        )
    for entry in index["manifests"]:
        body = judges.skopeo_raw(registry.host, f"{REPO}@{entry['digest']}")
        assert judges.sha256(body) == entry["digest"]
        assert len(body) == entry["size"]
        manifest = json.loads(body)
        assert oci_official.errors("manifest", manifest) == []
        assert schemas.problems(schemas.ARTIFACT_MANIFEST, manifest) == []
        arch = entry["platform"]["architecture"]
        assert report["architectures"][arch]["manifest"]["digest"] == entry["digest"]


def _layer(
    first: Run, registry: RunningRegistry, arch: str, tmp: Path
) -> tuple[dict[str, Any], Path]:
    digest = first.report["architectures"][arch]["manifest"]["digest"]
    manifest = json.loads(judges.skopeo_raw(registry.host, f"{REPO}@{digest}"))
    (layer,) = manifest["layers"]
    blob = judges.curl_get(f"{registry.url}/v2/{REPO}/blobs/{layer['digest']}", tmp / "layer.zst")
    assert judges.sha256sum(blob) == layer["digest"]
    assert blob.stat().st_size == layer["size"]
    return manifest, blob


@pytest.mark.parametrize(("arch", "machine"), [("amd64", 62), ("arm64", 183)])
def test_layer_is_a_zstd_qcow2_of_the_built_image(
    first: Run,
    registry: RunningRegistry,
    podman: PodmanService,
    tmp_path: Path,
    arch: str,
    machine: int,
) -> None:
    manifest, blob = _layer(first, registry, arch, tmp_path)
    title = manifest["layers"][0]["annotations"][mt.ANN_TITLE]
    assert title == f"fedora-bootc-lima-40.1.0-{arch}.qcow2.zst"
    disk = judges.zstd_test_and_decompress(blob, tmp_path / "disk.qcow2")
    ann = manifest["annotations"]
    assert judges.sha256sum(disk) == ann[mt.ANN_UNCOMPRESSED_DIGEST]
    assert str(disk.stat().st_size) == ann[mt.ANN_UNCOMPRESSED_SIZE]
    assert judges.qemu_img_check(disk)["format"] == "qcow2"
    raw = judges.qcow2_to_raw(disk, tmp_path / "disk.raw")
    # Files the Containerfile added are inside the disk ...
    assert b"d /var/usrlocal 0755" in judges.debugfs(raw, "cat /usr/lib/tmpfiles.d/lima-guest.conf")
    for package in ("cloud-init", "fuse-sshfs", "sudo", "openssh-server"):
        assert judges.debugfs(raw, f"stat /usr/lib/fake-dnf/installed/{package}").strip(), package
    assert b"../var/usrlocal" in judges.debugfs(raw, "stat /usr/local")
    wants = judges.debugfs(raw, "ls /etc/systemd/system/multi-user.target.wants")
    assert b"sshd.service" in wants and b"cloud-init.service" in wants
    # ... and the binaries are of the architecture the manifest claims.
    assert judges.elf_machine(judges.debugfs(raw, "cat /bin/busybox")) == machine
    assert ann[mt.ANN_BASE_NAME] == "localhost/fake/fedora-bootc:40"
    # base.digest is the instance of the multi-arch base that this architecture was built on
    listed = json.loads(podman.cli("manifest", "inspect", ann[mt.ANN_BASE_NAME]).stdout)
    (instance,) = [m for m in listed["manifests"] if m["platform"]["architecture"] == arch]
    assert ann[mt.ANN_BASE_DIGEST] == instance["digest"]


def test_validate_command_fetches_everything_back(first: Run, registry: RunningRegistry) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "validate", f"{registry.host}/{REPO}:40.1.0",
         "--plain-http", "--fetch-blobs"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "valid (" in proc.stderr and "0 failed" in proc.stderr


def test_lima_template_points_at_the_layers(first: Run, tmp_path: Path) -> None:
    template = yaml.safe_load((first.workdir / "fedora-40" / "lima-fedora-40.yaml").read_text())
    report = first.report
    assert {i["arch"] for i in template["images"]} == {"x86_64", "aarch64"}
    for image in template["images"]:
        arch = {"x86_64": "amd64", "aarch64": "arm64"}[image["arch"]]
        assert image["digest"] == report["architectures"][arch]["layer"]["digest"]
        # What Lima's downloader does: plain HTTP GET, digest checked on the bytes as downloaded.
        got = judges.curl_get(image["location"], tmp_path / f"{arch}.zst")
        assert judges.sha256sum(got) == image["digest"]
    assert template["guestInstallPrefix"] == "/var/usrlocal"


def test_each_image_has_its_sbom_attached_to_its_disk(
    first: Run, registry: RunningRegistry
) -> None:
    """syft's SPDX JSON of the image each disk was made from, a referrer of that disk manifest."""
    for arch in ("amd64", "arm64"):
        entry = first.report["architectures"][arch]
        (referrer,) = entry["referrers"]
        assert referrer["artifactType"] == "application/spdx+json"
        assert referrer["digest"] == entry["manifest"]["digest"]
        sbom = json.loads((first.workdir / "fedora-40" / arch / "sbom.spdx.json").read_text())
        assert sbom["spdxVersion"].startswith("SPDX-2.") and sbom.get("packages")
        listed = subprocess.run(
            [gotools.go_tool("oras"), "discover", "--plain-http", "--format", "json",
             f"{registry.host}/{REPO}@{entry['manifest']['digest']}"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        assert referrer["manifest"] in {r["digest"] for r in json.loads(listed)["referrers"]}


def test_report_has_timings_per_stage_and_arch(first: Run) -> None:
    report = first.report
    for arch in ("amd64", "arm64"):
        timings = report["architectures"][arch]["timings"]
        assert set(timings) == {"build", "sbom", "disk", "compress", "upload"}, timings
        assert all(v > 0 for v in timings.values())
        layer = report["architectures"][arch]["layer"]
        assert layer["bytesSent"] == layer["size"]
    assert report["timings"]["push"] > 0
    assert report["limaAnonymousStatus"] == {"amd64": 200, "arm64": 200}
    print(
        "\nstage timings (s):",
        json.dumps(
            {a: report["architectures"][a]["timings"] for a in ("amd64", "arm64")}
            | {"push": report["timings"]["push"]}
        ),
    )


def test_unchanged_inputs_are_up_to_date(
    first: Run,
    podman: PodmanService,
    fake_bases: FakeBases,
    bib_standin: str,
    registry: RunningRegistry,
    tmp_path: Path,
) -> None:
    """An empty work directory, the same inputs: nothing built or sent, the same release."""
    before = judges.skopeo_raw(registry.host, f"{REPO}:latest")
    again = publish(podman, fake_bases, bib_standin, registry, tmp_path / "empty")
    assert again.proc.returncode == 0, again.proc.stderr[-4000:]
    assert "up to date: " in again.proc.stderr
    assert "==> build" not in again.proc.stderr and "upload" not in again.proc.stderr
    assert judges.skopeo_raw(registry.host, f"{REPO}:latest") == before
    index = json.loads(before)
    assert index["annotations"][mt.ANN_INPUTS].startswith("sha256:")
    for arch in ("amd64", "arm64"):
        result = json.loads((again.workdir / "fedora-40" / f"result-{arch}.json").read_text())
        assert result["bytesSent"] == 0
        assert (
            result["manifest"]["digest"]
            == first.report["architectures"][arch]["manifest"]["digest"]
        )


def test_rebuild_reuses_stages_sends_nothing_and_ends_with_the_same_digests(
    first: Run,
    podman: PodmanService,
    fake_bases: FakeBases,
    bib_standin: str,
    registry: RunningRegistry,
) -> None:
    again = publish(podman, fake_bases, bib_standin, registry, first.workdir, "--rebuild")
    assert again.proc.returncode == 0, again.proc.stderr[-4000:]
    assert again.report["index"]["digest"] == first.report["index"]["digest"]
    for arch in ("amd64", "arm64"):
        assert again.report["architectures"][arch]["layer"]["bytesSent"] == 0
    assert "disk unchanged since the last run" in again.proc.stderr


def test_release_tag_is_immutable(
    first: Run, podman: PodmanService, fake_bases: FakeBases, bib_standin: str,
    registry: RunningRegistry, tmp_path: Path,
) -> None:  # fmt: skip
    """Other content under an existing release tag is refused, and nothing is moved."""
    before = judges.skopeo_raw(registry.host, f"{REPO}:40.1.0")
    run = publish(
        podman,
        fake_bases,
        bib_standin,
        registry,
        first.workdir,
        "--rebuild",  # the same inputs are up to date: this asks to publish them again
        "--revision",
        "other-revision",
        "--created",
        "2026-02-02T00:00:00Z",
    )
    assert run.proc.returncode == 2, run.proc.stderr[-3000:]
    assert "a release with another revision, created; release tags are immutable" in run.proc.stderr
    assert "==> build" not in run.proc.stderr  # refused in preflight, before any build
    assert judges.skopeo_raw(registry.host, f"{REPO}:40.1.0") == before
    assert judges.skopeo_raw(registry.host, f"{REPO}:latest") == before


def test_builder_failure_pushes_nothing(
    podman: PodmanService, fake_bases: FakeBases, registry: RunningRegistry, tmp_path: Path
) -> None:
    """bib's `error:` lines reach the user, the exit is non-zero, and the registry is untouched."""
    failing = "localhost/test/failing-builder:1"
    (tmp_path / "Containerfile").write_text(
        f"FROM {fake_bases.fedora}\n"
        'ENTRYPOINT ["/bin/sh", "-c", "echo \\"2026/01/01 00:00:00 error: image X is not a '
        'bootc image\\" >&2; exit 1", "--"]\n'
    )
    podman.cli("build", "-t", failing, str(tmp_path))
    before = subprocess.run(
        ["curl", "-s", f"{registry.url}/v2/bootc-lima/fedora-bootc-lima/tags/list"],
        capture_output=True, text=True, timeout=30,
    ).stdout  # fmt: skip
    run = publish(podman, fake_bases, failing, registry, tmp_path / "w")
    assert run.proc.returncode == 1
    assert (
        "bootc-image-builder exited with status 1: image X is not a bootc image" in run.proc.stderr
    )
    assert "Traceback" not in run.proc.stderr
    after = subprocess.run(
        ["curl", "-s", f"{registry.url}/v2/bootc-lima/fedora-bootc-lima/tags/list"],
        capture_output=True, text=True, timeout=30,
    ).stdout  # fmt: skip
    assert after == before
    assert not (tmp_path / "w" / "fedora-40" / "release-report.json").exists()
    left = podman.cli("ps", "-a", "--filter", f"ancestor={failing}", "--format", "{{.ID}}")
    assert left.stdout.strip() == b""  # the failed builder's container was removed
    assert not list((tmp_path / "w").rglob("bib-config.json"))  # may hold passwords


def test_unpullable_builder_stops_before_any_build(
    podman: PodmanService, fake_bases: FakeBases, registry: RunningRegistry, tmp_path: Path
) -> None:
    run = publish(podman, fake_bases, "127.0.0.1:9/nowhere/builder:1", registry, tmp_path / "w")
    assert run.proc.returncode == 1
    assert "cannot resolve the builder image 127.0.0.1:9/nowhere/builder:1: " in run.proc.stderr
    assert "connection refused" in run.proc.stderr
    assert "==> build" not in run.proc.stderr
    assert "Traceback" not in run.proc.stderr


def test_centos_containerfile_gets_sshfs_from_epel(
    podman: PodmanService, fake_bases: FakeBases, tmp_path: Path
) -> None:
    """The CentOS Stream 9 variant builds (fuse-sshfs only exists once EPEL is enabled)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "build", "--variant", "centos-stream9",
         "--arch", "amd64",
         "--engine", podman.url, "--workdir", str(tmp_path), "--base-image", fake_bases.centos],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    image = "localhost/bootc-pipeline/centos-stream9:9.1.0-amd64"
    for path in (
        "/usr/lib/fake-dnf/installed/fuse-sshfs",
        "/etc/yum.repos.d/epel.repo",
        "/usr/bin/sshfs",
    ):
        podman.cli("run", "--rm", "--network=none", image, "test", "-e", path)


def _build(
    podman: PodmanService, base: str, containerfile: Path, work: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "build", "--arch", "amd64", "--engine", podman.url,
         "--workdir", str(work), "--base-image", base, "--containerfile", str(containerfile)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def test_build_failure_shows_the_end_of_the_log(
    podman: PodmanService, fake_bases: FakeBases, tmp_path: Path
) -> None:
    containerfile = tmp_path / "Containerfile"
    containerfile.write_text(
        "ARG BASE\nFROM ${BASE}\nRUN echo marker-before-failure && dnf -y install no-such-package\n"
    )
    proc = _build(podman, fake_bases.fedora, containerfile, tmp_path / "w")
    assert proc.returncode == 1
    assert "bootc-pipeline: error: building localhost/bootc-pipeline/fedora-40" in proc.stderr
    assert "last lines of the build log" in proc.stderr
    assert "marker-before-failure" in proc.stderr
    assert "No match for argument: no-such-package" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_image_without_bootc_label_is_refused_before_bib(
    podman: PodmanService, fake_bases: FakeBases, tmp_path: Path
) -> None:
    containerfile = tmp_path / "Containerfile"
    containerfile.write_text('ARG BASE\nFROM ${BASE}\nLABEL containers.bootc="0"\n')
    proc = _build(podman, fake_bases.fedora, containerfile, tmp_path / "w")
    assert proc.returncode == 1
    assert "has no label containers.bootc=1" in proc.stderr
    assert not (tmp_path / "w" / "fedora-40" / "amd64" / "build.json").exists()
