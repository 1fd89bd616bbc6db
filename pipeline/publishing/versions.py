"""Dated versions for nightlies: a release manifest's version template, resolved once per run.

`{date}` is the UTC build date (YYYYMMDD; `BOOTC_PIPELINE_BUILD_DATE` pins it), `{base_major}`
the first number in the base image's tag (`fedora-bootc:40` gives 40), `{n}` the first counter
from 1 whose release tags are all free in the repository, so two nightlies of one day get
`40.20261129.1` and `40.20261129.2`. `--version` pins the resolved version, so the runners of
one distributed nightly and its join agree on it.
"""

from __future__ import annotations

import datetime as dt
import os
import re

from pipeline.core.errors import UsageError
from pipeline.core.reference import parse_reference
from pipeline.model.release import Release
from pipeline.registry.client import RegistryClient

BUILD_DATE_ENV = "BOOTC_PIPELINE_BUILD_DATE"
MAX_COUNTER = 999
_DATE = re.compile(r"^\d{8}$")


def build_date(now: dt.datetime | None = None) -> str:
    pinned = os.environ.get(BUILD_DATE_ENV)
    if pinned:
        if not _DATE.match(pinned):
            raise UsageError(f"{BUILD_DATE_ENV}={pinned!r} is not a date as YYYYMMDD")
        return pinned
    return (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%d")


def base_major(base: str) -> str:
    tag = parse_reference(base).tag or ""
    found = re.search(r"\d+", tag)
    if not found:
        raise UsageError(f"version: {{base_major}} needs a number in the base's tag ({base})")
    return found.group(0)


def render(template: str, *, date: str, n: int, base: str) -> str:
    text = template.replace("{date}", date).replace("{n}", str(n))
    if "{base_major}" in text:
        text = text.replace("{base_major}", base_major(base))
    return text


def resolve(release: Release, taken: set[str], *, date: str) -> Release:
    """The release at the first version whose release tags are all free (pure: `taken` are the
    repository's tags)."""
    template = release.version_template
    if template is None:
        return release
    for n in range(1, MAX_COUNTER + 1):
        candidate = release.with_version(render(template, date=date, n=n, base=release.base))
        if "{n}" not in template or not taken & set(candidate.tags):
            return candidate  # without {n}, a taken tag is for the tag policy to judge
    raise UsageError(
        f"{release.path}: version {template!r}: every counter up to {MAX_COUNTER} is taken",
    )


def resolve_in_registry(release: Release, client: RegistryClient, repository: str) -> Release:
    return resolve(release, set(client.list_tags(repository)), date=build_date())
