"""Keyless signing (Sigstore: GitHub's OIDC token, Fulcio, Rekor) through the real `cosign`.

Used by `--keyless` at the same point as a key (after the boot check, before any tag moves), in
the nightly workflow's join, whose job alone has `id-token: write`. cosign v2 (2.6.4 pinned in
the workflow) is used because it writes the tag-based `sha256-HEX.sig` signature with the
Fulcio certificate and Rekor bundle as annotations, which containers/image (podman, bootc's
`policy.json` `sigstoreSigned` with `fulcio`) verifies; cosign v3 writes only a Sigstore bundle
as a referrer, which containers/image cannot read yet (containers/container-libs#1153).

cosign gets the registry credentials through a throwaway DOCKER_CONFIG holding only this
registry's entry (mode 0600, deleted after): never on its command line.

Not exercised here: the public Sigstore services and GitHub's OIDC token cannot be reached
from this machine. The argv and environment are planned by pure functions, tested.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from pipeline.core.errors import PipelineError, UsageError
from pipeline.registry.credentials import Credentials, find_credentials
from pipeline.trust.subjects import Subject

COSIGN_ENV = "BOOTC_PIPELINE_COSIGN"
SIGN_TIMEOUT_SECONDS = 300


def cosign_binary(environ: Mapping[str, str] = os.environ) -> str:
    found = environ.get(COSIGN_ENV) or shutil.which("cosign")
    if not found:
        raise UsageError(
            "--keyless needs cosign v2 (tag-based signatures): not found on PATH",
            hint=f"go install github.com/sigstore/cosign/v2/cmd/cosign@v2.6.4, or set {COSIGN_ENV}",
        )
    return found


def sign_argv(cosign: str, subject: Subject) -> list[str]:
    """cosign v2 keyless: the ambient OIDC token (GitHub Actions), Fulcio and Rekor."""
    return [cosign, "sign", "--yes", f"{subject.docker_reference}@{subject.digest}"]


def docker_config(registry: str, credentials: Credentials | None) -> dict[str, object]:
    if credentials is None:
        return {"auths": {}}
    auth = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()
    return {"auths": {registry: {"auth": auth}}}


def sign_keyless(
    subjects: Sequence[Subject], *, registry: str, registry_config: Path | None
) -> list[str]:
    cosign = cosign_binary()
    credentials = find_credentials(registry, registry_config=registry_config)
    with tempfile.TemporaryDirectory(prefix="bootc-cosign-") as temp:
        config = Path(temp) / "config.json"
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(docker_config(registry, credentials), out)
        env = os.environ | {"DOCKER_CONFIG": temp}
        done = []
        for subject in subjects:
            argv = sign_argv(cosign, subject)
            proc = subprocess.run(
                argv, env=env, capture_output=True, text=True, timeout=SIGN_TIMEOUT_SECONDS
            )
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1][:300]
                raise PipelineError(f"cosign keyless signing of {subject} failed: {last}")
            done.append(subject.digest)
    return done
