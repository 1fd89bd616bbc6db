"""Nightlies on real parts, as the workflow runs them: the nightly workflows' own commands, read
from .github/workflows/nightly.yml and nightly-variant.yml, run as separate processes in separate
empty directories (the plan job, two per-architecture "runners", the join) against a real Podman
service and a real registry, through a counting loopback proxy (tests/support/faultproxy.py, no
faults) that tells what the clients sent. The fake base is pushed to that registry, so it has a
registry digest.

1. The first nightly: a dated release, judged by skopeo, curl + sha256sum and the schemas.
2. The same inputs again, empty work directories: "up to date", nothing built or sent, the
   same release, exit 0.
3. The base changes (a new registry digest): a new dated release of the same day, the moving
   tags move, the first release's tag still names the first release.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline.core import mediatypes as mt
from pipeline.model import schemas
from tests.factories import ROOT
from tests.support import oci_official, workflows
from tests.support.faultproxy import FaultProxy
from tests.support.images import FakeBases
from tests.support.podman import PodmanService
from tests.support.published import Access, ReleaseState, judge_index, skopeo_raw, snapshot
from tests.support.registry import RunningRegistry
from tests.support.workdirs import CREATED, REVISION

pytestmark = pytest.mark.integration
VARIANT = "fedora-40-nightly"
REPO = "bootc-lima/fedora-bootc-lima-nightly"
DATE = "20261129"
ARCHS = ("amd64", "arm64")


@dataclass
class Nightly:
    version: str
    runners: dict[str, subprocess.CompletedProcess[str]]
    join: subprocess.CompletedProcess[str]
    results: dict[str, dict[str, Any]]
    report: dict[str, Any]
    seconds: float
    runner_seconds: dict[str, float]


@dataclass
class Setup:
    tmp: Path
    env: dict[str, str]
    access: Access
    base: str
    podman: PodmanService
    proxy: FaultProxy
    rounds: int = 0

    def sh(self, command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", "-c", command], cwd=cwd, env=self.env, capture_output=True, text=True,
            timeout=1800,
        )  # fmt: skip

    def nightly(self) -> Nightly:
        """Plan, two runners, join: each a fresh directory, each the workflow's command."""
        self.rounds += 1
        root = self.tmp / f"night-{self.rounds}"
        start = time.monotonic()
        plan_cmd = workflows.command("nightly.yml", "plan", "resolve versions", {})
        plan = self.sh(
            plan_cmd.replace(' >> "$GITHUB_OUTPUT"', ""), workflows.machine(root / "plan")
        )
        assert plan.returncode == 0, plan.stderr[-3000:]
        version = dict(line.split("=", 1) for line in plan.stdout.splitlines())[VARIANT]
        values = {"inputs.variant": VARIANT, "inputs.version": version}  # the variant's call
        join = workflows.machine(root / "join")
        (join / "results").mkdir()
        runners: dict[str, subprocess.CompletedProcess[str]] = {}
        results: dict[str, dict[str, Any]] = {}
        runner_seconds: dict[str, float] = {}
        for arch in ARCHS:
            runner = workflows.machine(root / f"runner-{arch}")
            command = workflows.command(
                "nightly-variant.yml", "publish", "publish", values | {"matrix.arch": arch}
            )
            begin = time.monotonic()
            runners[arch] = proc = self.sh(command, runner)
            runner_seconds[arch] = time.monotonic() - begin
            assert proc.returncode == 0, proc.stderr[-6000:]
            result = runner / ".work" / VARIANT / f"result-{arch}.json"  # what the job uploads
            shutil.copy(result, join / "results")
            results[arch] = json.loads(result.read_text())
        proc = self.sh(workflows.command("nightly-variant.yml", "index", "index", values), join)
        assert proc.returncode == 0, proc.stderr[-4000:]
        report = json.loads((join / ".work" / VARIANT / "release-report.json").read_text())
        seconds = time.monotonic() - start
        return Nightly(version, runners, proc, results, report, seconds, runner_seconds)

    def push_base(self, *extra: str) -> None:
        """The local list to the registry (straight: podman sends chunked bodies the proxy does
        not take), where the pipeline reads it through the proxy under the same repository."""
        direct = self.base.replace(self.proxy.host, self.proxy.upstream, 1)
        self.podman.cli(
            "manifest", "push", "--all", "--tls-verify=false", *extra, self.base,
            f"docker://{direct}",
        )  # fmt: skip

    def _instances(self, ref: str) -> dict[str, str]:
        """The base's per-platform manifests, {digest: media type}, as the registry serves them."""
        raw = subprocess.run(
            ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
            check=True, capture_output=True, text=True, timeout=120,
        ).stdout  # fmt: skip
        return {m["digest"]: m["mediaType"] for m in json.loads(raw)["manifests"]}

    def convert_base(self) -> None:
        """The base in the registry rewritten in the other manifest format (Docker v2s2 <-> OCI):
        new per-architecture digests, the same content. Registry to registry: the local list's
        instances may have been replaced in the store by the images the builds pulled by digest
        (the same image ids), so it is not pushed again. Which format the instances have depends
        on how the cached fake bases were made, so the target is the one they do not have (a
        copy to their own format changes nothing, and "up to date" would then be right)."""
        direct = self.base.replace(self.proxy.host, self.proxy.upstream, 1)
        before = self._instances(direct)
        docker = "application/vnd.docker.distribution.manifest.v2+json"
        target = "oci" if docker in before.values() else "v2s2"
        subprocess.run(
            ["skopeo", "copy", "--all", "--format", target, "--src-tls-verify=false",
             "--dest-tls-verify=false", f"docker://{direct}", f"docker://{direct}"],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        after = self._instances(direct)
        assert not set(after) & set(before), f"the base's digests did not change ({target})"


@pytest.fixture(scope="module")
def setup(
    podman: PodmanService,
    fake_bases: FakeBases,
    bib_standin: str,
    registry: RunningRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Setup]:
    proxy = FaultProxy(registry.host)
    host = proxy.host  # the pipeline reaches the registry through it; the judges go straight
    # The fake base under a registry name: a local manifest list (what the build uses, it
    # never pulls) pushed to the registry (what the inputs are resolved from).
    base = f"{host}/fake/fedora-bootc:40"
    podman.cli("manifest", "rm", base, check=False)
    podman.cli("manifest", "create", base)
    for arch in ARCHS:
        instance = fake_bases.instance("fedora", arch)
        podman.cli("manifest", "add", base, f"containers-storage:{instance}")
    flags = (
        f"--engine {podman.url} --base-image {base} --builder-image {bib_standin} "
        f"--registry {host} --plain-http --revision {REVISION} --created {CREATED}"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env |= {
        "PYTHON": sys.executable, "PYTHONPATH": str(ROOT), "FLAGS": flags,
        "BOOTC_PIPELINE_BUILD_DATE": DATE,
        "PUBLISH_FLAGS": "--skip-boot",  # busybox bases do not boot; test_boot_e2e boots
    }  # fmt: skip
    tmp = tmp_path_factory.mktemp("nightly")
    found = Setup(tmp, env, Access(registry.host), base, podman, proxy)
    found.push_base()
    yield found
    proxy.close()


@pytest.fixture(scope="module")
def first(setup: Setup) -> Nightly:
    return setup.nightly()


def _judge(setup: Setup, state: dict[str, ReleaseState], digest: str) -> None:
    raw = skopeo_raw(setup.access, f"{REPO}@{digest}")
    assert raw is not None
    index = json.loads(raw)
    assert oci_official.errors("index", index) == []
    assert schemas.problems(schemas.ARTIFACT_INDEX, index) == []
    assert list(state["nightly"].manifests) == ["linux/amd64", "linux/arm64"]
    for child in state["nightly"].manifests.values():
        manifest = json.loads(skopeo_raw(setup.access, f"{REPO}@{child}") or b"{}")
        assert oci_official.errors("manifest", manifest) == []
        assert schemas.problems(schemas.ARTIFACT_MANIFEST, manifest) == []
        assert manifest["annotations"][mt.ANN_INPUTS] == index["annotations"][mt.ANN_INPUTS]


def test_first_nightly_is_a_dated_release(setup: Setup, first: Nightly) -> None:
    assert first.version == f"40.{DATE}.1"
    state = snapshot(setup.access, REPO)  # every tag names a complete index
    assert set(state) == {first.version, "40", "latest", "nightly"}
    digest = first.report["index"]["digest"]
    assert {s.index for s in state.values()} == {digest}
    _judge(setup, state, digest)
    assert first.report["version"] == first.version
    for arch in ARCHS:
        assert "==> build" in first.runners[arch].stderr
        assert first.results[arch]["bytesSent"] == first.results[arch]["layer"]["size"] > 0
        title = f"fedora-bootc-lima-{first.version}-{arch}.qcow2.zst"
        layer = first.results[arch]["layer"]
        assert first.report["architectures"][arch]["layer"]["title"] == title
        assert judge_index(setup.access, REPO, digest).blobs[layer["digest"]] == layer["size"]
    # the join's report says what each runner's boot check did, as its result file carries it
    # (the test runners set --skip-boot through PUBLISH_FLAGS)
    assert first.report["boot"] == {arch: first.results[arch]["boot"] for arch in ARCHS}
    assert first.report["boot"]["amd64"] == {"skipped": True, "reason": "--skip-boot"}
    print(f"\nfirst nightly: {first.seconds:.1f}s")


def test_unchanged_nightly_builds_and_sends_nothing(setup: Setup, first: Nightly) -> None:
    before = snapshot(setup.access, REPO)
    seen = len(setup.proxy.log)
    again = setup.nightly()
    sent = setup.proxy.log[seen:]  # everything plan, runners and join asked of the registry
    # reads, and each runner's push-rights probe (an upload session opened and cancelled)
    writes = [(e.method, e.path) for e in sent if e.method in ("PUT", "PATCH")]
    assert writes == [] and {e.method for e in sent} <= {"GET", "HEAD", "POST", "DELETE"}
    assert sum(e.received for e in sent) == 0
    for arch in ARCHS:
        err = again.runners[arch].stderr
        assert "up to date: " in err and "==> build" not in err and "upload" not in err, err
        assert again.results[arch]["bytesSent"] == 0
    assert again.report["index"]["digest"] == first.report["index"]["digest"]
    assert again.report["version"] == first.version  # the release it is, not the plan's next
    assert snapshot(setup.access, REPO) == before
    runners = ", ".join(f"{a} {t:.1f}s" for a, t in again.runner_seconds.items())
    print(
        f"\nno-change nightly (empty work dirs): plan + 2 runners + join {again.seconds:.1f}s "
        f"(runners: {runners}); {len(sent)} requests, no PUT/PATCH, 0 request body bytes"
    )


def test_changed_base_makes_a_new_dated_release(setup: Setup, first: Nightly) -> None:
    old = skopeo_raw(setup.access, f"{REPO}:{first.version}")
    setup.convert_base()  # the same content under a new registry digest
    new = setup.nightly()
    assert new.version == f"40.{DATE}.2"
    for arch in ARCHS:
        assert "inputs changed" in new.runners[arch].stderr
    state = snapshot(setup.access, REPO)
    digest = new.report["index"]["digest"]
    assert digest != first.report["index"]["digest"]
    for tag in (new.version, "40", "latest", "nightly"):
        assert state[tag].index == digest, tag
    assert skopeo_raw(setup.access, f"{REPO}:{first.version}") == old
    _judge(setup, state, digest)
