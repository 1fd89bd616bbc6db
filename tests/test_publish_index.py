"""Per-architecture runs on separate "machines" (separate work directories, separate
processes), joined by `bootc-pipeline index`: the release is the one a single-machine publish
of the same inputs makes, down to the index digest, judged by skopeo and curl + sha256sum.
No container engine: the runs push synthetic work directories (tests/support/workdirs.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path

import pytest

from pipeline.boot import checks as lima_checks
from pipeline.boot.guest import BootResult
from pipeline.core.arch import Arch
from pipeline.model import release
from pipeline.publishing.stages import runner
from pipeline.shared.state import arch_dir
from tests.support.published import Access, judge_index, snapshot, tags
from tests.support.registry import RunningRegistry
from tests.support.workdirs import (
    DiskCache,
    cli_env,
    error_lines,
    make_workdir,
    manifest_for,
    push_argv,
    run_push,
)

pytestmark = pytest.mark.integration
AMD64, ARM64 = Arch("amd64"), Arch("arm64")
SEEDS = {AMD64: 1, ARM64: 2}


def _index_argv(registry: str, manifest: Path, workdir: Path, *results: Path) -> list[str]:
    return [
        sys.executable, "-m", "pipeline", "index", *map(str, results),
        "--manifest", str(manifest), "--workdir", str(workdir),
        "--registry", registry, "--plain-http",
    ]  # fmt: skip


def _parts(registry: RunningRegistry, tmp_path: Path) -> tuple[DiskCache, Access, dict[str, str]]:
    """Synthetic disks, the judges' access to the registry, and the CLI's environment."""
    cache = DiskCache(tmp_path / "disks")
    cache.directory.mkdir()
    return cache, Access(registry.host), cli_env(tmp_path / "home", chunk_size=1 << 20)


def test_two_runners_and_a_join_make_the_single_machine_release(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    cache, access, env = _parts(registry, tmp_path)
    repo, single_repo = "joined/fedora-bootc-lima", "single/fedora-bootc-lima"
    manifest, single_manifest = manifest_for(tmp_path, repo), manifest_for(tmp_path, single_repo)
    # each disk names its OS image (repository and origin): the same inputs are the same OS image
    text = single_manifest.read_text()
    default = "  # repository: <repository>-os, the default (set one to publish it elsewhere)\n"
    assert default in text
    os_repo = release.load(manifest).os_repository
    single_manifest.write_text(text.replace(default, f"  repository: {os_repo}\n"))
    assert release.load(single_manifest).os_repository == os_repo

    # Two runners, each with its own empty work directory and its one architecture.
    found: list[Path] = []
    for arch in (ARM64, AMD64):  # any order: the index lists the release's order
        work = make_workdir(tmp_path / f"runner-{arch.value}", cache, archs=(arch,), seeds=SEEDS)
        proc = run_push(
            push_argv(work, registry.host, "--arch", arch.value, manifest=manifest), env
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = work.variant_dir / f"result-{arch.value}.json"
        assert json.loads(result.read_text())["arch"] == arch.value
        found.append(result)
    assert tags(access, repo) == []  # partial runs move no tag

    join = tmp_path / "join"
    proc = run_push(_index_argv(registry.host, manifest, join, *found), env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((join / "fedora-40" / "release-report.json").read_text())
    state = snapshot(access, repo)
    assert set(state) == {"40", "40.1.0", "latest"}
    assert {s.index for s in state.values()} == {report["index"]["digest"]}
    assert list(state["latest"].manifests) == ["linux/amd64", "linux/arm64"]
    for name in ("amd64", "arm64"):
        assert report["architectures"][name]["layer"]["bytesSent"] > 0
    assert (join / "fedora-40" / "lima-fedora-40.yaml").is_file()

    # One machine, both architectures, the same inputs: the same index, byte for byte.
    single = make_workdir(tmp_path / "single", cache, seeds=SEEDS)
    proc = run_push(push_argv(single, registry.host, manifest=single_manifest), env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single_report = json.loads(single.report_path.read_text())
    assert single_report["index"]["digest"] == report["index"]["digest"]
    assert judge_index(access, single_repo, "latest").index == report["index"]["digest"]

    # The join again: the same release, nothing moves, exit 0.
    again = run_push(_index_argv(registry.host, manifest, tmp_path / "join2", *found), env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert snapshot(access, repo) == state


def test_join_refuses_results_that_do_not_belong_together(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    cache, access, env = _parts(registry, tmp_path)
    repo = "refused/fedora-bootc-lima"
    manifest = manifest_for(tmp_path, repo)
    amd = make_workdir(tmp_path / "a", cache, archs=(AMD64,), seeds=SEEDS)
    arm = make_workdir(tmp_path / "b", cache, archs=(ARM64,), seeds=SEEDS)
    argv = push_argv(amd, registry.host, "--arch", "amd64", manifest=manifest)
    assert run_push(argv, env).returncode == 0
    other_time = push_argv(
        arm, registry.host, "--arch", "arm64", manifest=manifest, created="2026-02-02T00:00:00Z"
    )
    assert run_push(other_time, env).returncode == 0
    amd_result = amd.variant_dir / "result-amd64.json"
    arm_result = arm.variant_dir / "result-arm64.json"

    proc = run_push(
        _index_argv(registry.host, manifest, tmp_path / "j1", amd_result, arm_result), env
    )
    assert proc.returncode == 2
    (line,) = error_lines(proc.stderr)
    assert "made with other release annotations" in line and "created" in line

    twice = run_push(
        _index_argv(registry.host, manifest, tmp_path / "j2", amd_result, amd_result), env
    )
    assert twice.returncode == 2 and "a second result for amd64" in twice.stderr

    # A result naming a manifest that was never pushed (its layer field says what the manifest
    # says, as results.load checks): nothing is indexed, nothing tagged.
    data = json.loads(amd_result.read_text())
    body = json.loads(base64.b64decode(data["manifest"]["data"]))
    body["layers"][0]["digest"] = data["layer"]["digest"] = "sha256:" + "0" * 64
    raw = json.dumps(body, separators=(",", ":")).encode()
    data["manifest"] |= {
        "data": base64.b64encode(raw).decode(),
        "digest": "sha256:" + hashlib.sha256(raw).hexdigest(),
        "size": len(raw),
    }
    forged = tmp_path / "forged-amd64.json"
    forged.write_text(json.dumps(data))
    proc = run_push(_index_argv(registry.host, manifest, tmp_path / "j3", forged), env)
    assert proc.returncode == 1, proc.stderr[-2000:]
    (line,) = error_lines(proc.stderr)
    assert f"manifest {data['manifest']['digest']} for amd64 is not in" in line
    assert tags(access, repo) == []

    tampered = tmp_path / "tampered-amd64.json"
    tampered.write_text(json.dumps(data | {"manifest": data["manifest"] | {"size": 1}}))
    proc = run_push(_index_argv(registry.host, manifest, tmp_path / "j4", tampered), env)
    assert proc.returncode == 2 and "manifest.data hashes to" in proc.stderr


def _boot_record(ok: bool) -> dict[str, object]:
    """A boot check's record as the boot stage stamps it (BootResult.to_dict), passed or not."""
    check = lima_checks.CheckResult("lima-tools", ok, "all there" if ok else "missing: sshfs")
    result = BootResult(AMD64, "OVMF", "tcg", True, 81.0, [check])
    return result.to_dict()


