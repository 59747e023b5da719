"""Ed25519 signatures: signed evaluation results and signed audit seals.

The service signs with a private key from a file (PRANEYA_SIGNING_KEY_FILE); callers verify with the
published public key (GetSigningKey). The key id is a fingerprint of the public key.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "SIGNING_KEY_ENV",
    "Signer",
    "SigningKeyError",
    "generate_signing_key",
    "signer_from_env",
    "verify_signature",
]

SIGNING_KEY_ENV = "PRANEYA_SIGNING_KEY_FILE"
ALGORITHM = "Ed25519"


class SigningKeyError(RuntimeError):
    pass


def key_id_of(public_raw: bytes) -> str:
    return "ed25519:" + hashlib.sha256(public_raw).hexdigest()[:16]


class Signer:
    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_raw = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.public_pem = (
            private_key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )
        self.key_id = key_id_of(self.public_raw)
        self.algorithm = ALGORITHM

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id!r})"

    @classmethod
    def from_file(cls, path: Path) -> Signer:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SigningKeyError(
                f"{SIGNING_KEY_ENV} names {path}, which cannot be read: {exc.strerror}"
            ) from None
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except ValueError:
            raise SigningKeyError(f"the signing key file {path} is not a PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"the signing key file {path} must hold an Ed25519 key")
        return cls(key)

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)


def verify_signature(public_raw: bytes, data: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def generate_signing_key(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def signer_from_env(environ: Mapping[str, str] | None = None) -> Signer:
    env = os.environ if environ is None else environ
    path = env.get(SIGNING_KEY_ENV)
    if not path:
        raise SigningKeyError(f"{SIGNING_KEY_ENV} is not set: point it at the Ed25519 signing key (PEM)")
    return Signer.from_file(Path(path))
