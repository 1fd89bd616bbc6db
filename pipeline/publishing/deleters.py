"""How each registry deletes a release: one small interface, one implementation per registry.

- distribution (docker-registry, distribution v3, most self-hosted): `DELETE /v2/NAME/manifests/
  DIGEST` (which removes the tags that name it) and `DELETE /v2/NAME/blobs/DIGEST`, when the
  registry runs with `storage.delete.enabled`; the bytes go at its garbage collection.
- ghcr.io: no registry delete; GitHub's REST API deletes package versions (`GET/DELETE
  /orgs/OWNER/packages/container/NAME/versions[/ID]`, or `/user/packages/...` for a package of
  the token's own user account; docs.github.com "REST API endpoints for packages"). An index's
  children appear there as untagged versions, so they are deleted by their digests with the
  index, never as "untagged" in bulk, which breaks the indexes that still use them
  (dataaxiom/ghcr-cleanup-action#114, REFERENCE.md); a public version with more than 5,000
  downloads cannot be deleted (docs.github.com "Deleting and restoring a package"): the API
  refuses, which is reported and the rest goes on. Blobs go with their versions.
- quay.io: tags expire through its API (`PUT /api/v1/repository/NS/NAME/tag/TAG` with
  `{"expiration": EPOCH}`, Red Hat Quay API reference "changeTag"); the label
  `quay.expires-after` is read only from an image config, which an artifact with the empty config
  has not (k-orc/openstack-resource-controller#734). Untagged manifests and their blobs are then
  collected by Quay after its time machine window.
"""

from __future__ import annotations

import os
import time
from typing import Any, Protocol
from urllib.parse import quote

import requests

from pipeline.core.errors import PipelineError, UsageError
from pipeline.model.releases_plan import PrunePlan, StoredRelease
from pipeline.registry.client import RegistryClient

TIMEOUT = (10.0, 60.0)
MAX_PAGES = 100  # 100 versions a page: 10,000 versions at most


class Deleter(Protocol):
    def delete_release(self, repo: str, release: StoredRelease, plan: PrunePlan) -> list[str]:
        """Delete RELEASE (index, children, referrers, its blobs in PLAN); what was done."""
        ...


class DistributionDeleter:
    def __init__(self, client: RegistryClient) -> None:
        self.client = client

    def delete_release(self, repo: str, release: StoredRelease, plan: PrunePlan) -> list[str]:
        done: list[str] = []
        # the index first (its tags go with it: no tag ever names a half-deleted release), then
        # the referrers and children, last the blobs no kept release uses
        order = [release.index, *(m for _, m in release.referrers), *release.children]
        for doc in order:
            if doc.digest in plan.manifests and self.client.delete(repo, "manifests", doc.digest):
                done.append(f"deleted manifest {doc.digest}")
        for digest in release.blobs():
            if digest in plan.blobs and self.client.delete(repo, "blobs", digest):
                done.append(f"deleted blob {digest}")
        return done


def _check(response: requests.Response, action: str) -> None:
    if response.status_code >= 400:
        try:
            message = str(response.json().get("message") or response.json().get("error_message"))
        except ValueError:
            message = response.reason or ""
        raise PipelineError(f"{action}: {response.status_code} {' '.join(message.split())[:300]}")


class GhcrDeleter:
    """ghcr.io packages through GitHub's REST API (a token with delete:packages)."""

    def __init__(
        self, owner: str, package: str, token: str, *, api: str = "https://api.github.com"
    ) -> None:
        name = quote(package, safe="")
        self.base = f"{api}/orgs/{owner}/packages/container/{name}"
        # a package of a user account: the authenticated user's own endpoints
        self.user_base = f"{api}/user/packages/container/{name}"
        self.session = requests.Session()
        self.session.headers.update(
            {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"}
        )

    def versions(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for page in range(1, MAX_PAGES + 1):
            response = self.session.get(
                f"{self.base}/versions", params={"per_page": 100, "page": page}, timeout=TIMEOUT
            )
            if response.status_code == 404 and page == 1 and self.base != self.user_base:
                self.base = self.user_base  # not an organization's package: the user's
                return self.versions()
            _check(response, "listing package versions")
            batch = response.json()
            found.extend(batch)
            if len(batch) < 100:
                return found
        raise PipelineError(f"more than {MAX_PAGES * 100} package versions")

    def delete_release(self, repo: str, release: StoredRelease, plan: PrunePlan) -> list[str]:
        by_digest = {str(v.get("name")): v for v in self.versions()}
        done: list[str] = []
        order = [release.index, *(m for _, m in release.referrers), *release.children]
        for doc in order:
            version = by_digest.get(doc.digest)
            if doc.digest not in plan.manifests or version is None:
                continue
            response = self.session.delete(f"{self.base}/versions/{version['id']}", timeout=TIMEOUT)
            if response.status_code == 400:  # e.g. a public version over 5,000 downloads
                done.append(f"not deleted: version {version['id']} ({doc.digest}): {response.text}")
                continue
            _check(response, f"deleting package version {version['id']}")
            done.append(f"deleted package version {version['id']} ({doc.digest})")
        return done


class QuayDeleter:
    """quay.io: every tag of the release (referrer tags included) expires now."""

    def __init__(
        self, repository: str, token: str, *, api: str = "https://quay.io", now: float | None = None
    ) -> None:
        self.base = f"{api}/api/v1/repository/{repository}/tag"
        self.now = now
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {token}"})

    def delete_release(self, repo: str, release: StoredRelease, plan: PrunePlan) -> list[str]:
        expiration = int(self.now if self.now is not None else time.time())
        done: list[str] = []
        for tag in (*release.tags, *dict.fromkeys(t for t, _ in release.referrers)):
            response = self.session.put(
                f"{self.base}/{quote(tag, safe='')}",
                json={"expiration": expiration},
                timeout=TIMEOUT,
            )
            _check(response, f"expiring tag {tag}")
            done.append(f"tag {tag} expires at {expiration}")
        return done


def deleter_for(registry: str, repository: str, client: RegistryClient) -> Deleter:
    """The registry's own way to delete: ghcr.io and quay.io by their APIs, else distribution."""
    if registry == "ghcr.io":
        token = os.environ.get("BOOTC_PIPELINE_GITHUB_TOKEN") or os.environ.get("GITHUB_TOKEN")
        if not token:
            raise UsageError(
                "deleting from ghcr.io needs a GitHub token with delete:packages",
                hint="set BOOTC_PIPELINE_GITHUB_TOKEN (or GITHUB_TOKEN)",
            )
        owner, _, package = repository.partition("/")
        return GhcrDeleter(owner, package, token)
    if registry == "quay.io":
        token = os.environ.get("BOOTC_PIPELINE_QUAY_TOKEN")
        if not token:
            raise UsageError(
                "expiring tags on quay.io needs an OAuth token with repo:write",
                hint="set BOOTC_PIPELINE_QUAY_TOKEN",
            )
        return QuayDeleter(repository, token)
    return DistributionDeleter(client)
