"""The external commands the product and the tests start, read from their source (Python's ast),
and where each comes from on this machine: a Debian package (dpkg -S), the project's venv, or the
pinned Go tools of scripts/go-tools.sh.

What counts as "started" (the forms this code base uses; see `scan`):
- an argv literal: a list or tuple whose first item is a string that looks like a command, given
  as the first argument of a call in RUNNERS (`subprocess.run([...])`, `run_tool([...])`: a new
  wrapper of subprocess goes there), assigned to a name in ARGV_NAMES (`argv = [...]`), or
  returned by a function whose name says argv (`def ssh_argv(...)`);
- a name looked up: `shutil.which("X")`, `require_tool("X", ...)`;
- tables of tools: dict literals assigned to a name ending in TOOLS or PACKAGES (their keys), and
  `for tool, package in (("X", "x"), ...)` loops.
Commands inside a shell string (`sh -c "..."`) are not parsed: the shell itself is counted.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.factories import ROOT

SCANNED = ("pipeline", "tests", "benchmarks")
SETUP = ROOT / "scripts" / "setup-debian.sh"
GO_TOOLS = ROOT / "scripts" / "go-tools.sh"
TOOLS_DIR = Path(os.environ.get("BOOTC_PIPELINE_TOOLS", "/opt/bootc-pipeline-tools"))
_COMMAND = re.compile(r"^(/[\w.+/-]+|[A-Za-z][\w.+-]*)$")


@dataclass(frozen=True, order=True)
class Use:
    """A command named in source: `name` (a program or an absolute path) at `where`."""

    name: str
    where: str


def _str(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _argv_head(node: ast.AST) -> str | None:
    if isinstance(node, ast.List | ast.Tuple) and node.elts:
        head = _str(node.elts[0])
        if head is not None and _COMMAND.match(head) and len(node.elts) >= 2:
            return head
    return None


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


# the calls that start a command with an argv (subprocess's, and this project's wrappers of it)
RUNNERS = frozenset({"run", "Popen", "check_output", "check_call", "call", "_run", "run_checked",
                     "run_tool"})  # fmt: skip
# names an argv literal is assigned to before it is run (`argv = [...]`, `GIT = [...]`; not
# `command`: a container's arguments, e.g. image-builder's `build ...`, are no host command)
ARGV_NAMES = frozenset({"argv", "second", "dd", "tar", "fetch", "GIT"})


def _uses_in(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if _callee(node) in RUNNERS and node.args and (head := _argv_head(node.args[0])):
                names.append(head)
            if _callee(node) in ("which", "require_tool") and node.args:
                if (name := _str(node.args[0])) is not None:
                    names.append(name)
        elif isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            ids = {t.id for t in targets if isinstance(t, ast.Name)}
            if ids & ARGV_NAMES and (head := _argv_head(node.value)):
                names.append(head)
            if any(i.endswith(("TOOLS", "PACKAGES")) for i in ids) and isinstance(
                node.value, ast.Dict
            ):
                names += [k for k in map(_str, filter(None, node.value.keys)) if k]
        elif isinstance(node, ast.FunctionDef) and "argv" in node.name:
            for inner in ast.walk(node):  # an argv builder: `def argv(self) -> [...]`
                if isinstance(inner, ast.Return) and inner.value is not None:
                    if head := _argv_head(inner.value):
                        names.append(head)
        elif isinstance(node, ast.For) and isinstance(node.iter, ast.Tuple | ast.List):
            first = node.target.elts[0] if isinstance(node.target, ast.Tuple) else None
            if isinstance(first, ast.Name) and first.id in ("tool", "program"):
                for item in node.iter.elts:
                    if isinstance(item, ast.Tuple) and (name := _str(item.elts[0])):
                        names.append(name)
    return names


def scan(root: Path = ROOT) -> list[Use]:
    """Every command started in `SCANNED`, once per file that names it."""
    uses: set[Use] = set()
    for top in SCANNED:
        for path in sorted((root / top).rglob("*.py")):
            if ".venv" in path.parts:
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            rel = str(path.relative_to(root))
            uses.update(Use(name, rel) for name in _uses_in(tree) if _COMMAND.match(name))
    return sorted(uses)


def bash_arrays(text: str) -> dict[str, list[str]]:
    """The arrays a bash script assigns at the start of a line, `NAME=(...)` on one line or over
    several up to a line `)`, and `NAME+=(...)`: comments dropped, `"${OTHER[@]}"` expanded."""
    arrays: dict[str, list[str]] = {}
    lines = iter(text.splitlines())
    for line in lines:
        # at a line's start; an append may follow a condition (`cmd || packages+=(a b)`)
        start = re.match(r"^\s*(\w+)(\+?)=\((.*)$", line) or re.search(r"(\w+)(\+)=\((.*)$", line)
        if start is None:
            continue
        name, plus, rest = start.groups()
        body: list[str] = []
        rest = rest.split("#", 1)[0]
        while ")" not in rest:
            body.append(rest)
            rest = next(lines, ")").split("#", 1)[0]
        body.append(rest.split(")", 1)[0])
        items: list[str] = []
        for word in " ".join(body).split():
            ref = re.fullmatch(r'"?\$\{(\w+)\[@\]\}"?', word)
            items += arrays.get(ref.group(1), []) if ref else [word]
        arrays[name] = (arrays.get(name, []) if plus else []) + items
    return arrays


def setup_packages(script: Path = SETUP) -> set[str]:
    """The packages scripts/setup-debian.sh names: its `packages` array, with what it appends."""
    return set(bash_arrays(script.read_text()).get("packages", []))


def pinned_go_tools(script: Path = GO_TOOLS) -> set[str]:
    """The Go tools scripts/go-tools.sh builds at a pinned version: `"name|module|version"`
    entries, and Lima's limactl."""
    text = script.read_text()
    names = set(re.findall(r'^\s*"([\w-]+)\|[^|"]+\|v[0-9][^"]*"', text, re.M))
    if re.search(r"^lima_version=v[0-9]", text, re.M) and "cmd/limactl@" in text:
        names.add("limactl")
    return names


