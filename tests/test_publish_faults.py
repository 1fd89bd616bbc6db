"""Publishing through faults: the real CLI (`python -m pipeline push`) over a synthetic work
directory, against a real docker-registry behind a fault-injecting loopback proxy.

Whatever happens, a release is either complete and correct or not visible at all, and a re-run
finishes the job without sending again what already arrived. Each publish is judged by skopeo
and curl + sha256sum (tests/support/published.py) against a clean run's digests; bytes are
counted at the proxy. The figures (faults injected per kind, publishes that ended correct, bytes
re-sent on resume) are written to $BOOTC_PIPELINE_FIGURES (default
/tmp/bootc-pipeline-publish-figures.json) and printed at the end of the module.

Every fault rule is bounded in count and time, every wait has a timeout, all traffic stays on
127.0.0.1. No container engine is needed.
"""

from __future__ import annotations

import collections
import json
import math
import os
import signal
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli import main as cli
from pipeline.core.arch import Arch
from pipeline.core.mediatypes import EMPTY_JSON
from pipeline.registry import RegistryClient
from tests.factories import manifest_data, write_manifest
from tests.support.clients import count_clients
from tests.support.faultproxy import FaultProxy, Rule
from tests.support.published import Access, ReleaseState, snapshot
from tests.support.registry import RunningRegistry, start_registry
from tests.support.workdirs import (
    DiskCache,
    Workdir,
    cli_env,
    error_lines,
    make_workdir,
    push_argv,
    run_push,
    start_push,
)

pytestmark = pytest.mark.integration

CHUNK = 256 * 1024
REPO = "bootc-lima/fedora-bootc-lima"
SIBLING_REPO = "bootc-lima/centos-bootc-lima"
TAGS = ("40", "40.1.0", "latest")
AMD64, ARM64 = Arch("amd64"), Arch("arm64")
RULE_SECONDS = 60.0  # no rule outlives a minute
FIGURES_PATH = Path(
    os.environ.get("BOOTC_PIPELINE_FIGURES", "/tmp/bootc-pipeline-publish-figures.json")
)
PATCH = f"/v2/{REPO}/blobs/uploads/"  # the disks' (the OS image's go to REPO-os first)
COMMIT = r"/blobs/uploads/.*[?&]digest="
MANIFESTS = "/manifests/"
BLOBS = "/blobs/sha256:"


# -- figures for the closing note -----------------------------------------------------------------


@dataclass
class Figures:
    faults: collections.Counter[str] = field(default_factory=collections.Counter)
    publishes: int = 0  # publishes expected to succeed
    correct: int = 0  # ... that exited 0 and were judged equal to the clean run
    refused: int = 0  # publishes expected to fail (budget exceeded) that failed cleanly
    runs: list[dict[str, Any]] = field(default_factory=list)
    resumes: list[dict[str, Any]] = field(default_factory=list)

    def count_faults(self, proxy: FaultProxy) -> dict[str, int]:
        injected = proxy.injected()
        self.faults.update(injected)
        return injected

    def as_json(self) -> dict[str, Any]:
        return {
            "faults_injected_per_kind": dict(sorted(self.faults.items())),
            "publishes_expected_to_succeed": self.publishes,
            "publishes_ended_correct": self.correct,
            "publishes_refused_cleanly_over_budget": self.refused,
            "runs": self.runs,
            "resumes": self.resumes,
        }


@pytest.fixture(scope="module")
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    found = Figures()
    yield found
    data = found.as_json()
    FIGURES_PATH.write_text(json.dumps(data, indent=2) + "\n")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_sep("-", f"publish figures ({FIGURES_PATH})")
        reporter.write_line(f"faults injected per kind: {data['faults_injected_per_kind']}")
        reporter.write_line(
            f"publishes ended correct: {found.correct}/{found.publishes}; "
            f"over-budget publishes refused cleanly: {found.refused}"
        )
        for resume in found.resumes:
            reporter.write_line(f"resume: {resume}")


# -- registries, proxies, work directories --------------------------------------------------------


@dataclass
class Setup:
    registry: RunningRegistry
    proxy: FaultProxy
    home: Path

    @property
    def access(self) -> Access:
        """The judges go straight to the registry, not through the proxy."""
        return Access(self.registry.host)

    def env(self) -> dict[str, str]:
        return cli_env(self.home, chunk_size=CHUNK)


def _setup(directory: Path, *, buffer_requests: bool = True) -> Iterator[Setup]:
    registry = start_registry(directory / "registry")
    try:
        with FaultProxy(registry.host, buffer_requests=buffer_requests) as proxy:
            yield Setup(registry, proxy, directory / "home")
    finally:
        registry.stop()


