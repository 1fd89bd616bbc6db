"""A release manifest with `trust: {public_key: ...}` builds an OS image that carries the files
making containers/image in the guest verify the OS image's signature, and those very files, at
their own paths inside the image, do: the image's own skopeo run (the sigstore-capable static
skopeo, bind-mounted into a container of the built image) accepts the image once it is pushed
and signed by pipeline/publishing/sign.py, refuses an unsigned tag of the same repository, and
still accepts an unsigned image of another repository (the distribution's rules are kept);
skopeo's image proxy, the call bootc makes, run in the same container, accepts and refuses alike.

Real Podman, a real registry on 127.0.0.1. The base stands in for fedora-bootc with the policy
fedora-bootc ships: containers-common's `default-policy.json` and its registries.d entry for
registry.redhat.io (containers-common.spec, Source24 / Source23: default `insecureAcceptAnything`,
`sigstoreSigned` for registry.access.redhat.com and registry.redhat.io, docker-daemon accepted).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.model.plan import Document
from pipeline.publishing.sign import sign_all
from pipeline.registry.client import RegistryClient
from pipeline.trust import containerpolicy
from pipeline.trust.keys import load_signing_key
from pipeline.trust.subjects import Subject
from tests.factories import ROOT
from tests.support.images import FakeBases
from tests.support.keys import KeyPair, make_key_pair
from tests.support.podman import PodmanService
from tests.support.registry import RunningRegistry
from tests.support.sigpolicy import proxy_open_in, push_image, skopeo_binary

pytestmark = pytest.mark.integration
ENV = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
NO_BUILDER = "127.0.0.1:9/unused/builder@sha256:" + "0" * 64  # the build never asks it
RH_KEY = "/etc/pki/sigstore/SIGSTORE-redhat-release3"
FEDORA_POLICY = {  # containers-common's default-policy.json, as fedora-bootc ships it
    "default": [{"type": "insecureAcceptAnything"}],
    "transports": {
        "docker": {
            registry: [
                {
                    "type": "sigstoreSigned",
                    "keyPath": RH_KEY,
                    "rekorPublicKeyPath": "/etc/pki/sigstore/REKOR-signing-key",
                }
            ]
            for registry in ("registry.access.redhat.com", "registry.redhat.io")
        },
        "docker-daemon": {"": [{"type": "insecureAcceptAnything"}]},
    },
}
RH_REGISTRIES_D = "docker:\n     registry.redhat.io:\n         use-sigstore-attachments: true\n"
CONTAINERFILE = """ARG BASE
FROM ${BASE}
COPY policy.json /etc/containers/policy.json
COPY registry.redhat.io.yaml /etc/containers/registries.d/registry.redhat.io.yaml
LABEL containers.bootc=1
"""
JUDGE = "/run/judge/skopeo"


def _release(directory: Path, registry: RunningRegistry, repository: str, key: KeyPair) -> Path:
    context = directory / "context"
    context.mkdir(parents=True)
    (context / "Containerfile").write_text(CONTAINERFILE)
    (context / "policy.json").write_text(json.dumps(FEDORA_POLICY, indent=4))
    (context / "registry.redhat.io.yaml").write_text(RH_REGISTRIES_D)
    manifest: dict[str, Any] = yaml.safe_load((ROOT / "manifests" / "fedora-40.yaml").read_text())
    manifest["repository"] = f"{registry.host}/{repository}"
    manifest["containerfile"] = "context/Containerfile"
    manifest["trust"] = {"public_key": str(key.public.relative_to(directory))}
    path = directory / "manifests" / "fedora-40.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(manifest))
    return path


def _build(podman: PodmanService, manifest: Path, workdir: Path, base: str) -> str:
    argv = [
        sys.executable, "-m", "pipeline", "build", "--manifest", str(manifest),
        "--arch", "amd64", "--engine", podman.url, "--workdir", str(workdir),
        "--base-image", base, "--builder-image", NO_BUILDER,
    ]  # fmt: skip
    proc = subprocess.run(
        argv, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900, check=False
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "the guest verifies" in proc.stderr
    stamp = json.loads((workdir / "fedora-40" / "amd64" / "build.json").read_text())
    return str(stamp["outputs"]["tag"])


def _read(podman: PodmanService, image: str, path: str) -> bytes:
    return podman.cli("run", "--rm", "--network=none", image, "cat", path).stdout


def _judge(podman: PodmanService, image: str, reference: str) -> subprocess.CompletedProcess[bytes]:
    """`skopeo copy` inside a container of IMAGE: its own /etc/containers and /etc/pki."""
    return podman.cli(
        "run", "--rm", "--network=host", "-v", f"{skopeo_binary()}:{JUDGE}:ro", image,
        JUDGE, "copy", "--src-tls-verify=false", f"docker://{reference}", "dir:/tmp/copied",
        check=False,
    )  # fmt: skip


def _proxy(podman: PodmanService, image: str, reference: str) -> dict[str, Any]:
    """skopeo's image proxy (the call bootc makes) inside a container of IMAGE."""
    launcher = podman.argv(
        "run", "--rm", "--network=host", "--preserve-fds=1",
        "-v", f"{skopeo_binary()}:{JUDGE}:ro", image,
    )  # fmt: skip
    return proxy_open_in(launcher, JUDGE, reference, podman.env)


