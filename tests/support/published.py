"""What a registry serves, judged by clients this project did not write: skopeo and curl.

`snapshot()` resolves every tag of a repository with `skopeo inspect --raw`, checks that each
names an index whose child manifests are all there (their bytes hash to the digests the index
gives) and whose blobs are all there (fetched with curl, checked with `sha256sum` and by size).
A tag that names an index with anything missing fails the check: that is the state a publish
must never leave behind.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core import mediatypes as mt
from tests.support import judges

TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Access:
    """How the independent clients reach a registry (credentials only for these clients)."""

    host: str
    scheme: str = "http"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_cert: Path | None = None

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}{path}"


@dataclass(frozen=True)
class ReleaseState:
    """One index as served: its digest, and per platform the manifest and its blob digests."""

    index: str
    manifests: dict[str, str]  # "linux/amd64" -> manifest digest
    blobs: dict[str, int]  # every blob the manifests reference -> size


def skopeo_raw(access: Access, reference: str) -> bytes | None:
    """`skopeo inspect --raw` of REPO:TAG or REPO@DIGEST; None if the registry has no such one."""
    argv = ["skopeo", "inspect", "--raw", "--tls-verify=false"]
    if access.username is not None and access.password is not None:
        argv += ["--creds", f"{access.username}:{access.password}"]
    argv.append(f"docker://{access.host}/{reference}")
    proc = subprocess.run(argv, capture_output=True, timeout=TIMEOUT_SECONDS, check=False)
    if proc.returncode == 0:
        return proc.stdout
    if b"manifest unknown" in proc.stderr:
        return None
    raise AssertionError(f"skopeo inspect {reference}: {proc.stderr.decode()[-1000:]}")


def curl(access: Access, path: str, dest: Path | None = None, *, head: bool = False) -> int:
    """GET (or HEAD) a registry path with curl; the HTTP status (the body goes to `dest`)."""
    argv = ["curl", "-sS", "--max-time", str(TIMEOUT_SECONDS), "-o", str(dest or "/dev/null")]
    argv += ["-w", "%{http_code}", "-L"]
    if head:
        argv.append("-I")
    if access.username is not None and access.password is not None:
        argv += ["-u", f"{access.username}:{access.password}"]
    if access.ca_cert is not None:
        argv += ["--cacert", str(access.ca_cert)]
    argv.append(access.url(path))
    proc = subprocess.run(argv, capture_output=True, timeout=TIMEOUT_SECONDS + 5, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"curl {path}: {proc.stderr.decode()[-500:]}")
    return int(proc.stdout.decode().strip()[-3:])


def tags(access: Access, repository: str) -> list[str]:
    with tempfile.TemporaryDirectory() as temp:
        out = Path(temp) / "tags.json"
        status = curl(access, f"/v2/{repository}/tags/list", out)
        if status == 404:
            return []
        assert status == 200, f"tags/list answered {status}"
        found = json.loads(out.read_text()).get("tags") or []
    return sorted(str(t) for t in found)


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def judge_blob(access: Access, repository: str, digest: str, size: int) -> None:
    with tempfile.TemporaryDirectory() as temp:
        dest = Path(temp) / "blob"
        status = curl(access, f"/v2/{repository}/blobs/{digest}", dest)
        assert status == 200, f"blob {digest} answered {status}"
        assert dest.stat().st_size == size, f"blob {digest}: {dest.stat().st_size} != {size}"
        assert judges.sha256sum(dest) == digest, f"blob {digest}: wrong content"


def judge_index(
    access: Access, repository: str, reference: str, checked_blobs: set[str] | None = None
) -> ReleaseState:
    """Check an index whole (children and blobs); AssertionError names what is missing."""
    checked = set() if checked_blobs is None else checked_blobs
    separator = "@" if reference.startswith("sha256:") else ":"
    raw = skopeo_raw(access, f"{repository}{separator}{reference}")
    assert raw is not None, f"{repository}:{reference} does not exist"
    index: dict[str, Any] = json.loads(raw)
    assert index.get("mediaType") == mt.OCI_INDEX, f"{reference} is not an index"
    manifests: dict[str, str] = {}
    blobs: dict[str, int] = {}
    for entry in index["manifests"]:
        child = skopeo_raw(access, f"{repository}@{entry['digest']}")
        assert child is not None, f"{reference}: child manifest {entry['digest']} is missing"
        assert _sha256(child) == entry["digest"] and len(child) == entry["size"]
        platform = entry["platform"]
        manifests[f"{platform['os']}/{platform['architecture']}"] = entry["digest"]
        doc = json.loads(child)
        for descriptor in [doc["config"], *doc["layers"]]:
            blobs[descriptor["digest"]] = descriptor["size"]
    for digest, size in blobs.items():
        if digest not in checked:
            judge_blob(access, repository, digest, size)
            checked.add(digest)
    return ReleaseState(_sha256(raw), manifests, blobs)


TRUST_TAG = re.compile(r"^sha256-[0-9a-f]{64}(\.sig)?$")  # cosign signatures, referrers fallback


def snapshot(access: Access, repository: str) -> dict[str, ReleaseState]:
    """Every release tag of `repository` → the complete index it names (AssertionError
    otherwise). Signature and referrers-fallback tags (`sha256-HEX[.sig]`) are not releases."""
    checked: set[str] = set()
    by_index: dict[str, ReleaseState] = {}
    result: dict[str, ReleaseState] = {}
    for tag in tags(access, repository):
        if TRUST_TAG.match(tag):
            continue
        raw = skopeo_raw(access, f"{repository}:{tag}")
        assert raw is not None, f"tag {tag} is listed but does not resolve"
        digest = _sha256(raw)
        if digest not in by_index:
            by_index[digest] = judge_index(access, repository, digest, checked)
        result[tag] = by_index[digest]
    return result
