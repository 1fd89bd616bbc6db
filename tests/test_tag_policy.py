"""TagPolicy.check against a real registry: a release tag that appears between two reads.

Three racing publishes met it in CI: the loser read the release tag as free, read it again a
moment later as the winner's, and said "already names … release tags are immutable" (exit 2,
bad input) after it had sent its blobs, where a lost race is exit 3.
"""

from __future__ import annotations

import json

import pytest

from pipeline.core import mediatypes as mt
from pipeline.core.errors import TagRaceError, UsageError
from pipeline.model.plan import Document
from pipeline.publishing.tags import TagPolicy
from pipeline.registry import RegistryClient
from tests.support.faultproxy import FaultProxy
from tests.support.registry import RunningRegistry

pytestmark = pytest.mark.integration


def _index(created: str) -> Document:
    """An empty OCI index (a registry takes it with no children) told apart by `created`."""
    body = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [],
        "annotations": {mt.ANN_CREATED: created},
    }
    return Document(mt.OCI_INDEX, json.dumps(body).encode())


def test_a_release_tag_taken_between_two_reads_is_a_race_once_this_run_sent_anything(
    registry: RunningRegistry, repository_name: str
) -> None:
    winner, ours = _index("2026-03-01T00:00:00Z"), _index("2026-03-02T00:00:00Z")
    RegistryClient(registry.host, plain_http=True).push_manifest(
        repository_name, "40.1.0", winner.body, winner.media_type
    )
    with FaultProxy(registry.host) as proxy:
        client = RegistryClient(proxy.host, plain_http=True)
        policy = TagPolicy(client, proxy.host, repository_name, ("40.1.0",), ("40",), False)
        # The first read of the tag sees it free (the winner's PUT had not landed yet).
        proxy.add("respond", method="HEAD", path=r"/manifests/40\.1\.0$", status=404, times=1)
        policy.check(ours.digest, sent=True)  # one read, free: nothing to refuse yet
        assert proxy.count("HEAD", "/manifests/40.1.0") == 1
        with pytest.raises(TagRaceError, match="tagged by another publisher while this one ran"):
            policy.check(ours.digest, sent=True)
        with pytest.raises(UsageError, match="already names .* release tags are immutable"):
            policy.check(ours.digest, sent=False)  # before anything was sent: bad input
