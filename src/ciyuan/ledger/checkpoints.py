"""Signed checkpoints: the operator's Ed25519 key signs the chain head (pure domain: no I/O).

A checkpoint commits to every transfer up to ``seq``: whoever holds the operator's public key
can check that the chain they are shown extends it, without access to the database. The signed
message is a fixed, versioned text so no two different checkpoints share a signature.

Version 2 (``ciyuan.checkpoint.v2``) signs the Merkle root of the first ``seq`` leaves as well
(``merkle.py``), so a receipt can prove a transfer with a logarithmic inclusion proof instead
of a chain segment. Checkpoints signed before that carry no root and keep verifying against the
version-1 message; the version line is signed, so a root can be neither added to nor stripped
from a checkpoint without breaking its signature.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

CHECKPOINT_VERSION: Final = "ciyuan.checkpoint.v2"
CHECKPOINT_VERSION_V1: Final = "ciyuan.checkpoint.v1"
"""Checkpoints without a Merkle root, signed before version 2; verified, never produced."""


class KeyFormatError(ValueError):
    """A key file or key text that is not an Ed25519 key."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int
    hash: str
    created_us: int
    public_key: str
    """The signer's raw 32-byte Ed25519 public key, hex."""
    signature: str
    """Ed25519 signature of :func:`checkpoint_message`, hex."""
    merkle_root: str | None = None
    """MTH of the leaf hashes at positions 1..``seq``, hex; None on version-1 checkpoints."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq, "hash": self.hash, "merkle_root": self.merkle_root,
            "created_us": self.created_us, "public_key": self.public_key,
            "signature": self.signature,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Checkpoint:
        root = data.get("merkle_root")
        return cls(
            seq=int(data["seq"]), hash=str(data["hash"]), created_us=int(data["created_us"]),
            public_key=str(data["public_key"]), signature=str(data["signature"]),
            merkle_root=None if root is None else str(root),
        )  # fmt: skip


def checkpoint_message(
    seq: int, hash_hex: str, created_us: int, merkle_root_hex: str | None
) -> bytes:
    """The signed text: version 2 with a Merkle root, version 1 (as first released) without."""
    assert seq >= 0 and len(hash_hex) == 64
    if merkle_root_hex is None:
        return f"{CHECKPOINT_VERSION_V1}\n{seq}\n{hash_hex}\n{created_us}\n".encode()
    assert len(merkle_root_hex) == 64
    return f"{CHECKPOINT_VERSION}\n{seq}\n{hash_hex}\n{merkle_root_hex}\n{created_us}\n".encode()


def public_key_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def sign_checkpoint(
    key: Ed25519PrivateKey, seq: int, hash_hex: str, created_us: int, merkle_root_hex: str
) -> Checkpoint:
    """A version-2 checkpoint; the root is required, so no new checkpoint lacks one."""
    signature = key.sign(checkpoint_message(seq, hash_hex, created_us, merkle_root_hex))
    return Checkpoint(
        seq, hash_hex, created_us, public_key_hex(key), signature.hex(), merkle_root_hex
    )


def signature_valid(checkpoint: Checkpoint, public_key: Ed25519PublicKey) -> bool:
    """Checks the message of the checkpoint's own version: v2 with a root, v1 without."""
    # A malformed document is an invalid signature, not a programmer error.
    if checkpoint.seq < 0 or len(checkpoint.hash) != 64:
        return False
    if checkpoint.merkle_root is not None and len(checkpoint.merkle_root) != 64:
        return False
    message = checkpoint_message(
        checkpoint.seq, checkpoint.hash, checkpoint.created_us, checkpoint.merkle_root
    )
    try:
        public_key.verify(bytes.fromhex(checkpoint.signature), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def new_private_key_pem() -> tuple[bytes, str]:
    """A fresh key as unencrypted PKCS#8 PEM (keep the file private) and its public key, hex."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem, public_key_hex(key)


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFormatError(f"not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFormatError("the private key is not an Ed25519 key")
    return key


def load_public_key(text: str) -> Ed25519PublicKey:
    """A public key given as 64 hex digits, base64 of the 32 raw bytes, or a PEM block."""
    cleaned = text.strip()
    if cleaned.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(cleaned.encode())
        except ValueError as exc:
            raise KeyFormatError(f"not a PEM public key: {exc}") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFormatError("the public key is not an Ed25519 key")
        return key
    raw: bytes | None = None
    try:
        raw = bytes.fromhex(cleaned)
    except ValueError:
        try:
            raw = base64.b64decode(cleaned, validate=True)
        except ValueError:
            raw = None
    if raw is None or len(raw) != 32:
        raise KeyFormatError("a public key is 64 hex digits, base64 of 32 bytes, or PEM")
    return Ed25519PublicKey.from_public_bytes(raw)
