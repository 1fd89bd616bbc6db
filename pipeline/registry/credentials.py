"""Where registry credentials come from: CI environment variables (for one host, see access.py),
and each host's own entry in a docker config.json.

oras-py 0.2.43 has a loader for this (oras.auth.utils.load_configs) but it does not fit: it always
merges ~/.docker/config.json into an explicitly given config (so `--registry-config` could not
exclude the user's own logins), ignores $DOCKER_CONFIG, runs credential helpers without a timeout
and logs their stderr. The format is small, so it is read here, following docker/cli's rules:
`credHelpers[host]` wins, then `credsStore`, then the inline `auths[host]` entry.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.core.errors import PipelineError, UsageError

ENV_USERNAME = "BOOTC_PIPELINE_REGISTRY_USERNAME"
ENV_PASSWORD = "BOOTC_PIPELINE_REGISTRY_PASSWORD"
HELPER_TIMEOUT_SECONDS = 30.0
# docker/cli stores Docker Hub logins under this legacy key.
_DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io")


@dataclass(frozen=True)
class Credentials:
    """A username and password (or token); `source` says where they came from, for messages."""

    username: str
    password: str = field(repr=False)
    source: str = ""

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """$DOCKER_CONFIG/config.json, else ~/.docker/config.json (docker/cli's order)."""
    env = os.environ if environ is None else environ
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"]) / "config.json"
    return Path.home() / ".docker" / "config.json"


def credentials_from_environment(environ: Mapping[str, str] | None = None) -> Credentials | None:
    """$BOOTC_PIPELINE_REGISTRY_USERNAME/_PASSWORD, or None; both or neither must be set.

    They are one host's (a CI token for the target registry): access.py decides which host
    that is, and only that host's lookup calls this.
    """
    env = os.environ if environ is None else environ
    username, password = env.get(ENV_USERNAME), env.get(ENV_PASSWORD)
    if bool(username) != bool(password):
        raise UsageError(f"set both {ENV_USERNAME} and {ENV_PASSWORD}, or neither")
    if username and password:
        return Credentials(username, password, f"${ENV_USERNAME}/${ENV_PASSWORD}")
    return None


def find_credentials(
    registry: str,
    *,
    registry_config: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Credentials | None:
    """`registry`'s (host[:port]) own credentials in the docker config, or None (anonymous).

    Never the environment's: those belong to one host only (credentials_from_environment).
    An explicit `registry_config` must exist (a typo must not silently mean "anonymous"); the
    default config may be absent.
    """
    env = os.environ if environ is None else environ
    if registry_config is not None:
        if not registry_config.is_file():
            raise UsageError(f"registry config {registry_config} does not exist")
        path = registry_config
    else:
        path = default_config_path(env)
        if not path.is_file():
            return None
    return credentials_from_config(registry, _read_config(path), str(path))


def _read_config(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"cannot read registry config {path}: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise UsageError(f"registry config {path} is not a JSON object")
    return data


def credentials_from_config(
    registry: str, config: Mapping[str, object], source: str
) -> Credentials | None:
    """Apply docker/cli's precedence to one parsed config.json."""
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict):
        for key in _lookup_keys(registry):
            if isinstance(helpers.get(key), str):
                return run_credential_helper(helpers[key], key)
    store = config.get("credsStore")
    if isinstance(store, str) and store:
        for key in _lookup_keys(registry):
            found = run_credential_helper(store, key)
            if found is not None:
                return found
    auths = config.get("auths")
    if isinstance(auths, dict):
        by_host = {_normalize_key(k): v for k, v in auths.items() if isinstance(v, dict)}
        for key in _lookup_keys(registry):
            entry = by_host.get(_normalize_key(key))
            if entry is not None:
                found = _from_auth_entry(entry, f"{source}, entry {key}")
                if found is not None:
                    return found
    return None


def _lookup_keys(registry: str) -> list[str]:
    """Names a login for `registry` may be stored under (localhost ≡ 127.0.0.1, Docker Hub)."""
    keys = [registry]
    if registry.startswith("localhost"):
        keys.append("127.0.0.1" + registry[len("localhost") :])
    elif registry.startswith("127.0.0.1"):
        keys.append("localhost" + registry[len("127.0.0.1") :])
    if registry in ("docker.io", "registry-1.docker.io", "index.docker.io"):
        keys.extend(_DOCKER_HUB_KEYS)
    return keys


def _normalize_key(key: str) -> str:
    """`https://host:5000/v1/` → `host:5000`: config keys may be URLs or bare hosts."""
    if "://" in key:
        return urlsplit(key).netloc.lower()
    return key.split("/", 1)[0].lower()


def _from_auth_entry(entry: Mapping[str, object], source: str) -> Credentials | None:
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise UsageError(f"{source}: 'auth' is not base64 of user:password") from None
        user, sep, password = decoded.partition(":")
        if not sep or not user:
            raise UsageError(f"{source}: 'auth' is not base64 of user:password")
        return Credentials(user, password, source)
    name, secret = entry.get("username"), entry.get("password")
    if isinstance(name, str) and isinstance(secret, str) and name:
        return Credentials(name, secret, source)
    return None


def run_credential_helper(name: str, server: str) -> Credentials | None:
    """`docker-credential-NAME get` with the server on stdin; None if it has no entry.

    Neither its output nor its stderr goes into messages: both may hold the secret.
    """
    binary = f"docker-credential-{name}"
    try:
        proc = subprocess.run(
            [binary, "get"],
            input=server.encode(),
            capture_output=True,
            timeout=HELPER_TIMEOUT_SECONDS,
            check=False,
        )
    except FileNotFoundError:
        raise UsageError(
            f"credential helper {binary} (named in the docker config) is not installed"
        ) from None
    except subprocess.TimeoutExpired:
        raise PipelineError(
            f"credential helper {binary} did not answer within {HELPER_TIMEOUT_SECONDS:.0f} s"
        ) from None
    if proc.returncode != 0:
        # docker-credential-* exit 1 with "credentials not found" for an unknown server.
        if b"not found" in proc.stdout.lower() or b"not found" in proc.stderr.lower():
            return None
        raise PipelineError(f"credential helper {binary} failed (exit status {proc.returncode})")
    try:
        payload = json.loads(proc.stdout)
        user, secret = payload["Username"], payload["Secret"]
    except (ValueError, KeyError, TypeError):
        raise PipelineError(
            f"credential helper {binary} printed something that is not JSON"
        ) from None
    if not isinstance(user, str) or not isinstance(secret, str) or not secret:
        return None
    return Credentials(user, secret, f"credential helper {binary}")
