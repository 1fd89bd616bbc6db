"""The OS image (issue 15 section 1), fast tier: where it lives, the origin the disk is given,
what the disk and the result file say about it, and how the guest's bootc-origin check judges."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pipeline.boot.checks import SECTION, OriginExpectation, guest_checks, judge_origin
from pipeline.consume import boot_published
from pipeline.core import mediatypes as mt
from pipeline.core.arch import Arch
from pipeline.core.digest import Blob, of_bytes
from pipeline.core.errors import UsageError
from pipeline.core.progress import Reporter
from pipeline.model import plan, release, results
from pipeline.model.published import ArchRelease
from pipeline.publishing.stages import boot as boot_stage
from pipeline.publishing.stages import runner
from pipeline.shared.context import Context, Options, apply_overrides
from tests.factories import ROOT, fedora, manifest_data, write_manifest
from tests.standins.bib import bootc_image_builder as standin
from tests.support.workdirs import DiskCache, make_workdir

PROVENANCE = plan.Provenance("2026-11-28T05:00:00Z", "0123456789abcdef0123456789abcdef01234567")
LAYER = Blob("sha256:" + "a" * 64, 10)
UNCOMPRESSED = Blob("sha256:" + "b" * 64, 20)
OS_REPO = "127.0.0.1:5000/bootc-lima/fedora-bootc-lima-os"
ORIGIN = f"{OS_REPO}:40"


def _load(tmp_path: Path, **changes: Any) -> release.Release:
    data = manifest_data(**changes)
    return release.load(write_manifest(tmp_path, data))


def test_default_repository_and_origin_tag(tmp_path: Path) -> None:
    data = manifest_data()
    data.pop("os_image")
    r = release.load(write_manifest(tmp_path, data))
    assert r.os_repository == "ghcr.io/bootc-lima/fedora-bootc-lima-os"
    assert r.os_origin_tag == "40"  # the first moving tag: the stream


def test_shipped_nightlies_follow_nightly_and_releases_their_major() -> None:
    for path in (ROOT / "manifests").glob("*.yaml"):
        r = release.load(path)
        assert r.os_repository == f"{r.repository}-os", path
        want = "nightly" if "nightly" in path.name else r.moving_tags[0]
        assert r.os_origin_tag == want, path


@pytest.mark.parametrize(
    ("os_image", "message"),
    [
        ({"origin_tag": "41"}, "os_image.origin_tag: '41' is not one of the release's tags"),
        ({"repository": "ghcr.io/bootc-lima/fedora-bootc-lima"}, "the disks' repository"),
        ({"origin": "40"}, "os_image"),
    ],
)
def test_bad_os_image_settings_are_refused(
    tmp_path: Path, os_image: dict[str, str], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        _load(tmp_path, os_image=os_image)


def test_an_origin_naming_a_templated_tag_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="origin_tag: the bootc origin would name"):
        _load(tmp_path, version="40.{date}.{n}", tags=["{version}"], moving_tags=[], os_image={})


def test_registry_override_moves_the_os_image_too() -> None:
    moved = apply_overrides(fedora(), Options(registry="127.0.0.1:5000"))
    assert moved.os_repository == OS_REPO


def _disk(os_image: plan.OsImageRef | None) -> plan.DiskArtifact:
    return plan.DiskArtifact(
        Arch.AMD64, LAYER, UNCOMPRESSED, "sha256:" + "c" * 64, "passed", os_image
    )


def _os_manifest() -> plan.Document:
    config = of_bytes(b'{"architecture":"amd64"}')
    layers = [plan.ImageLayer(Blob("sha256:" + "d" * 64, 5), "sha256:" + "e" * 64)]
    return plan.os_image_manifest(fedora(), config, layers, "sha256:" + "c" * 64, PROVENANCE)


def test_the_disk_names_its_os_image_and_origin() -> None:
    image = _os_manifest()
    ref = plan.OsImageRef(OS_REPO, image.digest, plan.origin_of(ORIGIN))
    ann = plan.artifact_manifest(fedora(), _disk(ref), PROVENANCE).json()["annotations"]
    # by path on the disks' registry: the same inputs on another registry, the same manifest
    assert ann[mt.ANN_OS_IMAGE] == f"bootc-lima/fedora-bootc-lima-os@{image.digest}"
    assert ann[mt.ANN_OS_IMAGE_ORIGIN_TAG] == "40"
    body = image.json()
    assert body["config"]["mediaType"] == mt.OCI_IMAGE_CONFIG
    assert [x["mediaType"] for x in body["layers"]] == [mt.OCI_LAYER_ZSTD]
    assert body["annotations"][mt.ANN_VERSION] == "40.1.0"


def test_the_os_index_is_images_only_and_the_disk_index_names_it() -> None:
    image = _os_manifest()
    index = plan.os_image_index(fedora(), [(Arch.AMD64, image)], PROVENANCE).json()
    assert "artifactType" not in index
    assert index["manifests"][0]["platform"] == {"architecture": "amd64", "os": "linux"}
    assert index["manifests"][0]["digest"] == image.digest
    disk = plan.artifact_manifest(fedora(), _disk(None), PROVENANCE)
    named = f"bootc-lima/fedora-bootc-lima-os@sha256:{'f' * 64}"
    disk_index = plan.artifact_index(fedora(), [(Arch.AMD64, disk)], PROVENANCE, named).json()
    assert disk_index["annotations"][mt.ANN_OS_IMAGE_INDEX] == named


def _result(image: plan.Document, ref: plan.OsImageRef) -> results.ArchResult:
    manifest = plan.artifact_manifest(fedora(), _disk(ref), PROVENANCE)
    arch = ArchRelease(
        Arch.AMD64, LAYER, UNCOMPRESSED, 19, manifest, 10, os_image=ref, os_manifest=image
    )
    annotations = plan.release_annotations(fedora(), PROVENANCE)
    return results.ArchResult("fedora-40", "ghcr.io/o/r", annotations, arch, {})


def test_the_os_image_travels_to_the_join_and_must_be_the_disk_s(tmp_path: Path) -> None:
    image = _os_manifest()
    ref = plan.OsImageRef(OS_REPO, image.digest, plan.origin_of(ORIGIN))
    path = tmp_path / results.file_name(Arch.AMD64)
    results.write(path, _result(image, ref))
    assert results.load(path) == _result(image, ref)
    # a result naming another OS image than its disk manifest does is refused
    data = json.loads(path.read_text())
    data["osImage"]["origin"] = "ostree-unverified-registry:elsewhere/x:40"
    path.write_text(json.dumps(data))
    with pytest.raises(UsageError, match="its disk manifest"):
        results.load(path)
    # and so is one that drops the OS image its disk names
    data.pop("osImage")
    path.write_text(json.dumps(data))
    with pytest.raises(UsageError, match="the result file none"):
        results.load(path)


DIGEST = "sha256:" + "9" * 64
EXPECT = OriginExpectation(ORIGIN, f"{OS_REPO}@{DIGEST}")


def _output(image: str = ORIGIN, origin: str = ORIGIN, digest: str = DIGEST) -> str:
    status = {"status": {"booted": {"image": {"image": {"image": image, "transport": "registry"}}}}}
    return (
        f"{SECTION}\n{json.dumps(status)}\n{SECTION}\n[origin]\n"
        f"container-image-reference=ostree-unverified-registry:{origin}\n{SECTION}\n"
        f"{digest.removeprefix('sha256:')}  /tmp/m.json\n"
    )


def test_bootc_origin_passes_when_origin_and_digest_agree() -> None:
    ok, detail = judge_origin(0, _output(), EXPECT)
    assert ok, detail


@pytest.mark.parametrize(
    ("status", "output", "named"),
    [
        (0, _output(image="localhost/bootc-pipeline/f:40-amd64"), "bootc status"),
        (0, _output(origin="localhost/bootc-pipeline/f:40-amd64"), "origin file"),
        (0, _output(digest="sha256:" + "1" * 64), "resolved to sha256:1111"),
        (1, _output().rsplit(SECTION, 1)[0] + f"{SECTION}\nskopeo: connection refused", "refused"),
        (1, "sudo: bootc: command not found", "did not run to its end"),
    ],
)
def test_bootc_origin_fails_naming_what_is_wrong(status: int, output: str, named: str) -> None:
    ok, detail = judge_origin(status, output, EXPECT)
    assert not ok and named in detail, detail


def test_boot_ref_takes_the_origin_s_host_as_published_wherever_it_was_read() -> None:
    """`boot REF` knows the OS image's repository by path (the annotations name no host): a
    disk read from a mirror still carries the registry it was published to."""
    mirrored = "127.0.0.1:6000/bootc-lima/fedora-bootc-lima-os"
    expect = boot_published.origin_of(
        plan.OsImageRef(mirrored, DIGEST, plan.origin_of(f"{mirrored}:40"))
    )
    assert expect is not None and expect.any_host
    ok, detail = judge_origin(0, _output(), expect)  # the guest's origin names :5000
    assert ok, detail
    conf = expect.registries_conf()  # the guest's skopeo goes where the disk was read from
    assert conf is not None and 'location = "10.0.2.2:6000"' in conf
    for wrong in (f"{mirrored}:nightly", "127.0.0.1:5000/other-os:40"):
        ok, detail = judge_origin(0, _output(image=wrong, origin=wrong), expect)
        assert not ok and "bootc status" in detail, detail
    ok, detail = judge_origin(0, _output(origin=f"{OS_REPO}:41"), expect)
    assert not ok and "origin file" in detail
    assert not judge_origin(0, _output(image=mirrored + ":40"), EXPECT)[0]  # publish: exact
    assert boot_published.origin_of(None) is None


def test_boot_alone_checks_the_origin_only_against_this_build_s_os_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`boot` run alone reads the OS image stamp only when it was pushed from the current build:
    an earlier publish's image is not this disk's (issue 15)."""
    (tmp_path / "disks").mkdir()
    work = make_workdir(tmp_path / "work", DiskCache(tmp_path / "disks"), archs=(Arch.AMD64,))
    ctx = Context(fedora(), Options(workdir=work.root), Reporter(live=False))
    assert boot_stage.origin_expectation(ctx, Arch.AMD64) is None  # nothing pushed yet
    state = ctx.arch_dir(Arch.AMD64)
    built = state.load_stamp("build")
    assert built is not None
    image = plan.OsImageRef(OS_REPO, DIGEST, plan.origin_of(ORIGIN))
    for build_id, expected in ((built["id"], image.reference), ("sha256:" + "e" * 64, None)):
        outputs = image.__dict__ | {"manifest": "{}", "image": build_id}
        state.save_stamp(runner.OS_IMAGE, DIGEST, outputs)
        found = boot_stage.origin_expectation(ctx, Arch.AMD64)
        assert (found.reference if found else None) == expected
        if found is not None:
            assert found.image == ORIGIN
    assert "from an earlier build, not this disk's" in capsys.readouterr().err


