"""prover/proving.py hashes an honest opening's rows from the arrays it sends (no JSON form per value), and sends
regular rows packed: the digest it signs must be the one the client and an auditor recompute from the received
messages' JSON form, and that form the one the row messages would have given."""

from __future__ import annotations

import random

import numpy as np
import pytest

from protocol import convert
from protocol.evidence import openings_hash
from prover import proving


def internal_opening(rnd: random.Random, B: int, R: int, w: int, short_last: bool, salted: bool = False) -> dict:
    rows = []
    for k in range(B):
        i = rnd.randrange(10**6)
        nrows = R if not (short_last and k == B - 1) else max(1, R - 1)
        block = np.array([[rnd.randrange(-2**40, 2**40) for _ in range(w)] for _ in range(nrows)], dtype=np.int64)
        r = (i, block[i % nrows], i // R, [rnd.randbytes(32) for _ in range(rnd.randrange(0, 6))], block)
        rows.append((*r, rnd.randbytes(16)) if salted else r)
    t = rnd.randrange(1, 1000)
    return {"step": t, "state_before": np.array([rnd.randrange(-2**62, 2**62) for _ in range(w)]),
            "state_after": np.array([rnd.randrange(-2**62, 2**62) for _ in range(w)]),
            "proof_before": [rnd.randbytes(32) for _ in range(3)], "proof_after": [rnd.randbytes(32) for _ in range(2)],
            "rows": rows}


@pytest.mark.parametrize("short_last,salted", [(False, False), (True, False), (False, True)])
def test_the_signed_digest_is_the_one_recomputed_from_the_messages(short_last, salted):
    rnd = random.Random(f"{short_last}{salted}")
    seed = rnd.randbytes(32)
    for _ in range(10):
        ops = [internal_opening(rnd, rnd.randrange(1, 9), rnd.randrange(1, 5), rnd.randrange(1, 6), short_last,
                                salted) for _ in range(rnd.randrange(1, 4))]
        messages, forms = proving._messages(ops, honest=True)
        received = [convert.opening_from_proto(pb_msg) for pb_msg in messages]
        assert openings_hash(seed, forms) == openings_hash(seed, received)
        # packed or not, the client records the rows the RowOpening messages would have given
        assert [r["rows"] for r in received] == [convert.opening_from_proto(convert.opening_to_proto(op))["rows"]
                                                 for op in ops]
        assert all(bool(m.rows_packed) == (proving._rows(op["rows"]) is not None) for op, m in zip(ops, messages))
        assert all((proving._rows(op["rows"]) is None) == (salted or short_last and len(op["rows"]) > 1
                                                           and len(op["rows"][0][4]) > 1) for op in ops)