def locate(name: str) -> list[Path]:
    """Where NAME is on this machine, first match first: an absolute path as it is, else each
    match on PATH (with the sbin directories root has), then in the Go tools' directories."""
    if name.startswith("/"):
        return [Path(name)] if os.path.exists(name) else []
    search = os.environ.get("PATH", "").split(":") + ["/usr/local/sbin", "/usr/sbin", "/sbin"]
    search += [str(TOOLS_DIR / "bin"), str(TOOLS_DIR / "lima" / "bin")]
    found: dict[Path, Path] = {}  # one path per file (/bin is /usr/bin on merged /usr)
    for directory in filter(None, search):
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            found.setdefault(candidate.resolve(), candidate)
    return list(found.values())


def in_venv(path: Path) -> bool:
    """PATH is the project's venv's (when the tests run from one, as `make test` does)."""
    venv = Path(sys.prefix)
    if venv == Path(sys.base_prefix):
        return False
    return venv in path.parents or venv in path.resolve().parents


def in_go_tools(path: Path) -> bool:
    return TOOLS_DIR in path.parents


def _candidates(path: Path) -> list[str]:
    """The names dpkg's database may know PATH by: as found, its target, and each of them with
    /usr dropped (merged /usr: the database may say /bin/X for /usr/bin/X)."""
    names: list[str] = []
    for p in (str(path), str(path.resolve())):
        names += [p, re.sub(r"^/usr(?=/(s?bin|lib)/)", "", p)]
    return list(dict.fromkeys(names))


def owners(paths: list[Path]) -> dict[Path, str]:
    """The package dpkg says installed each of PATHS (one `dpkg -S` for all: it reads its whole
    database per call); paths no package installed are left out."""
    wanted: dict[str, list[Path]] = {}
    for path in paths:
        for candidate in _candidates(path):
            wanted.setdefault(candidate, []).append(path)
    if not wanted:
        return {}
    proc = subprocess.run(
        ["dpkg", "-S", *wanted], capture_output=True, text=True, timeout=300, check=False
    )
    by_file: dict[str, str] = {}
    for line in proc.stdout.splitlines():  # "dash: /bin/sh"; "diversion by dash from: /bin/sh"
        if ": " in line and not line.startswith("diversion by "):
            package, file = line.rsplit(": ", 1)
            by_file.setdefault(file, package.split(",")[0].strip().split(":")[0])
    found: dict[Path, str] = {}
    for candidate, of in wanted.items():
        for path in of if candidate in by_file else []:
            found.setdefault(path, by_file[candidate])
    return found


def essential(packages: set[str]) -> set[str]:
    """Those of PACKAGES that are Debian Essential: on every Debian system (Debian Policy 3.8),
    so nothing needs to name them."""
    if not packages:
        return set()
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${Essential}\n", *sorted(packages)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return {line.split()[0] for line in proc.stdout.splitlines() if line.endswith(" yes")}


def gaps(uses: list[Use], named: set[str], pinned: set[str]) -> list[str]:
    """One line per command that no package of NAMED (or Essential package), the venv, or a
    pinned Go tool of PINNED provides on this machine. A copy installed by hand earlier on PATH
    (this machine's /usr/local/bin/docker) does not hide the packaged one a fresh machine runs:
    a command passes when any of its copies on PATH is provided."""
    by_name: dict[str, list[str]] = {}
    for use in uses:
        by_name.setdefault(use.name, []).append(use.where)
    located = {name: locate(name) for name in by_name}
    packages = owners([p for paths in located.values() for p in paths])
    ok_packages = named | essential(set(packages.values()) - named)
    problems: list[str] = []
    for name, wheres in sorted(by_name.items()):
        why: list[str] = []
        for path in located[name]:
            if in_venv(path):
                break
            if in_go_tools(path):
                if path.name in pinned:
                    break
                why.append(f"{path} is not pinned in {GO_TOOLS.name}")
            elif path not in packages:
                why.append(f"{path} belongs to no Debian package")
            elif packages[path] in ok_packages:
                break
            else:
                why.append(f"{path} is from {packages[path]}, which {SETUP.name} does not name")
        else:
            reason = "; ".join(why) if why else "not found on this machine"
            problems.append(f"{name} ({', '.join(wheres)}): {reason}")
    return problems
