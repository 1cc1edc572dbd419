"""dealer/service.py: the record of served claims is never trimmed; when it is full the master secret is
replaced, so material already handed out can never be generated again (docs/MPC.md section 5.1)."""

from __future__ import annotations

import os

import pytest
from test_attack_dealer import _Context, _Refused

from dealer import service


def test_a_full_record_replaces_the_secret_and_refuses_requests_of_the_old_one(monkeypatch):
    monkeypatch.setattr(service, "MAX_CLAIMS", 3)
    s = service.DealerServicer()
    old = s._master
    sid = os.urandom(16)
    s._claim(_Context(), sid, 0, "inputs", old)
    with pytest.raises(_Refused, match="ALREADY_EXISTS"):
        s._claim(_Context(), sid, 0, "inputs", old)  # served once
    s._claim(_Context(), os.urandom(16), 0, "inputs", old)
    s._claim(_Context(), os.urandom(16), 0, "inputs", old)
    assert s._master == old and len(s._served) == 3
    # the next claim finds the record full: new secret, and a request derived from the old one is refused
    with pytest.raises(_Refused, match="UNAVAILABLE.*replaced its secret"):
        s._claim(_Context(), sid, 0, "inputs", old)
    assert s._master != old and not s._gens and not s._cache
    s._claim(_Context(), sid, 0, "inputs", s._master)  # a fresh derivation: unrelated to what was served
    with pytest.raises(_Refused, match="ALREADY_EXISTS"):
        s._claim(_Context(), sid, 0, "inputs", s._master)
