"""`list`, `promote` and `prune` against a real docker-registry (deletes enabled), run as the
CLI, judged by skopeo and curl: nothing a kept release needs is gone, everything a pruned release
had is gone, a dry run deletes nothing; promote re-uploads nothing and keeps release tags
immutable.

The releases are made the way publish makes them (pipeline/model/plan.py's exact documents) and
pushed with plain HTTP requests (tests/support/oci_push.py), with a cosign-style `.sig` tag and a
referrers fallback index (`sha256-HEX`) as referrers. What prune deleted and kept is measured
in bytes and written to $BOOTC_PIPELINE_PRUNE_FIGURES (default
/tmp/bootc-pipeline-prune-figures.json).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.core import mediatypes as mt
from pipeline.core.arch import Arch
from pipeline.core.digest import Blob, of_bytes
from pipeline.model import plan
from pipeline.registry.client import RegistryClient
from pipeline.shared import readback
from tests.factories import ROOT, fedora
from tests.support import judges, oci_push
from tests.support.faultproxy import FaultProxy
from tests.support.registry import RunningRegistry

FIGURES = Path(
    os.environ.get("BOOTC_PIPELINE_PRUNE_FIGURES", "/tmp/bootc-pipeline-prune-figures.json")
)
SIG_LAYER = "application/vnd.dev.cosign.simplesigning.v1+json"


@dataclass
class Made:
    version: str
    index: str
    children: dict[str, str]  # arch -> manifest digest
    blobs: dict[str, int]  # layer digest -> size
    manifest_bytes: int
    referrers: dict[str, str]  # tag -> manifest digest
    os_index: str = ""  # the OS image index in REPO-os (issue 15), "" for none
    os_children: dict[str, str] = dataclasses.field(default_factory=dict)  # arch -> digest
    os_blobs: dict[str, int] = dataclasses.field(default_factory=dict)


def _layer(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def push_release(
    host: str,
    repo: str,
    version: str,
    created: str,
    tags: list[str],
    layers: dict[Arch, bytes],
    *,
    boot: str = "passed",
    os_repo: str = "",
) -> Made:
    """A release as publish leaves it: its OS image in OS_REPO (default REPO-os) first."""
    release = dataclasses.replace(fedora(), version=version, architectures=tuple(layers))
    provenance = plan.Provenance(created=created, revision="0" * 40)
    oci_push.push_blob(host, repo, mt.EMPTY_JSON)
    docs: list[tuple[Arch, plan.Document]] = []
    blobs: dict[str, int] = {mt.EMPTY_DIGEST: len(mt.EMPTY_JSON)}
    os_repo = os_repo or f"{repo}-os"
    os_docs: list[tuple[Arch, plan.Document]] = []
    os_blobs: dict[str, int] = {}
    images: dict[Arch, plan.OsImageRef] = {}
    for arch, data in layers.items():  # the OS image first, as publish pushes it
        config = json.dumps({"architecture": arch.value, "os": "linux"}).encode()
        image_layer = data[: len(data) // 2]  # stands for the bootc image's own layer
        found = [Blob(oci_push.push_blob(host, os_repo, b), len(b)) for b in (config, image_layer)]
        os_blobs |= {b.digest: b.size for b in found}
        layer_of = plan.ImageLayer(found[1], of_bytes(image_layer[::-1]).digest)
        image = plan.os_image_manifest(
            release, found[0], [layer_of], "sha256:" + "b" * 64, provenance
        )
        put(host, os_repo, image.digest, image)
        os_docs.append((arch, image))
        origin = plan.origin_of(f"{host}/{os_repo}:{tags[-1]}")
        images[arch] = plan.OsImageRef(f"{host}/{os_repo}", image.digest, origin)
    os_index = plan.os_image_index(release, os_docs, provenance)
    for ref in (os_index.digest, *tags):
        put(host, os_repo, ref, os_index)
    for arch, data in layers.items():
        layer = Blob(oci_push.push_blob(host, repo, data), len(data))
        blobs[layer.digest] = layer.size
        disk = plan.DiskArtifact(
            arch, layer, of_bytes(data[::-1]), "sha256:" + "b" * 64, boot, images[arch]
        )
        doc = plan.artifact_manifest(release, disk, provenance)
        put(host, repo, doc.digest, doc)
        docs.append((arch, doc))
    named = f"{os_repo}@{os_index.digest}"
    index = plan.artifact_index(release, docs, provenance, named)
    for ref in (index.digest, *tags):
        put(host, repo, ref, index)
    size = index.size + sum(d.size for _, d in docs)
    return Made(
        version, index.digest, {a.value: d.digest for a, d in docs}, blobs, size, {},
        os_index.digest, {a.value: d.digest for a, d in os_docs}, os_blobs,
    )  # fmt: skip


def put(host: str, repo: str, reference: str, doc: plan.Document) -> None:
    """PUT the exact bytes (oci_push re-serialises; the digests must be the planned ones)."""
    url = f"http://{host}/v2/{repo}/manifests/{reference}"
    subprocess.run(
        [
            "curl",
            "-fsS",
            "-X",
            "PUT",
            "-H",
            f"Content-Type: {doc.media_type}",
            "--data-binary",
            "@-",
            url,
        ],
        input=doc.body,
        check=True,
        capture_output=True,
        timeout=60,
    )


def add_signature(host: str, repo: str, made: Made, seed: int) -> None:
    """cosign's tag-based signature: `sha256-HEX.sig`, a simplesigning layer."""
    payload = json.dumps({"critical": {"image": {"docker-manifest-digest": made.index}}}).encode()
    payload += _layer(seed, 300)
    digest = oci_push.push_blob(host, repo, payload)
    made.blobs[digest] = len(payload)
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_EMPTY, "digest": mt.EMPTY_DIGEST, "size": 2},
        "layers": [
            {
                "mediaType": SIG_LAYER,
                "digest": digest,
                "size": len(payload),
                "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQ=="},
            }
        ],
    }
    tag = f"sha256-{made.index.split(':')[1]}.sig"
    body = plan.Document(mt.OCI_MANIFEST, plan.encode(doc))
    put(host, repo, tag, body)
    made.referrers[tag] = body.digest
    made.manifest_bytes += body.size


