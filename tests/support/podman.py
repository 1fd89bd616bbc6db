"""Pytest plugin: a private rootful Podman service (Docker-compatible API), and arm64 binfmt.

Fixtures (session scope):
- `podman` -> PodmanService: `podman system service` on a per-session socket, over a graph root that
  persists between local runs (images built once are reused), so `docker.DockerClient(base_url=url)`
  and `podman.cli(...)` see the same images.
- `binfmt_arm64` -> Path: the registered qemu-aarch64 binfmt_misc entry, mounting binfmt_misc and
  enabling the entry when needed, so arm64 RUN steps work under qemu-user-static.

Layout under the test root (env BOOTC_PIPELINE_TEST_ROOT, default /var/tmp/bootc-pipeline-tests):
`podman/` is the graph root, `cache/` holds downloads other fixtures keep between runs.

Podman records its run root in a database under GRAPHROOT/libpod and refuses a different run
root later ("database configuration mismatch"). Only the image store persists between sessions:
run root, tmp dir and socket are per session, and a session that owns the persistent graph root
starts with a fresh database (the containers of an earlier session are removed anyway).
These machines cannot raise rlimits (ENVIRONMENT.md): containers.conf pins ulimits and runc.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ENV_TEST_ROOT = "BOOTC_PIPELINE_TEST_ROOT"
DEFAULT_TEST_ROOT = Path("/var/tmp/bootc-pipeline-tests")

SERVICE_START_TIMEOUT = 60.0  # seconds until the API socket must answer
SERVICE_STOP_TIMEOUT = 20.0
CLI_TIMEOUT = 900.0  # one podman command (a build through qemu can take minutes)

# Tools the fixture needs, and the Debian package providing each.
_REQUIRED_TOOLS = {"podman": "podman", "runc": "runc"}


def state_root() -> Path:
    """Where tests keep state between runs: the Podman graph root and download caches."""
    return Path(os.environ.get(ENV_TEST_ROOT) or DEFAULT_TEST_ROOT)


def cache_dir(*parts: str) -> Path:
    """A directory under the test root's cache/ (created), for downloads kept between runs."""
    path = state_root().joinpath("cache", *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


class CommandError(subprocess.CalledProcessError):
    """A failed command, printed with its argv and the tail of its stderr (pytest shows str())."""

    def __str__(self) -> str:
        tail = b""
        if isinstance(self.stderr, bytes) and self.stderr:
            tail = b"\n".join(self.stderr.strip().splitlines()[-20:])
        cmd = shlex.join(self.cmd) if isinstance(self.cmd, list) else str(self.cmd)
        return f"`{cmd}` exited with status {self.returncode}:\n{tail.decode(errors='replace')}"


def run_checked(
    argv: list[str],
    *,
    check: bool = True,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = CLI_TIMEOUT,
) -> subprocess.CompletedProcess[bytes]:
    """Run a command with a time limit, capturing output; raise CommandError when it fails."""
    try:
        proc = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            env=env,
            cwd=cwd,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"`{shlex.join(argv)}` did not finish within {timeout:.0f} s") from exc
    if check and proc.returncode != 0:
        raise CommandError(proc.returncode, argv, proc.stdout, proc.stderr)
    return proc


