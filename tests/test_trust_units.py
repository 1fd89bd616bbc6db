"""The trust modules' pure parts: payloads, tags, keys and their errors, keyless planning."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from pipeline.core.errors import UsageError
from pipeline.model.plan import Document
from pipeline.registry.credentials import Credentials
from pipeline.trust import attestations, keyless, keys, verify
from pipeline.trust import simplesigning as ss
from pipeline.trust.subjects import Subject
from tests.support.keys import make_key_pair

DIGEST = "sha256:" + "ab" * 32


def test_signature_tag_and_payload_are_cosigns() -> None:
    assert ss.signature_tag(DIGEST) == "sha256-" + "ab" * 32 + ".sig"
    body = json.loads(ss.payload("r.example/x", DIGEST))
    assert body == {
        "critical": {
            "identity": {"docker-reference": "r.example/x"},
            "image": {"docker-manifest-digest": DIGEST},
            "type": "cosign container image signature",
        },
        "optional": None,
    }
    assert ss.read_payload(ss.payload("r/x", DIGEST), "here").digest == DIGEST


def test_a_payload_of_another_kind_is_refused() -> None:
    with pytest.raises(Exception, match="not a simple-signing payload"):
        ss.read_payload(b'{"critical": 1}', "here")


def test_key_round_trip_and_a_wrong_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pair = make_key_pair(tmp_path, password="s3cret-pass")
    monkeypatch.setenv(keys.PASSWORD_ENV, "s3cret-pass")
    key = keys.load_signing_key(pair.private)
    assert key is not None
    public = keys.load_public_key(pair.public, source="test")
    signature = key.sign(b"payload")
    assert public.verifies(b"payload", signature) and not public.verifies(b"other", signature)
    monkeypatch.setenv(keys.PASSWORD_ENV, "wrong-pass")
    with pytest.raises(UsageError) as caught:
        keys.load_signing_key(pair.private)
    assert "wrong-pass" not in str(caught.value) and "s3cret" not in str(caught.value)
    assert "PRIVATE KEY" not in repr(key)


def test_key_from_the_environment_never_appears_in_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = "-----BEGIN PRIVATE KEY-----\nTUlJQ...not-a-key\n-----END PRIVATE KEY-----\n"
    monkeypatch.setenv(keys.KEY_ENV, secret)
    monkeypatch.delenv(keys.PASSWORD_ENV, raising=False)
    with pytest.raises(UsageError) as caught:
        keys.load_signing_key(None)
    assert "$BOOTC_PIPELINE_SIGNING_KEY" in caught.value.message
    assert "TUlJQ" not in caught.value.message + str(caught.value.hint)


def test_no_key_means_unsigned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(keys.KEY_ENV, raising=False)
    assert keys.load_signing_key(None) is None


def test_trust_file_longest_prefix_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wide, narrow = make_key_pair(tmp_path / "a"), make_key_pair(tmp_path / "b")
    config = tmp_path / "bootc-pipeline" / "trust.yaml"
    config.parent.mkdir()
    config.write_text(
        f"public-keys:\n  ghcr.io/: {wide.public}\n  ghcr.io/bootc-lima/: {narrow.public}\n"
    )
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv(verify.PUBLIC_KEY_ENV, raising=False)
    found = verify.public_key_for(None, "ghcr.io/bootc-lima/disk")
    assert found is not None and str(narrow.public) in found.source
    assert verify.public_key_for(None, "quay.io/x") is None
    config.write_text("public-keys: [1, 2]\n")
    with pytest.raises(UsageError, match="not a trust file"):
        verify.public_key_for(None, "ghcr.io/x")


def test_dsse_envelope_signs_the_pae(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(keys.PASSWORD_ENV, raising=False)
    key = keys.load_signing_key(make_key_pair(tmp_path).private)
    assert key is not None
    envelope = json.loads(attestations.dsse_envelope(b'{"a":1}', key))
    payload = base64.b64decode(envelope["payload"])
    assert payload == b'{"a":1}'
    signed = attestations.pae(envelope["payloadType"], payload)
    assert signed == b"DSSEv1 28 application/vnd.in-toto+json 7 " + payload
    assert key.public().verifies(signed, envelope["signatures"][0]["sig"])


def test_provenance_names_the_workflow_run_in_github_actions() -> None:
    environ = {
        "GITHUB_ACTIONS": "true", "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "o/r", "GITHUB_RUN_ID": "42", "GITHUB_RUN_ATTEMPT": "2",
        "GITHUB_WORKFLOW_REF": "o/r/.github/workflows/nightly.yml@refs/heads/main",
    }  # fmt: skip
    details = attestations.run_details(environ)
    assert (
        details["metadata"]["invocationId"] == "https://github.com/o/r/actions/runs/42/attempts/2"
    )
    assert details["builder"]["id"].endswith("nightly.yml@refs/heads/main")


def test_keyless_plan_keeps_the_token_off_the_command_line() -> None:
    subject = Subject("index", "ghcr.io", "o/disk", Document("x", b"{}"))
    argv = keyless.sign_argv("/usr/bin/cosign", subject)
    assert argv == ["/usr/bin/cosign", "sign", "--yes", f"ghcr.io/o/disk@{subject.digest}"]
    config = keyless.docker_config("ghcr.io", Credentials("actor", "ghs_token"))
    assert "ghs_token" not in " ".join(argv)
    auth = config["auths"]["ghcr.io"]["auth"]  # type: ignore[index]
    assert base64.b64decode(auth) == b"actor:ghs_token"
