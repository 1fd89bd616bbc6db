"""Deleting on registries that cannot be reached here, emulated from their public documentation:

- ghcr.io: GitHub's REST API for packages (docs.github.com "REST API endpoints for packages":
  `GET /orgs/ORG/packages/container/NAME/versions` lists versions, each `name` a manifest digest
  with `metadata.container.tags`; `DELETE .../versions/ID`). A multi-arch image's children are
  untagged versions of their own (dataaxiom/ghcr-cleanup-action#114: deleting "untagged" versions
  breaks the indexes that use them). A public version with more than 5,000 downloads cannot be
  deleted (docs.github.com "Deleting and restoring a package").
- quay.io: tags expire through `PUT /api/v1/repository/NS/NAME/tag/TAG` `{"expiration": EPOCH}`
  (Red Hat Quay API reference, changeTag); its `quay.expires-after` label is read only from an
  image config (k-orc/openstack-resource-controller#734), which this project's artifacts, with
  the OCI empty config, do not have.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from pipeline.core import mediatypes as mt
from pipeline.core.digest import Blob
from pipeline.core.errors import PipelineError
from pipeline.model import plan
from pipeline.model.releases_plan import Stored, StoredRelease, plan_prune
from pipeline.publishing.deleters import GhcrDeleter, QuayDeleter
from tests.factories import fedora

TOKEN = "ghp_test-token-not-a-secret"


@dataclass
class Emulated:
    versions: list[dict[str, Any]] = field(default_factory=list)
    expirations: dict[str, int] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    user_owned: bool = False  # the package belongs to the token's user, not an organization


def _handler(state: Emulated) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
            pass

        def _answer(self, code: int, body: Any = None) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            state.requests.append(f"{self.command} {self.path}")
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._answer(401, {"message": "Requires authentication"})
                return False
            return True

        def do_GET(self) -> None:
            if not self._authorized():
                return
            if state.user_owned == self.path.startswith("/orgs/"):
                self._answer(404, {"message": "Not Found"})
                return
            url = urlparse(self.path)
            query = parse_qs(url.query)
            page, per = int(query["page"][0]), int(query["per_page"][0])
            public = [{k: v for k, v in x.items() if k != "downloads"} for x in state.versions]
            self._answer(200, public[(page - 1) * per : page * per])

        def do_DELETE(self) -> None:
            if not self._authorized():
                return
            wanted = int(self.path.rsplit("/", 1)[1])
            found = next((v for v in state.versions if v["id"] == wanted), None)
            if found is None:
                self._answer(404, {"message": "Not Found"})
            elif found.get("downloads", 0) > 5000:
                self._answer(400, {"message": "Publicly visible package versions with more "
                                   "than 5000 downloads cannot be deleted."})  # fmt: skip
            else:
                state.versions.remove(found)
                self._answer(204)

        def do_PUT(self) -> None:
            if not self._authorized():
                return
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            state.expirations[self.path.rsplit("/", 1)[1]] = int(body["expiration"])
            self._answer(200, "Updated")

    return Handler


@pytest.fixture
def api() -> Iterator[tuple[str, Emulated]]:
    state = Emulated()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


def _d(n: int) -> str:
    return f"sha256:{n:064x}"


def _release(n: int, day: int, tags: tuple[str, ...]) -> StoredRelease:
    version = f"40.202611{day:02d}.1"
    ann = {mt.ANN_VERSION: version, mt.ANN_CREATED: f"2026-11-{day:02d}T00:00:00Z"}
    children = tuple(
        Stored(_d(10 * n + k), 400, {_d(1000 * n + k): 4096}, {}, f"linux/{a}")
        for k, a in ((1, "amd64"), (2, "arm64"))
    )
    return StoredRelease(Stored(_d(10 * n), 300, {}, ann), children, (version, *tags))


def _versions(releases: list[StoredRelease], downloads: dict[str, int]) -> list[dict[str, Any]]:
    """Package versions as GitHub lists them: the index tagged, its children untagged."""
    out: list[dict[str, Any]] = []
    for r in releases:
        for doc, tags in ((r.index, list(r.tags)), *((c, []) for c in r.children)):
            out.append(
                {
                    "id": len(out) + 1,
                    "name": doc.digest,
                    "metadata": {"package_type": "container", "container": {"tags": tags}},
                    "downloads": downloads.get(doc.digest, 0),
                }
            )
    return out


def test_ghcr_deletes_the_index_and_its_untagged_children_never_others(
    api: tuple[str, Emulated],
) -> None:
    url, state = api
    old, popular, new = _release(1, 1, ()), _release(2, 2, ()), _release(3, 29, ("latest",))
    state.versions = _versions([old, popular, new], {popular.digest: 5001})
    for n in range(150):  # more than one page of versions (100 a page)
        state.versions.append({"id": 1000 + n, "name": _d(5000 + n), "metadata": {}})
    prune = plan_prune([old, popular, new], keep=1, older_than_days=None, now=datetime.now(UTC))
    assert {r.digest for r in prune.delete} == {old.digest, popular.digest}
    deleter = GhcrDeleter("bootc-lima", "fedora-bootc-lima-nightly", TOKEN, api=url)
    done = [line for r in prune.delete for line in deleter.delete_release("x", r, prune)]
    left = {v["name"] for v in state.versions}
    assert not {old.digest, *(c.digest for c in old.children)} & left
    # the newest release's untagged children are still there: "delete untagged" would not be
    assert {new.digest, *(c.digest for c in new.children)} <= left
    # over 5,000 downloads: refused by the API, said so, the rest of that release still went
    assert popular.digest in left and any("not deleted" in line for line in done)
    assert not {c.digest for c in popular.children} & left
    assert any("versions?per_page=100&page=2" in r for r in state.requests)
    assert all(TOKEN not in line for line in done)


def test_ghcr_package_of_a_user_account(api: tuple[str, Emulated]) -> None:
    url, state = api
    state.user_owned = True
    old, new = _release(1, 1, ()), _release(3, 29, ("latest",))
    state.versions = _versions([old, new], {})
    prune = plan_prune([old, new], keep=1, older_than_days=None, now=datetime.now(UTC))
    GhcrDeleter("someone", "disk", TOKEN, api=url).delete_release("x", old, prune)
    assert {v["name"] for v in state.versions} == {new.digest, *(c.digest for c in new.children)}
    assert any(
        r.startswith("DELETE /user/packages/container/disk/versions/") for r in state.requests
    )


def test_ghcr_without_the_token_is_an_error(api: tuple[str, Emulated]) -> None:
    url, state = api
    r = _release(1, 1, ())
    state.versions = _versions([r], {})
    prune = plan_prune([r], keep=0, older_than_days=None, now=datetime.now(UTC))
    deleter = GhcrDeleter("o", "p", "wrong", api=url)
    with pytest.raises(PipelineError, match="401 Requires authentication"):
        deleter.delete_release("x", r, prune)
    assert len(state.versions) == 3


def test_quay_expires_every_tag_of_the_release_and_referrer_tags(
    api: tuple[str, Emulated],
) -> None:
    url, state = api
    old = _release(1, 1, ())
    signed = StoredRelease(
        old.index, old.children, old.tags, ((f"sha256-{'0' * 54}{1:010x}.sig", Stored(_d(7), 9)),)
    )
    new = _release(3, 29, ("latest",))
    prune = plan_prune([signed, new], keep=1, older_than_days=None, now=datetime.now(UTC))
    deleter = QuayDeleter("bootc-lima/fedora", TOKEN, api=url, now=1_800_000_000)
    deleter.delete_release("bootc-lima/fedora", signed, prune)
    assert state.expirations == {old.tags[0]: 1_800_000_000, signed.referrers[0][0]: 1_800_000_000}
    assert "latest" not in state.expirations
    # why not the label: the artifact's config is the empty descriptor, with no labels to read
    disk = plan.DiskArtifact(fedora().architectures[0], Blob(_d(1), 1), Blob(_d(2), 2), _d(3))
    provenance = plan.Provenance("2026-01-01T00:00:00Z", "0" * 40)
    manifest = plan.artifact_manifest(fedora(), disk, provenance)
    assert manifest.json()["config"]["mediaType"] == mt.OCI_EMPTY
