"""Dated version templates for nightlies: schema-checked, resolved to the first free counter."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.core.errors import UsageError
from pipeline.model import release
from pipeline.publishing import versions
from tests.factories import manifest_data, write_manifest

NIGHTLY = {"version": "{base_major}.{date}.{n}", "tags": ["{version}"]}


def _nightly(tmp_path: Path, **changes: object) -> release.Release:
    return release.load(write_manifest(tmp_path, manifest_data(**(NIGHTLY | changes))))


def test_template_resolves_to_base_major_date_and_first_free_counter(tmp_path: Path) -> None:
    r = _nightly(tmp_path)
    assert r.templated and r.tags == ("{version}",)
    first = versions.resolve(r, set(), date="20261129")
    assert (first.version, first.tags) == ("40.20261129.1", ("40.20261129.1",))
    assert first.moving_tags == ("40", "latest") and not first.templated
    assert (
        first.layer_title(r.architectures[0]) == "fedora-bootc-lima-40.20261129.1-amd64.qcow2.zst"
    )
    # A second nightly the same day does not collide with the first; the next day starts at 1.
    taken = {"40", "latest", "40.20261129.1"}
    assert versions.resolve(r, taken, date="20261129").version == "40.20261129.2"
    assert versions.resolve(r, taken, date="20261130").version == "40.20261130.1"


def test_fixed_versions_are_untouched(tmp_path: Path) -> None:
    r = release.load(write_manifest(tmp_path, manifest_data()))
    assert not r.templated and r.version_template is None
    assert versions.resolve(r, {"40.1.0"}, date="20261129") == r


def test_build_date_can_be_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(versions.BUILD_DATE_ENV, "20260101")
    assert versions.build_date() == "20260101"
    monkeypatch.setenv(versions.BUILD_DATE_ENV, "2026-01-01")
    with pytest.raises(UsageError, match="not a date as YYYYMMDD"):
        versions.build_date()


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"version": "{date}.{weekday}"}, "version: '{date}.{weekday}' does not match"),
        ({"version": "40.{date}"}, "has {date} but no {n}: two nightlies of one day would collide"),
        ({"tags": ["nightly"]}, "tags: a templated version needs {version} in every release tag"),
        ({"tags": ["{ver}"]}, "tags[0]: '{ver}' does not match"),
    ],
)
def test_bad_templates_get_one_line(
    tmp_path: Path, changes: dict[str, object], expected: str
) -> None:
    path = write_manifest(tmp_path, manifest_data(**(NIGHTLY | changes)))
    with pytest.raises(UsageError) as info:
        release.load(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    assert expected in message, message


def test_base_major_needs_a_number(tmp_path: Path) -> None:
    r = _nightly(tmp_path, base="quay.io/fedora/fedora-bootc:latest")
    with pytest.raises(UsageError, match=r"\{base_major\} needs a number in the base's tag"):
        versions.resolve(r, set(), date="20261129")
