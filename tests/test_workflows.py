"""The GitHub Actions workflows: linted by actionlint, every step a make target or the CLI, and
the nightly workflow's own commands (read from the YAML) run here against a local registry."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.core.arch import Arch
from tests.factories import ROOT
from tests.support import workflows
from tests.support.gotools import go_tool
from tests.support.published import Access, snapshot
from tests.support.registry import RunningRegistry, start_registry
from tests.support.workdirs import CREATED, REVISION, DiskCache, cli_env, make_workdir, run_push

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def _actionlint(files: list[Path]) -> list[str]:
    """Findings of actionlint v1.7.12 (the Go binary scripts/go-tools.sh builds), one a line."""
    argv = [go_tool("actionlint"), "-oneline", *map(str, files)]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.stdout.splitlines()


def test_actionlint_is_the_pinned_version() -> None:
    proc = subprocess.run([go_tool("actionlint"), "-version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.splitlines()[0] == "v1.7.12", proc.stdout


def test_actionlint_finds_nothing() -> None:
    assert len(WORKFLOWS) >= 2
    assert _actionlint(WORKFLOWS) == []


def test_actionlint_is_a_real_judge(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo ${{ github.nope }}\n")  # fmt: skip
    assert any("nope" in line for line in _actionlint([bad]))


RUN = re.compile(r"^(sudo (--preserve-env=\S+ )?)?(make |bootc-pipeline |\.ci/run$)")


def test_every_step_is_make_or_the_cli_and_actions_are_pinned() -> None:
    for path in WORKFLOWS:
        workflow = workflows.workflow(path.name)
        for job, step in workflows.steps(workflow):
            if "uses" in step:
                assert re.search(r"@[0-9a-f]{40}$", step["uses"]), (path.name, job, step["uses"])
            else:
                assert RUN.match(step["run"]), (path.name, job, step["run"])
    assert [s["run"] for _, s in workflows.steps(workflows.workflow("ci.yml")) if "run" in s] == [
        ".ci/run"
    ]
    assert "bash scripts/setup-debian.sh" in (ROOT / ".ci" / "run").read_text()


def test_ci_runs_the_debian_setup_on_debian_12_as_root() -> None:
    """.ci/run is the README's two commands for a fresh Debian 12 machine as root: the job runs
    in a Debian 12 container (not on the Ubuntu runner, where setup-debian.sh's docker.io would
    fight the runner's Docker), privileged (rootful Podman, binfmt_misc, /dev/kvm), as root
    (no sudo there), with the Go the set-up's tool builds need on PATH, and git before the
    checkout (so it is a clone the tests can read the revision of)."""
    (job,) = workflows.workflow("ci.yml")["jobs"].values()
    container = job["container"]
    assert container["image"].split(":")[1].startswith("bookworm")  # Debian 12
    assert container["options"].split() == ["--privileged"]
    # overlay storage (Podman's graph root under the test root, /var/tmp; skopeo's under /tmp)
    # cannot sit on the container's overlayfs: those are volumes on the runner's disk
    assert {"/var/tmp", "/tmp"} <= set(container["volumes"])
    steps = [s.get("uses", s.get("run", "")) for s in job["steps"]]
    assert steps[0].startswith("actions/checkout@") and steps[-1] == ".ci/run"
    (go,) = [s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-go@")]
    setup = (ROOT / "scripts" / "setup-debian.sh").read_text()
    assert (
        "command -v go" in setup
        and "GOTOOLCHAIN=local" in (ROOT / "scripts" / "go-tools.sh").read_text()
    )  # the set-up builds with the Go on PATH, and no other
    wanted = re.search(r"\(Go (\d+\.\d+) builds the test tools\)", setup)
    assert wanted and go["with"]["go-version"] == wanted.group(1)


def test_nightly_workflow_shape() -> None:
    nightly: dict[Any, Any] = workflows.workflow("nightly.yml")
    triggers = nightly[True]  # YAML 1.1 reads the key `on` as True
    assert "schedule" in triggers and "workflow_dispatch" in triggers
    assert nightly["permissions"] == {"contents": "read", "packages": "write"}
    assert nightly["concurrency"]["cancel-in-progress"] is False
    assert "env" not in nightly  # the token only reaches the steps that use the registry
    (step,) = [s for j, s in workflows.steps(nightly) if j == "plan" and "env" in s]
    assert step["env"]["BOOTC_PIPELINE_REGISTRY_PASSWORD"] == "${{ secrets.GITHUB_TOKEN }}"
    assert step["env"]["BOOTC_PIPELINE_REGISTRY_USERNAME"] == "${{ github.actor }}"
    # one call of the variant's workflow per variant, each with the version the plan resolved
    release = nightly["jobs"]["release"]
    assert release["needs"] == "plan" and release["strategy"]["fail-fast"] is False
    assert release["uses"] == "./.github/workflows/nightly-variant.yml"
    assert release["with"] == {"variant": "${{ matrix.variant }}",
                               "version": "${{ needs.plan.outputs[matrix.variant] }}"}  # fmt: skip
    for variant in release["strategy"]["matrix"]["variant"]:
        assert (ROOT / "manifests" / f"{variant}.yaml").is_file()
        assert variant in nightly["jobs"]["plan"]["outputs"]
    assert set(nightly["jobs"]) == {"plan", "release"}


def test_each_variants_join_waits_for_its_own_runners_only() -> None:
    """The join of a variant needed the whole publish matrix (`needs: [plan, publish]` over every
    variant): one variant's failed runner held back the other's release. Now each variant's
    runners and join are one call of nightly-variant.yml, its join needing that call's runners."""
    variant: dict[Any, Any] = workflows.workflow("nightly-variant.yml")
    assert set(variant[True]) == {"workflow_call"}
    assert set(variant[True]["workflow_call"]["inputs"]) == {"variant", "version"}
    assert set(variant["jobs"]) == {"publish", "index"}
    assert variant["jobs"]["index"]["needs"] == "publish"
    publish = variant["jobs"]["publish"]
    assert set(publish["strategy"]["matrix"]) == {"arch", "include"}  # no variant axis here
    runners = {i["arch"]: i["runner"] for i in publish["strategy"]["matrix"]["include"]}
    assert runners == {"amd64": "ubuntu-24.04", "arm64": "ubuntu-24.04-arm"}
    for job in ("publish", "index"):
        with_env = [s for j, s in workflows.steps(variant) if j == job and "env" in s]
        assert len(with_env) == (2 if job == "index" else 1)  # the join, then the prune
        for step in with_env:
            # the caller's token, with its permissions: a called workflow has it as github.token
            assert step["env"]["BOOTC_PIPELINE_REGISTRY_PASSWORD"] == "${{ github.token }}"
            assert step["env"]["BOOTC_PIPELINE_REGISTRY_USERNAME"] == "${{ github.actor }}"
    index_steps = [s.get("name", "") for j, s in workflows.steps(variant) if j == "index"]
    assert index_steps[-1].startswith("prune")  # after the join, never before
    # result artifacts are named per variant: both variants' calls upload into one run
    (upload,) = [
        s
        for j, s in workflows.steps(variant)
        if j == "publish" and "upload-artifact" in s.get("uses", "") and "if" not in s
    ]
    assert upload["with"]["name"] == "result-${{ inputs.variant }}-${{ matrix.arch }}"
    (download,) = [
        s for j, s in workflows.steps(variant) if "download-artifact" in s.get("uses", "")
    ]
    assert download["with"]["pattern"] == "result-${{ inputs.variant }}-*"
    # keyless signing: the OIDC token only where the join signs, before its tags move (the
    # caller's release job grants it as a ceiling: a called workflow can only narrow it)
    nightly: dict[Any, Any] = workflows.workflow("nightly.yml")
    assert "id-token" not in nightly["permissions"]
    assert "id-token" not in nightly["jobs"]["plan"].get("permissions", {})
    assert nightly["jobs"]["release"]["permissions"]["id-token"] == "write"
    assert "id-token" not in variant["jobs"]["publish"]["permissions"]
    assert variant["jobs"]["index"]["permissions"]["id-token"] == "write"
    (join,) = [s for j, s in workflows.steps(variant)
               if j == "index" and s.get("name", "").startswith("index")]  # fmt: skip
    assert join["env"]["SIGN_FLAGS"] == "--keyless"
    assert "sudo make cosign-v2" in [
        s.get("run") for j, s in workflows.steps(variant) if j == "index"
    ]
    # a failed boot check leaves its guest console where test_boot_e2e finds it (the default
    # workdir .work); the job keeps the logs, not the boot's throwaway ssh key beside them
    (kept,) = [s for j, s in workflows.steps(variant) if j == "publish" and "if" in s]
    assert kept["if"] == "failure()"
    assert kept["with"]["path"] == ".work/${{ inputs.variant }}/${{ matrix.arch }}/boot/*.log"


def test_runners_install_only_their_jobs_needs() -> None:
    """`sudo make setup` on a runner installed the whole test tool chain and docker.io, which
    conflicts with the runners' containerd.io: each job installs its own role's packages."""
    roles: dict[str, str] = {}
    for name in ("nightly.yml", "nightly-variant.yml"):
        for job, step in workflows.steps(workflows.workflow(name)):
            if step.get("name") == "install":
                roles[job] = step["run"]
    assert roles == {
        "plan": "sudo make setup-runner ROLE=join",
        "publish": "sudo make setup-runner ROLE=publish",
        "index": "sudo make setup-runner ROLE=join",
    }
    for path in WORKFLOWS:
        assert not re.search(r"make setup($|\s)", path.read_text(), re.M), path.name


def _sh(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def own_registry(tmp_path: Path) -> Iterator[RunningRegistry]:
    """A registry of this test's own: the nightly repository's tags must be only its own."""
    registry = start_registry(tmp_path / "registry")
    yield registry
    registry.stop()


@pytest.mark.integration
def test_nightly_plan_and_join_commands_from_the_yaml(
    own_registry: RunningRegistry, tmp_path: Path
) -> None:
    """The plan job's and the join's own commands, each in an empty directory of its own; the
    per-architecture runs push synthetic disks (the build needs an engine: see the e2e test)."""
    access = Access(own_registry.host)
    env = cli_env(tmp_path / "home", chunk_size=1 << 20)
    flags = f"--registry {own_registry.host} --plain-http --revision {REVISION} --created {CREATED}"
    env |= {
        "PYTHON": sys.executable,
        "FLAGS": flags,
        "BOOTC_PIPELINE_BUILD_DATE": "20260315",
        "GITHUB_OUTPUT": "/dev/null",
    }
    repo = "bootc-lima/fedora-bootc-lima-nightly"

    def machine(name: str) -> Path:
        return workflows.machine(tmp_path / name)

    def plan() -> dict[str, str]:
        command = workflows.command("nightly.yml", "plan", "resolve versions", {}).replace(
            ' >> "$GITHUB_OUTPUT"', ""
        )
        proc = _sh(command, machine(f"plan-{len(list(tmp_path.glob('plan-*')))}"), env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return dict(line.split("=", 1) for line in proc.stdout.splitlines())

    version = plan()["fedora-40-nightly"]
    assert version == "40.20260315.1"
    cache = DiskCache(tmp_path / "disks")
    cache.directory.mkdir()
    join = machine("join")
    (join / "results").mkdir()
    for n, arch in enumerate((Arch("amd64"), Arch("arm64")), start=1):
        work = make_workdir(
            tmp_path / f"runner-{arch.value}", cache, variant="fedora-40-nightly",
            layer_name=f"fedora-bootc-lima-{version}", archs=(arch,), seeds={arch: n},
        )  # fmt: skip
        argv = [sys.executable, "-m", "pipeline", "push", "--variant", "fedora-40-nightly",
                "--arch", arch.value, "--version", version, "--workdir", str(work.root),
                "--skip-boot", *flags.split()]  # fmt: skip
        proc = run_push(argv, env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        shutil.copy(work.variant_dir / f"result-{arch.value}.json", join / "results")

    values = {"inputs.variant": "fedora-40-nightly", "inputs.version": version}
    proc = _sh(workflows.command("nightly-variant.yml", "index", "index", values), join, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((join / ".work" / "fedora-40-nightly" / "release-report.json").read_text())
    state = snapshot(access, repo)
    assert set(state) == {version, "40", "latest", "nightly"}
    assert {s.index for s in state.values()} == {report["index"]["digest"]}
    assert report["version"] == version
    assert list(state[version].manifests) == ["linux/amd64", "linux/arm64"]
    # The prune step after the join: within the manifest's retention, nothing goes yet.
    prune_env = env | {"PRUNE_FLAGS": f"--registry {own_registry.host} --plain-http"}
    proc = _sh(workflows.command("nightly-variant.yml", "index", "prune", values), join, prune_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "deleting 0 release(s)" in proc.stdout and "keeping 1" in proc.stdout
    assert set(snapshot(access, repo)) == {version, "40", "latest", "nightly"}
    # The next nightly of the same day gets the next counter; the first release tag stays.
    assert plan()["fedora-40-nightly"] == "40.20260315.2"
