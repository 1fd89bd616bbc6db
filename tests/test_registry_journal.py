"""The upload journal: an interrupted upload is taken up by a later client (a later process)."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest

from pipeline.core.errors import UsageError
from pipeline.registry import BlobAction, RegistryClient, UploadJournal
from pipeline.registry.journal import may_record
from pipeline.registry.uploads import CHUNK_SIZE_ENV, DEFAULT_CHUNK_SIZE, chunk_size_from_env
from tests.support.registry import RunningRegistry

CHUNK = 256 * 1024
SIZE = 13 * CHUNK - 999
ORIGIN = "http://127.0.0.1:5000"


class Killed(Exception):
    """Stands for the process dying: nothing after it runs."""


@pytest.fixture
def blob(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "blob.bin"
    data = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(SIZE // 32 + 1))
    path.write_bytes(data[:SIZE])
    return path, "sha256:" + hashlib.sha256(data[:SIZE]).hexdigest()


def client_for(registry: RunningRegistry) -> RegistryClient:
    return RegistryClient(registry.host, plain_http=True, chunk_size=CHUNK)


@pytest.mark.parametrize(
    ("location", "ok"),
    [
        (f"{ORIGIN}/v2/a/b/blobs/uploads/u-1?_state=abc%3D", True),
        (f"{ORIGIN}/v2/a/b/blobs/uploads/u-1", True),
        ("http://user:pw@127.0.0.1:5000/v2/a/b/blobs/uploads/u-1", False),
        ("http://127.0.0.1:5001/v2/a/b/blobs/uploads/u-1", False),
        ("https://127.0.0.1:5000/v2/a/b/blobs/uploads/u-1", False),
        (f"{ORIGIN}/v2/a/b/blobs/uploads/u-1?_state=x&X-Amz-Signature=s", False),
        (f"{ORIGIN}/v2/a/b/blobs/uploads/u-1?access_token=t", False),
        (f"{ORIGIN}/v2/a/b/blobs/uploads/u-1?sig=t", False),
    ],
)
def test_only_same_origin_credential_free_urls_are_recorded(location: str, ok: bool) -> None:
    assert may_record(location, ORIGIN) is ok


def test_journal_round_trip(tmp_path: Path) -> None:
    journal = UploadJournal(tmp_path / "j" / "upload-journal.json")
    assert journal.load("r:1", "a/b", "sha256:" + "1" * 64) is None
    location = f"{ORIGIN}/v2/a/b/blobs/uploads/u?_state=s"
    journal.save("r:1", "a/b", "sha256:" + "1" * 64, location, 42, ORIGIN)
    journal.save("r:1", "a/b", "sha256:" + "2" * 64, location + "2", 7, ORIGIN)
    entry = journal.load("r:1", "a/b", "sha256:" + "1" * 64)
    assert entry is not None and (entry.location, entry.offset) == (location, 42)
    assert journal.load("r:2", "a/b", "sha256:" + "1" * 64) is None  # another registry
    assert stat.S_IMODE(journal.path.stat().st_mode) == 0o600
    journal.save("r:1", "a/b", "sha256:" + "2" * 64, "http://u:p@127.0.0.1:5000/x", 9, ORIGIN)
    assert journal.load("r:1", "a/b", "sha256:" + "2" * 64) is None  # refused and forgotten
    assert "u:p@" not in journal.path.read_text()
    journal.clear("r:1", "a/b", "sha256:" + "1" * 64)
    assert not journal.path.exists()  # empty: removed


def test_unreadable_journal_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "upload-journal.json"
    for content in ("{not json", "[]", json.dumps({"version": 99, "uploads": {}})):
        path.write_text(content)
        assert UploadJournal(path).load("r:1", "a/b", "sha256:" + "1" * 64) is None


@pytest.mark.integration
def test_upload_interrupted_by_a_dying_process_resumes_from_the_journal(
    registry: RunningRegistry, repository_name: str, blob: tuple[Path, str], tmp_path: Path
) -> None:
    path, digest = blob
    journal = UploadJournal(tmp_path / "upload-journal.json")
    received = 0

    def die_after_five_chunks(n: int) -> None:
        nonlocal received
        received += n
        if received >= 5 * CHUNK:
            raise Killed()

    with pytest.raises(Killed):
        client_for(registry).push_blob(
            repository_name, path, digest, SIZE, journal=journal, progress=die_after_five_chunks
        )
    entry = journal.load(registry.host, repository_name, digest)
    assert entry is not None and entry.offset == 5 * CHUNK

    progress: list[int] = []
    result = client_for(registry).push_blob(
        repository_name, path, digest, SIZE, journal=UploadJournal(journal.path),
        progress=progress.append,
    )  # fmt: skip

    assert result.action is BlobAction.UPLOADED
    assert result.resumed_from == 5 * CHUNK
    assert result.bytes_sent == SIZE - 5 * CHUNK
    assert sum(progress) == SIZE  # the bar still reaches 100 %
    assert not journal.path.exists()
    assert client_for(registry).fetch_blob(repository_name, digest) == path.read_bytes()


@pytest.mark.integration
def test_a_session_the_registry_forgot_starts_afresh(
    registry: RunningRegistry, repository_name: str, blob: tuple[Path, str], tmp_path: Path
) -> None:
    path, digest = blob
    journal = UploadJournal(tmp_path / "upload-journal.json")
    stale = f"{registry.url}/v2/{repository_name}/blobs/uploads/0f0f0f0f-dead?_state=bogus"
    journal.save(registry.host, repository_name, digest, stale, 3 * CHUNK, registry.url)

    result = client_for(registry).push_blob(repository_name, path, digest, SIZE, journal=journal)

    assert result.action is BlobAction.UPLOADED
    assert result.resumed_from == 0 and result.bytes_sent == SIZE
    assert not journal.path.exists()
    assert client_for(registry).fetch_blob(repository_name, digest) == path.read_bytes()


@pytest.mark.integration
def test_a_journal_entry_for_another_origin_is_not_followed(
    registry: RunningRegistry, repository_name: str, blob: tuple[Path, str], tmp_path: Path
) -> None:
    path, digest = blob
    journal = UploadJournal(tmp_path / "upload-journal.json")
    journal.path.write_text(
        json.dumps(
            {
                "version": 1,
                "uploads": {
                    UploadJournal.key(registry.host, repository_name, digest): {
                        "location": "http://127.0.0.2:9/v2/x/blobs/uploads/u",
                        "offset": CHUNK,
                    }
                },
            }
        )
    )
    result = client_for(registry).push_blob(repository_name, path, digest, SIZE, journal=journal)
    assert result.resumed_from == 0 and result.bytes_sent == SIZE


@pytest.mark.integration
def test_a_blob_already_present_clears_its_journal_entry(
    registry: RunningRegistry, repository_name: str, tmp_path: Path
) -> None:
    data = b"present" * 100
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    client = client_for(registry)
    client.push_blob(repository_name, data, digest, len(data))
    journal = UploadJournal(tmp_path / "upload-journal.json")
    location = f"{registry.url}/v2/{repository_name}/blobs/uploads/u?_state=s"
    journal.save(registry.host, repository_name, digest, location, 10, registry.url)

    result = client.push_blob(repository_name, data, digest, len(data), journal=journal)

    assert result.action is BlobAction.SKIPPED
    assert not journal.path.exists()


def test_chunk_size_from_the_environment() -> None:
    assert chunk_size_from_env({}) == DEFAULT_CHUNK_SIZE
    assert chunk_size_from_env({CHUNK_SIZE_ENV: "262144"}) == 262144
    for bad in ("0", "-1", "1.5", "lots"):
        with pytest.raises(UsageError, match=CHUNK_SIZE_ENV):
            chunk_size_from_env({CHUNK_SIZE_ENV: bad})