@dataclass(frozen=True)
class PodmanService:
    """A running rootful Podman API service over a private store, and a CLI bound to that store."""

    url: str  # unix:///.../podman.sock, for DOCKER_HOST or docker.DockerClient(base_url=url)
    socket: Path
    root: Path  # graph root (what the API reports as DockerRootDir)
    runroot: Path
    conf: Path  # containers.conf
    storage_conf: Path
    env: dict[str, str] = field(hash=False)  # full environment for the podman CLI on this store

    def argv(self, *args: str) -> list[str]:
        """The podman command line (argv) for this store."""
        return ["podman", "--root", str(self.root), "--runroot", str(self.runroot), *args]

    def cli(
        self,
        *args: str,
        check: bool = True,
        input: bytes | None = None,
        timeout: float = CLI_TIMEOUT,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run `podman --root R --runroot RR ARGS...` on this store (output captured)."""
        return run_checked(
            self.argv(*args), check=check, input=input, env=self.env, timeout=timeout
        )

    def image_exists(self, name: str) -> bool:
        return self.cli("image", "exists", name, check=False).returncode == 0

    def image_label(self, name: str, label: str) -> str | None:
        """A label of a local image, or None when the image or the label is absent."""
        if not self.image_exists(name):
            return None
        proc = self.cli("image", "inspect", "--format", "{{json .Labels}}", name)
        labels = json.loads(proc.stdout or b"null") or {}
        value = labels.get(label)
        return value if isinstance(value, str) else None


def _containers_conf(session: Path) -> str:
    return f"""\
# Written by tests/support/podman.py for one test session.
[containers]
# Raising rlimits is not permitted on these machines; runc fails unless the defaults are pinned.
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{session}/events.log"
tmp_dir = "{session}/tmp"
volume_path = "{session}/volumes"
"""


def _storage_conf(root: Path, runroot: Path) -> str:
    return f"""\
# Written by tests/support/podman.py for one test session.
[storage]
driver = "overlay"
graphroot = "{root}"
runroot = "{runroot}"
"""


def _ping(sock: Path, timeout: float = 2.0) -> bool:
    """True when the API on the unix socket answers GET /_ping with 200."""

    class _UnixConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            s.connect(str(sock))
            self.sock = s

    conn = _UnixConnection("localhost", timeout=timeout)
    try:
        conn.request("GET", "/_ping")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def _require_tools() -> None:
    for tool, package in _REQUIRED_TOOLS.items():
        if shutil.which(tool) is None:
            pytest.fail(
                f"{tool} not found on PATH: the integration tests need rootful Podman "
                f"(Debian: apt-get install -y {package}; .ci/run must install it)",
                pytrace=False,
            )


@contextlib.contextmanager
def _graph_root_lock(root: Path) -> Iterator[bool]:
    """Lock the persistent graph root exclusively; yield False when another session holds it."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f"{root.name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _remove_leftover_containers(service: PodmanService) -> None:
    """Remove containers an earlier, interrupted session left in the store (buildah's included)."""
    proc = service.cli("ps", "--all", "--external", "--quiet", "--no-trunc", check=False)
    ids = proc.stdout.decode().split()
    if ids:
        service.cli("rm", "--force", "--time", "0", *ids, check=False)


@contextlib.contextmanager
def podman_service(root: Path | None = None) -> Iterator[PodmanService]:
    """Start a Podman API service over graph root ROOT (default: the persistent one) until exit."""
    _require_tools()
    session = Path(tempfile.mkdtemp(prefix="bootc-podman-", dir="/tmp"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, session, ignore_errors=True)
        exclusive = True  # no other session uses this graph root
        if root is None:
            root = state_root() / "podman"
            if not stack.enter_context(_graph_root_lock(root)):
                # Another session uses the persistent store: never share it (separate run roots
                # on one graph root race on mounts); use a throwaway one, caches still help.
                root = session / "graphroot"
        else:
            exclusive = False
        root.mkdir(parents=True, exist_ok=True)
        runroot = session / "runroot"
        for sub in ("tmp", "volumes", "runroot"):
            (session / sub).mkdir()
        conf = session / "containers.conf"
        conf.write_text(_containers_conf(session))
        storage_conf = session / "storage.conf"
        storage_conf.write_text(_storage_conf(root, runroot))
        sock = session / "podman.sock"
        env = dict(os.environ)
        env.update(
            CONTAINERS_CONF=str(conf),
            CONTAINERS_STORAGE_CONF=str(storage_conf),
            DOCKER_HOST=f"unix://{sock}",
        )
        service = PodmanService(
            url=f"unix://{sock}",
            socket=sock,
            root=root,
            runroot=runroot,
            conf=conf,
            storage_conf=storage_conf,
            env=env,
        )
        if exclusive:
            # The libpod database names an earlier session's run root: start afresh, and leave
            # none behind (after the service stops), so a plain `podman --root` works on the store.
            database = root / "libpod" / "bolt_state.db"
            database.unlink(missing_ok=True)
            stack.callback(database.unlink, missing_ok=True)
            _remove_leftover_containers(service)

        log_path = session / "service.log"
        log = stack.enter_context(open(log_path, "wb"))
        proc = subprocess.Popen(
            service.argv("system", "service", "--time=0", service.url),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        stack.callback(_stop, proc, service)
        deadline = time.monotonic() + SERVICE_START_TIMEOUT
        while not (sock.exists() and _ping(sock)):
            if proc.poll() is not None:
                pytest.fail(
                    f"podman system service exited with status {proc.returncode} before "
                    f"answering on {sock}:\n{log_path.read_text(errors='replace')[-4000:]}",
                    pytrace=False,
                )
            if time.monotonic() > deadline:
                log_tail = log_path.read_text(errors="replace")[-4000:]
                pytest.fail(
                    f"podman system service did not answer on {sock} within "
                    f"{SERVICE_START_TIMEOUT:.0f} s:\n{log_tail}",
                    pytrace=False,
                )
            time.sleep(0.1)
        yield service


def _stop(proc: subprocess.Popen[bytes], service: PodmanService) -> None:
    # Containers a test forgot would keep overlay mounts; remove them while the service still runs.
    with contextlib.suppress(AssertionError, OSError):
        service.cli("rm", "--all", "--force", "--time", "0", check=False, timeout=120)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=SERVICE_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=SERVICE_STOP_TIMEOUT)


@pytest.fixture(scope="session")
def podman() -> Iterator[PodmanService]:
    """A rootful Podman service (Docker-compatible API) over the persistent test graph root."""
    with podman_service() as service:
        yield service


BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")


def ensure_binfmt(entry: str = "qemu-aarch64") -> Path:
    """Make sure binfmt_misc is mounted and ENTRY is registered and enabled; return its file.

    Raises AssertionError with the package or command to fix it when that cannot be done.
    """
    if not (BINFMT_DIR / "register").exists():
        proc = run_checked(
            ["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)], check=False, timeout=30
        )
        if proc.returncode != 0:
            raise AssertionError(
                f"cannot mount binfmt_misc on {BINFMT_DIR}: {proc.stderr.decode(errors='replace')}"
            )
    path = BINFMT_DIR / entry
    if not _binfmt_enabled(path):
        if not Path("/usr/share/binfmts", entry).exists() or shutil.which("update-binfmts") is None:
            raise AssertionError(
                f"binfmt entry {entry} is not registered and cannot be: "
                "apt-get install -y qemu-user-static binfmt-support"
            )
        proc = run_checked(["update-binfmts", "--enable", entry], check=False, timeout=60)
        if not _binfmt_enabled(path):
            raise AssertionError(
                f"update-binfmts --enable {entry} did not register it: "
                f"{proc.stderr.decode(errors='replace')}"
            )
    flags = [line for line in path.read_text().splitlines() if line.startswith("flags:")]
    if not flags or "F" not in flags[0].split(":", 1)[1]:
        # Without F (fix-binary) the interpreter is looked up inside each container and is missing.
        raise AssertionError(f"binfmt entry {path} lacks the F flag needed inside containers")
    return path


def _binfmt_enabled(path: Path) -> bool:
    try:
        return path.read_text().splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        return False


@pytest.fixture(scope="session")
def binfmt_arm64() -> Path:
    """The enabled qemu-aarch64 binfmt_misc entry (arm64 binaries run on this amd64 host)."""
    try:
        return ensure_binfmt("qemu-aarch64")
    except AssertionError as exc:
        pytest.fail(str(exc), pytrace=False)
