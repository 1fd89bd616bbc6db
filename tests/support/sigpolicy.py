"""containers/image as the judge of our signatures: skopeo with a policy.json and a registries.d.

The skopeo here is built from its module (github.com/containers/skopeo v1.19.0, containers/image
v5.35) because Debian's skopeo 1.9.3 and podman 4.3.1 are built without sigstore support: with a
`sigstoreSigned` requirement they refuse every image with "Source image rejected: Debian-local
change: sigstore disabled" (seen here). It is static (CGO_ENABLED=0, the openpgp build tags), so
it also runs inside a container of a built image and reads that image's own /etc/containers.

Formats, from containers/image's man pages (docs/containers-policy.json.5.md `sigstoreSigned`,
docs/containers-registries.d.5.md `use-sigstore-attachments`): the policy.json and registries.d
the tests give skopeo are made by pipeline/trust/containerpolicy.py, the code that writes them
into the OS image.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline.core import mediatypes as mt
from pipeline.model.plan import Document
from pipeline.publishing import sign
from pipeline.registry.client import RegistryClient
from pipeline.trust.keys import load_signing_key
from pipeline.trust.subjects import Subject
from tests.support import gotools
from tests.support.keys import KeyPair
from tests.support.oci_push import push_blob, push_manifest

TIMEOUT = 120
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
SKOPEO = "skopeo"
BUILD_HINT = (
    "build it: cd $(mktemp -d) && go mod init t && GONOSUMDB=github.com/containers/skopeo "
    "go get github.com/containers/skopeo/cmd/skopeo@v1.19.0 && CGO_ENABLED=0 go build -tags "
    '"containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper" '
    f"-o {gotools.TOOLS_DIR}/skopeo github.com/containers/skopeo/cmd/skopeo "
    "(Debian's skopeo is built without sigstore and cannot judge)"
)


def skopeo_binary() -> str:
    """The sigstore-capable skopeo, never Debian's (which cannot verify): a missing one fails."""
    path = gotools.TOOLS_DIR / SKOPEO
    if not path.is_file():
        pytest.fail(
            f"skopeo with sigstore support not found at {path}: {BUILD_HINT}", pytrace=False
        )
    return str(path)


def _layer(text: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        data = text.encode()
        info = tarfile.TarInfo("etc/os-release")
        info.size, info.mtime = len(data), 0
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@dataclass(frozen=True)
class Pushed:
    """A small real container image: an OCI index over one image manifest per architecture."""

    host: str
    repository: str
    tag: str
    index: Document
    manifests: dict[str, Document]

    @property
    def name(self) -> str:
        return f"{self.host}/{self.repository}"

    def subjects(self) -> list[Subject]:
        """What publish signs for an image: the index and each per-architecture manifest."""
        found = [Subject("index", self.host, self.repository, self.index)]
        found += [
            Subject(f"os-image {arch}", self.host, self.repository, doc)
            for arch, doc in self.manifests.items()
        ]
        return found


def push_image(
    host: str, repository: str, tag: str, *, archs: tuple[str, ...] = ("amd64",)
) -> Pushed:
    manifests: dict[str, Document] = {}
    entries = []
    for arch in archs:
        layer = _layer(f"ID=test\nVARIANT={repository}\nARCH={arch}\n")
        layer_digest = push_blob(host, repository, layer)
        config = json.dumps(
            {"architecture": arch, "os": "linux", "config": {},
             "rootfs": {"type": "layers", "diff_ids": [layer_digest]}},
            separators=(",", ":"),
        ).encode()  # fmt: skip
        config_digest = push_blob(host, repository, config)
        body = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {
                "mediaType": mt.OCI_IMAGE_CONFIG,
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [{"mediaType": LAYER_TYPE, "digest": layer_digest, "size": len(layer)}],
        }
        digest = push_manifest(host, repository, digest_ref(body), body)
        manifests[arch] = Document(mt.OCI_MANIFEST, json.dumps(body, indent=3).encode())
        assert manifests[arch].digest == digest
        entries.append(
            {"mediaType": mt.OCI_MANIFEST, "digest": digest, "size": len(manifests[arch].body),
             "platform": {"architecture": arch, "os": "linux"}}
        )  # fmt: skip
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}
    push_manifest(host, repository, tag, index)
    return Pushed(
        host,
        repository,
        tag,
        Document(mt.OCI_INDEX, json.dumps(index, indent=3).encode()),
        manifests,
    )


