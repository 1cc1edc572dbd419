"""Domain-separated SHA-256 (via ``cryptography``).

Every hash in the protocol is ``tagged_hash(tag, *parts)`` = SHA-256(len(tag) || tag || parts...), with a
tag from :data:`TAGS`, so a digest computed for one purpose can never be mistaken for another.
Merkle leaves and nodes use the RFC 6962 prefixes inside their own tag (see :mod:`protocol.merkle`).
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes

PREFIX = b"vtrain/v1/"

TAGS = frozenset(
    {
        "merkle/leaf/data",
        "merkle/leaf/data-i8",
        "merkle/leaf/data-i16",
        "merkle/leaf/data-i32",
        "merkle/leaf/state",
        "merkle/leaf/salted-data",
        "merkle/leaf/salted-state",
        "state-salt",
        "merkle/node",
        "prg/init",
        "prg/shuffle",
        "prg/challenge",
        "seed/commit",
        "model",
        "openings",
        "config",
        "statement",
        "transcript",
        "session-binding",
    }
)


def tag_bytes(tag: str) -> bytes:
    if tag not in TAGS:
        raise ValueError(f"unknown hash domain tag {tag!r}")
    t = PREFIX + tag.encode()
    return len(t).to_bytes(1, "big") + t


def tagged_hash(tag: str, *parts: bytes) -> bytes:
    """SHA-256 over the length-prefixed domain tag followed by ``parts`` (callers length-prefix
    variable-length parts themselves, via :mod:`protocol.encoding`)."""
    h = hashes.Hash(hashes.SHA256())
    h.update(tag_bytes(tag))
    for p in parts:
        h.update(p)
    return h.finalize()

