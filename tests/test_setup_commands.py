"""Every external command the product and the tests start comes from a package the setup
installs (scripts/setup-debian.sh names it), from the project's venv, or from the Go tools
scripts/go-tools.sh pins: a fresh machine set up by the README's command then has them all.

The commands are read from the source (tests/support/commands.py says which forms count); each
is found on this machine and mapped to its Debian package with `dpkg -S`. A package that is only
pulled in as another's dependency does not count: the setup must name it. Debian's Essential
packages (coreutils, bash, dash, ...) are on every Debian system and need no naming."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support import commands


def test_every_command_comes_from_a_package_the_setup_names() -> None:
    uses = commands.scan()
    found = {u.name for u in uses}
    # the scan is a real one: commands of the product, the tests and the stand-ins are in it
    assert {"skopeo", "ssh-keygen", "qemu-img", "mkfs.vfat", "mtype", "docker-registry"} <= found
    problems = commands.gaps(uses, commands.setup_packages(), commands.pinned_go_tools())
    assert problems == [], "commands the setup does not install:\n" + "\n".join(problems)


def test_a_package_left_out_of_the_setup_is_found(tmp_path: Path) -> None:
    """The gap a fresh machine met (mkfs.vfat, mtype: dosfstools and mtools were not named)."""
    script = tmp_path / "setup-debian.sh"
    text = commands.SETUP.read_text()
    assert "dosfstools mtools" in text
    script.write_text(text.replace("dosfstools mtools", ""))
    named = commands.setup_packages(script)
    assert "dosfstools" not in named and "podman" in named
    problems = commands.gaps(commands.scan(), named, commands.pinned_go_tools())
    assert {p.split()[0] for p in problems} >= {"mkfs.vfat", "mcopy", "mmd", "mtype"}
    assert any("is from dosfstools, which setup-debian.sh does not name" in p for p in problems)


def test_a_tool_missing_from_the_machine_or_unpinned_is_found() -> None:
    uses = [commands.Use("no-such-tool-here", "x.py"), commands.Use("zstd", "y.py")]
    assert commands.gaps(uses, {"zstd"}, set()) == [
        "no-such-tool-here (x.py): not found on this machine"
    ]
    if commands.locate("oras") is not None:  # built by scripts/go-tools.sh
        (line,) = commands.gaps([commands.Use("oras", "z.py")], set(), set())
        assert "is not pinned in go-tools.sh" in line


def test_the_scan_reads_each_form() -> None:
    source = """
import shutil, subprocess
subprocess.run(["alpha", "-x"])
run_tool(("beta", "y"), debug)
argv = ["gamma", "--z"]
shutil.which("delta")
require_tool("epsilon", purpose="p")
_REQUIRED_TOOLS = {"zeta": "zeta-pkg"}
for tool, package in (("eta", "eta-pkg"),):
    pass
def ssh_argv(self):
    return ["theta", "host"]
pytest.mark.parametrize(("arch", "x"), [])
names = ["not-a-command", "x"]
"""
    assert sorted(commands._uses_in(ast.parse(source))) == sorted(
        ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    )
