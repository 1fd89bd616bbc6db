"""Resume, restart and retry against a real docker-registry behind a fault-injecting proxy.

docker-registry appends whatever a PATCH carries (it ignores Content-Range), so these tests would
catch a client that resends a chunk the registry already has: the digest check at commit would
fail, or the byte counts would show it.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import time
from pathlib import Path

import pytest

from pipeline.core.errors import PipelineError
from pipeline.registry import OCI_MANIFEST, BlobAction, RegistryClient, RetryPolicy, Timeouts
from pipeline.registry.errors import RegistryError
from pipeline.registry.transport import ConnectionFailed
from tests.support.registry import FaultyProxy, RunningRegistry, free_port, start_registry

pytestmark = pytest.mark.integration

CHUNK = 256 * 1024
SIZE = 3 * 1024 * 1024 + 4321  # 13 chunks
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


class FakeTime:
    """A clock that only moves when the client sleeps: retries cost no real time."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def policy(self, *, max_attempts: int = 5, total_seconds: float = 120.0) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=max_attempts,
            total_seconds=total_seconds,
            sleep=self.sleep,
            clock=self.clock,
            rng=lambda: 1.0,
        )


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def blob(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "blob.bin"
    data = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(SIZE // 32 + 1))
    path.write_bytes(data[:SIZE])
    return path, "sha256:" + hashlib.sha256(data[:SIZE]).hexdigest()


def proxied_client(
    proxy: FaultyProxy, fake_time: FakeTime, *, timeouts: Timeouts | None = None
) -> RegistryClient:
    return RegistryClient(
        proxy.host, plain_http=True, chunk_size=CHUNK, retry=fake_time.policy(), timeouts=timeouts
    )


def read_back(registry: RunningRegistry, repository: str, digest: str) -> bytes:
    """Through a fresh client straight to the registry (not through the proxy)."""
    with RegistryClient(registry.host, plain_http=True) as direct:
        return direct.fetch_blob(repository, digest)


def test_lost_patch_answer_starts_a_new_session(
    faulty_proxy: FaultyProxy,
    registry: RunningRegistry,
    fake_time: FakeTime,
    blob: tuple[Path, str],
    repository_name: str,
) -> None:
    """The registry stored chunk 3 but the client never heard, so its upload URL is stale.

    docker-registry 2.8 then cancels the session (the `_state` offset no longer matches) and the
    status query answers 404: the client must start over, not append chunk 4 to a dead upload.
    """
    path, digest = blob
    faulty_proxy.add_fault("PATCH", 3, "reset-after")
    client = proxied_client(faulty_proxy, fake_time)

    result = client.push_blob(repository_name, path, digest, SIZE)

    assert result.action is BlobAction.UPLOADED
    assert (result.resumes, result.new_sessions, result.restarts) == (1, 1, 0)
    assert result.bytes_sent == SIZE + 3 * CHUNK  # chunks 1-3 went twice
    assert faulty_proxy.count("GET") == 1 and faulty_proxy.count("POST") == 2
    assert hashlib.sha256(read_back(registry, repository_name, digest)).hexdigest() == digest[7:]


def test_reset_patch_resends_only_the_lost_chunk(
    faulty_proxy: FaultyProxy,
    registry: RunningRegistry,
    fake_time: FakeTime,
    blob: tuple[Path, str],
    repository_name: str,
) -> None:
    path, digest = blob
    faulty_proxy.add_fault("PATCH", 4, "reset-before")
    faulty_proxy.add_fault("PATCH", 9, "reset-before")
    client = proxied_client(faulty_proxy, fake_time)
    progress: list[int] = []

    result = client.push_blob(repository_name, path, digest, SIZE, progress=progress.append)

    resent = result.bytes_sent - SIZE
    assert result.resumes == 2
    assert 0 < resent <= 2 * CHUNK < SIZE
    assert sum(progress) == SIZE
    assert read_back(registry, repository_name, digest) == path.read_bytes()
    print(f"blob {SIZE} B, chunk {CHUNK} B, 2 resets: re-sent {resent} B")


def test_vanished_upload_session_starts_a_new_one(
    faulty_proxy: FaultyProxy,
    registry: RunningRegistry,
    fake_time: FakeTime,
    blob: tuple[Path, str],
    repository_name: str,
) -> None:
    path, digest = blob
    gone = json.dumps({"errors": [{"code": "BLOB_UPLOAD_UNKNOWN", "message": "upload unknown"}]})
    headers = {"Content-Type": "application/json"}
    faulty_proxy.add_fault("PATCH", 5, "respond", status=404, headers=headers, body=gone.encode())
    faulty_proxy.add_fault("GET", 1, "respond", status=404, headers=headers, body=gone.encode())
    client = proxied_client(faulty_proxy, fake_time)

    result = client.push_blob(repository_name, path, digest, SIZE)

    assert result.new_sessions == 1 and faulty_proxy.count("POST") == 2
    assert read_back(registry, repository_name, digest) == path.read_bytes()


def test_corrupted_chunk_is_caught_by_the_digest_and_restarted_once(
    faulty_proxy: FaultyProxy,
    registry: RunningRegistry,
    fake_time: FakeTime,
    blob: tuple[Path, str],
    repository_name: str,
) -> None:
    path, digest = blob
    faulty_proxy.add_fault("PATCH", 2, "corrupt")
    client = proxied_client(faulty_proxy, fake_time)

    result = client.push_blob(repository_name, path, digest, SIZE)

    assert result.restarts == 1 and result.bytes_sent == 2 * SIZE
    assert read_back(registry, repository_name, digest) == path.read_bytes()


def test_persistent_corruption_fails_without_publishing(
    faulty_proxy: FaultyProxy,
    fake_time: FakeTime,
    repository_name: str,
) -> None:
    data = b"z" * (CHUNK + 10)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    faulty_proxy.add_fault("PATCH", 1, "corrupt")
    faulty_proxy.add_fault("PATCH", 3, "corrupt")  # the restart's first chunk
    client = proxied_client(faulty_proxy, fake_time)

    with pytest.raises(RegistryError, match=r"\(second try\) failed: 400 DIGEST_INVALID"):
        client.push_blob(repository_name, data, digest, len(data))
    assert not client.blob_exists(repository_name, digest)


def test_lost_commit_answer_is_recognised(
    faulty_proxy: FaultyProxy, fake_time: FakeTime, repository_name: str
) -> None:
    data = b"commit" * 1000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    faulty_proxy.add_fault("PUT", 1, "reset-after")
    client = proxied_client(faulty_proxy, fake_time)

    result = client.push_blob(repository_name, data, digest, len(data))

    assert result.action is BlobAction.UPLOADED and result.restarts == 0
    assert client.fetch_blob(repository_name, digest) == data


def test_relative_locations(
    fake_time: FakeTime, blob: tuple[Path, str], repository_name: str, tmp_path: Path
) -> None:
    """A registry configured with relativeurls; query strings (_state) must survive."""
    path, digest = blob
    reg = start_registry(tmp_path / "relative", relative_urls=True)
    try:
        proxy = FaultyProxy(reg.host)
        proxy.add_fault("PATCH", 2, "reset-before")
        try:
            client = proxied_client(proxy, fake_time)
            result = client.push_blob(repository_name, path, digest, SIZE)
            assert result.resumes == 1 and result.bytes_sent == SIZE + CHUNK
            assert any("_state=" in entry.path for entry in proxy.log if entry.method == "PUT")
            assert all(not e.path.startswith("http") for e in proxy.log)
        finally:
            proxy.close()
        assert read_back(reg, repository_name, digest) == path.read_bytes()
    finally:
        reg.stop()


def test_upload_survives_a_registry_restart(
    registry: RunningRegistry, fake_time: FakeTime, repository_name: str
) -> None:
    """Upload sessions live in storage (the HTTP secret is fixed), so a restart mid-push is ok."""
    data = bytes(range(256)) * 4096
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    client = RegistryClient(
        registry.host, plain_http=True, chunk_size=CHUNK, retry=fake_time.policy()
    )
    calls = 0

    def restart_once(_: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            registry.restart()

    result = client.push_blob(repository_name, data, digest, len(data), progress=restart_once)
    assert result.action is BlobAction.UPLOADED
    assert client.fetch_blob(repository_name, digest) == data


# -- retries -----------------------------------------------------------------------------------


def test_503_is_retried_with_backoff(
    faulty_proxy: FaultyProxy, fake_time: FakeTime, repository_name: str
) -> None:
    faulty_proxy.add_fault("HEAD", 1, "respond", status=503)
    faulty_proxy.add_fault("HEAD", 2, "respond", status=502)
    client = proxied_client(faulty_proxy, fake_time)

    assert client.blob_exists(repository_name, "sha256:" + "0" * 64) is False

    assert faulty_proxy.count("HEAD") == 3
    assert fake_time.sleeps == [0.5, 1.0]  # base 0.5 s doubling; rng pinned to 1.0


def test_429_honours_retry_after_seconds_and_date(
    faulty_proxy: FaultyProxy, fake_time: FakeTime, repository_name: str
) -> None:
    later = email.utils.formatdate(time.time() + 7, usegmt=True)
    faulty_proxy.add_fault("HEAD", 1, "respond", status=429, headers={"Retry-After": "3"})
    faulty_proxy.add_fault("HEAD", 2, "respond", status=429, headers={"Retry-After": later})
    client = proxied_client(faulty_proxy, fake_time)

    assert client.blob_exists(repository_name, "sha256:" + "0" * 64) is False
    assert fake_time.sleeps[0] == 3.0
    assert 5.0 <= fake_time.sleeps[1] <= 7.0


def test_retry_after_is_capped_by_the_budget(
    faulty_proxy: FaultyProxy, fake_time: FakeTime, repository_name: str
) -> None:
    for nth in range(1, 4):
        faulty_proxy.add_fault("HEAD", nth, "respond", status=429, headers={"Retry-After": "3600"})
    client = RegistryClient(
        faulty_proxy.host, plain_http=True, retry=fake_time.policy(total_seconds=20.0)
    )
    with pytest.raises(RegistryError, match="429") as caught:
        client.blob_exists(repository_name, "sha256:" + "0" * 64)
    assert caught.value.status == 429
    assert fake_time.sleeps == [20.0]  # waited out the budget once, then gave up
    assert faulty_proxy.count("HEAD") == 2


def test_attempts_are_bounded(
    faulty_proxy: FaultyProxy, fake_time: FakeTime, repository_name: str
) -> None:
    for nth in range(1, 10):
        faulty_proxy.add_fault("GET", nth, "respond", status=500)
    client = RegistryClient(
        faulty_proxy.host, plain_http=True, retry=fake_time.policy(max_attempts=3)
    )
    with pytest.raises(RegistryError) as caught:
        client.get_manifest(repository_name, "v1")
    assert caught.value.status == 500 and faulty_proxy.count("GET") == 3
    assert str(caught.value) == (
        f"registry {faulty_proxy.host}, repository {repository_name}: "
        "fetching manifest v1 failed: 500 Internal Server Error"
    )


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_are_not_retried(
    faulty_proxy: FaultyProxy, fake_time: FakeTime, repository_name: str, status: int
) -> None:
    faulty_proxy.add_fault("GET", 1, "respond", status=status)
    client = proxied_client(faulty_proxy, fake_time)
    with pytest.raises(RegistryError):
        client.get_manifest(repository_name, "v1")
    assert faulty_proxy.count("GET") == 1 and fake_time.sleeps == []


def test_connection_reset_on_a_replayable_request_is_retried(
    faulty_proxy: FaultyProxy, fake_time: FakeTime, repository_name: str
) -> None:
    faulty_proxy.add_fault("HEAD", 1, "reset-before")
    client = proxied_client(faulty_proxy, fake_time)
    assert client.blob_exists(repository_name, "sha256:" + "1" * 64) is False
    assert faulty_proxy.count("HEAD") == 2 and len(fake_time.sleeps) == 1


def test_read_timeout_is_retried(
    faulty_proxy: FaultyProxy, fake_time: FakeTime, repository_name: str
) -> None:
    faulty_proxy.add_fault("HEAD", 1, "stall", delay=1.0)
    client = proxied_client(faulty_proxy, fake_time, timeouts=Timeouts(connect=1.0, read=0.2))
    started = time.monotonic()
    assert client.blob_exists(repository_name, "sha256:" + "2" * 64) is False
    assert time.monotonic() - started < 5
    assert faulty_proxy.count("HEAD") == 2


def test_unreachable_registry_fails_in_bounded_attempts(fake_time: FakeTime) -> None:
    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    client = RegistryClient(host, plain_http=True, retry=fake_time.policy(max_attempts=4))
    with pytest.raises(ConnectionFailed) as caught:
        client.blob_exists("a/b", "sha256:" + "3" * 64)
    assert str(caught.value) == (
        f"registry {host}, repository a/b: checking blob {'sha256:' + '3' * 64} failed "
        "after 4 attempts: connection refused"
    )
    assert len(fake_time.sleeps) == 3


def test_truncated_download_is_retried_and_verified(
    faulty_proxy: FaultyProxy,
    fake_time: FakeTime,
    blob: tuple[Path, str],
    repository_name: str,
    tmp_path: Path,
) -> None:
    path, digest = blob
    client = proxied_client(faulty_proxy, fake_time)
    client.push_blob(repository_name, path, digest, SIZE)
    faulty_proxy.add_fault("GET", 1, "truncate")

    dest = client.fetch_blob(repository_name, digest, tmp_path / "copy.bin", size=SIZE)

    assert dest.read_bytes() == path.read_bytes()
    # A reset may discard what was in flight: when the client kept part of the cut answer, it
    # resumes at once with Range; when it kept nothing, it backs off once and starts over.
    gets = faulty_proxy.matching("GET")
    assert len(gets) == 2, gets
    assert len(fake_time.sleeps) == (0 if gets[1].range else 1), (gets[1].range, fake_time.sleeps)


def test_truncated_manifest_is_retried(
    faulty_proxy: FaultyProxy, fake_time: FakeTime, repository_name: str
) -> None:
    client = proxied_client(faulty_proxy, fake_time)
    client.push_blob(repository_name, b"{}", EMPTY_DIGEST, 2)
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.test.v1",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": EMPTY_DIGEST,
                       "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": EMPTY_DIGEST,
                        "size": 2}],
        }
    ).encode()  # fmt: skip
    digest = client.push_manifest(repository_name, "v1", body, OCI_MANIFEST)
    faulty_proxy.add_fault("GET", 1, "truncate")

    fetched = client.get_manifest(repository_name, "v1")

    assert fetched.body == body and fetched.digest == digest
    assert faulty_proxy.count("GET") == 2