def test_the_join_refuses_results_whose_boot_did_not_pass(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    """Real result files from `push` (amd64 past a passed boot check, arm64 past a recorded
    --skip-boot): a result whose boot record failed, is missing, says other than its manifest's
    boot-check annotation or is a skip nobody recorded is refused, one line naming the file and
    the architecture, exit 2, nothing tagged; the pass and the recorded skip are joined."""
    cache, access, env = _parts(registry, tmp_path)
    repo = "gated/fedora-bootc-lima"
    manifest = manifest_for(tmp_path, repo)
    amd = make_workdir(tmp_path / "amd", cache, archs=(AMD64,), seeds=SEEDS)
    directory = arch_dir(amd.root, amd.variant, AMD64)
    runner.record(directory, runner.GATE, runner.gate_id(directory), _boot_record(True))
    proc = run_push(
        push_argv(amd, registry.host, "--arch", "amd64", manifest=manifest, skip_boot=False), env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    arm = make_workdir(tmp_path / "arm", cache, archs=(ARM64,), seeds=SEEDS)
    proc = run_push(push_argv(arm, registry.host, "--arch", "arm64", manifest=manifest), env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    passed, skipped = amd.variant_dir / "result-amd64.json", arm.variant_dir / "result-arm64.json"
    assert json.loads(passed.read_text())["boot"] == _boot_record(True)
    assert json.loads(skipped.read_text())["boot"] == {"skipped": True, "reason": "--skip-boot"}

    data = json.loads(passed.read_text())
    refused = {
        "has no boot record": {k: v for k, v in data.items() if k != "boot"},
        "failed its boot check (not run)": data | {"boot": {"skipped": True, "reason": "not run"}},
        "boot record says skipped, its manifest says org.bootc-pipeline.boot-check=passed": data
        | {"boot": {"skipped": True, "reason": "--skip-boot"}},
        "failed its boot check (lima-tools: missing: sshfs)": data | {"boot": _boot_record(False)},
    }
    for n, (expected, body) in enumerate(refused.items()):
        bad = tmp_path / f"bad-{n}" / "result-amd64.json"
        bad.parent.mkdir()
        bad.write_text(json.dumps(body))
        join = tmp_path / f"join-{n}"
        proc = run_push(_index_argv(registry.host, manifest, join, bad, skipped), env)
        assert proc.returncode == 2, proc.stderr[-3000:]
        (line,) = error_lines(proc.stderr)
        assert f"{bad}: the amd64 disk" in line and expected in line, line
        assert tags(access, repo) == []
        assert not (join / "fedora-40" / "release-report.json").exists()

    join = tmp_path / "join"
    proc = run_push(_index_argv(registry.host, manifest, join, passed, skipped), env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((join / "fedora-40" / "release-report.json").read_text())
    assert report["boot"] == {"amd64": _boot_record(True), "arm64": json.loads(
        skipped.read_text())["boot"]}  # fmt: skip
    assert set(tags(access, repo)) == {"40", "40.1.0", "latest"}