def add_fallback_referrer(host: str, repo: str, made: Made, seed: int) -> None:
    """An artifact with `subject` = the index, listed in the referrers tag schema's index."""
    data = _layer(seed, 500)
    digest = oci_push.push_blob(host, repo, data)
    made.blobs[digest] = len(data)
    artifact = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": "application/spdx+json",
        "config": {"mediaType": mt.OCI_EMPTY, "digest": mt.EMPTY_DIGEST, "size": 2},
        "layers": [{"mediaType": "application/spdx+json", "digest": digest, "size": len(data)}],
        "subject": {"mediaType": mt.OCI_INDEX, "digest": made.index, "size": 1},
    }
    art = plan.Document(mt.OCI_MANIFEST, plan.encode(artifact))
    put(host, repo, art.digest, art)
    index = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            {
                "mediaType": mt.OCI_MANIFEST,
                "digest": art.digest,
                "size": art.size,
                "artifactType": "application/spdx+json",
            }
        ],
    }
    tag = f"sha256-{made.index.split(':')[1]}"
    body = plan.Document(mt.OCI_INDEX, plan.encode(index))
    put(host, repo, tag, body)
    made.referrers[tag] = body.digest
    made.manifest_bytes += body.size + art.size
    made.referrers[f"{tag}#artifact"] = art.digest


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", *args, "--plain-http"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def status(host: str, repo: str, kind: str, digest: str) -> int:
    """HEAD by curl: 200 present, 404 gone."""
    accept = f"{mt.OCI_INDEX}, {mt.OCI_MANIFEST}"
    proc = subprocess.run(
        [
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-I",
            "-H",
            f"Accept: {accept}",
            f"http://{host}/v2/{repo}/{kind}/{digest}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(proc.stdout)


def tags(host: str, repo: str) -> set[str]:
    proc = subprocess.run(
        ["curl", "-fsS", f"http://{host}/v2/{repo}/tags/list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(json.loads(proc.stdout).get("tags") or [])


def os_present(host: str, repo: str, made: Made) -> dict[str, int]:
    """Every manifest and blob of MADE's OS image in REPO-os, with its HEAD status."""
    os_repo = f"{repo}-os"
    docs = (made.os_index, *made.os_children.values())
    found = {d: status(host, os_repo, "manifests", d) for d in docs}
    return found | {d: status(host, os_repo, "blobs", d) for d in made.os_blobs}


def present(host: str, repo: str, made: Made) -> dict[str, int]:
    """Every manifest and blob of MADE, with its HEAD status."""
    found = {d: status(host, repo, "manifests", d) for d in (made.index, *made.children.values())}
    found |= {d: status(host, repo, "manifests", d) for d in made.referrers.values()}
    return found | {d: status(host, repo, "blobs", d) for d in made.blobs}


@pytest.fixture
def nightlies(registry: RunningRegistry, repository_name: str) -> tuple[str, list[Made]]:
    """Four dated nightlies, oldest first. `40` pins the second (a promoted pin), `latest` and
    `nightly` name the newest; the newest shares its arm64 layer with the oldest."""
    host, repo = registry.host, f"{repository_name}/nightly"
    shared = _layer(99, 96 * 1024)
    made = []
    for n, day in enumerate(("01", "10", "20", "29")):
        version = f"40.202611{day}.1"
        moving = {1: ["40"], 3: ["latest", "nightly"]}.get(n, [])
        arm = shared if n in (0, 3) else _layer(10 + n, (64 + n) * 1024)
        layers = {Arch.AMD64: _layer(n, (128 + n) * 1024), Arch.ARM64: arm}
        made.append(
            push_release(
                host,
                repo,
                version,
                f"2026-11-{day}T03:00:00Z",
                [version, *moving],
                layers,
                boot="passed" if n else "skipped",
            )
        )
    add_signature(host, repo, made[0], 7)
    add_fallback_referrer(host, repo, made[2], 8)
    return repo, made


def test_prune_of_a_manifest_finds_its_os_images_where_it_names_them(
    registry: RunningRegistry, repository_name: str, tmp_path: Path
) -> None:
    """`prune --manifest M`: the OS images are in the repository M's os_image names, for M's
    own disk repository; a REF naming another disk repository keeps that one's `<REF>-os`."""
    host = registry.host
    repo, elsewhere = f"{repository_name}/disks", f"{repository_name}/images"
    other = f"{repository_name}/other"
    for target, os_repo in ((repo, elsewhere), (other, "")):
        for n, day in enumerate(("01", "10")):
            version = f"40.202611{day}.1"
            layers = {Arch.AMD64: _layer(40 + n, 32 * 1024)}
            tags = [version, *(["40"] if n else [])]
            created = f"2026-11-{day}T03:00:00Z"
            push_release(host, target, version, created, tags, layers, os_repo=os_repo)
    text = (ROOT / "manifests" / "fedora-40.yaml").read_text()
    text = text.replace(
        "repository: ghcr.io/bootc-lima/fedora-bootc-lima", f"repository: {host}/{repo}"
    )
    line = "  # repository: <repository>-os, the default (set one to publish it elsewhere)"
    assert line in text
    text = text.replace(line, f"  repository: {host}/{elsewhere}")
    (tmp_path / "containerfiles").symlink_to(ROOT / "containerfiles")  # the manifest names one
    manifest = tmp_path / "manifests" / "fedora-40.yaml"
    manifest.parent.mkdir()
    manifest.write_text(text)
    args = ("--keep", "0", "--json")
    own = json.loads(cli("prune", "--manifest", str(manifest), *args).stdout)
    assert own["repository"] == f"{host}/{repo}"
    assert own["osImage"]["repository"] == f"{host}/{elsewhere}"
    assert [r["action"] for r in own["osImage"]["releases"]] == ["keep", "delete"]
    theirs = json.loads(cli("prune", "--manifest", str(manifest), f"{host}/{other}", *args).stdout)
    assert theirs["osImage"]["repository"] == f"{host}/{other}-os"
    assert [r["action"] for r in theirs["osImage"]["releases"]] == ["keep", "delete"]
    assert not own["deleted"] and not theirs["deleted"]


def test_list_shows_every_release_newest_first(
    registry: RunningRegistry, nightlies: tuple[str, list[Made]]
) -> None:
    repo, made = nightlies
    listed = json.loads(cli("list", f"{registry.host}/{repo}", "--json").stdout)["releases"]
    assert [r["version"] for r in listed] == [m.version for m in reversed(made)]
    assert [r["index"] for r in listed] == [m.index for m in reversed(made)]
    newest, oldest = listed[0], listed[-1]
    assert newest["tags"] == sorted([made[3].version, "latest", "nightly"])
    assert newest["architectures"] == ["amd64", "arm64"] and newest["boot"] == "passed"
    assert oldest["boot"] == "skipped" and oldest["signed"] == "unknown"  # a .sig, unverified
    assert newest["signed"] == "no"
    assert newest["osImage"] == f"{repo}-os@{made[3].os_index}"
    text = cli("list", f"{registry.host}/{repo}").stdout
    assert text.splitlines()[0].split()[:3] == ["version", "created", "architectures"]
    assert made[3].version in text.splitlines()[1]


def test_prune_dry_run_deletes_nothing_then_yes_deletes_exactly_the_old(
    registry: RunningRegistry, nightlies: tuple[str, list[Made]]
) -> None:
    host = registry.host
    repo, made = nightlies
    before = {d: s for m in made for d, s in present(host, repo, m).items()}
    assert set(before.values()) == {200}
    tags_before = tags(host, repo)
    ref = f"{host}/{repo}"

    dry = json.loads(cli("prune", ref, "--keep", "1", "--older-than", "5", "--json").stdout)
    assert not dry["deleted"]
    actions = {r["version"]: (r["action"], r["reason"]) for r in dry["releases"]}
    assert {v: a for v, (a, _) in actions.items()} == {
        made[0].version: "delete",
        made[1].version: "keep",
        made[2].version: "delete",
        made[3].version: "keep",
    }
    assert "moving tag 40" in actions[made[1].version][1]
    table = cli("prune", ref, "--keep", "1", "--older-than", "5").stdout
    assert "would delete (dry run; --yes deletes) 2 release(s)" in table
    assert "would delete (dry run; --yes deletes) 2 OS image(s)" in table
    assert {d: s for m in made for d, s in present(host, repo, m).items()} == before
    assert {s for m in made for s in os_present(host, repo, m).values()} == {200}
    assert tags(host, repo) == tags_before

    done = json.loads(
        cli("prune", ref, "--keep", "1", "--older-than", "5", "--yes", "--json").stdout
    )
    assert done["deleted"]
    shared = set(made[0].blobs) & set(made[3].blobs)
    assert len(shared) == 2  # the empty config and the arm64 layer
    for gone in (made[0], made[2]):
        for digest, code in present(host, repo, gone).items():
            assert code == (200 if digest in shared else 404), (gone.version, digest)
    for still in (made[1], made[3]):
        assert set(present(host, repo, still).values()) == {200}, still.version
        raw = judges.skopeo_raw(host, f"{repo}:{still.version}")
        assert judges.sha256(raw) == still.index
    left = tags(host, repo)
    assert left == {made[1].version, "40", made[3].version, "latest", "nightly"}, left
    # the OS images went with their disks: nothing a kept one uses (the shared config) gone
    os_shared = set(made[0].os_blobs) & (set(made[1].os_blobs) | set(made[3].os_blobs))
    assert os_shared  # each architecture's image config is the same bytes in every release
    for gone in (made[0], made[2]):
        for digest, code in os_present(host, repo, gone).items():
            assert code == (200 if digest in os_shared else 404), (gone.version, digest)
    for still in (made[1], made[3]):
        assert set(os_present(host, repo, still).values()) == {200}, still.version
    assert tags(host, f"{repo}-os") == left
    assert [r["action"] for r in done["osImage"]["releases"]].count("delete") == 2
    # in bytes: what the pruned releases alone had, and what the kept ones still have
    kept_blobs = made[1].blobs | made[3].blobs
    gone_blobs = {d: s for m in (made[0], made[2]) for d, s in m.blobs.items()}
    deleted = sum(s for d, s in gone_blobs.items() if d not in kept_blobs)
    deleted += made[0].manifest_bytes + made[2].manifest_bytes
    kept = sum(kept_blobs.values()) + made[1].manifest_bytes + made[3].manifest_bytes
    assert (done["deleteBytes"], done["keepBytes"]) == (deleted, kept)
    figures = {
        "deletedBytes": deleted,
        "keptBytes": kept,
        "sharedBlobBytes": sum(made[3].blobs[d] for d in shared),
        "releasesDeleted": 2,
        "releasesKept": 2,
    }
    FIGURES.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nprune figures: {figures}")


def test_promote_tags_by_digest_mounts_blobs_and_keeps_release_tags(
    registry: RunningRegistry, nightlies: tuple[str, list[Made]], repository_name: str
) -> None:
    host = registry.host
    repo, made = nightlies
    stable = f"{repository_name}/stable"
    src = f"{host}/{repo}:{made[3].version}"
    proc = cli(
        "promote", src, f"{host}/{stable}:40.1.0,40,latest", "--moving", "40,latest", "--json"
    )
    moved = json.loads(proc.stdout)
    assert moved["index"] == made[3].index
    assert [(m["tag"], m["kind"], m["from"]) for m in moved["moved"]] == [
        ("40.1.0", "release", None),
        ("40", "moving", None),
        ("latest", "moving", None),
    ]
    assert "blobs: 3 mounted, 0 already there, 0 copied" in proc.stderr  # two layers, config
    for tag in ("40.1.0", "40", "latest"):
        assert judges.sha256(judges.skopeo_raw(host, f"{stable}:{tag}")) == made[3].index
    for digest in (*made[3].children.values(), *made[3].blobs):
        kind = "blobs" if digest in made[3].blobs else "manifests"
        assert status(host, stable, kind, digest) == 200
    # the OS image moved with the disk, by digest, under the same tags
    assert moved["osImage"]["index"] == made[3].os_index
    for tag in ("40.1.0", "40", "latest"):
        assert judges.sha256(judges.skopeo_raw(host, f"{stable}-os:{tag}")) == made[3].os_index
    assert set(os_present(host, stable, made[3]).values()) == {200}

    # the release tag is immutable: another release under it is refused, nothing moves
    other = f"{host}/{repo}:{made[1].version}"
    refused = cli(
        "promote", other, f"{host}/{stable}:40.1.0,latest", "--moving", "latest", check=False
    )
    assert refused.returncode == 2 and "release tags are immutable" in refused.stderr
    assert judges.sha256(judges.skopeo_raw(host, f"{stable}:latest")) == made[3].index
    # a new release tag for it, the moving tags moved (last), the report says from what
    again = json.loads(
        cli(
            "promote", other, f"{host}/{stable}:40.0.9,latest", "--moving", "latest", "--json"
        ).stdout
    )
    assert [(m["tag"], m["from"], m["to"]) for m in again["moved"]] == [
        ("40.0.9", None, made[1].index),
        ("latest", made[3].index, made[1].index),
    ]
    assert judges.sha256(judges.skopeo_raw(host, f"{stable}:40.1.0")) == made[3].index


def test_a_promoted_release_keeps_its_os_image_when_its_source_is_pruned(
    registry: RunningRegistry, nightlies: tuple[str, list[Made]], repository_name: str
) -> None:
    """Promote copies the release's bytes, so the promoted disk index still names the source's
    OS repository; the copy promote made in `<target>-os` is the one readers must find, or a
    prune of the source leaves the promoted release's OS image "not there"."""
    host = registry.host
    repo, made = nightlies
    stable = f"{repository_name}/kept"
    dated = made[2]  # no moving tag names it: `--keep 1 --older-than 5` deletes it
    moved = json.loads(
        cli("promote", f"{host}/{repo}:{dated.version}", f"{host}/{stable}:40.2.0", "--json").stdout
    )
    origin = f"ostree-unverified-registry:{host}/{repo}-os:{dated.version}"
    assert moved["osImage"]["origin"] == origin  # baked into the disk; promote does not rebuild
    cli("prune", f"{host}/{repo}", "--keep", "1", "--older-than", "5", "--yes")
    assert status(host, f"{repo}-os", "manifests", dated.os_index) == 404
    assert status(host, repo, "manifests", dated.index) == 404
    checked = cli("validate", f"{host}/{stable}:40.2.0")
    assert f"OS image index {host}/{stable}-os@{dated.os_index}: every image" in checked.stderr
    # what pull, lima and boot REF read: the promoted copy, its origin the one in the disk
    with RegistryClient(host, plain_http=True) as client:
        index = readback.index_at(client, stable, "40.2.0")
        assert index is not None
        archs = readback.arch_releases(client, stable, index, (Arch.AMD64, Arch.ARM64))
        assert archs is not None
        for r in readback.with_os_images(client, index, archs):
            assert r.os_image is not None and r.os_manifest is not None
            assert r.os_image.repository == f"{host}/{stable}-os"
            assert r.os_image.digest == dated.os_children[r.arch.value]
            assert r.os_image.origin == origin


def test_a_refused_look_in_the_default_os_repository_falls_back_to_the_named_one(
    registry: RunningRegistry,
) -> None:
    """A release whose OS image lives in a repository of its own naming: readers look in the
    disks' `<repo>-os` first (a promoted copy), which on ghcr.io or quay.io may not exist and
    answer 403 or 401, not 404. That is "not here", not a failure of the read."""
    digest = "sha256:" + "c" * 64
    with FaultProxy(registry.host) as proxy:
        rule = proxy.add(
            "respond", status=403, method="HEAD", path="/v2/o/disks-os/manifests/", times=5,
            seconds=60, label="no-such-repository",
        )  # fmt: skip
        with RegistryClient(proxy.host, plain_http=True) as client:
            found = readback.os_index_repository(client, "o/disks", "o/images", digest)
        assert rule.injected >= 1
    assert found == "o/images"


def test_bad_input_is_one_line_exit_2_and_nothing_done(
    registry: RunningRegistry, nightlies: tuple[str, list[Made]]
) -> None:
    host = registry.host
    repo, made = nightlies
    before = tags(host, repo)
    for args, message in (
        (("prune", f"{host}/{repo}:latest", "--keep", "1"), "without a tag or digest"),
        (("prune", f"{host}/{repo}", "--keep", "-1", "--yes"), "--keep: -1 must be 0 or more"),
        (("prune", f"{host}/{repo}"), "--keep N is required"),
        (("promote", f"{host}/{repo}:latest", f"127.0.0.2:1/{repo}:x"), "within one registry"),
        (("promote", f"{host}/{repo}:latest", f"{host}/{repo}:a", "--moving", "b"), "--moving"),
        (("promote", f"{host}/{repo}:no-such", f"{host}/{repo}:a"), "does not exist"),
    ):
        proc = cli(*args, check=False)
        errors = [line for line in proc.stderr.splitlines() if "error:" in line]
        assert proc.returncode == 2 and len(errors) == 1 and message in errors[0], proc.stderr
    assert tags(host, repo) == before
    assert {s for m in made for s in present(host, repo, m).values()} == {200}