def test_the_os_image_carries_a_policy_that_verifies_it(
    podman: PodmanService,
    fake_bases: FakeBases,
    registry: RunningRegistry,
    repository_name: str,
    tmp_path: Path,
) -> None:
    release = tmp_path / "release"
    key = make_key_pair(release / "keys")
    manifest = _release(release, registry, repository_name, key)
    tag = _build(podman, manifest, tmp_path / "work", fake_bases.instance("fedora", "amd64"))
    scope = f"{registry.host}/{repository_name}-os"

    # the files, read back from the built image
    name = "fedora-bootc-lima"
    assert _read(podman, tag, f"/etc/pki/containers/{name}.pub") == key.public.read_bytes()
    registries_d = _read(podman, tag, f"/etc/containers/registries.d/{name}.yaml")
    assert yaml.safe_load(registries_d) == {"docker": {scope: {"use-sigstore-attachments": True}}}
    assert _read(podman, tag, "/etc/containers/registries.d/registry.redhat.io.yaml") == (
        RH_REGISTRIES_D.encode()
    )
    policy = json.loads(_read(podman, tag, containerpolicy.POLICY_PATH))
    want = json.loads(json.dumps(FEDORA_POLICY))
    want["transports"]["docker"][scope] = [
        {
            "type": "sigstoreSigned",
            "keyPath": f"/etc/pki/containers/{name}.pub",
            "signedIdentity": {"type": "matchRepository"},
        }
    ]
    assert policy == want  # the distribution's rules kept, ours added for the OS image only

    # the image's own files judge: the OS image, pushed and signed, verifies
    podman.cli("push", "--format=oci", "--tls-verify=false", tag, f"docker://{scope}:40")
    signing = load_signing_key(key.private)
    assert signing is not None
    with RegistryClient(registry.host, plain_http=True) as client:
        fetched = client.get_manifest(f"{repository_name}-os", "40")
        document = Document(fetched.media_type, fetched.body)
        subject = Subject("os-image amd64", registry.host, f"{repository_name}-os", document)
        sign_all(client, [subject], signing)
    accepted = _judge(podman, tag, f"{scope}:40")
    assert accepted.returncode == 0, accepted.stderr.decode()[-2000:]
    assert _proxy(podman, tag, f"{scope}:40")["success"] is True

    # an unsigned image under the OS image's repository is refused ...
    push_image(registry.host, f"{repository_name}-os", "41")
    refused = _judge(podman, tag, f"{scope}:41")
    assert refused.returncode != 0
    assert (
        b"Source image rejected: A signature was required, but no signature exists"
        in refused.stderr
    ), refused.stderr
    opened = _proxy(podman, tag, f"{scope}:41")
    assert opened == opened | {"success": False}
    assert opened["error"] == "A signature was required, but no signature exists"
    # ... and an unsigned image of another repository is not: the default still holds
    other = push_image(registry.host, f"{repository_name}-other", "1")
    elsewhere = _judge(podman, tag, f"{other.name}:1")
    assert elsewhere.returncode == 0, elsewhere.stderr.decode()[-2000:]


def test_a_bad_public_key_fails_before_the_build(tmp_path: Path, registry: RunningRegistry) -> None:
    release = tmp_path / "release"
    key = make_key_pair(release / "keys")
    key.public.write_text("not a key\n")
    manifest = _release(release, registry, "unused", key)
    argv = [
        sys.executable, "-m", "pipeline", "build", "--manifest", str(manifest), "--arch",
        "amd64", "--engine", "unix:///nonexistent.sock", "--workdir", str(tmp_path / "w"),
        "--builder-image", NO_BUILDER,
    ]  # fmt: skip
    proc = subprocess.run(
        argv, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "error" in line]
    source = f"trust.public_key in {manifest}"
    want = f"bootc-pipeline: error: public key {key.public} ({source}): not a PEM public key"
    assert lines == [want], proc.stderr
