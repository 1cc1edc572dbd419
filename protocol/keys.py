"""Trainer keys: Ed25519, PEM (PKCS#8) private key files with mode 0600; public keys as 32 raw bytes/hex."""

from __future__ import annotations

import functools
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


_P = 2**255 - 19
_D = (-121665 * pow(121666, -1, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _edwards_add(p1, p2):
    (x1, y1), (x2, y2) = p1, p2
    t = _D * x1 * x2 * y1 * y2 % _P
    return ((x1 * y2 + y1 * x2) * pow(1 + t, -1, _P) % _P, (y1 * y2 + x1 * x2) * pow(1 - t, -1, _P) % _P)


@functools.lru_cache(maxsize=256)
def weak_public_key(raw: bytes) -> str | None:
    """Why an Ed25519 public-key encoding must not be trusted, or None: non-canonical (y >= p), not on the
    curve, or of small order (8P = identity; under such a key signatures such as R = identity, S = 0 verify
    on every message, so nothing signed under it is evidence). Plain integer arithmetic on the RFC 8032
    point encoding; cached, so it runs once per key."""
    if len(raw) != 32:
        return "not 32 bytes"
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    sign = raw[31] >> 7
    if y >= _P:
        return "non-canonical encoding"
    u, v = (y * y - 1) % _P, (_D * y * y + 1) % _P
    x = u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P) % _P  # RFC 8032 5.1.3
    if v * x * x % _P != u:
        x = x * _SQRT_M1 % _P
        if v * x * x % _P != u:
            return "not a point on the curve"
    if x == 0 and sign:
        return "non-canonical encoding"
    if x & 1 != sign:
        x = _P - x
    pt = (x, y)
    for _ in range(3):
        pt = _edwards_add(pt, pt)
    if pt == (0, 1):
        return "a point of small order"
    return None


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
    weak = weak_public_key(raw)
    if weak:
        raise InputError(f"the trainer key is {weak}: signatures under it prove nothing; refuse this trainer")
    return raw