@pytest.fixture(scope="module")
def disks(tmp_path_factory: pytest.TempPathFactory) -> DiskCache:
    return DiskCache(tmp_path_factory.mktemp("disks"))


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Setup]:
    """A registry of its own (the manifests fix the repository) behind a fault proxy."""
    yield from _setup(tmp_path)


@pytest.fixture
def workdir(tmp_path: Path, disks: DiskCache) -> Workdir:
    return make_workdir(tmp_path / "work", disks)


def next_version_manifest(tree: Path) -> Path:
    """fedora-40 at version 40.2.0 (same repository and moving tags), in a tree of its own."""
    tree.mkdir(parents=True, exist_ok=True)
    data = manifest_data(version="40.2.0", tags=["40.2.0"])
    return write_manifest(tree, data, name="fedora-40")


def patches(size: int) -> int:
    return math.ceil(size / CHUNK)


def layer_bytes(work: Workdir) -> int:
    return sum(d.compressed.size for d in work.disks.values())


# -- the clean run every faulty one is compared with ----------------------------------------------


@dataclass
class Clean:
    setup: Setup
    work: Workdir
    state: ReleaseState
    fresh_bytes: int  # request-body bytes a fresh publish sends through the proxy
    report: dict[str, Any]


@pytest.fixture(scope="module")
def clean(
    tmp_path_factory: pytest.TempPathFactory, disks: DiskCache, figures: Figures
) -> Iterator[Clean]:
    directory = tmp_path_factory.mktemp("clean")
    for setup in _setup(directory):
        work = make_workdir(directory / "work", disks)
        proc = run_push(push_argv(work, setup.proxy.host), setup.env())
        assert proc.returncode == 0, proc.stderr[-4000:]
        tagged = snapshot(setup.access, REPO)
        assert sorted(tagged) == sorted(TAGS)
        state = tagged["40.1.0"]
        assert all(other == state for other in tagged.values())
        fresh_bytes = setup.proxy.bytes_received()
        figures.publishes += 1
        figures.correct += 1
        figures.runs.append(
            {
                "name": "clean",
                "exit": 0,
                "bytes_sent": fresh_bytes,
                "layer_bytes": layer_bytes(work),
            }
        )
        report = json.loads(work.report_path.read_text())
        yield Clean(setup, work, state, fresh_bytes, report)


def judge_like_clean(setup: Setup, clean: Clean, tags: tuple[str, ...] = TAGS) -> None:
    tagged = snapshot(setup.access, REPO)
    assert sorted(tagged) == sorted(tags)
    for tag, state in tagged.items():
        assert state == clean.state, f"tag {tag} names {state.index}, clean run {clean.state.index}"


