"""The files that make containers/image verify the OS image's signature, as exact bytes.

containers/image is what podman, skopeo and bootc (through skopeo's image proxy, which checks
the policy on OpenImage: skopeo cmd/skopeo/proxy.go, protocol 0.2.6) pull with. Three files:

- the public key, under `/etc/pki/containers/` (where Fedora and RHEL keep such keys);
- `/etc/containers/policy.json` (containers-policy.json(5), containers/image
  docs/containers-policy.json.5.md): the image's own policy, every entry kept, with one
  `sigstoreSigned` requirement added under `transports.docker` for the OS image's repository
  only. `keyPath` names the key; `signedIdentity` is `matchRepository` because a cosign
  simple-signing payload names the repository without a tag, and the default
  (`matchRepoDigestOrExact`) refuses such a signature for an image pulled by tag ("Note that
  cosign-created signatures only contain a repository, so only matchRepository and
  exactRepository can be used to accept them", the same page). Everything else keeps the
  distribution's rules: a policy that rejected all other images would break the guest's own
  `podman pull`.
- `/etc/containers/registries.d/NAME.yaml` (containers-registries.d(5), docs/
  containers-registries.d.5.md): `use-sigstore-attachments: true` for that repository, without
  which containers/image does not look for the `sha256-HEX.sig` tag and finds no signature.
  One file per scope: the page forbids the same scope in two files.

Nothing here reads the image or talks to an engine (pipeline/publishing/stages/build.py does that).
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from pipeline.core.errors import PipelineError

POLICY_PATH = "/etc/containers/policy.json"
REGISTRIES_D = "/etc/containers/registries.d"
KEY_DIR = "/etc/pki/containers"

# What containers-common installs as /etc/containers/policy.json (Fedora's and Debian's packages
# alike: accept anything by default, and docker-daemon images too): the rules kept for every
# other image when the image carries no policy of its own.
CONTAINERS_COMMON_POLICY: dict[str, Any] = {
    "default": [{"type": "insecureAcceptAnything"}],
    "transports": {"docker-daemon": {"": [{"type": "insecureAcceptAnything"}]}},
}


def requirement(key_path: str) -> dict[str, Any]:
    """The one requirement the OS image's repository gets."""
    return {
        "type": "sigstoreSigned",
        "keyPath": key_path,
        "signedIdentity": {"type": "matchRepository"},
    }


def policy(base: bytes | None, scope: str, key_path: str, *, where: str) -> bytes:
    """BASE (the image's policy.json, None if it has none) with SCOPE requiring the key at
    KEY_PATH; every other transport and scope, and the default, as BASE has them."""
    if base is None:
        body: Any = json.loads(json.dumps(CONTAINERS_COMMON_POLICY))
    else:
        try:
            body = json.loads(base)
        except ValueError:
            raise PipelineError(f"{where}: {POLICY_PATH} is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("transports", {}), dict):
        raise PipelineError(f"{where}: {POLICY_PATH} is not a containers-policy.json object")
    docker = body.setdefault("transports", {}).setdefault("docker", {})
    if not isinstance(docker, dict):
        raise PipelineError(f"{where}: {POLICY_PATH}: transports.docker is not an object")
    docker[scope] = [requirement(key_path)]
    return (json.dumps(body, indent=4) + "\n").encode()


def registries_d(scope: str) -> bytes:
    return yaml.safe_dump(
        {"docker": {scope: {"use-sigstore-attachments": True}}}, default_flow_style=False
    ).encode()


def key_path(name: str) -> str:
    return f"{KEY_DIR}/{name}.pub"


def files(
    *, scope: str, name: str, public_key_pem: bytes, base_policy: bytes | None, where: str
) -> dict[str, bytes]:
    """Path in the image -> bytes, for the OS image repository SCOPE (`registry/path`) and the
    release NAME (which names the key and the registries.d file)."""
    key = key_path(name)
    return {
        key: public_key_pem,
        POLICY_PATH: policy(base_policy, scope, key, where=where),
        f"{REGISTRIES_D}/{name}.yaml": registries_d(scope),
    }
