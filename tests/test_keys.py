"""Trainer keys (protocol/keys.py): key files with mode 0600, refusal to overwrite or to load exposed keys."""

from __future__ import annotations

import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.errors import InputError
from protocol.keys import generate_key_file, load_private_key, parse_public_hex, public_bytes


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_keygen_mode_0600_and_round_trip(tmp_path):
    path = tmp_path / "trainer.pem"
    pub = generate_key_file(str(path))
    assert _mode(path) == 0o600
    assert len(pub) == 32
    key = load_private_key(str(path))
    assert public_bytes(key) == pub
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]  # no temporary file left behind


def test_keygen_mode_ignores_permissive_umask(tmp_path):
    old = os.umask(0)
    try:
        generate_key_file(str(tmp_path / "k.pem"))
    finally:
        os.umask(old)
    assert _mode(tmp_path / "k.pem") == 0o600


def test_keygen_refuses_overwrite_without_force(tmp_path):
    path = tmp_path / "trainer.pem"
    first = generate_key_file(str(path))
    before = path.read_bytes()
    with pytest.raises(InputError, match="already exists; refusing to overwrite a key \\(pass --force"):
        generate_key_file(str(path))
    assert path.read_bytes() == before
    second = generate_key_file(str(path), overwrite=True)
    assert second != first and _mode(path) == 0o600
    assert public_bytes(load_private_key(str(path))) == second


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o610, 0o601, 0o666])
def test_load_refuses_group_or_world_accessible_key(tmp_path, mode):
    path = tmp_path / "trainer.pem"
    generate_key_file(str(path))
    os.chmod(path, mode)
    with pytest.raises(InputError, match=f"readable by others \\(mode {oct(mode)}\\); run: chmod 600 {path}"):
        load_private_key(str(path))
    os.chmod(path, 0o600)
    load_private_key(str(path))
    os.chmod(path, 0o400)
    load_private_key(str(path))


def test_load_errors(tmp_path):
    with pytest.raises(InputError, match="cannot read key file"):
        load_private_key(str(tmp_path / "missing.pem"))
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"not a key")
    os.chmod(garbage, 0o600)
    with pytest.raises(InputError, match="is not an unencrypted PEM private key"):
        load_private_key(str(garbage))
    enc = tmp_path / "encrypted.pem"
    enc.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw")))
    os.chmod(enc, 0o600)
    with pytest.raises(InputError, match="is not an unencrypted PEM private key"):
        load_private_key(str(enc))
    ec = tmp_path / "ec.pem"
    ec.write_bytes(generate_private_key(SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    os.chmod(ec, 0o600)
    with pytest.raises(InputError, match="is not an Ed25519 key"):
        load_private_key(str(ec))


def test_parse_public_hex():
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    pub = public_bytes(key)
    assert parse_public_hex(pub.hex()) == pub
    assert parse_public_hex("  " + pub.hex() + "\n") == pub  # surrounding whitespace from a file is fine
    for bad in ("xyz", pub.hex()[:-1], "0g" * 32):
        with pytest.raises(InputError, match="must be 64 hex characters"):
            parse_public_hex(bad)
    for bad, n in ((pub.hex()[:-2], 31), (pub.hex() + "00", 33), ("", 0)):
        with pytest.raises(InputError, match=f"must be 32 bytes \\(64 hex characters\\), got {n} bytes"):
            parse_public_hex(bad)


@pytest.mark.parametrize("small_order", [
    "01" + "00" * 31,  # identity
    "ec" + "ff" * 30 + "7f",  # order 2 (y = -1)
    "00" * 32,  # order 4 (y = 0)
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
])
def test_parse_public_hex_rejects_small_order_keys(small_order):
    with pytest.raises(InputError):
        parse_public_hex(small_order)