def digest_ref(body: dict[str, object]) -> str:
    return Document(mt.OCI_MANIFEST, json.dumps(body, indent=3).encode()).digest


def sign_image(image: Pushed, key: KeyPair) -> list[sign.Signed]:
    """Sign with the function publish uses (pipeline/publishing/sign.py `sign_all`)."""
    signing = load_signing_key(key.private)
    assert signing is not None
    with RegistryClient(image.host, plain_http=True) as client:
        return sign.sign_all(client, image.subjects(), signing)


def copy(
    reference: str, dest: Path, *, policy: Path, registries_d: Path
) -> subprocess.CompletedProcess[str]:
    """`skopeo copy docker://REFERENCE dir:DEST` under that policy and registries.d."""
    argv = [
        skopeo_binary(), "--policy", str(policy), "--registries.d", str(registries_d),
        "copy", "--src-tls-verify=false", f"docker://{reference}", f"dir:{dest}",
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)


def refusal(proc: subprocess.CompletedProcess[str]) -> str:
    """skopeo's one fatal line (logrus: `level=fatal msg="..."`)."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "level=fatal" in line]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def proxy_open(reference: str, *, policy: Path, registries_d: Path) -> dict[str, Any]:
    """OpenImage through `skopeo experimental-image-proxy`, the call bootc makes for every pull
    (bootc's ostree-ext through containers-image-proxy-rs): the proxy checks the policy on the
    top-level manifest, the index (skopeo cmd/skopeo/proxy.go `OpenImage`, protocol 0.2.6),
    where `skopeo copy` of one platform checks the instance it copies (containers/image
    copy/single.go). The JSON reply: `success`, and `error` when it refused."""
    options = [skopeo_binary(), "--policy", str(policy), "--registries.d", str(registries_d)]
    return _proxy(lambda fd: options, reference, env=None, fd_inside=None)


def proxy_open_in(
    launcher: list[str], skopeo_inside: str, reference: str, env: dict[str, str]
) -> dict[str, Any]:
    """The same call made by SKOPEO_INSIDE run by LAUNCHER (`podman run --preserve-fds 1 ...
    IMAGE`, the socket as fd 3 inside), with the image's own policy.json and registries.d."""
    return _proxy(lambda fd: [*launcher, skopeo_inside], reference, env=env, fd_inside=3)


def _proxy(
    command: Callable[[int], list[str]], reference: str, *, env: dict[str, str] | None,
    fd_inside: int | None,
) -> dict[str, Any]:  # fmt: skip
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    fd = fd_inside if fd_inside is not None else child.fileno()
    argv = [*command(fd), "experimental-image-proxy", "--sockfd", str(fd), "--tls-verify=false"]
    theirs = child.fileno()
    proc = subprocess.Popen(
        argv,
        pass_fds=[fd],
        env=env,
        stderr=subprocess.PIPE,
        # the socket at the fd number the launcher passes on (podman --preserve-fds: 3)
        preexec_fn=(lambda: os.dup2(theirs, fd)) if fd != theirs else None,
    )
    child.close()
    parent.settimeout(TIMEOUT)
    try:
        replies = []
        for method, args in (("Initialize", []), ("OpenImage", [f"docker://{reference}"])):
            parent.sendall(json.dumps({"method": method, "args": args}).encode())
            data = parent.recv(1 << 20)
            assert data, f"the proxy closed its socket: {argv}"
            replies.append(json.loads(data))
        assert replies[0]["success"], replies[0]
        opened: dict[str, Any] = replies[1]
        return opened
    finally:
        parent.close()  # the proxy ends when its socket closes
        try:
            proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=TIMEOUT)
        if proc.stderr is not None:
            proc.stderr.close()
