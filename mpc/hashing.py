"""Domain-separated SHA-256 for the two-party protocol: ``SHA256(u8(len T) || T || parts)`` with
``T = "vtrain/mpc/v1/" + tag`` (the construction of protocol/hashing.py under its own prefix, so no
digest of this protocol can be mistaken for one of the verifiable-training protocol)."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes

PREFIX = b"vtrain/mpc/v1/"
TAGS = frozenset({"dealer/stream", "dealer/session", "dealer/share-key", "dealer/ticket", "coin/commit", "coin/joint",
                  "training-seed", "sacrifice", "mac/coefficient", "mac/commit", "mac/seed", "data-root", "session-id"})


def mpc_hash(tag: str, *parts: bytes) -> bytes:
    if tag not in TAGS:
        raise ValueError(f"unknown hash domain tag {tag!r}")
    t = PREFIX + tag.encode()
    h = hashes.Hash(hashes.SHA256())
    h.update(len(t).to_bytes(1, "big") + t)
    for p in parts:
        h.update(p)
    return h.finalize()
