"""The environment's credentials stay with the target registry (issue 14).

A second registry on another loopback port stands in for the base's registry: quay.io as its
users meet it (tests/support/ecosystem.py: a bearer-token challenge on every /v2/ request, a
token service on its own host that refuses foreign credentials, blobs redirected to storage on
another host), in front of a real docker-registry holding a fake base (an index of an amd64 and
an arm64 image), a fake builder image and a release. The front records every Authorization
header it receives, token service included.

With $BOOTC_PIPELINE_REGISTRY_USERNAME/_PASSWORD set for the target (a real docker-registry
with htpasswd), a publish that reads the base's and the builder's digests from the stand-in, a
`pull` and a `lima` of the release on it must never send it a credential: no Basic header, no
authenticated token request, so every Bearer token it sees is one it issued anonymously. One
publish runs to its first step that needs the container engine (none is given), with the
builder image on the stand-in too; another runs whole (build, disk, compress, push) with the
real engine and the bootc-image-builder stand-in.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main as pipeline_cli
from pipeline.core import mediatypes as mt
from tests.support.clients import count_clients
from tests.support.ecosystem import QUAY, RegistryFront
from tests.support.images import FakeBases
from tests.support.oci_push import push_blob, push_manifest
from tests.support.podman import PodmanService
from tests.support.registry import RunningRegistry, start_registry
from tests.support.workdirs import (
    CREATED,
    REVISION,
    DiskCache,
    cli_env,
    make_workdir,
    manifest_path,
    push_argv,
    run_push,
)

pytestmark = pytest.mark.integration

RELEASE = "bootc-lima/fedora-bootc-lima"
TAG = "40.1.0"
BASE = "fake/fedora-bootc"
BUILDER = "fake/bootc-image-builder"
CLI_TIMEOUT = 180.0


@dataclass
class World:
    target: RunningRegistry  # htpasswd: the environment's credentials are its
    base_store: RunningRegistry  # behind `base`, anonymous
    base: RegistryFront  # the stand-in base registry (quay.io's behaviour)
    base_children: dict[str, str]  # arch -> digest of the fake base's image
    builder_digest: str
    home: Path

    def env(self, home: Path, **extra: str) -> dict[str, str]:
        assert self.target.username and self.target.password
        return cli_env(
            home,
            chunk_size=1 << 20,
            extra={
                "BOOTC_PIPELINE_REGISTRY_USERNAME": self.target.username,
                "BOOTC_PIPELINE_REGISTRY_PASSWORD": self.target.password,
                **extra,
            },
        )


def _image(host: str, repository: str, arch: str) -> dict[str, object]:
    config = json.dumps({"architecture": arch, "os": "linux"}).encode()
    layer = f"a {arch} layer".encode()
    return {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": push_blob(host, repository, config),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": push_blob(host, repository, layer),
                "size": len(layer),
            }
        ],
    }


def _push_fake_base(host: str) -> dict[str, str]:
    children: dict[str, str] = {}
    entries = []
    for arch in ("amd64", "arm64"):
        document = _image(host, BASE, arch)
        digest = push_manifest(host, BASE, f"{arch}-only", document)
        children[arch] = digest
        size = len(json.dumps(document, indent=3).encode())
        entries.append(
            {
                "mediaType": mt.OCI_MANIFEST,
                "digest": digest,
                "size": size,
                "platform": {"architecture": arch, "os": "linux"},
            }
        )
    push_manifest(host, BASE, "40", {"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                                     "manifests": entries})  # fmt: skip
    return children


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("stay")
    target = start_registry(directory / "target", htpasswd=True)
    base_store = start_registry(directory / "base")
    base = RegistryFront(base_store.host, QUAY, username="base-owner", password="quay-" + "0" * 20)
    try:
        base.public.update({BASE, BUILDER, RELEASE})  # public images, as the Fedora base is
        children = _push_fake_base(base_store.host)
        builder = push_manifest(base_store.host, BUILDER, "latest",
                                _image(base_store.host, BUILDER, "amd64"))  # fmt: skip
        home = directory / "home"
        (directory / "disks").mkdir()
        work = make_workdir(directory / "work", DiskCache(directory / "disks"))
        pushed = run_push(push_argv(work, base_store.host), cli_env(home, chunk_size=1 << 20))
        assert pushed.returncode == 0, pushed.stderr[-3000:]
        yield World(target, base_store, base, children, builder, home)
    finally:
        base.close()
        base_store.stop()
        target.stop()


@pytest.fixture
def base(world: World) -> RegistryFront:
    """The stand-in base registry, its records cleared."""
    world.base.seen.clear()
    world.base.token_requests.clear()
    world.base.store.seen.clear()
    return world.base


def credentials_seen(front: RegistryFront) -> list[str]:
    """What the stand-in received that is a credential, as "SCHEME to PATH" (no secret)."""
    basic = [f"Basic to {s.path.split('?')[0]}" for s in front.seen
             if (s.authorization or "").startswith("Basic ")]  # fmt: skip
    tokens = [f"Basic to {front.profile.token_path} (token request)"
              for _, authenticated in front.token_requests if authenticated]  # fmt: skip
    stored = [f"{(s.authorization or '').split(' ')[0]} to blob storage"
              for s in front.store.seen if s.authorization]  # fmt: skip
    return sorted(set(basic + tokens + stored))


def summary(front: RegistryFront) -> str:
    """The Authorization headers the stand-in received, as "N ...: [SCHEME to PATH]"."""
    headers = [s for s in front.seen if s.authorization]
    kinds = sorted({f"{(s.authorization or '').split(' ')[0]} to "
                    + re.sub(r"sha256:[0-9a-f]{64}", "sha256:...", s.path.split("?")[0])
                    for s in headers})  # fmt: skip
    return f"{len(headers)} Authorization headers of {len(front.seen)} requests: {kinds}"


def cli(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )


def test_publish_reads_the_base_without_the_targets_credentials(
    world: World, base: RegistryFront, tmp_path: Path
) -> None:
    workdir = tmp_path / "work"
    proc = cli(
        "publish", "--manifest", str(manifest_path("fedora-40")), "--workdir", str(workdir),
        "--registry", world.target.host, "--plain-http", "--arch", "amd64", "--skip-boot",
        "--base-image", f"{base.host}/{BASE}:40",
        "--builder-image", f"{base.host}/{BUILDER}:latest",
        "--engine", f"unix://{tmp_path}/no-engine.sock",
        "--revision", REVISION, "--created", CREATED,
        env=world.env(tmp_path / "home"),
    )  # fmt: skip
    print("stand-in base registry, publish:", summary(base))
    assert credentials_seen(base) == [], summary(base)
    # It got as far as the engine: push access to the target with the environment's
    # credentials, then the inputs, read from the stand-in anonymously.
    assert proc.returncode == 1 and "cannot reach the container engine" in proc.stderr, proc.stderr[
        -2000:
    ]
    record = json.loads((workdir / "fedora-40" / "inputs.json").read_text())["inputs"]
    assert record["baseDigests"] == world.base_children
    assert record["builderDigest"] == world.builder_digest
    assert base.token_requests and any(s.authorization for s in base.seen)  # it was asked
    assert world.target.password is not None
    assert world.target.password not in proc.stdout + proc.stderr


@pytest.mark.parametrize("registry_flag", [True, False], ids=["--registry=target", "no-flag"])
def test_pull_from_another_registry_sends_it_no_credentials(
    world: World, base: RegistryFront, tmp_path: Path, registry_flag: bool
) -> None:
    flags = ["--registry", world.target.host] if registry_flag else []
    proc = cli("pull", f"{base.host}/{RELEASE}:{TAG}", "--plain-http", *flags,
               "--platform", "amd64", "-o", f"{tmp_path}/", "--json",
               env=world.env(tmp_path / "home"))  # fmt: skip
    print("stand-in base registry, pull:", summary(base))
    assert credentials_seen(base) == [], summary(base)
    assert proc.returncode == 0, proc.stderr[-2000:]
    pulled = Path(json.loads(proc.stdout)["path"])
    assert pulled.is_file() and base.store.seen  # the blob came from the blob storage


def test_lima_from_another_registry_sends_it_no_credentials(
    world: World, base: RegistryFront, tmp_path: Path
) -> None:
    template = tmp_path / "lima.yaml"
    env = world.env(tmp_path / "home", XDG_CACHE_HOME=str(tmp_path / "cache"))
    proc = cli("lima", f"{base.host}/{RELEASE}:{TAG}", "--plain-http",
               "--registry", world.target.host, "--platform", "amd64", "-o", str(template),
               env=env)  # fmt: skip
    print("stand-in base registry, lima:", summary(base))
    assert credentials_seen(base) == [], summary(base)
    assert proc.returncode == 0, proc.stderr[-2000:]
    image = yaml.safe_load(template.read_text())["images"][0]
    digest = hashlib.sha256(Path(image["location"]).read_bytes()).hexdigest()
    assert image["digest"] == f"sha256:{digest}"


def test_validate_of_another_registry_sends_it_no_credentials(
    world: World, base: RegistryFront, tmp_path: Path
) -> None:
    proc = cli("validate", f"{base.host}/{RELEASE}:{TAG}", "--plain-http",
               "--registry", world.target.host, env=world.env(tmp_path / "home"))  # fmt: skip
    print("stand-in base registry, validate:", summary(base))
    assert credentials_seen(base) == [], summary(base)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_the_environments_credentials_reach_the_registry_that_registry_names(
    world: World, base: RegistryFront, tmp_path: Path
) -> None:
    """The other side: named with --registry, the stand-in is the one that gets them."""
    assert world.target.username and world.target.password
    base.username, base.password = world.target.username, world.target.password
    try:
        proc = cli("pull", f"{base.host}/{RELEASE}:{TAG}", "--plain-http",
                   "--registry", base.host, "--platform", "amd64", "-o", f"{tmp_path}/",
                   env=world.env(tmp_path / "home"))  # fmt: skip
    finally:
        base.username, base.password = "base-owner", "quay-" + "0" * 20
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert any(authenticated for _, authenticated in base.token_requests)


def test_every_registry_client_a_command_makes_is_closed(
    world: World, base: RegistryFront, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A nightly's publish makes four: the version's look-up, the target's, the base's and
    the builder's registries; each is closed (its connections with it), here after a failure."""
    clients = count_clients(monkeypatch)
    env = world.env(tmp_path / "home")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("BOOTC_PIPELINE_REGISTRY_USERNAME", "BOOTC_PIPELINE_REGISTRY_PASSWORD"):
        monkeypatch.delenv(key)  # the target's login from the docker config instead
    login = base64.b64encode(f"{world.target.username}:{world.target.password}".encode())
    config = {"auths": {world.target.host: {"auth": login.decode()}}}
    (Path(env["DOCKER_CONFIG"]) / "config.json").write_text(json.dumps(config))
    status = pipeline_cli.main([
        "publish", "--manifest", str(manifest_path("fedora-40-nightly")),
        "--workdir", str(tmp_path / "work"), "--registry", world.target.host, "--plain-http",
        "--arch", "amd64", "--skip-boot", "--base-image", f"{base.host}/{BASE}:40",
        "--builder-image", f"{base.host}/{BUILDER}:latest",
        "--engine", f"unix://{tmp_path}/no-engine.sock", "--revision", REVISION,
        "--created", CREATED,
    ])  # fmt: skip
    assert status == 1  # no engine
    assert credentials_seen(base) == []
    assert len(clients.made) == 4 and clients.all_closed()


