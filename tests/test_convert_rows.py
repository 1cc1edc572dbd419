"""``convert.rows_from_proto`` (hashes hex-encoded in one call) gives the lists of the row-by-row decoding, for
well-formed and malformed RowOpening messages alike (short or long siblings, ragged leaves, salts)."""

from __future__ import annotations

import random

import pytest

from protocol import convert
from protocol.wire import trainer_pb2 as pb


def _reference(rows) -> list[dict]:
    out = []
    for r in rows:
        flat, width = list(r.leaf_rows), len(r.values)
        leaf = [flat] if not width or len(flat) % width else [flat[i:i + width] for i in range(0, len(flat), width)]
        row = {"index": r.index, "values": list(r.values), "proof": [s.hex() for s in r.proof.siblings],
               "proof_index": r.proof.index, "leaf_rows": leaf}
        if r.salt:
            row["salt"] = r.salt.hex()
        out.append(row)
    return out


@pytest.mark.parametrize("seed", range(40))
def test_rows_from_proto_is_the_row_by_row_decoding(seed):
    rnd = random.Random(seed)
    odd = seed % 4 == 0  # some siblings not 32 bytes
    rows = []
    for _ in range(rnd.randint(0, 12)):
        w = rnd.randint(0, 4)
        R = rnd.choice((1, 1, 2, 3))
        leaf_len = w * R + (rnd.randint(1, 2) if seed % 5 == 0 else 0)  # sometimes ragged
        rows.append(pb.RowOpening(
            index=rnd.randrange(1 << 64), values=[rnd.randint(-(1 << 63), (1 << 63) - 1) for _ in range(w)],
            proof=pb.MerkleProof(index=rnd.randrange(1 << 64), siblings=[
                rnd.randbytes(rnd.choice((31, 32, 33)) if odd else 32) for _ in range(rnd.randint(0, 5))]),
            leaf_rows=[rnd.randint(-9, 9) for _ in range(leaf_len)], salt=rnd.randbytes(32) if seed % 3 == 0 else b""))
    msg = pb.StepOpening(rows=rows)
    assert convert.rows_from_proto(msg.rows) == _reference(msg.rows)
    assert convert.opening_from_proto(msg)["rows"] == _reference(msg.rows)