def publish_through_faults(
    name: str,
    setup: Setup,
    work: Workdir,
    clean: Clean,
    figures: Figures,
    rules: list[Rule],
    *extra: str,
) -> subprocess.CompletedProcess[str]:
    """Publish through the proxy with `rules`; it must end exit 0 and equal to the clean run."""
    figures.publishes += 1
    started = time.monotonic()
    proc = run_push(push_argv(work, setup.proxy.host, *extra), setup.env())
    injected = figures.count_faults(setup.proxy)
    figures.runs.append(
        {
            "name": name,
            "exit": proc.returncode,
            "faults": injected,
            "bytes_sent": setup.proxy.bytes_received(),
            "layer_bytes": layer_bytes(work),
            "seconds": round(time.monotonic() - started, 1),
        }
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    for rule in rules:
        assert rule.injected == rule.times, f"{rule} did not fire as planned"
    judge_like_clean(setup, clean)
    report = json.loads(work.report_path.read_text())
    assert report["index"]["digest"] == clean.state.index
    figures.correct += 1
    return proc


def test_clean_publish_is_complete(clean: Clean) -> None:
    assert sorted(clean.state.manifests) == ["linux/amd64", "linux/arm64"]
    for arch, disk in clean.work.disks.items():
        assert clean.state.blobs[disk.compressed.digest] == disk.compressed.size
        layer = clean.report["architectures"][arch.value]["layer"]
        assert layer["digest"] == disk.compressed.digest
        assert layer["bytesSent"] == disk.compressed.size  # no fault: nothing sent twice
    assert clean.report["index"]["digest"] == clean.state.index


def test_rerun_after_a_complete_publish_sends_no_blob(clean: Clean) -> None:
    proxy = clean.setup.proxy
    proxy.forget()
    proc = run_push(push_argv(clean.work, proxy.host), clean.setup.env())
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proxy.count("PATCH", PATCH) == 0 and proxy.count("POST") == 0
    assert proxy.bytes_received("PATCH", PATCH) == 0
    assert proc.stderr.count("layer skipped, 0 bytes sent") == 2
    judge_like_clean(clean.setup, clean)


def test_blob_in_a_sibling_repository_is_mounted(
    clean: Clean, tmp_path: Path, disks: DiskCache
) -> None:
    """centos-stream9's disks here are byte-identical to fedora-40's: they are mounted."""
    proxy = clean.setup.proxy
    proxy.forget()
    work = make_workdir(
        tmp_path / "centos", disks, variant="centos-stream9", layer_name="centos-bootc-lima-9.1.0"
    )
    proc = run_push(push_argv(work, proxy.host), clean.setup.env())
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proxy.count("PATCH", PATCH) == 0 and proxy.bytes_received("PATCH", PATCH) == 0
    assert proc.stderr.count(f"layer mounted from {REPO}, 0 bytes sent") == 2
    mounts = [
        e
        for e in proxy.log
        if e.method == "POST"
        and urllib.parse.parse_qs(urllib.parse.urlsplit(e.path).query).get("from") == [REPO]
    ]
    assert len(mounts) >= 2 and all(e.status == 201 for e in mounts)
    tagged = snapshot(clean.setup.access, SIBLING_REPO)
    assert sorted(tagged) == ["9", "9.1.0", "latest"]
    layers = {d.compressed.digest for d in clean.work.disks.values()}
    assert layers <= set(next(iter(tagged.values())).blobs)


# -- each kind of fault, bounded in count and time ------------------------------------------------


def _scenarios() -> dict[str, tuple[list[dict[str, Any]], list[str]]]:
    """name -> (rules as FaultProxy.add keyword arguments, extra CLI arguments)."""
    n = patches(3 * 1024 * 1024)  # PATCHes per architecture, at least
    retry_after = {"Retry-After": "1"}
    return {
        "5xx": (
            [
                dict(action="respond", status=503, method="PATCH", path=PATCH, skip=2, times=2),
                dict(action="respond", status=500, method="PATCH", path=PATCH, skip=n + 3),
                dict(action="respond", status=500, method="GET", path=PATCH),
                dict(action="respond", status=502, method="POST", path=PATCH),
                dict(action="respond", status=504, method="HEAD", path=BLOBS),
                dict(action="respond", status=503, method="PUT", path=MANIFESTS, times=2),
            ],
            [],
        ),
        "429": (
            [
                dict(
                    action="respond", status=429, headers=retry_after, method="HEAD", path=MANIFESTS
                ),
                dict(
                    action="respond",
                    status=429,
                    headers=retry_after,
                    method="PATCH",
                    path=PATCH,
                    skip=4,
                ),
                dict(
                    action="respond",
                    status=429,
                    headers=retry_after,
                    method="PUT",
                    path=MANIFESTS,
                    skip=1,
                ),
            ],
            [],
        ),  # fmt: skip
        "reset-mid-body": (
            [
                dict(action="reset", method="PATCH", path=PATCH, skip=3, times=2, fraction=0.5),
                dict(action="reset", method="PATCH", path=PATCH, skip=n + 5, fraction=0.3),
                dict(action="reset", method="PUT", path=MANIFESTS, skip=1, fraction=0.5),
                dict(action="reset", method="POST", path=PATCH, skip=1, fraction=0.0),
            ],
            [],
        ),
        "stall": (
            [
                dict(action="stall", method="PATCH", path=PATCH, skip=5, delay=2.5),
                dict(action="stall", method="HEAD", path=MANIFESTS, delay=2.5),
                dict(action="stall", method="PUT", path=COMMIT, skip=1, delay=2.5),
            ],
            ["--read-timeout", "1"],
        ),
        "truncate": (
            [
                dict(action="truncate", method="PATCH", path=PATCH, skip=6, fraction=0.5),
                dict(action="truncate", method="GET", path=PATCH, fraction=0.5),
                dict(action="truncate", method="PUT", path=MANIFESTS, fraction=0.3),
                dict(action="truncate", method="HEAD", path=BLOBS, skip=2, fraction=0.5),
            ],
            [],
        ),
    }


@pytest.mark.parametrize("kind", list(_scenarios()))
def test_publish_through_faults_ends_equal_to_a_clean_run(
    kind: str, fresh: Setup, workdir: Workdir, clean: Clean, figures: Figures
) -> None:
    specs, extra = _scenarios()[kind]
    rules = [fresh.proxy.add(**{"seconds": RULE_SECONDS, "label": kind, **spec}) for spec in specs]
    publish_through_faults(kind, fresh, workdir, clean, figures, rules, *extra)


def test_registry_restarted_mid_upload(
    fresh: Setup, workdir: Workdir, clean: Clean, figures: Figures
) -> None:
    """The registry goes down between two chunks and comes back a second later."""
    starters: list[threading.Thread] = []

    def restart() -> None:
        fresh.registry.stop()

        def start_later() -> None:
            time.sleep(1.0)
            fresh.registry.start()

        starters.append(threading.Thread(target=start_later, daemon=True))
        starters[-1].start()

    rule = fresh.proxy.add(
        "hook", method="PATCH", path=PATCH, skip=5, hook=restart, seconds=RULE_SECONDS,
        label="registry-restart",
    )  # fmt: skip
    try:
        publish_through_faults(
            "registry-restart", fresh, workdir, clean, figures, [rule], "--retry-attempts", "10"
        )
    finally:
        for starter in starters:
            starter.join(30)


# -- killed mid-upload, then re-run ----------------------------------------------------------------


@pytest.mark.parametrize("buffered", [True, False], ids=["buffering-proxy", "streaming-proxy"])
def test_killed_publish_resumes_on_rerun(
    buffered: bool, tmp_path: Path, workdir: Workdir, clean: Clean, figures: Figures
) -> None:
    """SIGKILL in the middle of arm64's 5th chunk (amd64 is complete), then the same command.

    (PATCHes: the 2-byte empty config, amd64's chunks, then arm64's.)

    With a request-buffering proxy in front (nginx's default), the half chunk never reached
    the registry: the journal's upload URL is current and the re-run sends only what is
    missing. Straight to docker-registry 2.8 (a streaming proxy) the half chunk is appended,
    the recorded URL's offset is behind the session's, the registry cancels it and arm64 is
    sent again whole; still less than a fresh publish (amd64 is skipped), and still correct.
    """
    for setup in _setup(tmp_path / "kill", buffer_requests=buffered):
        amd64_size = workdir.disks[AMD64].compressed.size
        arm64_size = workdir.disks[ARM64].compressed.size
        held = 4 * CHUNK  # arm64 chunks the registry holds when the kill comes
        hold = setup.proxy.add(
            "hold", method="PATCH", path=PATCH, skip=1 + patches(amd64_size) + 4, fraction=0.5,
            delay=30.0, seconds=RULE_SECONDS, label="kill-mid-upload",
        )  # fmt: skip
        argv = push_argv(workdir, setup.proxy.host)
        process = start_push(argv, setup.env(), tmp_path / "logs" / "killed")
        try:
            assert hold.fired.wait(60), "the publish never reached arm64's 5th chunk"
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(30)
        assert hold.finished.wait(30)  # the proxy saw the client go (and, streaming, the registry)
        figures.count_faults(setup.proxy)
        killed_arm64 = setup.proxy.bytes_received("PATCH", PATCH) - amd64_size - len(EMPTY_JSON)
        assert not workdir.journal(AMD64).exists()  # committed: forgotten
        journal = json.loads(workdir.journal(ARM64).read_text())
        (entry,) = journal["uploads"].values()
        assert entry["offset"] == held
        assert entry["location"].startswith(f"http://{setup.proxy.host}/v2/{REPO}/blobs/uploads/")
        assert "@" not in urllib.parse.urlsplit(entry["location"]).netloc

        setup.proxy.forget()
        figures.publishes += 1
        proc = run_push(argv, setup.env())
        assert proc.returncode == 0, proc.stderr[-4000:]
        judge_like_clean(setup, clean)
        figures.correct += 1
        rerun_layer = setup.proxy.bytes_received("PATCH", PATCH)
        rerun_total = setup.proxy.bytes_received()
        assert rerun_total < clean.fresh_bytes
        assert "amd64: layer skipped, 0 bytes sent" in proc.stderr
        assert not workdir.journal(ARM64).exists()
        resent = killed_arm64 - (arm64_size - rerun_layer)  # sent by both runs
        figures.resumes.append(
            {
                "proxy": "buffering" if buffered else "streaming",
                "arm64_blob_bytes": arm64_size,
                "held_by_registry_at_kill": held,
                "sent_by_killed_run_for_arm64": killed_arm64,
                "rerun_layer_bytes": rerun_layer,
                "rerun_total_bytes": rerun_total,
                "fresh_publish_bytes": clean.fresh_bytes,
                "bytes_resent": resent,
            }
        )
        if buffered:
            assert rerun_layer == arm64_size - held
            assert f"resumed at byte {held} of an earlier run's upload" in proc.stderr
        else:
            assert rerun_layer <= arm64_size
            assert "no longer had an earlier run's upload" in proc.stderr


# -- over the retry budget: nothing tagged, nothing moved -----------------------------------------


@pytest.mark.parametrize("where", ["layer", "index"])
def test_fault_over_the_retry_budget_leaves_tags_alone(
    where: str, fresh: Setup, tmp_path: Path, disks: DiskCache, clean: Clean, figures: Figures
) -> None:
    """40.1.0 is published; 40.2.0 (new disks) then fails for good: its layer upload, or its
    index. One error line, exit 1; every tag still names 40.1.0's complete index."""
    first = make_workdir(tmp_path / "first", disks)
    proc = run_push(push_argv(first, fresh.registry.host), fresh.env())
    assert proc.returncode == 0, proc.stderr[-4000:]
    before = snapshot(fresh.access, REPO)
    assert sorted(before) == sorted(TAGS)

    manifest = next_version_manifest(tmp_path / "tree")
    second = make_workdir(
        tmp_path / "second", disks, layer_name="fedora-bootc-lima-40.2.0",
        seeds={AMD64: 11, ARM64: 12},
    )  # fmt: skip
    if where == "layer":
        skip = 1 + patches(second.disks[AMD64].compressed.size) + 2  # 1: the empty config
        spec: dict[str, Any] = dict(method="PATCH", path=PATCH, skip=skip)
    else:
        spec = dict(
            method="PUT", path=rf"/v2/{REPO}/manifests/sha256:", skip=2
        )  # after both arch manifests
    rule = fresh.proxy.add(
        "respond", status=503, times=50, seconds=RULE_SECONDS, label="over-budget-5xx", **spec
    )
    argv = push_argv(second, fresh.proxy.host, "--retry-attempts", "3", manifest=manifest)
    proc = run_push(argv, fresh.env())
    figures.count_faults(fresh.proxy)
    figures.runs.append({"name": f"over-budget-{where}", "exit": proc.returncode})

    assert proc.returncode == 1, proc.stderr[-4000:]
    (line,) = error_lines(proc.stderr)
    assert "Traceback" not in proc.stderr
    assert fresh.proxy.host in line and "503" in line
    assert 0 < rule.injected < rule.times
    assert snapshot(fresh.access, REPO) == before  # nothing created, nothing moved
    figures.refused += 1


# -- release tags: immutable unless --force; moving tags move --------------------------------------


def test_release_tag_is_immutable_unless_forced(
    fresh: Setup, workdir: Workdir, tmp_path: Path
) -> None:
    host = fresh.registry.host
    proc = run_push(push_argv(workdir, host), fresh.env())
    assert proc.returncode == 0, proc.stderr[-4000:]
    first = snapshot(fresh.access, REPO)
    first_index = first["40.1.0"].index

    other = push_argv(workdir, host, created="2026-02-02T00:00:00Z")
    proc = run_push(other, fresh.env())
    assert proc.returncode == 2, proc.stderr[-4000:]
    (line,) = error_lines(proc.stderr)
    assert f"{host}/{REPO}:40.1.0 already names {first_index}" in line and "immutable" in line
    assert "--force" in proc.stderr
    assert snapshot(fresh.access, REPO) == first

    proc = run_push([*other, "--force"], fresh.env())
    assert proc.returncode == 0, proc.stderr[-4000:]
    forced = snapshot(fresh.access, REPO)
    assert sorted(forced) == sorted(TAGS)
    assert {s.index for s in forced.values()} == {forced["40.1.0"].index}
    assert forced["40.1.0"].index != first_index

    manifest = next_version_manifest(tmp_path / "tree")
    later = "2026-03-03T00:00:00Z"  # made after the forced one: moving tags move forwards only
    proc = run_push(push_argv(workdir, host, manifest=manifest, created=later), fresh.env())
    assert proc.returncode == 0, proc.stderr[-4000:]
    moved = snapshot(fresh.access, REPO)
    assert sorted(moved) == ["40", "40.1.0", "40.2.0", "latest"]
    assert moved["40.1.0"] == forced["40.1.0"]  # the older release tag stays
    assert moved["40"] == moved["latest"] == moved["40.2.0"] != forced["40"]


# -- racing publishers -----------------------------------------------------------------------------


def test_racing_publishers_leave_every_tag_on_a_complete_index(
    fresh: Setup, tmp_path: Path, disks: DiskCache, figures: Figures
) -> None:
    """Three publishes of 40.1.0 at once, each with another `created` (so another index):
    whoever wins, all tags end on one complete index, and the losers say so: exit 2 "already
    names" if the winner's tag was there before they sent anything, else exit 3 (TagRaceError)
    whichever check saw it; never exit 2 once something was sent."""
    runs = []
    for i in range(3):
        work = make_workdir(tmp_path / f"work{i}", disks)
        argv = push_argv(work, fresh.registry.host, created=f"2026-03-0{i + 1}T00:00:00Z")
        runs.append((work, start_push(argv, fresh.env(), tmp_path / "logs" / f"run{i}")))
    codes = []
    for i, (_, process) in enumerate(runs):
        codes.append(process.wait(120))
        stderr = (tmp_path / "logs" / f"run{i}.err").read_text()
        assert "Traceback" not in stderr
        if codes[-1] != 0:
            (line,) = error_lines(stderr)
            sent = "upload " in stderr or "layer " in stderr
            if codes[-1] == 2:
                assert "already names" in line and "immutable" in line and not sent, stderr
            else:
                assert codes[-1] == 3, stderr[-3000:]
                assert "was tagged by another publisher while this one ran" in line
    figures.runs.append({"name": "race", "exits": codes})
    assert 0 in codes, codes

    tagged = snapshot(fresh.access, REPO)  # every tag names a complete index
    assert sorted(tagged) == sorted(TAGS)
    assert len({state.index for state in tagged.values()}) == 1, tagged  # the same one
    layers = {d.compressed.digest for d in runs[0][0].disks.values()}
    for state in tagged.values():
        assert sorted(state.manifests) == ["linux/amd64", "linux/arm64"]
        assert layers <= set(state.blobs)
    winners = {
        json.loads(work.report_path.read_text())["index"]["digest"]
        for (work, _), code in zip(runs, codes, strict=True)
        if code == 0
    }
    assert tagged["40.1.0"].index in winners


def _raced(
    fresh: Setup, workdir: Workdir, figures: Figures, hook: Callable[[], None], **spec: Any
) -> tuple[subprocess.CompletedProcess[str], str]:
    """A push during which `hook` (another publisher) runs once, at the PUT `spec` names: it
    exits 3 with one error line (returned with the run)."""
    rule = fresh.proxy.add(
        "hook", method="PUT", times=1, hook=hook, seconds=RULE_SECONDS, label="tag-race", **spec
    )
    proc = run_push(push_argv(workdir, fresh.proxy.host), fresh.env())
    figures.count_faults(fresh.proxy)
    assert rule.injected == 1
    assert proc.returncode == 3, proc.stderr[-4000:]
    (line,) = error_lines(proc.stderr)
    return proc, line


def test_release_tag_taken_after_sending_is_a_tag_race(
    fresh: Setup, workdir: Workdir, figures: Figures
) -> None:
    """Another publisher tags 40.1.0 while this run pushes its index (after every blob and
    manifest was sent): exit 3, TagRaceError's one line, never exit 2 ("nothing done"); the
    index stays pushed by digest and no moving tag names it."""
    host = fresh.registry.host

    def other_publisher() -> None:
        arch_manifest = next(
            e.path.rsplit("/", 1)[1]
            for e in fresh.proxy.log
            if e.method == "PUT" and f"/v2/{REPO}/manifests/sha256:" in e.path
        )
        with RegistryClient(host, plain_http=True) as client:
            theirs = client.get_manifest(REPO, arch_manifest)
            client.push_manifest(REPO, "40.1.0", theirs.body, theirs.media_type)

    path = rf"/v2/{REPO}/manifests/sha256:"
    proc, line = _raced(fresh, workdir, figures, other_publisher, path=path, skip=2)
    assert f"{fresh.proxy.host}/{REPO}:40.1.0 was tagged by another publisher" in line
    assert "upload " in proc.stderr  # it had sent its layers
    report_index = [e for e in fresh.proxy.log if e.method == "PUT" and e.status == 201
                    and f"/v2/{REPO}/manifests/" in e.path]  # fmt: skip
    assert len(report_index) >= 3  # two arch manifests and the index, by digest
    with RegistryClient(host, plain_http=True) as client:
        ours = report_index[2].path.rsplit("/", 1)[1]
        assert client.manifest_digest(REPO, ours) == ours  # pushed, complete, by digest
        assert all(client.manifest_digest(REPO, tag) != ours for tag in ("40", "latest"))


@pytest.mark.parametrize("taken", ["disk", "disk-and-os", "by-a-disk-naming-no-os-image"])
def test_a_release_tag_lost_while_tagging_takes_the_os_moving_tags_along(
    taken: str, fresh: Setup, workdir: Workdir, tmp_path: Path, disks: DiskCache, figures: Figures
) -> None:
    """Another publisher's complete 40.1.0 takes the disks' release tag while this run moves the
    OS image's moving tags (after or before its OS release tag, or with a disk naming no OS
    image): exit 3, and every tag this run set ends on the winner's release, the OS image's on
    the OS index the winner names, or back where they were when it names none. Never the
    loser's OS image (`-os:40` is the stream bootc follows) under the winner's disks (issue 15:
    the disks' release tag alone decides; the OS moving tags move only after it is read back)."""
    host = fresh.registry.host
    published = {}
    for name, data, created in (  # an earlier release at 40 and latest; the race's winner
        ("r0-40.0.9", manifest_data(version="40.0.9", tags=["r0-40.0.9"]), "2025-12-30"),
        ("b-40.1.0", manifest_data(tags=["b-40.1.0"], moving_tags=[],
                                   os_image={"origin_tag": "b-40.1.0"}), "2025-12-31"),
    ):  # fmt: skip
        (tmp_path / name).mkdir()
        other = make_workdir(tmp_path / name / "work", disks)
        manifest = write_manifest(tmp_path / name, data, name="fedora-40")
        argv = push_argv(other, host, manifest=manifest, created=f"{created}T00:00:00Z")
        proc = run_push(argv, fresh.env())
        assert proc.returncode == 0, proc.stderr[-4000:]
        published[name] = json.loads(other.report_path.read_text())["index"]["digest"]
    with RegistryClient(host, plain_http=True) as client:
        assert client.manifest_digest(REPO, "40") == published["r0-40.0.9"]
        before_os = client.manifest_digest(f"{REPO}-os", "40")
        winner = client.get_manifest(REPO, "b-40.1.0")
        winner_os = client.get_manifest(f"{REPO}-os", "b-40.1.0")
        if taken == "by-a-disk-naming-no-os-image":
            amd64 = winner.json()["manifests"][0]["digest"]
            winner = client.get_manifest(REPO, amd64)

    def other_publisher() -> None:  # as publish tags: the OS image's release tag first
        with RegistryClient(host, plain_http=True) as client:
            if taken == "disk-and-os":
                client.push_manifest(f"{REPO}-os", "40.1.0", winner_os.body, winner_os.media_type)
            client.push_manifest(REPO, "40.1.0", winner.body, winner.media_type)

    # when this run sends the OS image's first moving tag
    _, line = _raced(fresh, workdir, figures, other_publisher, path=rf"/v2/{REPO}-os/manifests/40$")
    assert ":40.1.0 was tagged by another publisher" in line
    with RegistryClient(host, plain_http=True) as client:
        assert client.manifest_digest(REPO, "40.1.0") == winner.digest
        os_tags = {t: client.manifest_digest(f"{REPO}-os", t) for t in ("40.1.0", "40", "latest")}
        for tag in ("40", "latest"):  # the disk release tag decides, the OS image's follow
            assert client.manifest_digest(REPO, tag) == winner.digest, tag
    if taken == "by-a-disk-naming-no-os-image":  # nothing to follow: back as they were
        assert os_tags["40"] == os_tags["latest"] == before_os
        assert os_tags["40.1.0"] not in (None, winner_os.digest, before_os)  # ours, complete
    else:
        assert set(os_tags.values()) == {winner_os.digest}, os_tags
        named = winner.json()["annotations"]["org.bootc-pipeline.os-image.index"]
        assert named == f"{REPO}-os@{winner_os.digest}"


def test_one_registry_client_per_run_closed_at_the_end(
    fresh: Setup, workdir: Workdir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The push stage, its checks and the anonymous probe share one client (its tokens and
    connections), and the run closes it, also when it fails."""
    clients = count_clients(monkeypatch)
    for key, value in fresh.env().items():
        monkeypatch.setenv(key, value)
    argv = push_argv(workdir, fresh.registry.host)[3:]  # after `python -m pipeline`
    assert cli.main(argv) == 0
    assert len(clients.made) == 1 and clients.all_closed()
    clients.clear()
    assert cli.main([*argv, "--created", "2026-05-05T00:00:00Z"]) == 2  # tag refused
    assert len(clients.made) == 1 and clients.all_closed()


def test_outputs_are_written_before_the_anonymous_probe(
    tmp_path: Path, disks: DiskCache, figures: Figures
) -> None:
    """The release is tagged when Lima's anonymous download is probed: a probe that gets no
    answer (every HEAD reset, past the retries) costs a warning, not the report, the
    template or exit 0."""
    heads: list[int] = []
    for name in ("count", "probe-fails"):
        for setup in _setup(tmp_path / name):
            work = make_workdir(tmp_path / name / "work", disks)
            probes = len(work.disks)  # the probe HEADs each layer last
            if heads:
                setup.proxy.add(  # no answer at all: connections reset
                    "reset", method="HEAD", path=BLOBS, skip=heads[0] - probes, fraction=0.0,
                    times=100, seconds=RULE_SECONDS, label="probe-reset",
                )  # fmt: skip
            proc = run_push(push_argv(work, setup.proxy.host, "--retry-attempts", "2"), setup.env())
            assert proc.returncode == 0, proc.stderr[-4000:]
            heads.append(setup.proxy.count("HEAD", BLOBS))
            report = json.loads(work.report_path.read_text())
            template = work.variant_dir / "lima-fedora-40.yaml"
            assert template.is_file()
    figures.count_faults(setup.proxy)
    assert "anonymous access" in report["limaAnonymousStatus"]["error"]
    assert report["index"]["digest"]
    assert "warning: could not check anonymous downloads" in proc.stderr
    assert not error_lines(proc.stderr)


# -- a failed chunk at any offset: docker-registry's ambiguous `Range: 0-0` -----------------------

BIG_CHUNK = 4 * 1024 * 1024
BIG_DISK_BYTES = 25 * 1000 * 1000  # ~25 MB layers: 6 chunks of 4 MiB each
TAKEN = 64 * 1024  # what the proxy reads of a failing PATCH before it resets


def _first_chunk(headers: dict[str, str]) -> bool:
    return headers.get("content-range", "").startswith("0-") and _is_layer_chunk(headers)


def _is_layer_chunk(headers: dict[str, str]) -> bool:
    return int(headers.get("content-length") or 0) > len(EMPTY_JSON)


def _ambiguity_cases(last_ends: set[int]) -> dict[str, dict[str, Any]]:
    """Where the failing PATCHes fall; each is read TAKEN bytes into, never forwarded, reset."""

    def last_chunk(headers: dict[str, str]) -> bool:
        end = headers.get("content-range", "").rpartition("-")[2]
        return end.isdigit() and int(end) + 1 in last_ends

    return {
        # The recipe: every second PATCH. The first is the 2-byte config, so every
        # chunk of every layer fails once, the very first one (byte 0) included.
        "every-chunk": dict(skip=1, every=2, times=100),
        "first-chunk": dict(when=_first_chunk, every=2, times=2),
        "last-chunk": dict(when=last_chunk, every=2, times=2),
    }


@pytest.fixture(scope="module")
def big_clean(
    tmp_path_factory: pytest.TempPathFactory, disks: DiskCache
) -> Iterator[tuple[Workdir, ReleaseState]]:
    """A clean publish of ~25 MB layers in 4 MiB chunks: the digests a faulty one must match."""
    directory = tmp_path_factory.mktemp("big-clean")
    for setup in _setup(directory):
        work = make_workdir(directory / "work", disks, size=BIG_DISK_BYTES)
        env = cli_env(setup.home, chunk_size=BIG_CHUNK)
        proc = run_push(push_argv(work, setup.registry.host), env)
        assert proc.returncode == 0, proc.stderr[-4000:]
        yield work, snapshot(setup.access, REPO)["40.1.0"]


@pytest.mark.parametrize("case", ["every-chunk", "first-chunk", "last-chunk"])
def test_failed_chunk_resumes_at_the_right_byte(
    case: str,
    fresh: Setup,
    tmp_path: Path,
    disks: DiskCache,
    big_clean: tuple[Workdir, ReleaseState],
    figures: Figures,
) -> None:
    """docker-registry 2.8 answers the upload-status GET with `Range: 0-0` both when it holds
    nothing and when it holds one byte. After a PATCH at byte 0 is lost, the client must go on
    from byte 0 (what it knows was acknowledged), not from byte 1; at any later offset the
    registry's answer and the acknowledged offset must agree likewise. Each chunk is sent at
    most twice, and the only bytes sent twice are what the proxy read of the failed PATCHes."""
    clean_work, clean_state = big_clean
    work = make_workdir(tmp_path / "work", disks, size=BIG_DISK_BYTES)
    sizes = [d.compressed.size for d in work.disks.values()]
    spec = _ambiguity_cases(set(sizes))[case]
    rule = fresh.proxy.add(
        "reset", method="PATCH", path=PATCH, take=TAKEN, seconds=RULE_SECONDS, label=case, **spec
    )
    figures.publishes += 1
    proc = run_push(push_argv(work, fresh.proxy.host), cli_env(fresh.home, chunk_size=BIG_CHUNK))
    failed = [e for e in fresh.proxy.log if e.method == "PATCH" and e.fault == "reset"]
    patched = fresh.proxy.bytes_received("PATCH", PATCH)
    figures.count_faults(fresh.proxy)
    figures.runs.append(
        {
            "name": f"range-ambiguity-{case}",
            "exit": proc.returncode,
            "failed_patches": len(failed),
            "patch_bytes_sent": patched,
            "layer_bytes": sum(sizes),
        }
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    chunks = sum(math.ceil(size / BIG_CHUNK) for size in sizes)
    expected_failures = {"every-chunk": chunks, "first-chunk": 2, "last-chunk": 2}[case]
    assert rule.injected == len(failed) == expected_failures
    assert all(e.received == TAKEN and not e.forwarded for e in failed)
    # Every byte of every layer went once, plus exactly what the proxy swallowed.
    assert patched == sum(sizes) + len(EMPTY_JSON) + len(failed) * TAKEN
    assert fresh.proxy.count("PATCH", PATCH) == chunks + 1 + len(failed)
    tagged = snapshot(fresh.access, REPO)
    assert sorted(tagged) == sorted(TAGS)
    assert all(state == clean_state for state in tagged.values())
    for arch, disk in work.disks.items():
        assert disk.compressed.digest == clean_work.disks[arch].compressed.digest
        assert clean_state.blobs[disk.compressed.digest] == disk.compressed.size
    figures.correct += 1
