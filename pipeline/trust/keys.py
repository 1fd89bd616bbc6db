"""Signing and public keys, loaded with the `cryptography` package (no hand-made primitives).

The private key is a PEM file (PKCS#8, encrypted with a password or not; `openssl genpkey` or
this project's `tests/support/keys.py` make one) named by `--signing-key FILE` or held whole in
the environment variable BOOTC_PIPELINE_SIGNING_KEY (a CI secret); its password, if any, is
BOOTC_PIPELINE_SIGNING_PASSWORD. Neither the key nor the password ever reaches a message: errors
say which source failed and why, from fixed texts only.

Keys are ECDSA P-256 with SHA-256, cosign's default, so the real `cosign verify --key` accepts
what is signed here and a key cosign users already hold (`cosign public-key`) verifies.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pipeline.core.errors import UsageError

KEY_ENV = "BOOTC_PIPELINE_SIGNING_KEY"
PASSWORD_ENV = "BOOTC_PIPELINE_SIGNING_PASSWORD"
_ALGORITHM = ec.ECDSA(hashes.SHA256())


@dataclass(frozen=True)
class SigningKey:
    """A loaded private key; `source` names where it came from (a path or the variable)."""

    source: str
    _key: ec.EllipticCurvePrivateKey = field(repr=False)

    def sign(self, payload: bytes) -> str:
        """cosign's signature encoding: base64 of the ASN.1 DER ECDSA signature over SHA-256."""
        return base64.b64encode(self._key.sign(payload, _ALGORITHM)).decode()

    def public(self) -> PublicKey:
        return PublicKey(f"the public half of {self.source}", self._key.public_key())


@dataclass(frozen=True)
class PublicKey:
    source: str
    _key: ec.EllipticCurvePublicKey = field(repr=False)

    def verifies(self, payload: bytes, signature_b64: str) -> bool:
        try:
            signature = base64.b64decode(signature_b64, validate=True)
            self._key.verify(signature, payload, _ALGORITHM)
        except (InvalidSignature, ValueError):
            return False
        return True

    def pem(self) -> bytes:
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def _password() -> bytes | None:
    value = os.environ.get(PASSWORD_ENV)
    return value.encode() if value else None


def load_signing_key(path: Path | None) -> SigningKey | None:
    """--signing-key FILE, else $BOOTC_PIPELINE_SIGNING_KEY, else None (the release is unsigned)."""
    if path is not None:
        source = str(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"--signing-key {path}: cannot read it: {exc.strerror}") from None
    elif os.environ.get(KEY_ENV):
        source, data = f"${KEY_ENV}", os.environ[KEY_ENV].encode()
    else:
        return None
    try:
        key = serialization.load_pem_private_key(data, password=_password())
    except TypeError:  # a password given for a plain key, or none for an encrypted one
        raise UsageError(
            f"signing key {source}: encrypted and no password given, or a password given for "
            "a key that is not encrypted",
            hint=f"set {PASSWORD_ENV} to the key's password (or unset it)",
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise UsageError(
            f"signing key {source}: not a PEM private key, or the password is wrong",
            hint="a PKCS#8 PEM EC P-256 key: openssl genpkey -algorithm EC "
            "-pkeyopt ec_paramgen_curve:P-256",
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise UsageError(f"signing key {source}: not an ECDSA P-256 key (cosign's default)")
    return SigningKey(source, key)


def load_public_key(path: Path, *, source: str) -> PublicKey:
    """A PEM public key (`cosign public-key` prints one); `source` says who named it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"public key {path} ({source}): cannot read it: {exc.strerror}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise UsageError(f"public key {path} ({source}): not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise UsageError(f"public key {path} ({source}): not an ECDSA P-256 key")
    return PublicKey(f"{path} ({source})", key)
