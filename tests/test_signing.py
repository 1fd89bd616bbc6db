"""Signed releases: cosign's simple signing, judged by the real `cosign verify --key`, on all
three registries; `pull --public-key` refuses what is not signed by that key for that digest,
before any output file exists."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.consume import lima_plugin
from pipeline.core.arch import Arch
from pipeline.trust import simplesigning as ss
from pipeline.trust.verify import PUBLIC_KEY_ENV
from tests.support import gotools
from tests.support.faultproxy import FaultProxy
from tests.support.keys import make_key_pair
from tests.support.lima import plugin
from tests.support.published import Access, tags
from tests.support.registry import RunningRegistry
from tests.support.trust import (
    TIMEOUT,
    Signed,
    forge_another_digest,
    forge_tampered_payload,
    publish,
    publish_unsigned,
)
from tests.support.workdirs import (
    DiskCache,
    cli_env,
    make_workdir,
    manifest_for,
    push_argv,
    run_push,
)

pytestmark = pytest.mark.integration


def cosign_verify(public: Path, reference: str) -> subprocess.CompletedProcess[str]:
    argv = [
        gotools.go_tool("cosign"), "verify", "--key", str(public),
        "--insecure-ignore-tlog=true", "--allow-http-registry", "--output", "json", reference,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)


def pull(signed: Signed, out: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    argv = [
        sys.executable, "-m", "pipeline", "pull", f"{signed.name}:40.1.0", "--plain-http",
        "--platform", "linux/amd64", "-o", str(out), *args,
    ]  # fmt: skip
    return subprocess.run(
        argv,
        env=cli_env(signed.home, chunk_size=1 << 20, extra=env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_cosign_verifies_the_index_and_every_disk_manifest(signed: Signed) -> None:
    subjects = [signed.index, signed.manifest("amd64"), signed.manifest("arm64")]
    recorded = {s["digest"] for s in signed.report["signatures"]
                if not str(s.get("subject", "")).startswith("os-image")}  # fmt: skip
    assert recorded == set(subjects)
    for digest in subjects:
        done = cosign_verify(signed.key.public, f"{signed.name}@{digest}")
        assert done.returncode == 0, done.stderr[-2000:]
        claims = json.loads(done.stdout)
        assert [c["critical"]["image"]["docker-manifest-digest"] for c in claims] == [digest]
    other = make_key_pair(signed.home / "other-key")
    done = cosign_verify(other.public, f"{signed.name}@{signed.index}")
    assert done.returncode != 0  # the judge can say no


def test_cosign_verifies_the_os_image_index_and_every_image(signed: Signed) -> None:
    """Issue 15: the OS image is signed with the rest, in its own repository."""
    os_subjects = {s["subject"]: s["digest"] for s in signed.report["signatures"]
                   if str(s.get("subject", "")).startswith("os-image")}  # fmt: skip
    assert sorted(os_subjects) == ["os-image amd64", "os-image arm64", "os-image index"]
    index = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--raw", "--tls-verify=false",
             f"docker://{signed.name}-os:40.1.0"],
            capture_output=True, text=True, check=True, timeout=TIMEOUT,
        ).stdout
    )  # fmt: skip
    by_arch = {m["platform"]["architecture"]: m["digest"] for m in index["manifests"]}
    assert os_subjects["os-image amd64"] == by_arch["amd64"]
    assert os_subjects["os-image arm64"] == by_arch["arm64"]
    for digest in os_subjects.values():
        done = cosign_verify(signed.key.public, f"{signed.name}-os@{digest}")
        assert done.returncode == 0, done.stderr[-2000:]
        claims = json.loads(done.stdout)
        assert [c["critical"]["identity"]["docker-reference"] for c in claims] == [
            f"{signed.name}-os"
        ]


def test_pull_with_the_key_verifies_and_writes(signed: Signed, tmp_path: Path) -> None:
    out = tmp_path / "disk.qcow2"
    done = pull(signed, out, "--public-key", str(signed.key.public))
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.is_file()
    assert "verified:" in done.stderr and "not verified" not in done.stderr


def test_pull_without_a_key_says_once_that_nothing_was_verified(
    signed: Signed, tmp_path: Path
) -> None:
    done = pull(signed, tmp_path / "disk.qcow2")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("not verified") == 1


def test_key_from_environment_and_trust_file(signed: Signed, tmp_path: Path) -> None:
    other = make_key_pair(tmp_path / "other")
    env_pull = pull(signed, tmp_path / "a.qcow2", BOOTC_PIPELINE_PUBLIC_KEY=str(other.public))
    assert env_pull.returncode != 0 and not (tmp_path / "a.qcow2").exists()
    config = tmp_path / "config" / "bootc-pipeline" / "trust.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(f"public-keys:\n  {signed.registry.host}/: {signed.key.public}\n")
    done = pull(signed, tmp_path / "b.qcow2", XDG_CONFIG_HOME=str(tmp_path / "config"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert str(config) in done.stderr  # says which key verified


CONSUMERS = ("pull", "plugin")  # `pull --public-key`; the Lima URL plugin, key from $ENV


def run_plugin(signed: Signed, cache: Path, key: Path | None) -> subprocess.CompletedProcess[str]:
    """`limactl-url-oras REF`, as Lima runs it: REST the only argument, the rest from the
    environment (plain HTTP, the public key)."""
    extra = {"XDG_CACHE_HOME": str(cache), lima_plugin.PLAIN_HTTP_ENV: "1"}
    if key is not None:
        extra[PUBLIC_KEY_ENV] = str(key)
    return subprocess.run(
        [str(plugin()), f"{signed.name}:40.1.0"],
        env=cli_env(signed.home, chunk_size=1 << 20, extra=extra),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def refused(consumer: str, signed: Signed, tmp_path: Path, key: Path) -> str:
    """The consumer's one error line, exit 1, nothing written: `pull` leaves no output file nor
    partial, the plugin nothing on stdout and no file in its cache."""
    if consumer == "pull":
        out = tmp_path / "out"
        out.mkdir()
        done = pull(signed, out / "disk.qcow2", "--public-key", str(key))
        left = list(out.iterdir())
        prefix = "bootc-pipeline: error"
    else:
        cache = tmp_path / "cache"
        done = run_plugin(signed, cache, key)
        assert done.stdout == ""
        left = [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []
        prefix = "limactl-url-oras: error: "
    assert done.returncode == 1, done.stderr[-2000:]
    assert left == []
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith(prefix), done.stderr
    return errors[0]


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_signature_by_another_key_is_refused(consumer: str, signed: Signed, tmp_path: Path) -> None:
    other = make_key_pair(tmp_path / "other")
    line = refused(consumer, signed, tmp_path, other.public)
    assert "verifies with" in line and str(other.public) in line


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_unsigned_release_is_refused(
    consumer: str,
    registry: RunningRegistry,
    repository_name: str,
    tmp_path: Path,
    disks: DiskCache,
) -> None:
    unsigned, key = publish_unsigned(registry, repository_name, tmp_path, disks)
    line = refused(consumer, unsigned, tmp_path, key.public)
    assert "is not signed" in line and ".sig" in line


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_signature_over_another_digest_is_refused(
    consumer: str, signed: Signed, tmp_path: Path
) -> None:
    """The arm64 manifest's valid signature, put where the amd64 manifest's should be."""
    amd64, arm64 = forge_another_digest(signed)
    line = refused(consumer, signed, tmp_path, signed.key.public)
    assert f"is over {arm64}, not this digest" in line and amd64 in line


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_tampered_payload_is_refused(consumer: str, signed: Signed, tmp_path: Path) -> None:
    """A payload changed to name another digest, kept with the original signature."""
    layer = forge_tampered_payload(signed)
    line = refused(consumer, signed, tmp_path, signed.key.public)
    assert signed.index in line and "none of the 1 signature(s)" in line
    assert base64.b64decode(layer["annotations"][ss.SIGNATURE_ANNOTATION])  # kept as it was


def test_plugin_with_the_key_verifies_and_prints_the_template(
    signed: Signed, tmp_path: Path
) -> None:
    done = run_plugin(signed, tmp_path / "cache", signed.key.public)
    assert done.returncode == 0, done.stderr[-2000:]
    assert Path(done.stdout.strip()).is_file()
    assert "verified:" in done.stderr and "not verified" not in done.stderr
    bare = run_plugin(signed, tmp_path / "cache2", None)
    assert bare.returncode == 0, bare.stderr[-2000:]
    assert bare.stderr.count("not verified") == 1


def test_lima_refuses_before_the_cache_entry_exists(signed: Signed, tmp_path: Path) -> None:
    other = make_key_pair(tmp_path / "other")
    cache = tmp_path / "cache"
    argv = [
        sys.executable, "-m", "pipeline", "lima", f"{signed.name}:40.1.0", "--plain-http",
        "--platform", "all", "-o", str(tmp_path / "t.yaml"), "--public-key", str(other.public),
    ]  # fmt: skip
    env = cli_env(signed.home, chunk_size=1 << 20, extra={"XDG_CACHE_HOME": str(cache)})
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 1, done.stderr[-2000:]
    assert not (tmp_path / "t.yaml").exists()
    assert not any(p.is_file() for p in cache.rglob("*")) if cache.exists() else True
    assert Arch("amd64")  # both platforms resolve through the same check


def validate(signed: Signed, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pipeline", "validate", f"{signed.name}:40.1.0", "--plain-http"]
    return subprocess.run(
        [*argv, *args],
        env=cli_env(signed.home, chunk_size=1 << 20),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_validate_checks_signatures_and_referrers(signed: Signed, tmp_path: Path) -> None:
    done = validate(signed, "--public-key", str(signed.key.public))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "valid (" in done.stderr and "FAIL" not in done.stderr
    other = make_key_pair(tmp_path / "other")
    done = validate(signed, "--public-key", str(other.public))
    assert done.returncode == 1
    fails = [line for line in done.stderr.splitlines() if "FAIL" in line]
    assert len([f for f in fails if "verifies with" in f]) == 3  # the index and both disks
    assert any("DSSE envelope verifies" in f for f in fails)


def test_a_failed_signature_moves_no_tag(
    registry: RunningRegistry, repository_name: str, tmp_path: Path, disks: DiskCache
) -> None:
    """The registry refuses the signature manifest: the run fails and no release tag exists."""
    key = make_key_pair(tmp_path / "keys")
    with FaultProxy(registry.host) as proxy:
        rule = proxy.add(
            "respond", method="PUT", path=r"/manifests/sha256-[0-9a-f]{64}\.sig$", status=400,
            times=20, body=b'{"errors":[{"code":"DENIED","message":"no signatures here"}]}',
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        done = publish(
            RunningRegistry(proxy.host, f"http://{proxy.host}", registry.root, registry.config,
                            registry.workdir),
            repository_name, tmp_path, disks, "--signing-key", str(key.private),
        )  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    assert rule.injected >= 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("bootc-pipeline: error")]
    assert len(errors) == 1 and "signing failed, no tag was moved" in errors[0]
    assert tags(Access(registry.host), repository_name) == []


def test_a_bad_key_fails_before_anything_is_sent(
    registry: RunningRegistry, repository_name: str, tmp_path: Path, disks: DiskCache
) -> None:
    bad = tmp_path / "not-a-key.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWJ5dGVz\n-----END PRIVATE KEY-----\n")
    done = publish(registry, repository_name, tmp_path, disks, "--signing-key", str(bad))
    assert done.returncode == 2, done.stderr[-2000:]
    assert "c2VjcmV0LWJ5dGVz" not in done.stdout + done.stderr
    assert f"signing key {bad}: not a PEM private key" in done.stderr
    assert tags(Access(registry.host), repository_name) == []


def test_boot_ref_refuses_before_the_disk_is_written(signed: Signed, tmp_path: Path) -> None:
    """`boot REF` pulls through the same resolution: refused before a byte is written."""
    other = make_key_pair(tmp_path / "other")
    work = tmp_path / "boot-work"
    argv = [
        sys.executable, "-m", "pipeline", "boot", f"{signed.name}:40.1.0", "--plain-http",
        "--platform", "linux/amd64", "--workdir", str(work), "--public-key", str(other.public),
    ]  # fmt: skip
    env = cli_env(signed.home, chunk_size=1 << 20)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "verifies with" in done.stderr and str(other.public) in done.stderr
    assert not [p for p in work.rglob("*") if p.is_file()]  # no disk, no partial, no report


def test_the_join_signs_before_its_tags_move(
    distribution_registry: RunningRegistry, repository_name: str, tmp_path: Path
) -> None:
    """Two runners push one architecture each (unsigned, no tags); the join (`index`, what the
    nightly's last job runs) signs the index and both children with the key before tagging."""
    registry = distribution_registry
    (tmp_path / "disks").mkdir()
    cache = DiskCache(tmp_path / "disks")
    manifest = manifest_for(tmp_path, repository_name)
    env = cli_env(tmp_path / "home", chunk_size=1 << 20)
    results = []
    for arch in (Arch("amd64"), Arch("arm64")):
        seeds = {Arch("amd64"): 1, Arch("arm64"): 2}
        work = make_workdir(tmp_path / f"runner-{arch.value}", cache, archs=(arch,), seeds=seeds)
        done = run_push(
            push_argv(work, registry.host, "--arch", arch.value, manifest=manifest), env
        )
        assert done.returncode == 0, done.stderr[-3000:]
        results.append(work.variant_dir / f"result-{arch.value}.json")
    key = make_key_pair(tmp_path / "keys")
    join = tmp_path / "join"
    argv = [
        sys.executable, "-m", "pipeline", "index", *map(str, results), "--manifest", str(manifest),
        "--workdir", str(join), "--registry", registry.host, "--plain-http",
        "--signing-key", str(key.private),
    ]  # fmt: skip
    done = run_push(argv, env)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    signed_at = max(i for i, line in enumerate(lines) if "signed " in line)
    tagged_at = min(i for i, line in enumerate(lines) if "tagged " in line)
    assert signed_at < tagged_at  # every signature before the first tag
    report = json.loads((join / "fedora-40" / "release-report.json").read_text())
    name = f"{registry.host}/{repository_name}"
    digests = [report["index"]["digest"]]
    digests += [report["architectures"][a]["manifest"]["digest"] for a in ("amd64", "arm64")]
    for digest in digests:
        verdict = cosign_verify(key.public, f"{name}@{digest}")
        assert verdict.returncode == 0, verdict.stderr[-2000:]


def test_lima_without_a_key_says_once_for_both_platforms(signed: Signed, tmp_path: Path) -> None:
    argv = [
        sys.executable, "-m", "pipeline", "lima", f"{signed.name}:40.1.0", "--plain-http",
        "--platform", "all", "-o", str(tmp_path / "t.yaml"),
    ]  # fmt: skip
    extra = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "XDG_CONFIG_HOME": str(tmp_path / "c")}
    env = cli_env(signed.home, chunk_size=1 << 20, extra=extra)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("not verified") == 1
    assert (tmp_path / "t.yaml").is_file()
