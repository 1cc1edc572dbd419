"""Trainer keys the user has seen, like SSH's ``known_hosts``: one ``ADDRESS KEYHEX`` line per trainer address.

The first session with an address records the key it presented (trust on first use); a later session with
the same address and another key is refused before any data is sent. Accepting a new key is deliberate:
pin it with ``--trainer-key NEWKEY`` (which replaces the stored entry) or delete the line.

Location: ``--trust-store PATH``, else ``$XDG_CONFIG_HOME/vtrain/known_trainers``, else
``~/.config/vtrain/known_trainers``. Written atomically with mode 0600.
"""

from __future__ import annotations

import os
from pathlib import Path

from protocol.errors import InputError
from protocol.fileio import write_atomic
from protocol.keys import weak_public_key

FILE_NAME = "known_trainers"
HEADER = "# vtrain known trainers: ADDRESS ED25519-PUBLIC-KEY-HEX (written by vtrain-verifier; one per address)\n"


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "vtrain"


def default_path() -> Path:
    return config_dir() / FILE_NAME


class KeyChanged(InputError):
    """The address is known with another key (exit 2)."""


class TrustStore:
    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path else default_path()
        self.entries: dict[str, str] = {}
        self._load()

    def _load(self) -> None:
        try:
            text = self.path.read_text(encoding="ascii")
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"cannot read the trust store {self.path}: {getattr(e, 'strerror', None) or e}") from None
        for no, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 2 or not _is_key_hex(parts[1]):
                raise InputError(f"{self.path}:{no}: expected 'ADDRESS KEYHEX' (64 lower-case hex characters); fix or "
                                 f"delete that line")
            self.entries[parts[0]] = parts[1]

    def key_for(self, address: str) -> str | None:
        return self.entries.get(address)

    def addresses_for(self, key_hex: str) -> list[str]:
        return sorted(a for a, k in self.entries.items() if k == key_hex)

    def record(self, address: str, key_hex: str) -> None:
        if not address or any(c.isspace() for c in address):
            raise InputError(f"cannot record trainer address {address!r} in the trust store")
        self.entries[address] = key_hex
        body = "".join(f"{a} {k}\n" for a, k in sorted(self.entries.items()))
        try:
            write_atomic(self.path, HEADER + body, mode=0o600)
        except OSError as e:
            raise InputError(f"cannot write the trust store {self.path}: {e.strerror or e}") from None

    def check_session_key(self, address: str, key: bytes, pinned: bytes | None) -> str:
        """Called with the key a trainer presents. Returns how the key is trusted: "pinned", "known" or
        "first-use" (recorded now). Raises KeyChanged when the address is known with another key."""
        key_hex = key.hex()
        stored = self.key_for(address)
        if pinned is not None:  # the user named the key: a deliberate (re)acceptance
            if pinned == key and stored != key_hex:
                self.record(address, key_hex)
            return "pinned"
        if stored is None:
            if weak_public_key(key):
                return "first-use"  # never remember a key no signature under which is evidence
            self.record(address, key_hex)
            return "first-use"
        if stored != key_hex:
            raise KeyChanged(
                f"the trainer at {address} presented key {key_hex}, but the trust store {self.path} has key {stored} "
                f"for that address. Someone may be impersonating the trainer, or it changed its key. Nothing was "
                f"sent. If the change is expected, accept the new key deliberately with --trainer-key {key_hex} "
                f"(this replaces the stored entry), or delete the line for {address} from {self.path}.")
        return "known"

    def trust_of(self, key_hex: str, pinned: bytes | None) -> tuple[str, list[str]]:
        """For an audit: ("pinned" | "known" | "unknown", addresses under which the store knows the key)."""
        addresses = self.addresses_for(key_hex)
        if pinned is not None and pinned.hex() == key_hex:
            return "pinned", addresses
        return ("known" if addresses else "unknown"), addresses


def _is_key_hex(s: str) -> bool:
    return len(s) == 64 and all(c in "0123456789abcdef" for c in s)
