"""The release report and the Lima template a publish writes."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from pipeline.core.arch import Arch
from pipeline.core.digest import Blob
from pipeline.model import lima_settings, plan, report
from pipeline.model.published import ArchRelease, Published
from tests.factories import fedora

PROV = plan.Provenance("2026-11-28T05:00:00Z", "abc")


def _published() -> Published:
    r = fedora()
    archs = []
    for n, arch in enumerate(Arch, start=1):
        layer = Blob("sha256:" + f"{n}" * 64, 1000 + n)
        uncompressed = Blob("sha256:" + f"{n + 4}" * 64, 2000 + n)
        artifact = plan.DiskArtifact(arch, layer, uncompressed, "sha256:" + "c" * 64)
        manifest = plan.artifact_manifest(r, artifact, PROV)
        archs.append(ArchRelease(arch, layer, uncompressed, 10, manifest, 500 + n))
    index = plan.artifact_index(r, [(a.arch, a.manifest) for a in archs], PROV)
    return Published("127.0.0.1:5000/bootc-lima/fedora", index, r.all_tags, tuple(archs))


def test_lima_template_uses_lima_arch_names_and_layer_digests(tmp_path: Path) -> None:
    published = _published()
    template = report.lima_template(fedora(), published, plain_http=True)
    path = tmp_path / "lima.yaml"
    report.write_lima_template(path, template, header="made for a test\nsecond line")
    loaded = yaml.safe_load(path.read_text())
    assert path.read_text().startswith("# made for a test\n# second line\n")
    assert [(i["arch"], i["digest"]) for i in loaded["images"]] == [
        ("x86_64", published.archs[0].layer.digest),
        ("aarch64", published.archs[1].layer.digest),
    ]
    first = loaded["images"][0]["location"]
    assert (
        first == f"http://127.0.0.1:5000/v2/bootc-lima/fedora/blobs/{loaded['images'][0]['digest']}"
    )
    assert loaded["guestInstallPrefix"] == "/var/usrlocal"
    assert loaded["minimumLimaVersion"] == "1.0.0"
    # Lima picks the mount type (vz: virtiofs, QEMU: reverse-sshfs); containerd is off.
    assert loaded["mountTypesUnsupported"] == ["9p"] and "mountType" not in loaded
    assert loaded["containerd"] == {"system": False, "user": False}
    assert list(loaded)[:2] == ["minimumLimaVersion", "images"]
    https = report.lima_template(fedora(), published, plain_http=False)
    assert https["images"][0]["location"].startswith("https://")


def test_release_report_records_every_arch(tmp_path: Path) -> None:
    published = _published()
    timings = {"build:amd64": 1.5, "disk:amd64": 2.0, "build:arm64": 3.0, "push": 4.0}
    body = report.release_report(fedora(), published, PROV, timings)
    path = tmp_path / "r.json"
    report.write_report(path, body)
    loaded = json.loads(path.read_text())
    assert loaded["index"]["digest"] == published.index.digest
    assert loaded["index"]["tags"] == ["40.1.0", "40", "latest"]
    amd = loaded["architectures"]["amd64"]
    assert amd["manifest"]["digest"] == published.archs[0].manifest.digest
    assert amd["layer"] == {
        "digest": "sha256:" + "1" * 64,
        "size": 1001,
        "title": "fedora-bootc-lima-40.1.0-amd64.qcow2.zst",
        "zstdLevel": 10,
        "bytesSent": 501,
    }
    assert amd["uncompressed"] == {"digest": "sha256:" + "5" * 64, "size": 2001}
    assert amd["timings"] == {"build": 1.5, "disk": 2.0}
    assert loaded["architectures"]["arm64"]["timings"] == {"build": 3.0}
    assert loaded["timings"] == {"push": 4.0}


def test_lima_template_header_says_what_the_host_and_guest_need(tmp_path: Path) -> None:
    path = tmp_path / "lima.yaml"
    header = lima_settings.header("Lima template for x 1.0", "Start it with: limactl start x")
    report.write_lima_template(path, report.lima_template(fedora(), _published(), plain_http=True),
                               header=header)  # fmt: skip
    comments = [line for line in path.read_text().splitlines() if line.startswith("#")]
    text = " ".join(comments)
    assert comments[0] == "# Lima template for x 1.0"
    assert "needs the `zstd` command" in text
    assert 'mountTypesUnsupported: ["9p"]' in text and "reverse-sshfs" in text
    assert "virtiofs" in text and "containerd is off" in text
    assert yaml.safe_load(path.read_text())["containerd"] == lima_settings.CONTAINERD
