"""Trainer keys: Ed25519, PEM (PKCS#8) private key files with mode 0600; public keys as 32 raw bytes/hex."""

from __future__ import annotations

import os
import stat

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import InputError
from .fileio import write_atomic


def generate_key_file(path: str, overwrite: bool = False) -> bytes:
    """Create a new key at ``path`` (mode 0600). Returns the raw public key."""
    if os.path.exists(path) and not overwrite:
        raise InputError(f"{path} already exists; refusing to overwrite a key (pass --force to replace it)")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    write_atomic(path, pem, mode=0o600)
    return public_bytes(key)


def load_private_key(path: str) -> Ed25519PrivateKey:
    try:
        st = os.stat(path)
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as e:
        raise InputError(f"cannot read key file {path}: {e.strerror}") from e
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InputError(f"key file {path} is readable by others (mode {oct(st.st_mode & 0o777)}); "
                         f"run: chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise InputError(f"{path} is not an unencrypted PEM private key") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"{path} is not an Ed25519 key")
    return key


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def parse_public_hex(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError as e:
        raise InputError("the trainer key must be 64 hex characters (32 bytes)") from e
    if len(raw) != 32:
        raise InputError(f"the trainer key must be 32 bytes (64 hex characters), got {len(raw)} bytes")
    try:
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as e:
        raise InputError("the trainer key is not a valid Ed25519 public key") from e
    return raw