def test_the_guest_reaches_a_loopback_registry_through_qemu_s_host_address() -> None:
    conf = EXPECT.registries_conf()
    assert conf is not None
    assert 'prefix = "127.0.0.1:5000"' in conf and 'location = "10.0.2.2:5000"' in conf
    remote = OriginExpectation("ghcr.io/o/r-os:40", f"ghcr.io/o/r-os@{DIGEST}")
    assert remote.registries_conf() is None
    for host, guest in (("[::1]:5000", "[fec0::2]:5000"), ("localhost", "10.0.2.2")):
        v6 = OriginExpectation(f"{host}/r-os:40", f"{host}/r-os@{DIGEST}").registries_conf()
        assert v6 is not None and f'prefix = "{host}"' in v6, host
        assert f'location = "{guest}"' in v6, v6
    port_only = OriginExpectation("registry.example:5000/r-os:40", f"x@{DIGEST}")
    assert port_only.registries_conf() is None
    names = [c.name for c in guest_checks(1000, "/var/usrlocal", EXPECT)]
    assert names[-1] == "bootc-origin"
    assert "bootc-origin" not in [c.name for c in guest_checks(1000, "/var/usrlocal")]


def test_the_stand_in_writes_the_origin_where_bootc_does(tmp_path: Path) -> None:
    path = standin.write_origin(tmp_path, ORIGIN, "sha256:" + "ab" * 32)
    assert path == tmp_path / f"ostree/deploy/default/deploy/{'ab' * 32}.0.origin"
    text = path.read_text()
    assert text == f"[origin]\ncontainer-image-reference=ostree-unverified-registry:{ORIGIN}\n"
    # the stand-in bootc reports it as bootc status --json does
    stub = ROOT / "tests" / "standins" / "fakebase" / "bootc"
    env = {"FAKE_ROOT": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        ["sh", str(stub), "status", "--json"], capture_output=True, text=True, env=env, check=True
    )
    booted = json.loads(done.stdout)["status"]["booted"]["image"]["image"]
    assert booted == {"image": ORIGIN, "transport": "registry"}
