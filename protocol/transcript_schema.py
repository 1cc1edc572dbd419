"""The transcript schema: one strict check of every field's JSON type and range, run before any verification
(docs/PROTOCOL.md section 9). Split from protocol/transcript.py (the file format); ``transcript.validate`` is
this module's ``validate``."""

from __future__ import annotations

import re

from . import opening_rows
from .errors import TranscriptFormatError
from .packed_rows import FORMAT, FORMATS  # noqa: F401 - the file formats (protocol/packed_rows.py); re-exported
from .state_leaves import StreamedHex

# -- the schema: one strict check of every field's JSON type and range, run before any verification -------
# It admits exactly what the client can record from well-formed wire messages (protobuf types: sint64 values,
# uint64 indices, byte strings of any length as even-length lower-case hex), so a transcript recorded from a
# hostile trainer passes it and the checks then name what the trainer did wrong; anything else (a float or a
# boolean for an integer, an integer beyond its wire type, a missing or unknown key) was written by someone
# editing the file and is "malformed transcript: FIELD ...". docs/PROTOCOL.md section 9.

class _Int:
    def __init__(self, lo: int, hi: int):  # inclusive lo, exclusive hi
        self.lo, self.hi = lo, hi

    def check(self, v, path: str) -> None:
        if isinstance(v, bool) or not isinstance(v, int):
            _bad(path, f"must be an integer, got {_show(v)}")
        if not self.lo <= v < self.hi:
            _bad(path, f"must be an integer in [{self.lo}, {self.hi}), got {_show(v)}")


class _Str:
    def __init__(self, *choices: str):
        self.choices = choices

    def check(self, v, path: str) -> None:
        if not isinstance(v, str):
            _bad(path, f"must be a string, got {_show(v)}")
        if self.choices and v not in self.choices:
            _bad(path, f"must be one of {', '.join(self.choices)}, got {_show(v)}")


class _Hex:
    def __init__(self, nbytes: int | None = None):
        self.nbytes = nbytes

    def check(self, v, path: str) -> None:
        if isinstance(v, StreamedHex) and self.nbytes is None:
            return  # decoded by load(), which refused any character but 0-9a-f and an odd length
        if not isinstance(v, str) or len(v) % 2 or not _HEX.fullmatch(v):
            _bad(path, f"must be a lower-case hex string, got {_show(v)}")
        if self.nbytes is not None and len(v) != 2 * self.nbytes:
            _bad(path, f"must be {self.nbytes} bytes of hex, got {len(v) // 2}")


class _Num:
    def check(self, v, path: str) -> None:
        if isinstance(v, bool) or not isinstance(v, int | float):
            _bad(path, f"must be a number, got {_show(v)}")


class _List:
    def __init__(self, item, length: int | None = None):
        self.item, self.length = item, length

    def check(self, v, path: str) -> None:
        if not isinstance(v, list):
            _bad(path, f"must be a list, got {_show(v)}")
        if self.length is not None and len(v) != self.length:
            _bad(path, f"must have {self.length} items, got {len(v)}")
        if isinstance(self.item, _Int) and all(type(x) is int for x in v) and (
                not v or (self.item.lo <= min(v) and max(v) < self.item.hi)):
            return  # the common case, checked at C speed (bool is not ``int`` by type)
        if (isinstance(self.item, _Hex) and self.item.nbytes is None and all(type(x) is str and not len(x) % 2 for x in v)
                and _HEX.fullmatch("".join(v))):
            return
        for i, x in enumerate(v):
            _check(self.item, x, f"{path}[{i}]")


class _Rows(_List):
    """An opening's rows: a regular list (protocol/opening_rows.py) is within the item schema as a whole."""

    def check(self, v, path: str) -> None:
        if opening_rows.regular(v) is None:
            super().check(v, path)


class _Any:
    """Opaque JSON of one type (snarkjs files, verdict evidence), parsed later by their own strict readers."""

    def __init__(self, kind: type):
        self.kind = kind

    def check(self, v, path: str) -> None:
        if not isinstance(v, self.kind):
            _bad(path, f"must be a JSON {'object' if self.kind is dict else 'list'}, got {_show(v)}")


class _Opt:
    def __init__(self, spec):
        self.spec = spec


class _Nullable:
    def __init__(self, spec):
        self.spec = spec

    def check(self, v, path: str) -> None:
        if v is not None:
            _check(self.spec, v, path)


class _ByKind:
    """An object whose schema is chosen by its ``kind`` field."""

    def __init__(self, **variants):
        self.variants = variants

    def check(self, v, path: str) -> None:
        if not isinstance(v, dict):
            _bad(path, f"must be an object, got {_show(v)}")
        _Str(*self.variants).check(v.get("kind"), f"{path}.kind")
        _check(self.variants[v["kind"]], v, path)


