"""The real Lima (limactl v2.2.0, tests/support/gotools.py), run as an unprivileged user.

limactl refuses to run as root (lima-vm/lima cmd/limactl/main.go), so the tests create the user
`USER` (once per machine) and run it through `runuser -u USER --` with a clean environment: a
short LIMA_HOME (unix socket paths are limited to 108 bytes), the user's own XDG cache, and a PATH
that holds this venv's bin (where `limactl-url-oras` is installed) and Lima's bin.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.gotools import go_tool
from tests.support.podman import state_root

USER = "bootc-lima"
PLUGIN = "limactl-url-oras"
LOG_TAIL = 6000  # characters of each Lima log kept in a failure's output
KVM = Path("/dev/kvm")
# Lima v2.2.0 chooses KVM whenever /dev/kvm exists (pkg/driver/qemu/qemu.go, Accel), even when
# the user cannot open it; QEMU then exits with "Could not access KVM kernel module: Permission
# denied". For such a user the tests give Lima (through its QEMU_SYSTEM_X86_64 override) a QEMU
# that runs what Lima asked for under TCG, as Lima itself does when /dev/kvm is absent.
TCG_QEMU = """#!/bin/bash
out=() prev=
for a in "$@"; do
  b=${a//accel=kvm/accel=tcg}
  if [ "$prev" = -cpu ] && [ "${a%%,*}" = host ]; then b="max${a#host}"; fi
  out+=("$b") prev=$a
done
exec /usr/bin/qemu-system-x86_64 "${out[@]}"
"""


def plugin() -> Path:
    """The console script pip installed beside this interpreter (pyproject [project.scripts])."""
    path = Path(sys.executable).parent / PLUGIN
    if not path.is_file():
        pytest.fail(f"{path} is missing: install the package (`pip install -e .`) in this venv")
    return path


def _user_runs(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", USER, "--", *argv],
        capture_output=True, text=True, timeout=120, check=False, cwd="/",
    )  # fmt: skip


def _user_runs_plugin(bin_dir: Path) -> subprocess.CompletedProcess[str]:
    """USER runs BIN_DIR's plugin with no argument: its usage error (exit 2) shows it starts."""
    return _user_runs(str(bin_dir / PLUGIN))


def _starts(proc: subprocess.CompletedProcess[str]) -> bool:
    return proc.returncode == 2 and "expected one argument" in proc.stderr


@functools.cache
def user_plugin_dir() -> Path:
    """A bin directory holding `limactl-url-oras` that USER can run: this venv's, when USER can
    run its interpreter and import the package from where it is installed; else (a checkout or a
    venv under /root, mode 0700, or a pyenv interpreter there) a venv of Debian's python3 under
    the test root with this checkout installed into it (not editable), readable by everyone."""
    own = plugin().parent
    if _starts(_user_runs_plugin(own)):
        return own
    python = Path("/usr/bin/python3")
    if _user_runs(str(python), "-c", "pass").returncode != 0:
        pytest.fail(f"{USER} cannot run {python}: apt-get install -y python3 python3-venv")
    repo = Path(__file__).resolve().parents[2]
    sources = sorted([repo / "pyproject.toml", *repo.glob("pipeline/**/*.py"),
                      *repo.glob("pipeline/**/*.json")])  # fmt: skip
    digest = hashlib.sha256()
    for source in sources:
        digest.update(str(source.relative_to(repo)).encode() + b"\0" + source.read_bytes())
    state = state_root()  # the test root the other fixtures keep their state under
    venv = state / f"lima-venv-{digest.hexdigest()[:16]}"
    done = venv / ".installed"  # written last: a venv cut short is made again
    state.mkdir(parents=True, exist_ok=True)
    # made where it stays (a venv's scripts name their interpreter by path), under a lock
    with open(state / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.is_file():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([str(python), "-m", "venv", str(venv)], check=True, timeout=300)
            subprocess.run(
                [str(venv / "bin/python"), "-m", "pip", "install", "--quiet",
                 "--disable-pip-version-check", str(repo)],
                check=True, timeout=900,
            )  # fmt: skip
            subprocess.run(["chmod", "-R", "a+rX", str(venv)], check=True, timeout=120)
            done.touch()
    proc = _user_runs_plugin(venv / "bin")
    if not _starts(proc):
        pytest.fail(f"{USER} cannot run the plugin installed in {venv}: {proc.stderr.strip()}")
    return venv / "bin"


def ensure_user() -> pwd.struct_passwd:
    """The unprivileged user Lima runs as, created with a home of its own (the `~` mount)."""
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        pass
    if shutil.which("useradd") is None:
        pytest.fail("useradd is missing (package passwd): the tests create a user for limactl")
    subprocess.run(
        ["useradd", "--create-home", "--shell", "/bin/bash", USER],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    try:  # another session may have created it at the same moment
        return pwd.getpwnam(USER)
    except KeyError:
        pytest.fail(f"could not create the user {USER} for limactl")


@dataclass
class LimaUser:
    """One test's Lima: its own LIMA_HOME and cache, owned by USER, under the test root."""

    root: Path
    account: pwd.struct_passwd
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def lima_home(self) -> Path:
        return self.root / "l"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def home(self) -> Path:
        return Path(self.account.pw_dir)

    def env(self) -> dict[str, str]:
        path = [str(user_plugin_dir()), str(Path(go_tool("limactl")).parent), "/usr/bin", "/bin"]
        return {
            "PATH": ":".join([*path, "/usr/sbin", "/sbin"]),
            "HOME": self.account.pw_dir,
            "USER": USER,
            "LOGNAME": USER,
            "LIMA_HOME": str(self.lima_home),
            "XDG_CACHE_HOME": str(self.cache),
            "LC_ALL": "C.UTF-8",
            **self.extra_env,
        }

    def argv(self, *args: str) -> list[str]:
        env = [f"{k}={v}" for k, v in self.env().items()]
        return ["runuser", "-u", USER, "--", "env", "-i", *env, *args]

    def run(
        self, *args: str, timeout: float, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), capture_output=True, text=True, timeout=timeout,
            check=False, cwd=cwd or self.root,
        )  # fmt: skip

    def limactl(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return self.run(go_tool("limactl"), *args, timeout=timeout)

    def give(self, path: Path) -> None:
        """Hand a file or directory the test wrote to USER."""
        os.chown(path, self.account.pw_uid, self.account.pw_gid)

    def logs(self, instance: str) -> str:
        """Lima's own logs of INSTANCE (ha.stderr.log, serial logs), tails, for a failure."""
        directory = self.lima_home / instance
        parts = []
        for name in ("ha.stderr.log", "serial.log", "serialp.log", "serialv.log"):
            path = directory / name
            if path.is_file():
                text = path.read_text(errors="replace")
                parts.append(f"----- {path} (last {LOG_TAIL} chars) -----\n{text[-LOG_TAIL:]}")
        return "\n".join(parts) or f"(no Lima logs under {directory})"


def kvm_usable(user: str) -> bool:
    proc = subprocess.run(
        ["runuser", "-u", user, "--", "sh", "-c", f"test -r {KVM} && test -w {KVM}"],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    return proc.returncode == 0


def make_lima_user() -> LimaUser:
    account = ensure_user()
    user_plugin_dir()
    state = state_root()
    state.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="lima-", dir=state))
    user = LimaUser(root, account)
    (root / "cache").mkdir()
    for path in (root, root / "cache"):
        user.give(path)
    if KVM.exists() and not kvm_usable(USER):
        wrapper = root / "qemu-system-x86_64"
        wrapper.write_text(TCG_QEMU)
        wrapper.chmod(0o755)
        user.extra_env["QEMU_SYSTEM_X86_64"] = str(wrapper)
    return user
