"""A hostile trainer and the packed opening rows on the wire (StepOpening.rows_packed, docs/PROTOCOL.md section 2):
the client must never say spot-checked for rows it could not check, and a wrong row the trainer signed must be
REJECTED with evidence an auditor of the saved transcript reaches as well.

* packed bytes that do not decode (cut short): no proof, never spot-checked; the saved transcript audits the same;
* ``rows_packed`` and ``rows`` both set: the same;
* packed rows that decode, with one value changed and the openings statement signed over the changed rows (a
  trainer signs whatever it sends): REJECTED by the row's inclusion proof, the same verdict on audit.

In process (a real gRPC server on a port; the trainer's proving code patched). Runs once the wire has the field.
"""

from __future__ import annotations

import json

import pytest
from test_attack_transcript_bytes import record
from test_transcript_mutations import audit_outcome

from protocol.wire import trainer_pb2 as pb
from prover import proving
from prover import session as prover_session

if "rows_packed" not in pb.StepOpening.DESCRIPTOR.fields_by_name:
    pytest.skip("this wire has no StepOpening.rows_packed", allow_module_level=True)

CHECKED = ("verified", "spot-checked")


def _session(monkeypatch, patch) -> tuple[dict, object]:
    patch(monkeypatch)
    return record(master=b"packed-wire")


def _after_signing(edit):
    """Patch: the trainer's answer messages edited after they were signed."""
    def patch(monkeypatch):
        original = prover_session.spot_openings

        def spot_openings(key, s, audit_seed):
            messages, signed = original(key, s, audit_seed)
            edit(messages)
            return messages, signed

        monkeypatch.setattr(prover_session, "spot_openings", spot_openings)
    return patch


def _cut(messages):
    assert messages[0].rows_packed, "the honest trainer no longer packs its rows"
    messages[0].rows_packed = messages[0].rows_packed[:-5]


def _both(messages):
    assert messages[0].rows_packed
    messages[0].rows.add(index=0)


def test_the_honest_control_is_spot_checked_and_sends_packed_rows(monkeypatch):
    seen = []
    _, v = _session(monkeypatch, _after_signing(lambda ms: seen.extend(bool(m.rows_packed) for m in ms)))
    assert v.status in CHECKED and seen and all(seen), (v.status, seen)


@pytest.mark.parametrize("edit", [_cut, _both], ids=["cut", "rows and rows_packed"])
def test_malformed_packed_rows_are_never_spot_checked(monkeypatch, edit):
    tr, v = _session(monkeypatch, _after_signing(edit))
    assert v.status not in ("spot-checked",) and "proof" not in tr, (v.status, v.reason)
    assert tr.get("proof_error"), tr.keys()
    status, reason = audit_outcome(json.loads(json.dumps(tr)))
    assert status not in CHECKED, (status, reason)


def test_a_wrong_packed_row_the_trainer_signed_is_rejected_and_the_audit_agrees(monkeypatch):
    def patch(mp):
        original = proving._rows

        def _rows(rows):
            out = original(rows)
            if out is not None:
                out.values[0, 0] += 1  # a value that is not the committed one; hashed and signed as sent
            return out

        mp.setattr(proving, "_rows", _rows)

    tr, v = _session(monkeypatch, patch)
    assert v.status == "rejected" and v.step is not None, (v.status, v.reason)
    status, reason = audit_outcome(json.loads(json.dumps(tr)))
    assert status == "rejected", (status, reason)