def test_a_whole_publish_sends_the_stand_in_base_registry_no_credentials(
    world: World,
    base: RegistryFront,
    tmp_path: Path,
    podman: PodmanService,
    fake_bases: FakeBases,
    bib_standin: str,
) -> None:
    """Build, disk, compress and push with the real engine, the base by its stand-in name (a
    local manifest list, also pushed to the stand-in, where the inputs are read from)."""
    name = f"{base.host}/{BASE}:whole"
    podman.cli("manifest", "rm", name, check=False)
    podman.cli("manifest", "create", name)
    for arch in ("amd64", "arm64"):  # the inputs record every architecture of the release
        instance = fake_bases.instance("fedora", arch)
        podman.cli("manifest", "add", name, f"containers-storage:{instance}")
    podman.cli("manifest", "push", "--all", "--tls-verify=false", name,
               f"docker://{world.base_store.host}/{BASE}:whole")  # fmt: skip
    workdir = tmp_path / "work"
    proc = cli(
        "publish", "--manifest", str(manifest_path("fedora-40")), "--workdir", str(workdir),
        "--registry", world.target.host, "--plain-http", "--arch", "amd64", "--skip-boot",
        "--base-image", name, "--builder-image", bib_standin, "--engine", podman.url,
        "--revision", REVISION, "--created", CREATED,
        env=world.env(tmp_path / "home"),
    )  # fmt: skip
    print("stand-in base registry, whole publish:", summary(base))
    assert credentials_seen(base) == [], summary(base)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (workdir / "fedora-40" / "release-report.json").is_file()
