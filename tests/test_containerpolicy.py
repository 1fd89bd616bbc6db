"""The OS image's policy.json and registries.d, planned as bytes
(pipeline/trust/containerpolicy.py), and the release manifest's `trust` field. Fast: no engine,
no registry (tests/test_sigpolicy.py and tests/test_os_image_policy.py put the same files to
containers/image)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.core.errors import PipelineError, UsageError
from pipeline.model import release
from pipeline.trust import containerpolicy as cp
from tests.factories import ROOT

SCOPE = "ghcr.io/org/fedora-bootc-lima-os"
KEY = "/etc/pki/containers/fedora-bootc-lima.pub"
BASE: dict[str, Any] = {
    "default": [{"type": "insecureAcceptAnything"}],
    "transports": {
        "docker": {"registry.redhat.io": [{"type": "sigstoreSigned", "keyPath": "/k"}]},
        "docker-daemon": {"": [{"type": "insecureAcceptAnything"}]},
    },
}


def test_the_base_policy_is_kept_and_only_the_os_image_scope_is_added() -> None:
    out = json.loads(cp.policy(json.dumps(BASE).encode(), SCOPE, KEY, where="img"))
    assert out["default"] == BASE["default"]
    assert out["transports"]["docker-daemon"] == BASE["transports"]["docker-daemon"]
    docker = out["transports"]["docker"]
    assert docker.pop("registry.redhat.io") == BASE["transports"]["docker"]["registry.redhat.io"]
    assert docker == {
        SCOPE: [
            {
                "type": "sigstoreSigned",
                "keyPath": KEY,
                "signedIdentity": {"type": "matchRepository"},
            }
        ]
    }


def test_an_earlier_rule_for_the_scope_is_replaced_not_doubled() -> None:
    base = json.loads(json.dumps(BASE))
    base["transports"]["docker"][SCOPE] = [{"type": "insecureAcceptAnything"}]
    out = json.loads(cp.policy(json.dumps(base).encode(), SCOPE, KEY, where="img"))
    assert out["transports"]["docker"][SCOPE] == [cp.requirement(KEY)]


def test_an_image_without_a_policy_gets_containers_commons_default() -> None:
    out = json.loads(cp.policy(None, SCOPE, KEY, where="img"))
    assert out["default"] == [{"type": "insecureAcceptAnything"}]
    assert set(out["transports"]) == {"docker", "docker-daemon"}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (b"{not json", "is not JSON"),
        (b"[]", "is not a containers-policy.json object"),
        (b'{"transports": {"docker": []}}', "transports.docker is not an object"),
    ],
)
def test_a_broken_policy_in_the_image_is_one_error_naming_it(text: bytes, problem: str) -> None:
    with pytest.raises(PipelineError) as caught:
        cp.policy(text, SCOPE, KEY, where="the amd64 image X")
    assert caught.value.message.startswith("the amd64 image X: /etc/containers/policy.json")
    assert problem in caught.value.message


def test_registries_d_and_the_file_set() -> None:
    assert yaml.safe_load(cp.registries_d(SCOPE)) == {
        "docker": {SCOPE: {"use-sigstore-attachments": True}}
    }
    files = cp.files(
        scope=SCOPE, name="fedora-bootc-lima", public_key_pem=b"PEM", base_policy=None, where="x"
    )
    assert sorted(files) == [
        "/etc/containers/policy.json",
        "/etc/containers/registries.d/fedora-bootc-lima.yaml",
        KEY,
    ]
    assert files[KEY] == b"PEM"


def _parse(tmp_path: Path, **extra: object) -> release.Release:
    doc = yaml.safe_load((ROOT / "manifests" / "fedora-40.yaml").read_text()) | extra
    return release.parse(doc, path=tmp_path / "manifests" / "fedora-40.yaml", variant="fedora-40")


def test_trust_public_key_is_resolved_from_the_repository_root(tmp_path: Path) -> None:
    loaded = _parse(tmp_path, trust={"public_key": "keys/release.pub"})
    assert loaded.trust_public_key == (tmp_path / "keys" / "release.pub").resolve()
    assert _parse(tmp_path).trust_public_key is None


def test_trust_takes_only_public_key(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        _parse(tmp_path, trust={"public_key": "k.pub", "keyless": True})
    assert "trust" in caught.value.message and "keyless" in caught.value.message
