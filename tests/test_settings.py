"""One table of settings (pipeline/core/settings.py) drives argparse, the defaults of Options,
RetryPolicy and Timeouts, and the README's list: none of them may say another default."""

from __future__ import annotations

import argparse
import dataclasses
import re

import pytest

from pipeline.cli import main as cli
from pipeline.core import settings
from pipeline.registry.retry import RetryPolicy, Timeouts
from pipeline.shared.context import Options
from tests.factories import ROOT


def test_options_defaults_are_the_table() -> None:
    fields = {f.name: f.default for f in dataclasses.fields(Options)}
    assert {s.dest: fields[s.dest] for s in settings.SETTINGS} == settings.defaults()


def test_the_registry_client_defaults_agree_with_the_cli() -> None:
    """They disagreed: --retry-seconds defaulted to 300 s and RetryPolicy to 120 s."""
    options = Options()
    assert RetryPolicy().total_seconds == options.retry_seconds == settings.RETRY_SECONDS.default
    assert RetryPolicy().max_attempts == options.retry_attempts
    assert Timeouts() == Timeouts(connect=options.connect_timeout, read=options.read_timeout)


@pytest.mark.parametrize("argv", [["publish"], ["push"], ["index", "r.json"], ["pull", "h/r:t"]])
def test_argparse_defaults_are_the_table(argv: list[str]) -> None:
    args = vars(cli.build_parser().parse_args(argv))
    taken = {s.dest: s.default for s in settings.SETTINGS if s.dest in args}
    assert taken and {k: args[k] for k in taken} == taken
    # what a command lacks (pull has no --jobs) still gets the table's default in Options
    assert cli._options(argparse.Namespace(**args)) == Options()


@pytest.mark.parametrize("setting", settings.SETTINGS, ids=lambda s: s.flag)
def test_every_setting_is_a_flag_of_its_commands(setting: settings.Setting[object]) -> None:
    command = {"release": ["publish"], "registry": ["publish"], "verify": ["pull", "h/r:t"]}
    value = [] if setting.parse is None else ["7"]
    args = cli.build_parser().parse_args([*command[setting.group], setting.flag, *value])
    expected = True if setting.parse is None else setting.parse("7")
    assert getattr(cli._options(args), setting.dest) == expected


def test_readme_lists_the_table() -> None:
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"^## Settings\n(.*?)(?=^## )", readme, re.S | re.M)
    assert section, "README.md has no '## Settings' section"
    assert settings.markdown() in section.group(1), (
        "README's list of settings differs from pipeline/core/settings.py: put "
        "`python -m pipeline.core.settings`'s output into its 'Settings' section"
    )