def test_separate_hiccups_in_a_long_upload_each_get_a_fresh_budget(
    faulty_proxy: FaultyProxy,
    registry: RunningRegistry,
    fake_time: FakeTime,
    blob: tuple[Path, str],
    repository_name: str,
) -> None:
    """Six resets in all, but never two in a row: more than max_attempts, still fine."""
    path, digest = blob
    for nth in (2, 4, 6, 8, 10, 12):  # each reset PATCH is retried (odd counts) successfully
        faulty_proxy.add_fault("PATCH", nth, "reset-before")
    client = RegistryClient(
        faulty_proxy.host, plain_http=True, chunk_size=CHUNK, retry=fake_time.policy(max_attempts=2)
    )
    result = client.push_blob(repository_name, path, digest, SIZE)
    assert result.resumes == 6 and result.bytes_sent == SIZE + 6 * CHUNK
    assert read_back(registry, repository_name, digest) == path.read_bytes()


def test_an_upload_that_never_advances_gives_up(
    faulty_proxy: FaultyProxy, fake_time: FakeTime, blob: tuple[Path, str], repository_name: str
) -> None:
    path, digest = blob
    for nth in range(2, 40):
        faulty_proxy.add_fault("PATCH", nth, "reset-before")
    client = RegistryClient(
        faulty_proxy.host, plain_http=True, chunk_size=CHUNK, retry=fake_time.policy(max_attempts=3)
    )
    with pytest.raises(RegistryError) as caught:
        client.push_blob(repository_name, path, digest, SIZE)
    assert str(caught.value).endswith(f"failed at byte {CHUNK} after 3 attempts: connection reset")
    assert faulty_proxy.count("PATCH") == 4  # 1 good + 3 reset


def test_missing_source_file_is_one_clear_error(
    registry: RunningRegistry, tmp_path: Path, repository_name: str
) -> None:
    client = RegistryClient(registry.host, plain_http=True)
    with pytest.raises(PipelineError, match=r"cannot read blob .*absent\.bin: No such file"):
        client.push_blob(repository_name, tmp_path / "absent.bin", "sha256:" + "0" * 64, 1)
