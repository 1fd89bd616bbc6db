"""Release operations planned as data (pipeline/model/releases_plan.py): what list shows, what prune
deletes and keeps, what promote refuses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.core import mediatypes as mt
from pipeline.core.errors import UsageError
from pipeline.model.releases_plan import (
    Stored,
    StoredRelease,
    list_rows,
    plan_promote,
    plan_prune,
    signature_state,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _d(n: int) -> str:
    return f"sha256:{n:064x}"


def release(
    n: int, version: str, day: int, tags: tuple[str, ...], blobs: dict[str, int]
) -> StoredRelease:
    ann = {mt.ANN_VERSION: version, mt.ANN_CREATED: f"2026-11-{day:02d}T00:00:00Z"}
    child = Stored(_d(100 + n), 500, blobs, {mt.ANN_BOOT_CHECK: "passed"}, "linux/amd64")
    return StoredRelease(Stored(_d(n), 300, {}, ann), (child,), tags)


def test_prune_keeps_newest_moving_and_undated_and_shared_blobs() -> None:
    shared = {_d(900): 1000}
    rs = [
        release(1, "40.20261101.1", 1, ("40.20261101.1",), {_d(901): 10} | shared),
        release(2, "40.20261105.1", 5, ("40.20261105.1", "40"), {_d(902): 20}),
        release(3, "40.1.0", 2, ("40.1.0",), {_d(903): 30}),  # not dated: never pruned
        release(4, "40.20261128.1", 28, ("40.20261128.1",), {_d(904): 40}),
        release(5, "40.20261130.1", 30, ("40.20261130.1", "latest"), {_d(905): 50} | shared),
    ]
    plan = plan_prune(rs, keep=1, older_than_days=None, now=NOW)
    assert [r.version for r in plan.delete] == ["40.20261128.1", "40.20261101.1"]
    assert {r.version for r in plan.keep} == {"40.20261130.1", "40.20261105.1", "40.1.0"}
    assert "moving tag 40" in plan.reasons[_d(2)] and "not a dated" in plan.reasons[_d(3)]
    assert plan.blobs == {_d(901): 10, _d(904): 40}  # the shared one stays with release 5
    assert set(plan.manifests) == {_d(1), _d(101), _d(4), _d(104)}
    assert plan.deleted_bytes == 10 + 40 + 2 * (300 + 500)  # two blobs, two indexes + children
    within = plan_prune(rs, keep=1, older_than_days=7, now=NOW)
    assert [r.version for r in within.delete] == ["40.20261101.1"]  # the 28th is 3 days old
    assert "newer than 7 days" in within.reasons[_d(4)]
    assert plan_prune(rs, keep=10, older_than_days=None, now=NOW).delete == ()
    with pytest.raises(UsageError, match="--keep"):
        plan_prune(rs, keep=-1, older_than_days=None, now=NOW)


def test_list_is_newest_first_and_says_boot_and_signature() -> None:
    old = release(1, "40.20261101.1", 1, ("40.20261101.1",), {})
    signed = StoredRelease(old.index, old.children, old.tags, (("sha256-x.sig", Stored(_d(7), 9)),))
    new = release(2, "40.20261102.1", 2, ("40.20261102.1", "latest"), {})
    rows = list_rows([signed, new])
    assert [r["version"] for r in rows] == ["40.20261102.1", "40.20261101.1"]
    assert rows[0]["tags"] == ["40.20261102.1", "latest"] and rows[0]["boot"] == "passed"
    assert (signature_state(signed), signature_state(new)) == ("unknown", "no")
    assert new.release_tags == ("40.20261102.1",) and new.moving_tags == ("latest",)


def test_promote_refuses_a_taken_release_tag_and_moves_moving_tags_last() -> None:
    r = release(1, "40.20261101.1", 1, ("40.20261101.1",), {_d(901): 10})
    plan = plan_promote(
        r, source="a", target="b", tags=["latest", "40.1.0"], moving=["latest"],
        current={"latest": _d(9), "40.1.0": None},
    )  # fmt: skip
    assert [t for t, _ in plan.moves] == ["40.1.0", "latest"]  # release tags first
    assert plan.manifests[-1] == r.index and plan.blobs == {_d(901): 10}
    with pytest.raises(UsageError, match="release tags are immutable"):
        plan_promote(r, source="a", target="b", tags=["40.1.0"], moving=[],
                     current={"40.1.0": _d(9)})  # fmt: skip
    with pytest.raises(UsageError, match="--moving"):
        plan_promote(r, source="a", target="b", tags=["x"], moving=["y"], current={})