_HEX = re.compile(r"[0-9a-f]*")
U32, U64, I64 = _Int(0, 2**32), _Int(0, 2**64), _Int(-(2**63), 2**63)
U8 = _Int(0, 2**8)
SIGNED = _List(_Hex(), 2)  # [statement hex, signature hex]
MERKLE_PROOF = {"index": U64, "siblings": _List(_Hex())}
OPENING = {"step": U64, "state_before": _List(I64), "state_after": _List(I64), "proof_before": MERKLE_PROOF,
           "proof_after": MERKLE_PROOF,
           "rows": _Rows({"index": U64, "values": _List(I64), "proof": _List(_Hex()), "proof_index": U64,
                          "leaf_rows": _List(_List(I64)), "salt": _Opt(_Hex())}),
           "salt_before": _Opt(_Hex()), "salt_after": _Opt(_Hex())}
SCHEMA = {
    "format": _Str(*FORMATS),
    "server": _Str(),
    "trainer_key": _Opt(_Hex(32)),
    "session_id": _Opt(_Hex(16)),
    "client_nonce": _Hex(32),
    "server_nonce": _Opt(_Hex(32)),
    "client": {"metadata": {"source": _Str(), "feature_names": _List(_Str()), "target": _Str(),
                            "randomness": _Str("os", "fixed-by-user"),
                            "standardization": {"mean": _List(_Num()), "std": _List(_Num()), "clip": _Num(),
                                                "target_mean": _Num(), "target_std": _Num(),
                                                "labels": _Opt(_Any(list)),
                                                "target_kind": _Opt(_Str("value", "binary", "class_index"))}},
               "nonce_secret": _Hex(32)},
    "config": {"model": _Str(), "epochs": U32, "batch_size": U32, "lr_num": U64, "lr_shift": U32, "l2_num": U64,
               "frac_bits": U32, "weight_bits": U32, "checkpoint_interval": U32, "num_classes": _Opt(U32)},
    "proof_kind": _Str("spot", "snark"),
    "num_rows": U64,
    "num_features": U32,
    "data_root": _Hex(32),
    "rows_per_leaf": _Opt(U32),
    "value_bytes": _Opt(U32),  # bytes per data value (docs/PROTOCOL.md section 4)
    "trainer_data": _Opt({"name": _Str(), "card": SIGNED}),  # docs/PROTOCOL.md section 11
    "training_seed": _Hex(32),
    "audit_seed": _Hex(32),
    "audit_commitment": _Opt(_Hex(32)),
    "spot_checks": U32,
    "statements": {"session": _Opt(SIGNED), "data": _Opt(SIGNED), "randomness": _Opt(SIGNED),
                   "checkpoints": _Opt(_List(SIGNED)), "final": _Opt(SIGNED)},
    "state_leaves": _Opt(_Hex()),
    "model": _Opt(_List(I64)),
    "model_extras": _Opt(_Str()),
    "proof": _Opt(_ByKind(
        spot={"kind": _Str("spot"), "openings": _List(OPENING), "statement": SIGNED},
        snark={"kind": _Str("snark"), "vk": _Any(dict), "proof": _Any(dict), "public": _Any(list),
               "statement": SIGNED, "constraints": U64, "setup_seconds": _Num(), "proving_key_bytes": U64})),
    "proof_error": _Opt(_Str()),
    "stream_error": _Opt(_Str()),
    "incomplete": _Opt(_Str()),
    "verdict": _Opt({"status": _Str("verified", "spot-checked", "rejected", "altered"), "check": _Str(), "reason": _Str(),
                     "step": _Nullable(U64), "guarantee": _Str(), "evidence": _Any(dict)}),
    "integrity": _Opt(_Hex(32)),
}


def validate(tr) -> dict:
    """Raise TranscriptFormatError("malformed transcript: FIELD ...") unless ``tr`` matches SCHEMA exactly
    (every required key present, no unknown key, every value of its type and range). Returns ``tr``."""
    _check(SCHEMA, tr, "")
    if "verdict" in tr and "incomplete" in tr:
        _bad("incomplete", "cannot accompany a verdict")
    for note, part in (("stream_error", "final"), ("proof_error", "proof")):  # a client writes one or the other
        if note in tr and (part in tr or part in tr["statements"]):
            _bad(note, f"cannot accompany a {part}")
    return tr


def _check(spec, v, path: str) -> None:
    if isinstance(spec, dict):
        if not isinstance(v, dict):
            _bad(path or "(top level)", f"must be an object, got {_show(v)}")
        for key in v:
            if key not in spec:
                _bad(_join(path, key), "is not a field of a vtrain transcript (unknown key)")
        for key, sub in spec.items():
            optional = isinstance(sub, _Opt)
            if key not in v:
                if not optional:
                    _bad(_join(path, key), "is missing")
                continue
            _check(sub.spec if optional else sub, v[key], _join(path, key))
    else:
        spec.check(v, path)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(v) -> str:
    text = "true" if v is True else "false" if v is False else "null" if v is None else repr(v)
    return f"{text[:40]}..." if len(text) > 40 else text


def _bad(path: str, problem: str):
    raise TranscriptFormatError(f"malformed transcript: {path} {problem}")
