"""`bootc-pipeline pull`: the real CLI against a real docker-registry, through the fault proxy.

A release of both architectures is published by the real CLI (`push` over a synthetic work
directory, tests/support/workdirs.py), then pulled back through a loopback fault proxy
(tests/support/faultproxy.py) that resets, truncates, answers 5xx and 429, corrupts a blob or
holds a download for a test to kill. Every pull is judged by `sha256sum` against the
uncompressed digest the publish recorded in its report; the proxy counts the bytes it served.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.core.arch import Arch
from tests.support.ecosystem import GHCR, QUAY, Profile, RegistryFront
from tests.support.faultproxy import FaultProxy
from tests.support.oci_push import push_manifest, push_seed_artifact, seed_manifest
from tests.support.registry import RegistryKind
from tests.support.workdirs import PublishedRelease, cli_env, published_release, zstd_cli_layer

pytestmark = pytest.mark.integration

REPO = "bootc-lima/fedora-bootc-lima"
TAG = "40.1.0"
BLOBS = "/blobs/sha256:"
DISK_BYTES = 8 * 1024 * 1024 + 4321  # random bytes: the .zst is about as large
CLI_TIMEOUT = 120.0
FIGURES = Path(
    os.environ.get("BOOTC_PIPELINE_PULL_FIGURES", "/tmp/bootc-pipeline-pull-figures.json")
)


Published = PublishedRelease


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Published]:
    """The release on docker-registry, behind the fault proxy."""
    yield from _published(tmp_path_factory, RegistryKind.DOCKER_REGISTRY)


@pytest.fixture(scope="module", params=list(RegistryKind), ids=str)
def published_any(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Published]:
    """The same release on each of the three registries (docker-registry's is `published`)."""
    if request.param is RegistryKind.DOCKER_REGISTRY:
        yield request.getfixturevalue("published")
        return
    yield from _published(tmp_path_factory, request.param)


def _published(factory: pytest.TempPathFactory, kind: RegistryKind) -> Iterator[Published]:
    with published_release(factory.mktemp(f"pull-{kind}"), size=DISK_BYTES, kind=kind) as release:
        yield release


@pytest.fixture
def proxy(published: Published) -> Iterator[FaultProxy]:
    yield from _clean_proxy(published)


@pytest.fixture
def proxy_any(published_any: Published) -> Iterator[FaultProxy]:
    yield from _clean_proxy(published_any)


def _clean_proxy(published: Published) -> Iterator[FaultProxy]:
    published.proxy.clear_rules()
    published.proxy.forget()
    yield published.proxy
    published.proxy.clear_rules()


def pull(
    published: Published,
    reference: str,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = CLI_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pipeline", "pull", reference, "--plain-http", *args]
    return subprocess.run(
        argv,
        env=env or published.env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def sha256sum(path: Path) -> str:
    """coreutils' sha256sum: a judge this project did not write."""
    out = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True)
    return "sha256:" + out.stdout.split()[0]


def recorded(published: Published, arch: Arch) -> dict[str, Any]:
    entry: dict[str, Any] = published.report["architectures"][arch.value]
    return entry


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def figures(key: str, value: Any) -> None:
    data = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    data[key] = value
    FIGURES.write_text(json.dumps(data, indent=2) + "\n")


# -- the release this project published --------------------------------------------------------


@pytest.mark.parametrize("arch", [Arch("amd64"), Arch("arm64")])
def test_pull_equals_what_publish_recorded(
    published_any: Published, proxy_any: FaultProxy, tmp_path: Path, arch: Arch
) -> None:
    proc = pull(published_any, f"{proxy_any.host}/{REPO}:{TAG}", "--platform", arch.platform,
                "-o", f"{tmp_path}/", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    want = recorded(published_any, arch)
    path = Path(result["path"])
    assert path == tmp_path / want["layer"]["title"].removesuffix(".zst")
    assert sha256sum(path) == want["uncompressed"]["digest"] == result["uncompressed"]["digest"]
    assert path.stat().st_size == want["uncompressed"]["size"]
    assert result["layer"] == {"digest": want["layer"]["digest"], "size": want["layer"]["size"]}
    assert result["platform"] == arch.platform
    assert result["manifest"] == want["manifest"]["digest"]
    assert leftovers(tmp_path) == []
    assert "MiB/s" in proc.stderr  # progress gives bytes and rate
    qemu = subprocess.run(["qemu-img", "check", str(path)], capture_output=True, text=True)
    assert qemu.returncode == 0, qemu.stdout + qemu.stderr


def test_keep_compressed_keeps_the_layer_bytes(
    published: Published, proxy: FaultProxy, tmp_path: Path
) -> None:
    out = tmp_path / "disk.zst"
    proc = pull(published, f"{proxy.host}/{REPO}:{TAG}", "--platform", "linux/amd64",
                "-o", str(out), "--keep-compressed", "--quiet")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and proc.stdout == ""
    want = recorded(published, Arch("amd64"))
    assert sha256sum(out) == want["layer"]["digest"]
    test = subprocess.run(["zstd", "-t", "-q", str(out)], capture_output=True)
    assert test.returncode == 0
    assert leftovers(tmp_path) == []


def test_pull_by_digest_of_the_index(
    published_any: Published, proxy_any: FaultProxy, tmp_path: Path
) -> None:
    index = published_any.report["index"]["digest"]
    proc = pull(published_any, f"{proxy_any.host}/{REPO}@{index}", "--platform", "arm64",
                "-o", str(tmp_path / "x.qcow2"), "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (
        sha256sum(tmp_path / "x.qcow2")
        == recorded(published_any, Arch("arm64"))["uncompressed"]["digest"]
    )


def test_missing_platform_names_what_the_index_has(
    published: Published, proxy: FaultProxy, tmp_path: Path
) -> None:
    proc = pull(published, f"{proxy.host}/{REPO}:{TAG}", "--platform", "linux/riscv64",
                "-o", f"{tmp_path}/")  # fmt: skip
    assert proc.returncode == 2
    assert "riscv64" in proc.stderr
    assert list(tmp_path.iterdir()) == []


# -- faults -----------------------------------------------------------------------------------


def test_pull_through_faults_resumes_and_ends_equal(
    published: Published, proxy: FaultProxy, tmp_path: Path
) -> None:
    arch = Arch("arm64")
    want = recorded(published, arch)
    size = want["layer"]["size"]
    rules = [
        proxy.add("respond", method="GET", path=BLOBS, status=503, label="5xx"),
        proxy.add(
            "respond",
            method="GET",
            path=BLOBS,
            status=429,
            label="429",
            headers={"Retry-After": "1"},
        ),  # fmt: skip
        proxy.add("truncate", method="GET", path=BLOBS, fraction=0.4, label="truncated"),
        proxy.add("respond", method="GET", path=BLOBS, status=502, label="5xx"),
        proxy.add("truncate", method="GET", path=BLOBS, fraction=0.5, times=2, label="truncated"),
        proxy.add("reset", method="GET", path=BLOBS, label="reset"),
    ]
    proc = pull(published, f"{proxy.host}/{REPO}:{TAG}", "--platform", arch.platform,
                "-o", f"{tmp_path}/", "--json", "--retry-attempts", "12")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for rule in rules:
        assert rule.injected == rule.times, rule
    path = Path(json.loads(proc.stdout)["path"])
    assert sha256sum(path) == want["uncompressed"]["digest"]
    assert leftovers(tmp_path) == []
    served = proxy.bytes_sent("GET", BLOBS)
    gets = proxy.matching("GET", BLOBS)
    starts = [int(e.range.removeprefix("bytes=").rstrip("-")) if e.range else 0 for e in gets]
    # Resumed with Range where it broke, never restarted from 0 once bytes had arrived.
    assert starts == sorted(starts) and starts[-1] > 0, starts
    assert gets[-1].status == 206 and gets[-1].sent == size - starts[-1]
    figures("faults", {"injected": proxy.injected(), "served": served, "layer": size,
                       "range_starts": starts})  # fmt: skip


def test_a_break_resumes_at_the_byte_it_reached(
    published: Published, proxy: FaultProxy, tmp_path: Path
) -> None:
    """Each resumed GET asks for the blob from the byte the broken answer reached, so nothing
    the proxy sent is downloaded twice (issue 17: the body was read in whole 1 MiB blocks, and
    a break lost the part of the block it fell in). Three breaks at 37 % of what each GET has
    left (inside a block, never on a boundary), each held 2 s before the reset so the client
    has read every byte sent: a reset of bytes still queued in the kernel is the network's
    loss, not the client's, and would make the count depend on timing."""
    arch = Arch("amd64")
    want = recorded(published, arch)
    size = want["layer"]["size"]
    cuts = proxy.add("hold-answer", method="GET", path=BLOBS, fraction=0.37, times=3, delay=2.0)
    proc = pull(published, f"{proxy.host}/{REPO}:{TAG}", "--platform", arch.platform,
                "-o", f"{tmp_path}/", "--json", "--retry-attempts", "5")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert cuts.injected == 3
    gets = proxy.matching("GET", BLOBS)
    starts = [int(e.range.removeprefix("bytes=").rstrip("-")) if e.range else 0 for e in gets]
    reached = [start + e.sent for start, e in zip(starts, gets, strict=True)]
    lost = [end - start for end, start in zip(reached, starts[1:], strict=False)]
    print(f"resumed at {starts}, the broken answers reached {reached[:-1]}: lost {lost}")
    assert len(gets) == 4 and reached[-1] == size, (starts, reached)
    assert lost == [0, 0, 0], (starts, reached)
    assert sha256sum(Path(json.loads(proc.stdout)["path"])) == want["uncompressed"]["digest"]
    figures("resume_at_byte", {"range_starts": starts, "reached": reached, "lost": lost})


def test_breaks_that_make_progress_renew_the_retry_budget(
    published: Published, proxy: FaultProxy, tmp_path: Path
) -> None:
    """Three resets, each after 60 % of what the GET had left, held 1.5 s first (so the client
    has read those bytes): 4.5 s of breaks against `--retry-seconds 3` (and more attempts than
    breaks, so only time can run out). Each resumed GET gets further (at least one 1 MiB block
    of the 8 MiB layer), so each starts a new streak; issue 14: one budget for the whole blob
    ran out of time at the third break."""
    arch = Arch("amd64")
    want = recorded(published, arch)
    resets = proxy.add("hold-answer", method="GET", path=BLOBS, fraction=0.6, times=3, delay=1.5)
    proc = pull(published, f"{proxy.host}/{REPO}:{TAG}", "--platform", arch.platform,
                "-o", f"{tmp_path}/", "--json", "--retry-attempts", "5",
                "--retry-seconds", "3")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert resets.injected == 3
    starts = [e.range for e in proxy.matching("GET", BLOBS)]
    assert len(starts) == 4 and starts[0] is None and len(set(starts)) == 4, starts
    assert sha256sum(Path(json.loads(proc.stdout)["path"])) == want["uncompressed"]["digest"]
    assert leftovers(tmp_path) == []


def test_breaks_without_progress_still_give_up(
    published: Published, proxy: FaultProxy, tmp_path: Path
) -> None:
    """The renewed budget still bounds a registry that never lets the download advance."""
    proxy.add("truncate", method="GET", path=BLOBS, fraction=0.5, times=1)
    stuck = proxy.add("respond", method="GET", path=BLOBS, status=503, times=10)
    proc = pull(published, f"{proxy.host}/{REPO}:{TAG}", "--platform", "amd64",
                "-o", f"{tmp_path}/", "--retry-attempts", "3")  # fmt: skip
    assert proc.returncode == 1
    assert 1 <= stuck.injected < 10, stuck
    partial = f".{recorded(published, Arch('amd64'))['layer']['digest'].split(':')[1]}.zst.partial"
    assert leftovers(tmp_path) == [partial]  # the resume point; the threads' half-disk is gone
    assert list(tmp_path.iterdir()) == [tmp_path / partial]


def test_corrupt_layer_is_refused_and_leaves_nothing(
    published: Published, proxy: FaultProxy, tmp_path: Path
) -> None:
    want = recorded(published, Arch("amd64"))
    proxy.add("corrupt-answer", method="GET", path=BLOBS, fraction=0.7, times=1)
    proc = pull(published, f"{proxy.host}/{REPO}:{TAG}", "--platform", "amd64",
                "-o", f"{tmp_path}/")  # fmt: skip
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, proc.stderr
    assert f"expected {want['layer']['digest']}" in errors[0]
    assert "received sha256:" in errors[0]
    assert list(tmp_path.iterdir()) == []


def test_killed_pull_resumes_from_what_it_kept(
    published: Published, proxy: FaultProxy, tmp_path: Path
) -> None:
    arch = Arch("amd64")
    want = recorded(published, arch)
    size = want["layer"]["size"]
    hold = proxy.add("hold-answer", method="GET", path=BLOBS, fraction=0.6, delay=20.0)
    ref = f"{proxy.host}/{REPO}:{TAG}"
    argv = [sys.executable, "-m", "pipeline", "pull", ref, "--plain-http",
            "--platform", arch.platform, "-o", f"{tmp_path}/", "--json"]  # fmt: skip
    first = subprocess.Popen(
        argv, env=published.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert hold.fired.wait(30), "the download never reached the proxy"
        partial = tmp_path / f".{want['layer']['digest'].split(':')[1]}.zst.partial"
        deadline, last = time.monotonic() + 15, -1
        while time.monotonic() < deadline:  # wait until what arrived is on disk
            now = partial.stat().st_size if partial.exists() else 0
            if now == last and now > 0:
                break
            last = now
            time.sleep(0.5)
        first.send_signal(signal.SIGKILL)
    finally:
        first.wait(30)
    kept = partial.stat().st_size
    assert 0 < kept < size
    assert not (tmp_path / want["layer"]["title"].removesuffix(".zst")).exists()
    served_before = proxy.bytes_sent("GET", BLOBS)
    proxy.forget()
    proc = pull(published, f"{proxy.host}/{REPO}:{TAG}", "--platform", arch.platform,
                "-o", f"{tmp_path}/", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    again = proxy.bytes_sent("GET", BLOBS)
    assert result["resumedFrom"] == kept
    assert again == size - kept == result["downloaded"]
    ranged = proxy.matching("GET", BLOBS)
    assert [e.status for e in ranged] == [206]
    assert sha256sum(Path(result["path"])) == want["uncompressed"]["digest"]
    assert leftovers(tmp_path) == []
    figures(
        "kill",
        {
            "layer": size,
            "served_before_kill": served_before,
            "kept_after_kill": kept,
            "re_downloaded": again,
            "lost_in_flight": served_before - kept,
        },
    )


# What the real pull does with its files, seen from inside its own process: the os functions
# are wrapped (each still does its work) to log the file each fsync, fdatasync and rename
# concerns, named by /proc/self/fd.
_RECORD = """
import json, os, runpy, sys
calls = []
def named(fd): return os.readlink(f"/proc/self/fd/{fd}")
def wrap(name, describe):
    real = getattr(os, name)
    def call(*args, **kwargs):
        calls.append([name, *describe(*args)])
        return real(*args, **kwargs)
    setattr(os, name, call)
wrap("fsync", lambda fd: [named(fd)])
wrap("fdatasync", lambda fd: [named(fd)])
wrap("replace", lambda src, dst, **_: [os.fspath(src), os.fspath(dst)])
log, sys.argv = sys.argv[1], ["pipeline", *sys.argv[2:]]
try:
    runpy.run_module("pipeline", run_name="__main__")
finally:
    open(log, "w").write(json.dumps(calls))
"""


def pull_recorded(
    published: Published, tmp_path: Path, *args: str
) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    log = tmp_path.parent / f"{tmp_path.name}.calls.json"
    argv = [sys.executable, "-c", _RECORD, str(log), "pull", "--plain-http", *args]
    proc = subprocess.run(argv, env=published.env(), capture_output=True, text=True,
                          timeout=CLI_TIMEOUT, check=False)  # fmt: skip
    calls: list[list[str]] = json.loads(log.read_text())
    return proc, calls


@pytest.mark.parametrize("keep", [False, True], ids=["qcow2", "keep-compressed"])
def test_output_and_its_directory_entry_are_durable_before_it_appears(
    published: Published, proxy: FaultProxy, tmp_path: Path, keep: bool
) -> None:
    """The file is fsynced before it is renamed into place, the directory after; the partial
    .zst (only a resume point when the qcow2 is the output) is not fsynced."""
    want = recorded(published, Arch("amd64"))
    name = want["layer"]["title"] if keep else want["layer"]["title"].removesuffix(".zst")
    out = tmp_path / name
    proc, calls = pull_recorded(
        published, tmp_path, f"{proxy.host}/{REPO}:{TAG}", "--platform", "amd64",
        "-o", f"{tmp_path}/", *(["--keep-compressed"] if keep else []),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert sha256sum(out) == want["layer" if keep else "uncompressed"]["digest"]
    renames = [i for i, c in enumerate(calls) if c[0] == "replace" and c[2] == str(out)]
    assert len(renames) == 1, calls
    renamed = calls[renames[0]][1]
    assert Path(renamed).parent == tmp_path and renamed != str(out)
    synced = [i for i, c in enumerate(calls) if c[0] == "fsync" and c[1] == renamed]
    assert synced and synced[-1] < renames[0], calls
    after = [c for c in calls[renames[0] + 1 :] if c[0] == "fsync"]
    assert ["fsync", str(tmp_path)] in after, calls
    if not keep:
        partial = tmp_path / f".{want['layer']['digest'].split(':')[1]}.zst.partial"
        assert not [c for c in calls if c[0] in ("fsync", "fdatasync") and c[1] == str(partial)]
    assert leftovers(tmp_path) == []


# A pull that reports, at its exit, the top-level packages it imported.
_IMPORTED = """
import json, runpy, ssl, sys
log, sys.argv = sys.argv[1], ["pipeline", *sys.argv[2:]]
trust, made = ssl.create_default_context, []
ssl.create_default_context = lambda *a, **k: made.append(1) or trust(*a, **k)
try:
    runpy.run_module("pipeline", run_name="__main__")
finally:
    modules = sorted({m.split(".")[0] for m in sys.modules})
    open(log, "w").write(json.dumps({"modules": modules, "trust": len(made)}))
"""


def test_a_pull_imports_only_what_it_uses(
    published: Published, proxy: FaultProxy, tmp_path: Path
) -> None:
    """Without a key, a live display or a manifest file, `pull` loads neither cryptography,
    rich, yaml nor jsonschema: their imports were 0.13 s of the pull's CPU (issue 17), paid
    by each Lima start. Other commands still import them where they are used. From a
    plain-HTTP registry it builds no TLS trust either (the system's store: 0.05-0.1 s)."""
    log = tmp_path.parent / f"{tmp_path.name}.imported.json"
    argv = [sys.executable, "-c", _IMPORTED, str(log), "pull", f"{proxy.host}/{REPO}:{TAG}",
            "--plain-http", "--platform", "amd64", "-o", f"{tmp_path}/"]  # fmt: skip
    proc = subprocess.run(argv, env=published.env(), capture_output=True, text=True,
                          timeout=CLI_TIMEOUT, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    found = json.loads(log.read_text())
    imported = set(found["modules"])
    assert {"pipeline", "requests", "zstandard"} <= imported  # the log is the pull's own
    assert not imported & {"cryptography", "rich", "yaml", "jsonschema"}, sorted(imported)
    assert found["trust"] == 0


# -- artifacts this project did not publish ---------------------------------------------------


@pytest.fixture(scope="module")
def seed_layer(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    return zstd_cli_layer(tmp_path_factory.mktemp("seed"))


def test_seed_shaped_artifact_pulls(
    published: Published, proxy: FaultProxy, tmp_path: Path, seed_layer: tuple[bytes, bytes]
) -> None:
    plain, layer = seed_layer
    repo = "centos/fedora-bootc-cloud-disk"
    push_seed_artifact(
        published.registry.host, repo, "eln", layer, "fedora-bootc-cloud-eln.qcow2.zst"
    )
    proc = pull(published, f"{proxy.host}/{repo}:eln", "-o", f"{tmp_path}/", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["path"] == str(tmp_path / "fedora-bootc-cloud-eln.qcow2")
    assert result["platform"] is None
    assert sha256sum(Path(result["path"])) == "sha256:" + hashlib.sha256(plain).hexdigest()
    assert leftovers(tmp_path) == []


def test_plain_manifest_without_title_gets_a_name(
    published: Published, proxy: FaultProxy, tmp_path: Path, seed_layer: tuple[bytes, bytes]
) -> None:
    plain, layer = seed_layer
    repo = "someone/untitled"
    push_seed_artifact(published.registry.host, repo, "v1", layer, None)
    proc = pull(published, f"{proxy.host}/{repo}:v1", "--platform", "arm64", "-o", f"{tmp_path}/")
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["untitled.qcow2"]
    assert sha256sum(tmp_path / "untitled.qcow2") == "sha256:" + hashlib.sha256(plain).hexdigest()


@pytest.mark.parametrize(
    "title", ["../escape.qcow2.zst", "/tmp/abs.qcow2.zst", "a/b.qcow2.zst", "..", ".hidden.zst"]
)
def test_unsafe_titles_are_refused(
    published: Published,
    proxy: FaultProxy,
    tmp_path: Path,
    seed_layer: tuple[bytes, bytes],
    title: str,
) -> None:
    _, layer = seed_layer
    repo = "evil/titles"
    tag = "t" + hashlib.sha256(title.encode()).hexdigest()[:8]
    push_seed_artifact(published.registry.host, repo, tag, layer, title)
    out = tmp_path / "out"
    out.mkdir()
    proc = pull(published, f"{proxy.host}/{repo}:{tag}", "-o", f"{out}/")
    assert proc.returncode == 1
    assert "refusing layer title" in proc.stderr
    assert list(out.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert proxy.count("GET", BLOBS) == 0  # refused before a byte of the layer was fetched


def test_wrong_uncompressed_annotation_is_refused(
    published: Published, proxy: FaultProxy, tmp_path: Path, seed_layer: tuple[bytes, bytes]
) -> None:
    _, layer = seed_layer
    repo = "someone/annotated"
    push_seed_artifact(published.registry.host, repo, "base", layer, "d.qcow2.zst")
    document = seed_manifest(layer, "sha256:" + hashlib.sha256(layer).hexdigest(), "d.qcow2.zst")
    lie = "sha256:" + "0" * 64
    document["layers"][0]["annotations"]["org.bootc-pipeline.disk.uncompressed-digest"] = lie
    push_manifest(published.registry.host, repo, "lie", document)
    proc = pull(published, f"{proxy.host}/{repo}:lie", "-o", f"{tmp_path}/")
    assert proc.returncode == 1
    assert f"expected {lie}, received sha256:" in proc.stderr
    assert list(tmp_path.iterdir()) == []


# -- registries as users meet them: anonymous tokens, credentials, redirects to blob storage ----


@pytest.fixture(params=[GHCR, QUAY], ids=lambda p: p.name)
def front(published: Published, request: pytest.FixtureRequest) -> Iterator[RegistryFront]:
    """ghcr.io or quay.io emulated (tests/support/ecosystem.py) in front of the release."""
    profile: Profile = request.param
    emulated = RegistryFront(
        published.registry.host, profile, username="octocat", password="ghp_" + "s3cr3t" * 6
    )
    try:
        yield emulated
    finally:
        emulated.close()


def test_public_image_pulls_with_an_anonymous_token(
    published: Published, front: RegistryFront, tmp_path: Path
) -> None:
    front.public.update({REPO, f"{REPO}-os"})  # the release and its OS image (read back too)
    proc = pull(published, f"{front.host}/{REPO}:{TAG}", "--platform", "arm64",
                "-o", f"{tmp_path}/", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    path = Path(json.loads(proc.stdout)["path"])
    assert sha256sum(path) == recorded(published, Arch("arm64"))["uncompressed"]["digest"]
    assert front.token_requests, "no token was asked for"
    scopes = set()
    for query, authenticated in front.token_requests:
        assert not authenticated
        assert query["service"] == [front.profile.service]
        scopes.add(query["scope"][0])
    assert scopes == {f"repository:{REPO}:pull", f"repository:{REPO}-os:pull"}
    assert front.store.seen, "the blob was not fetched from blob storage"
    assert all(seen.authorization is None for seen in front.store.seen)


def test_private_image_needs_credentials_and_they_stay_with_the_registry(
    published: Published, front: RegistryFront, tmp_path: Path
) -> None:
    ref = f"{front.host}/{REPO}:{TAG}"
    anonymous = pull(published, ref, "--platform", "amd64", "-o", f"{tmp_path}/")
    assert anonymous.returncode == 1
    assert "authentication failed" in anonymous.stderr and "401" in anonymous.stderr
    assert list(tmp_path.iterdir()) == []

    env = cli_env(tmp_path / "home", chunk_size=1 << 20, extra={
        "BOOTC_PIPELINE_REGISTRY_USERNAME": front.username,
        "BOOTC_PIPELINE_REGISTRY_PASSWORD": front.password,
    })  # fmt: skip
    out = tmp_path / "out"
    unnamed = pull(published, ref, "--platform", "amd64", "-o", f"{out}/", env=env)
    assert unnamed.returncode == 1  # the environment's are --registry's only: not sent here
    assert f"log in to {front.host}" in unnamed.stderr
    assert not any(authenticated for _, authenticated in front.token_requests)
    proc = pull(published, ref, "--platform", "amd64", "-o", f"{out}/", "--json",
                "--registry", front.host, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (
        sha256sum(Path(json.loads(proc.stdout)["path"]))
        == recorded(published, Arch("amd64"))["uncompressed"]["digest"]
    )
    assert any(authenticated for _, authenticated in front.token_requests)
    assert front.store.seen and all(seen.authorization is None for seen in front.store.seen)
    assert front.password not in proc.stdout + proc.stderr + anonymous.stderr


def test_credentials_from_docker_config_as_for_push(
    published: Published, front: RegistryFront, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env = cli_env(home, chunk_size=1 << 20)
    auth = base64.b64encode(f"{front.username}:{front.password}".encode()).decode()
    config = {"auths": {front.host: {"auth": auth}}}
    (Path(env["DOCKER_CONFIG"]) / "config.json").write_text(json.dumps(config))
    proc = pull(published, f"{front.host}/{REPO}:{TAG}", "--platform", "amd64",
                "-o", f"{tmp_path}/", env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert any(authenticated for _, authenticated in front.token_requests)


# -- lima REF: a verified local copy and a template around it ----------------------------------


def lima(
    published: Published, reference: str, *args: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pipeline", "lima", reference, "--plain-http", *args]
    return subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False
    )


def test_lima_template_lists_both_architectures_from_a_verified_cache(
    published_any: Published, proxy_any: FaultProxy, tmp_path: Path
) -> None:
    env = cli_env(
        tmp_path / "home", chunk_size=1 << 20, extra={"XDG_CACHE_HOME": str(tmp_path / "cache")}
    )
    template = tmp_path / "fedora.yaml"
    ref = f"{proxy_any.host}/{REPO}:{TAG}"
    proc = lima(published_any, ref, "--platform", "all", "-o", str(template), "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    document = yaml.safe_load(template.read_text())
    by_arch = {image["arch"]: image for image in document["images"]}
    assert sorted(by_arch) == ["aarch64", "x86_64"]
    for arch in (Arch("amd64"), Arch("arm64")):
        image = by_arch[arch.lima]
        location = Path(image["location"])
        assert location.parent == tmp_path / "cache" / "bootc-pipeline" / "disks"
        want = recorded(published_any, arch)["uncompressed"]["digest"]
        assert image["digest"] == want == sha256sum(location)  # what Lima checks, on that file
    # The same settings as the publish-time template: one function makes both.
    published_template = yaml.safe_load(
        (published_any.work.variant_dir / "lima-fedora-40.yaml").read_text()
    )
    assert {k: v for k, v in document.items() if k != "images"} == {
        k: v for k, v in published_template.items() if k != "images"
    }
    assert "limactl start" in template.read_text()

    proxy_any.forget()
    again = lima(published_any, ref, "--platform", "all", "-o", str(template), "--json", env=env)
    assert again.returncode == 0, again.stderr
    assert [i["downloaded"] for i in json.loads(again.stdout)["images"]] == [0, 0]
    assert proxy_any.count("GET", BLOBS) == 0  # the cache answered


def test_lima_start_says_how_to_install_lima_when_missing(
    published: Published, proxy: FaultProxy, tmp_path: Path
) -> None:
    env = cli_env(
        tmp_path / "home", chunk_size=1 << 20, extra={"XDG_CACHE_HOME": str(tmp_path / "c")}
    )
    template = tmp_path / "t.yaml"
    proc = lima(published, f"{proxy.host}/{REPO}:{TAG}", "--platform", "amd64",
                "-o", str(template), "--start", env=env)  # fmt: skip
    assert proc.returncode == 1
    assert "limactl is not on PATH" in proc.stderr
    assert "install Lima (https://lima-vm.io/docs/installation/" in proc.stderr
    assert f"limactl start {template}" in proc.stderr
    assert template.is_file()


def test_lima_start_runs_limactl_on_the_template(
    published: Published, proxy: FaultProxy, tmp_path: Path
) -> None:
    """limactl is not installed here: a recording stand-in on PATH shows what would run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "limactl.args"
    fake = bin_dir / "limactl"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\n')
    fake.chmod(0o755)
    env = cli_env(
        tmp_path / "home", chunk_size=1 << 20, extra={"XDG_CACHE_HOME": str(tmp_path / "c")}
    )
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    template = tmp_path / "t.yaml"
    proc = lima(published, f"{proxy.host}/{REPO}:{TAG}", "--platform", "amd64",
                "-o", str(template), "--start", env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert record.read_text().split() == ["start", str(template)]
