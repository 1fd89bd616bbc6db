"""Verify a release's signatures before any byte of its disk is written (pull, lima, boot REF).

The one hook of the consumer path: `readback.resolve` calls `TrustPolicy.check` once the
reference is resolved (index and chosen manifest digests known) and before streaming starts,
so `pull`, `lima`, `boot REF` and everything built on them are covered. With a public key, the
index (when the reference names one) and the chosen disk manifest must each carry a cosign
simple-signing signature that verifies with the key and names that very digest; anything else
is refused with one line naming what failed. Without a key, the user is told once that nothing
was verified.

Where the key comes from, first found: `--public-key FILE`, $BOOTC_PIPELINE_PUBLIC_KEY (a path),
or the user's trust file `$XDG_CONFIG_HOME/bootc-pipeline/trust.yaml` (default ~/.config):
`public-keys: {"REGISTRY/REPO-PREFIX": PATH}`, the longest prefix of REGISTRY/REPO wins.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.core.errors import PipelineError, UsageError
from pipeline.core.progress import Reporter
from pipeline.registry.client import RegistryClient
from pipeline.registry.errors import where
from pipeline.trust import simplesigning as ss

if TYPE_CHECKING:  # cryptography is imported with a key to load (0.05 s): most pulls have none
    from pipeline.trust.keys import PublicKey

PUBLIC_KEY_ENV = "BOOTC_PIPELINE_PUBLIC_KEY"
KEY_HINT = (
    "pass --public-key FILE, set BOOTC_PIPELINE_PUBLIC_KEY, or name a key in "
    "~/.config/bootc-pipeline/trust.yaml"
)


class VerificationError(PipelineError):
    """A signature is missing, by another key, or over another digest: nothing is written."""


def trust_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "bootc-pipeline" / "trust.yaml"


def _from_trust_file(name: str) -> tuple[Path, str] | None:
    path = trust_file()
    if not path.is_file():
        return None
    import yaml

    try:
        body = yaml.safe_load(path.read_text()) or {}
        keys = body.get("public-keys") or {}
        if not isinstance(keys, dict):
            raise TypeError
    except (OSError, yaml.YAMLError, AttributeError, TypeError):
        raise UsageError(
            f"{path}: not a trust file (public-keys: a mapping of REGISTRY/REPO prefixes to "
            "public key files)"
        ) from None
    matches = [str(prefix) for prefix in keys if name.startswith(str(prefix))]
    if not matches:
        return None
    prefix = max(matches, key=len)
    return Path(os.path.expanduser(str(keys[prefix]))), f"{path}, for {prefix}"


def public_key_for(flag: Path | None, name: str) -> PublicKey | None:
    """The key that `name` (REGISTRY/REPO) must be signed with, or None if the user gave none."""
    if flag is not None:
        found: tuple[Path, str] | None = (flag, "--public-key")
    elif os.environ.get(PUBLIC_KEY_ENV):
        found = (Path(os.environ[PUBLIC_KEY_ENV]), f"${PUBLIC_KEY_ENV}")
    else:
        found = _from_trust_file(name)
    if found is None:
        return None
    from pipeline.trust.keys import load_public_key

    return load_public_key(found[0], source=found[1])


def require_signature(client: RegistryClient, repository: str, digest: str, key: PublicKey) -> str:
    """The signature of `digest` that verifies with `key` (its docker-reference), else raise."""
    here = f"{where(client.registry, repository)}: {digest}"
    tag = ss.signature_tag(digest)
    found = client.manifest_digest(repository, tag)
    if found is None:
        raise VerificationError(f"{here} is not signed (no {tag} in the repository)")
    layers = ss.layers_of(client.get_manifest(repository, found).json())
    if not layers:
        raise VerificationError(f"{here}: {tag} holds no simple-signing signature")
    other_digests = []
    for blob, signature in layers:
        data = client.fetch_blob(repository, blob.digest, size=blob.size)
        if not key.verifies(data, signature):
            continue
        claim = ss.read_payload(data, f"{here}: {tag} payload {blob.digest}")
        if claim.digest == digest:
            return claim.docker_reference
        other_digests.append(claim.digest)
    if other_digests:
        raise VerificationError(
            f"{here}: the signature in {tag} that verifies with {key.source} is over "
            f"{other_digests[0]}, not this digest"
        )
    raise VerificationError(
        f"{here}: none of the {len(layers)} signature(s) in {tag} verifies with {key.source} "
        "(signed by another key, or the payload was altered)"
    )


@dataclass
class TrustPolicy:
    """What the consumer requires; `check` is the one call in the consumer path."""

    key: PublicKey | None
    reporter: Reporter
    _warned: bool = field(default=False, repr=False)
    verified: list[str] = field(default_factory=list)

    @classmethod
    def for_reference(cls, flag: Path | None, name: str, reporter: Reporter) -> TrustPolicy:
        return cls(public_key_for(flag, name), reporter)

    def check(self, client: RegistryClient, repository: str, digests: list[str]) -> None:
        if self.key is None:
            if not self._warned:
                self.reporter.info(
                    f"not verified: no public key, so {client.registry}/{repository} was not "
                    f"checked for a signature ({KEY_HINT})"
                )
                self._warned = True
            return
        for digest in digests:
            if digest in self.verified:
                continue
            require_signature(client, repository, digest, self.key)
            self.verified.append(digest)
        self.reporter.info(
            f"verified: {', '.join(d[:19] for d in digests)} signed with {self.key.source}"
        )
