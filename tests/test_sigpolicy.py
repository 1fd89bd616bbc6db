"""containers/image (what podman, skopeo and bootc pull with) verifies the signatures this project
makes: `skopeo copy` under a policy.json requiring `sigstoreSigned` with `keyPath` for the
repository and a registries.d with `use-sigstore-attachments: true` for it accepts an image
signed by `pipeline/publishing/sign.py` (the function publish uses), and refuses another key, a
tampered signature or payload, a signature over another digest, and no signature.

Formats: containers-policy.json(5) and containers-registries.d(5), containers/image
docs/containers-policy.json.5.md (`sigstoreSigned`: "Exactly one of keyPath, ... must be
present"; "cosign-created signatures only contain a repository, so only matchRepository and
exactRepository can be used to accept them"; "the use-sigstore-attachments option needs to be
enabled for the relevant registry or repository in the client's containers-registries.d(5)") and
docs/containers-registries.d.5.md. The files are the ones pipeline/trust/containerpolicy.py
writes into the OS image (tests/test_os_image_policy.py reads them back from a built image).

Two judges from containers/image: `skopeo copy` of one platform checks the signature of the
instance it copies (podman pull does the same), and skopeo's image proxy, which bootc pulls
through, checks the index's on OpenImage: each case is put to both.

The signature lookup is by tag (`sha256-HEX.sig`), the same on every registry: the accepted case
runs on all three test registries, the refusals on Debian's docker-registry.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.registry.client import RegistryClient
from pipeline.trust import containerpolicy
from pipeline.trust import simplesigning as ss
from pipeline.trust.keys import SigningKey, load_signing_key
from tests.support.keys import KeyPair, make_key_pair
from tests.support.oci_push import push_blob
from tests.support.registry import RunningRegistry
from tests.support.sigpolicy import Pushed, copy, proxy_open, push_image, refusal, sign_image

pytestmark = pytest.mark.integration


def write_policy(
    tmp: Path, scope: str, key: Path, *, attachments: bool = True, identity: bool = True
) -> tuple[Path, Path]:
    """The policy.json and registries.d the OS image carries (over containers-common's default),
    with the key at KEY; `identity=False` drops `signedIdentity` (the default applies)."""
    body = json.loads(containerpolicy.policy(None, scope, str(key), where="test"))
    if not identity:
        del body["transports"]["docker"][scope][0]["signedIdentity"]
    policy = tmp / "policy.json"
    policy.write_text(json.dumps(body))
    registries_d = tmp / "registries.d"
    registries_d.mkdir()
    if attachments:
        (registries_d / "release.yaml").write_bytes(containerpolicy.registries_d(scope))
    return policy, registries_d


def put_signature(image: Pushed, digest: str, layers: list[ss.Signature]) -> None:
    """Replace the `.sig` manifest of DIGEST with one listing LAYERS (a forger's push)."""
    manifest, config = ss.signature_manifest(layers)
    for data in (config, *(s.payload for s in layers)):
        push_blob(image.host, image.repository, data)
    with RegistryClient(image.host, plain_http=True) as client:
        client.push_manifest(
            image.repository, ss.signature_tag(digest), manifest.body, manifest.media_type
        )


@pytest.fixture
def key(tmp_path: Path) -> KeyPair:
    return make_key_pair(tmp_path / "keys")


def signed_image(reg: RunningRegistry, repository_name: str, key: KeyPair) -> Pushed:
    image = push_image(reg.host, f"{repository_name}-os", "40", archs=("amd64", "arm64"))
    signed = sign_image(image, key)
    assert [s.subject.digest for s in signed] == [image.index.digest] + [
        m.digest for m in image.manifests.values()
    ]
    return image


def test_skopeo_accepts_our_signature_and_keeps_the_default_for_others(
    any_registry: RunningRegistry, repository_name: str, key: KeyPair, tmp_path: Path
) -> None:
    image = signed_image(any_registry, repository_name, key)
    policy, registries_d = write_policy(tmp_path, image.name, key.public)
    out = tmp_path / "out"
    proc = copy(f"{image.name}:40", out, policy=policy, registries_d=registries_d)
    assert proc.returncode == 0, proc.stderr
    assert proxy_open(f"{image.name}:40", policy=policy, registries_d=registries_d)["success"]
    assert (out / "manifest.json").read_bytes() == image.manifests["amd64"].body  # the host's
    by_digest = copy(
        f"{image.name}@{image.index.digest}", tmp_path / "d", policy=policy,
        registries_d=registries_d,
    )  # fmt: skip
    assert by_digest.returncode == 0, by_digest.stderr
    # another repository, unsigned: the distribution's default (accept) still holds for it
    other = push_image(any_registry.host, f"{repository_name}-other", "1")
    proc = copy(f"{other.name}:1", tmp_path / "o", policy=policy, registries_d=registries_d)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture
def image(registry: RunningRegistry, repository_name: str, key: KeyPair) -> Pushed:
    return signed_image(registry, repository_name, key)


def refusals(image: Pushed, key: Path, tmp: Path, **policy_options: bool) -> tuple[str, str]:
    """(skopeo copy's fatal line, the proxy's OpenImage error) for `IMAGE:40` under the
    policy for KEY; neither may accept, and the copy leaves no manifest."""
    policy, registries_d = write_policy(tmp, image.name, key, **policy_options)
    out = tmp / "out"
    line = refusal(copy(f"{image.name}:40", out, policy=policy, registries_d=registries_d))
    assert "Source image rejected: " in line, line
    assert not (out / "manifest.json").exists()
    opened = proxy_open(f"{image.name}:40", policy=policy, registries_d=registries_d)
    assert opened["success"] is False, opened
    return line, str(opened["error"])


def forge(image: Pushed, make: Callable[[str], ss.Signature]) -> None:
    """Replace the signatures of the index and the amd64 manifest (what the two judges read)
    with MAKE(digest)."""
    for digest in (image.index.digest, image.manifests["amd64"].digest):
        put_signature(image, digest, [make(digest)])


def signer(key: KeyPair) -> SigningKey:
    signing = load_signing_key(key.private)
    assert signing is not None
    return signing


CRYPTO = "cryptographic signature verification failed: invalid signature when validating ASN.1"


def test_another_key_is_refused(image: Pushed, tmp_path: Path) -> None:
    other = make_key_pair(tmp_path / "other", "other")
    line, error = refusals(image, other.public, tmp_path)
    assert CRYPTO in line and CRYPTO in error, (line, error)


def test_no_signature_is_refused(
    registry: RunningRegistry, repository_name: str, key: KeyPair, tmp_path: Path
) -> None:
    unsigned = push_image(registry.host, f"{repository_name}-os", "40")
    line, error = refusals(unsigned, key.public, tmp_path)
    assert "A signature was required, but no signature exists" in line
    assert error == "A signature was required, but no signature exists"


def test_without_use_sigstore_attachments_no_signature_is_found(
    image: Pushed, key: KeyPair, tmp_path: Path
) -> None:
    """The registries.d entry is what makes containers/image read the `.sig` tag."""
    line, error = refusals(image, key.public, tmp_path, attachments=False)
    assert "A signature was required, but no signature exists" in line
    assert error == "A signature was required, but no signature exists"


def test_the_default_identity_refuses_a_tag_so_the_policy_says_match_repository(
    image: Pushed, key: KeyPair, tmp_path: Path
) -> None:
    """A cosign payload names the repository only: without `matchRepository` a pull by tag
    (what `bootc upgrade` does) is refused (containers-policy.json(5), `sigstoreSigned`)."""
    line, error = refusals(image, key.public, tmp_path, identity=False)
    want = f'Signature for identity "{image.name}" is not accepted'
    assert want.replace('"', '\\"') in line and want in error, (line, error)


def test_a_tampered_signature_is_refused(image: Pushed, key: KeyPair, tmp_path: Path) -> None:
    signing = signer(key)

    def flipped(digest: str) -> ss.Signature:
        payload = ss.payload(image.name, digest)
        raw = bytearray(base64.b64decode(signing.sign(payload)))
        raw[-1] ^= 0x01  # one bit of the ECDSA signature flipped
        return ss.Signature(payload, base64.b64encode(raw).decode())

    forge(image, flipped)
    line, error = refusals(image, key.public, tmp_path)
    assert CRYPTO in line and CRYPTO in error, (line, error)


def test_a_tampered_payload_is_refused(image: Pushed, key: KeyPair, tmp_path: Path) -> None:
    """The signature is genuine, the payload beside it is not the one it signed."""
    signing = signer(key)

    def altered(digest: str) -> ss.Signature:
        payload = ss.payload(image.name, digest)
        forged = payload.replace(b'"optional":null', b'"optional":{"creator":"someone else"}')
        assert forged != payload
        return ss.Signature(forged, signing.sign(payload))

    forge(image, altered)
    line, error = refusals(image, key.public, tmp_path)
    assert CRYPTO in line and CRYPTO in error, (line, error)


def test_a_signature_over_another_digest_is_refused(
    image: Pushed, key: KeyPair, tmp_path: Path
) -> None:
    """A valid signature of the arm64 manifest, put where the index's and amd64's go."""
    signing = signer(key)
    other = image.manifests["arm64"].digest
    payload = ss.payload(image.name, other)
    forge(image, lambda _digest: ss.Signature(payload, signing.sign(payload)))
    line, error = refusals(image, key.public, tmp_path)
    want = f"Signature for digest {other} does not match"
    assert want in line and error == want, (line, error)
