"""RegistryClient against each real registry (docker-registry 2.8, distribution v3, olareg):
blobs and manifests, checked by other tools."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests

from pipeline.core.errors import PipelineError, UsageError
from pipeline.registry import OCI_INDEX, OCI_MANIFEST, BlobAction, RegistryClient
from pipeline.registry.errors import RegistryError
from pipeline.registry.retry import RetryPolicy
from tests.support.faultproxy import FaultProxy
from tests.support.registry import RegistryKind, RunningRegistry

pytestmark = pytest.mark.integration

CHUNK = 256 * 1024
EMPTY_CONFIG = b"{}"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_file(path: Path, size: int, seed: int = 1) -> tuple[str, int]:
    """Pseudo-random, incompressible content of `size` bytes (deterministic per seed)."""
    hasher = hashlib.sha256()
    block = hashlib.sha512(str(seed).encode()).digest() * 2048  # 128 KiB
    with path.open("wb") as out:
        left = size
        counter = 0
        while left > 0:
            piece = hashlib.sha256(counter.to_bytes(8, "big")).digest() + block
            piece = piece[: min(left, len(piece))]
            out.write(piece)
            hasher.update(piece)
            left -= len(piece)
            counter += 1
    return "sha256:" + hasher.hexdigest(), size


def curl_blob(registry: RunningRegistry, repository: str, digest: str) -> bytes:
    """Read a blob with curl: a client that shares no code with ours."""
    out = subprocess.run(
        ["curl", "-fsSL", "--max-time", "30", f"{registry.url}/v2/{repository}/blobs/{digest}"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return out.stdout


def artifact_manifest(layer_digest: str, layer_size: int) -> bytes:
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.test.v1",
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": EMPTY_DIGEST,
            "size": 2,
            "data": "e30=",
        },
        "layers": [
            {
                "mediaType": "application/x-qemu-qcow2+zstd",
                "digest": layer_digest,
                "size": layer_size,
                "annotations": {"org.opencontainers.image.title": "disk.qcow2.zst"},
            }
        ],
    }
    # Deliberately unusual formatting: the registry must store these exact bytes.
    return json.dumps(manifest, indent=3, sort_keys=False).encode() + b"\n"


@pytest.fixture
def registry(any_registry: RunningRegistry) -> RunningRegistry:
    """Every test here runs against all three registries (they take a second each)."""
    return any_registry


@pytest.fixture
def client(registry: RunningRegistry) -> RegistryClient:
    return RegistryClient(registry.host, plain_http=True, chunk_size=CHUNK)


def test_multi_chunk_blob_lands_intact(
    client: RegistryClient, registry: RunningRegistry, repository_name: str, tmp_path: Path
) -> None:
    path = tmp_path / "disk.bin"
    digest, size = make_file(path, 3 * 1024 * 1024 + 12345)
    reported: list[int] = []

    result = client.push_blob(repository_name, path, digest, size, progress=reported.append)

    assert result.action is BlobAction.UPLOADED
    assert result.bytes_sent == size
    assert sum(reported) == size
    assert len(reported) >= size // CHUNK  # one report per chunk
    fetched = curl_blob(registry, repository_name, digest)
    assert sha256(fetched) == digest and len(fetched) == size
    assert client.blob_exists(repository_name, digest)


def test_repush_is_skipped_by_head(
    client: RegistryClient, repository_name: str, tmp_path: Path
) -> None:
    data = b"x" * 1000
    digest = sha256(data)
    first = client.push_blob(repository_name, data, digest, len(data))
    again = client.push_blob(repository_name, data, digest, len(data))
    assert first.action is BlobAction.UPLOADED
    assert again.action is BlobAction.SKIPPED and again.bytes_sent == 0


def test_cross_repository_mount(client: RegistryClient, repository_name: str) -> None:
    data = b"mount me" * 5000
    digest = sha256(data)
    client.push_blob(repository_name, data, digest, len(data))
    other = repository_name + "-other"

    result = client.push_blob(other, data, digest, len(data), mount_from=[repository_name])

    assert result.action is BlobAction.MOUNTED and result.mounted_from == repository_name
    assert result.bytes_sent == 0
    assert client.fetch_blob(other, digest) == data


def test_mount_from_a_repository_without_the_blob_falls_back_to_upload(
    client: RegistryClient, repository_name: str
) -> None:
    data = b"not there" * 100
    digest = sha256(data)
    result = client.push_blob(repository_name, data, digest, len(data), mount_from=["nope/none"])
    assert result.action is BlobAction.UPLOADED and result.bytes_sent == len(data)
    assert client.fetch_blob(repository_name, digest) == data


def test_empty_blob(client: RegistryClient, repository_name: str) -> None:
    result = client.push_blob(repository_name, b"", sha256(b""), 0)
    assert result.action is BlobAction.UPLOADED
    assert client.fetch_blob(repository_name, sha256(b"")) == b""


def test_wrong_digest_is_never_published(client: RegistryClient, repository_name: str) -> None:
    data = b"some bytes" * 100
    wrong = sha256(b"other bytes")
    with pytest.raises(RegistryError) as caught:
        client.push_blob(repository_name, data, wrong, len(data))
    message = str(caught.value)
    # the spec's code is DIGEST_INVALID; olareg 0.2.2 answers BLOB_UPLOAD_INVALID
    assert "DIGEST_INVALID" in message or "BLOB_UPLOAD_INVALID" in message
    assert repository_name in message and client.registry in message
    assert "\n" not in message
    assert not client.blob_exists(repository_name, wrong)


def test_size_mismatch_is_refused_before_sending(
    client: RegistryClient, repository_name: str
) -> None:
    """The pipeline measured the file itself: a mismatch is a failure (exit 1), not bad input."""
    with pytest.raises(PipelineError, match="expected 11") as raised:
        client.push_blob(repository_name, b"0123456789", sha256(b"0123456789"), 11)
    assert not isinstance(raised.value, UsageError)


def test_fetch_blob_to_file_verifies(
    client: RegistryClient, repository_name: str, tmp_path: Path
) -> None:
    src = tmp_path / "src.bin"
    digest, size = make_file(src, 700_000, seed=7)
    client.push_blob(repository_name, src, digest, size)
    dest = tmp_path / "out.bin"
    seen: list[int] = []
    assert client.fetch_blob(repository_name, digest, dest, size=size, progress=seen.append) == dest
    assert dest.read_bytes() == src.read_bytes() and sum(seen) == size
    with pytest.raises(RegistryError, match="expected 5"):
        client.fetch_blob(repository_name, digest, tmp_path / "short.bin", size=5)
    assert not (tmp_path / "short.bin").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_fetch_missing_blob_names_the_error(client: RegistryClient, repository_name: str) -> None:
    with pytest.raises(RegistryError, match=r"404 BLOB_UNKNOWN") as caught:
        client.fetch_blob(repository_name, sha256(b"never pushed"))
    assert caught.value.status == 404


def push_artifact(client: RegistryClient, repository: str) -> tuple[bytes, str]:
    layer = b"layer bytes" * 1000
    client.push_blob(repository, EMPTY_CONFIG, EMPTY_DIGEST, 2)
    client.push_blob(repository, layer, sha256(layer), len(layer))
    body = artifact_manifest(sha256(layer), len(layer))
    return body, client.push_manifest(repository, "v1", body, OCI_MANIFEST)


def test_manifest_bytes_survive_exactly(
    client: RegistryClient, registry: RunningRegistry, repository_name: str
) -> None:
    body, digest = push_artifact(client, repository_name)
    assert digest == sha256(body)

    if shutil.which("skopeo") is None:
        pytest.fail("skopeo not found: apt-get install -y skopeo")
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false",
         f"docker://{registry.host}/{repository_name}@{digest}"],
        check=True, capture_output=True, timeout=60,
    ).stdout  # fmt: skip
    assert raw == body

    fetched = client.get_manifest(repository_name, "v1")
    assert fetched.body == body and fetched.digest == digest
    assert fetched.media_type == OCI_MANIFEST
    assert client.get_manifest(repository_name, digest).body == body
    assert client.manifest_digest(repository_name, "v1") == digest
    assert client.manifest_digest(repository_name, "v2") is None
    assert client.list_tags(repository_name) == ["v1"]


def test_index_push_and_tags(client: RegistryClient, repository_name: str) -> None:
    body, digest = push_artifact(client, repository_name)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "artifactType": "application/vnd.example.test.v1",
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": digest,
                    "size": len(body),
                    "platform": {"architecture": "amd64", "os": "linux"},
                }
            ],
        },
        separators=(",", ":"),
    ).encode()
    index_digest = client.push_manifest(repository_name, "latest", index, OCI_INDEX)
    fetched = client.get_manifest(repository_name, "latest")
    assert fetched.body == index and fetched.media_type == OCI_INDEX
    assert fetched.digest == index_digest
    # by digest too (the publish code pushes children by digest before the tagged index)
    assert client.push_manifest(repository_name, index_digest, index, OCI_INDEX) == index_digest
    assert sorted(client.list_tags(repository_name)) == ["latest", "v1"]


def test_list_tags_of_unknown_repository_is_empty(client: RegistryClient) -> None:
    assert client.list_tags("no/such-repository") == []


def test_manifest_over_4_mib_is_refused_before_sending(
    client: RegistryClient, repository_name: str
) -> None:
    body = b"{" + b" " * (4 * 1024 * 1024) + b"}"
    with pytest.raises(RegistryError, match="4 MiB"):
        client.push_manifest(repository_name, "big", body, OCI_MANIFEST)
    assert client.manifest_digest(repository_name, "big") is None


def test_manifest_under_wrong_digest_is_refused(
    client: RegistryClient, repository_name: str
) -> None:
    with pytest.raises(ValueError, match="under digest"):  # a caller's bug, not user input
        client.push_manifest(repository_name, sha256(b"x"), b"{}", OCI_MANIFEST)


def test_missing_manifest_error_names_registry_and_code(
    client: RegistryClient, repository_name: str
) -> None:
    with pytest.raises(RegistryError) as caught:
        client.get_manifest(repository_name, "nope")
    message = str(caught.value)
    assert message.startswith(f"registry {client.registry}, repository {repository_name}:")
    assert "404" in message and ("MANIFEST_UNKNOWN" in message or "NAME_UNKNOWN" in message)


def test_invalid_manifest_is_reported_with_registry_code(
    client: RegistryClient, repository_name: str
) -> None:
    bad = artifact_manifest(sha256(b"missing layer"), 13)
    client.push_blob(repository_name, EMPTY_CONFIG, EMPTY_DIGEST, 2)
    with pytest.raises(RegistryError, match="MANIFEST_BLOB_UNKNOWN|BLOB_UNKNOWN") as caught:
        client.push_manifest(repository_name, "bad", bad, OCI_MANIFEST)
    assert caught.value.status == 400
    assert "tries" not in str(caught.value)  # the layer is missing indeed: refused at once


# Debian's docker-registry (distribution 2.8.2) refuses a manifest whose blobs it holds while
# another client commits an upload of one of them to the same repository: the filesystem
# driver's PutContent truncates the blob's link file in place (registry/storage/driver/
# filesystem/driver.go, Writer: O_WRONLY|O_CREATE, then Truncate(0)), blobstore.readlink fails
# to parse the empty digest, and handlers/manifests.go answers exactly this body. Three racing
# publishes of one disk met it in CI (test_publish_faults::test_racing_publishers_...).
LINK_RACE_ANSWER = json.dumps(
    {
        "errors": [
            {"code": "DIGEST_INVALID", "message": "provided digest did not match uploaded content"},
            {
                "code": "MANIFEST_BLOB_UNKNOWN",
                "message": "blob unknown to registry",
                "detail": EMPTY_DIGEST,
            },
        ]
    }
).encode()


def test_a_manifest_refused_for_a_blob_the_registry_holds_is_pushed_again(
    registry: RunningRegistry, repository_name: str
) -> None:
    with FaultProxy(registry.host) as proxy:
        retry = RetryPolicy(max_attempts=5, base_delay=0.01, max_delay=0.05)
        client = RegistryClient(proxy.host, plain_http=True, retry=retry)
        layer = b"layer bytes" * 1000
        client.push_blob(repository_name, EMPTY_CONFIG, EMPTY_DIGEST, 2)
        client.push_blob(repository_name, layer, sha256(layer), len(layer))
        body = artifact_manifest(sha256(layer), len(layer))
        headers = {"Content-Type": "application/json; charset=utf-8"}
        path = rf"/v2/{repository_name}/manifests/"
        refuse = {"method": "PUT", "path": path, "status": 400, "headers": headers}
        proxy.add("respond", **refuse, body=LINK_RACE_ANSWER, times=2)
        assert client.push_manifest(repository_name, "v1", body, OCI_MANIFEST) == sha256(body)
        assert proxy.count("PUT", path) == 3
        assert client.get_manifest(repository_name, "v1").body == body
        proxy.add("respond", **refuse, body=LINK_RACE_ANSWER, times=5)
        with pytest.raises(RegistryError, match=r"MANIFEST_BLOB_UNKNOWN.*\(5 tries, though"):
            client.push_manifest(repository_name, "v2", body, OCI_MANIFEST)


def _commit(registry: RunningRegistry, repository: str, data: bytes) -> None:
    """One monolithic upload (POST, then PUT ?digest=) as any other client sends it."""
    started = requests.post(f"{registry.url}/v2/{repository}/blobs/uploads/", timeout=10)
    assert started.status_code == 202, started.text
    location = urljoin(registry.url, started.headers["Location"])
    separator = "&" if "?" in location else "?"
    done = requests.put(
        f"{location}{separator}digest={sha256(data)}",
        data=data,
        headers={"Content-Type": "application/octet-stream"},
        timeout=10,
    )
    assert done.status_code == 201, done.text


def test_manifests_go_up_while_other_clients_upload_their_blobs_again(
    registry: RunningRegistry, repository_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The real race behind LINK_RACE_ANSWER: three clients commit the layer again and again
    (as racing publishers that each found it missing do) while manifests naming it go up.
    Every push lands; on docker-registry some needed another try (seen in the log)."""
    client = RegistryClient(registry.host, plain_http=True)
    layer = b"racing layer" * 1000
    client.push_blob(repository_name, EMPTY_CONFIG, EMPTY_DIGEST, 2)
    client.push_blob(repository_name, layer, sha256(layer), len(layer))
    body = artifact_manifest(sha256(layer), len(layer))
    deadline = time.monotonic() + 20.0
    stop = threading.Event()
    failures: list[BaseException] = []

    def upload_again() -> None:
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                _commit(registry, repository_name, layer)
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            failures.append(error)

    threads = [threading.Thread(target=upload_again) for _ in range(3)]
    pushes = again = 0
    caplog.set_level(logging.INFO, logger="pipeline.registry.client")
    for thread in threads:
        thread.start()
    try:
        while time.monotonic() < deadline and pushes < 400:
            client.push_manifest(repository_name, f"t{pushes % 4}", body, OCI_MANIFEST)
            pushes += 1
            again = sum("trying again" in r.getMessage() for r in caplog.records)
            if pushes >= 100 and (again >= 2 or registry.kind != RegistryKind.DOCKER_REGISTRY):
                break
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
    assert not failures, failures
    assert pushes >= 100
    if registry.kind == RegistryKind.DOCKER_REGISTRY:
        assert again >= 1, f"{pushes} pushes met no refusal: the race was not exercised"
