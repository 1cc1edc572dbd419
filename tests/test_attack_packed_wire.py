"""A trainer that abuses StepOpening.rows_packed (docs/PROTOCOL.md section 2, "Packed rows on the wire"): bytes
the encoding never produces, or packed rows beside row messages. The client records no proof (a proof_error
naming the problem), never a traceback and never a verified model; well-formed packed rows of other data are
signed by the trainer and rejected by the spot check like any wrong opening (tests/test_e2e.py)."""

from __future__ import annotations

import struct

import pytest

from protocol import convert, opening_rows
from protocol.errors import TranscriptFormatError
from protocol.wire import trainer_pb2 as pb
from verifier.proof_request import request_proof


def _encoding(B=2, w=3, R=2, sibs=2) -> bytes:
    rows = [{"index": k, "values": [k, -k, 7], "proof": ["ab" * 32] * sibs, "proof_index": k,
             "leaf_rows": [[k, -k, 7]] * R} for k in range(B)]
    return opening_rows.regular(rows).encoding()


BAD = {
    "cut": (_encoding()[:-3], "ends early"),
    "trailing": (_encoding() + b"\0", "after its last row"),
    "empty": (b"\0\0\0\0", "never empty"),
    "huge count": (b"\xff\xff\xff\xff" + _encoding()[4:], "ends early"),
    "zero width": (struct.pack(">IQI", 1, 0, 0) + b"\0" * 40, "zero widths"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_malformed_packed_rows_are_a_format_error(kind):
    raw, message = BAD[kind]
    with pytest.raises(TranscriptFormatError, match=message):
        convert.opening_from_proto(pb.StepOpening(step=3, rows_packed=raw))


def test_packed_rows_beside_row_messages_are_refused():
    msg = pb.StepOpening(step=3, rows_packed=_encoding(), rows=[pb.RowOpening(index=1, values=[1, 2, 3])])
    with pytest.raises(TranscriptFormatError, match="come with row messages besides"):
        convert.opening_from_proto(msg)


class _Stub:
    def __init__(self, resp):
        self.resp = resp

    def Prove(self, request, timeout=None):
        return self.resp

    def CloseSession(self, request, timeout=None):
        return pb.CloseSessionResponse()


@pytest.mark.parametrize("kind", sorted(BAD))
def test_the_client_records_no_proof_for_malformed_packed_rows(kind):
    good = pb.StepOpening(step=1, rows_packed=_encoding())
    resp = pb.ProveResponse(openings=[good, pb.StepOpening(step=2, rows_packed=BAD[kind][0])])
    tr: dict = {}

    class Seeds:
        audit_seed = b"\1" * 32

    request_proof(_Stub(resp), tr, b"\2" * 16, Seeds(), "spot", 5, None, b"", rows=None)
    assert "proof" not in tr and tr["proof_error"].startswith("its openings are malformed: the opening of step 2")
    assert BAD[kind][1] in tr["proof_error"]


def test_well_formed_packed_rows_are_recorded_as_the_row_messages_give_them():
    raw = _encoding(B=3, R=1, sibs=4)
    rows = [pb.RowOpening(index=k, values=[k, -k, 7], proof=pb.MerkleProof(index=k, siblings=[b"\xab" * 32] * 4),
                          leaf_rows=[k, -k, 7]) for k in range(3)]
    with opening_rows.reading():
        got = convert.opening_from_proto(pb.StepOpening(step=1, rows_packed=raw))["rows"]
        assert opening_rows.regular(got).encoding() == raw  # the remembered arrays are the lists' own
    assert got == convert.opening_from_proto(pb.StepOpening(step=1, rows=rows))["rows"]
    assert opening_rows.regular(got).encoding() == raw  # and rebuilt from the lists, the same bytes
