"""Transcript files: canonical JSON holding everything needed to re-verify a session offline.

The file is ``json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=True) + "\\n"``; a loader refuses
any file that is not byte-for-byte in that form, so no byte can change without the change being either a
parse error, a non-canonical file, or a changed value (which a signature, a binding or the recomputed
verdict then rejects). Byte strings are lower-case hex. See docs/PROTOCOL.md, "Transcript".
"""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np

from . import canonical_json
from .errors import TranscriptFormatError
from .fileio import write_atomic
from .hashing import tag_bytes, tagged_hash
from .state_leaves import StreamedHex, decode_hex_field

FORMAT = "vtrain-transcript/2"


def dumps(obj: dict) -> str:
    # = json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=True, allow_nan=False) + "\n", faster
    return canonical_json.dumps(obj) + "\n"


def integrity(obj: dict) -> str:
    """H("transcript", canonical JSON of everything but this field): any changed byte of a saved file is then
    a clear "damaged" error. It is not a signature (anyone can recompute it); what a forger could change is
    covered by the trainer's signatures, the client-nonce binding and the recomputed verdict. A loaded
    transcript's state leaves (a StreamedHex) are hashed block by block, never held as text."""
    body = {k: v for k, v in obj.items() if k != "integrity"}
    leaves = body.get("state_leaves")
    if not isinstance(leaves, StreamedHex):
        return tagged_hash("transcript", dumps(body).encode()).hex()
    head, tail = dumps({**body, "state_leaves": ""}).split(_LEAVES_LINE, 1)
    h = hashlib.sha256(tag_bytes("transcript") + head.encode() + _LEAVES_LINE.encode())
    for chunk in leaves.hex_chunks():
        h.update(chunk)
    h.update(tail.encode())
    return h.hexdigest()


def save(path: str, obj: dict) -> str:
    write_atomic(path, text := saved_text(obj))
    return hashlib.sha256(text.encode()).hexdigest()


def saved_text(obj: dict) -> str:
    """``dumps({**obj, "integrity": integrity(obj)})``, encoding the transcript once: the integrity line is
    inserted into the text of the body (a top-level key is the only line starting with one space and a quote)."""
    body = {k: v for k, v in obj.items() if k != "integrity"}
    if isinstance(body.get("state_leaves"), StreamedHex) or not body:
        return dumps({**obj, "integrity": integrity(obj)})
    text = dumps(body)
    line = f' "integrity": "{tagged_hash("transcript", text.encode()).hex()}"'
    later = sorted(k for k in body if k > "integrity")
    if later:
        at = text.index("\n " + json.dumps(later[0]) + ": ") + 1
        return text[:at] + line + ",\n" + text[at:]
    return text[:-3] + ",\n" + line + "\n}\n"  # text ends with "\n}\n"


MAX_DEPTH = 32  # a vtrain transcript nests about 6 deep
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')  # unrolled: no backtracking state per character


def nesting_depth(text: str) -> int:
    """Deepest bracket nesting outside JSON strings, computed without recursion. Checked before parsing: a
    deeply nested document can exhaust the C stack inside the json module and crash the process."""
    stripped = np.frombuffer(_STRING.sub("", text).encode("utf-8", "replace"), dtype=np.uint8)
    step = (np.isin(stripped, (ord("["), ord("{"))).astype(np.int32)
            - np.isin(stripped, (ord("]"), ord("}"))).astype(np.int32))
    return int(np.cumsum(step).max()) if step.size else 0


def safe_json_loads(text: str, what: str):
    if nesting_depth(text) > MAX_DEPTH:
        raise TranscriptFormatError(f"the {what} nests deeper than {MAX_DEPTH} levels: it is not a vtrain file")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (json.JSONDecodeError, ValueError, RecursionError) as e:
        raise TranscriptFormatError(f"the {what} is not valid JSON ({e}); it is damaged or was edited") from None


def loads(text: str, what: str = "transcript") -> dict:
    obj = safe_json_loads(text, what)
    if not isinstance(obj, dict):
        raise TranscriptFormatError(f"the {what} is not a JSON object")
    if dumps(obj) != text:
        raise TranscriptFormatError(f"the {what} is not in canonical form: it was modified after it was written")
    return obj


def _reject_constant(name):
    raise ValueError(f"{name} is not allowed")


def load(path: str, what: str = "transcript") -> tuple[dict, str]:
    """-> (object, sha256 of the file). A transcript's ``state_leaves`` (64 hex characters per step) is
    decoded while the file is read, into a private temporary file (protocol/state_leaves.py), and appears in
    the object as a StreamedHex (a plain string below STREAM_MIN_HEX characters): memory stays bounded
    whatever the number of steps. The checks are those of the whole text: ASCII, canonical form (with the
    field's value set aside, its characters checked piece by piece), format and integrity digest
    (docs/PROTOCOL.md section 9, "Reading a large transcript in bounded memory")."""
    try:
        with open(path, "rb") as fh:
            text, leaves, digest, body_hash = _read_streaming(fh, what == "transcript")
    except OSError as e:
        raise TranscriptFormatError(f"cannot read {what} {path}: {e.strerror}") from e
    except UnicodeDecodeError:
        raise TranscriptFormatError(f"the {what} {path} contains non-ASCII bytes: it is damaged or was edited") from None
    obj = loads(text, what)
    if leaves is not None:  # the value set aside by _read_streaming (a top-level key: this is its one place)
        if obj.get("state_leaves") != "":
            raise TranscriptFormatError(f"the {what} is not in canonical form: it was modified after it was written")
        obj["state_leaves"] = leaves
    if what == "transcript" and obj.get("format") != FORMAT:
        raise TranscriptFormatError(f"{path} is not a {FORMAT} file (format {obj.get('format')!r})")
    if what == "transcript" and obj.get("integrity") != body_hash:
        raise TranscriptFormatError(f"the transcript {path} is damaged or was edited (its integrity digest does not "
                                    f"match its content)")
    return obj, digest


_LEAVES_LINE = '\n "state_leaves": "'  # a top-level key: the only lines with one space of indent
_INTEGRITY_LINE = b' "integrity": "'
_READ = 1 << 20
STREAM_MIN_HEX = 1 << 20  # state leaves of 16,384 steps or more are kept decoded on disk, not as text


def _read_streaming(fh, transcript: bool):
    """One pass over the file: -> (text with the state leaves' value emptied, StreamedHex or None, sha256 of
    the file, the integrity digest of the canonical text). The digest is computed over the file minus its
    top-level integrity line; it equals integrity() of the parsed object when the text is canonical (checked
    next by ``loads``)."""
    digest = hashlib.sha256()
    body = hashlib.sha256(tag_bytes("transcript"))
    parts: list[bytes] = []
    leaves = None
    line_start = True
    key = _LEAVES_LINE[1:].encode()
    while True:
        piece = fh.readline(_READ)
        if not piece:
            break
        digest.update(piece)
        if transcript and line_start and leaves is None and piece.startswith(key):
            parts.append(key)
            body.update(key)
            leaves, rest = decode_hex_field(fh, piece[len(key):], (digest, body), _READ, STREAM_MIN_HEX)
            parts.append(rest)
            body.update(rest)
            line_start = rest.endswith(b"\n")
            continue
        parts.append(piece)
        if not (line_start and piece.startswith(_INTEGRITY_LINE)):
            body.update(piece)
        line_start = piece.endswith(b"\n")
    text = b"".join(parts).decode("ascii")
    return text, leaves, digest.hexdigest(), body.hexdigest()


def metadata_binding(metadata: dict, nonce_secret: bytes) -> bytes:
    """The client nonce: binds the client's own record (data source, feature names, standardization) into
    the trainer-signed session statement."""
    return tagged_hash("session-binding", json.dumps(metadata, sort_keys=True).encode(), nonce_secret)


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
           "rows": _List({"index": U64, "values": _List(I64), "proof": _List(_Hex()), "proof_index": U64,
                          "leaf_rows": _List(_List(I64)), "salt": _Opt(_Hex())}),
           "salt_before": _Opt(_Hex()), "salt_after": _Opt(_Hex())}
SCHEMA = {
    "format": _Str(FORMAT),
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


# -- typed accessors (every malformed field becomes a TranscriptFormatError) --------------------------------

def get(obj: dict, path: str, kind: type | tuple = object):
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise TranscriptFormatError(f"malformed transcript: {path} is missing")
        cur = cur[part]
    if kind is not object and (not isinstance(cur, kind) or (kind is int and isinstance(cur, bool))):
        raise TranscriptFormatError(f"malformed transcript: {path} has the wrong type")
    return cur


def strict_hex(s, what: str) -> bytes:
    """Lower-case hex with no spaces: the only encoding the writer produces (so no byte can change silently)."""
    if not isinstance(s, str):
        raise TranscriptFormatError(f"{what} must be a hex string")
    try:
        b = bytes.fromhex(s)
    except ValueError:
        raise TranscriptFormatError(f"{what} is not hex") from None
    if len(s) != 2 * len(b) or not (s.islower() or s.isdecimal() or not s):
        raise TranscriptFormatError(f"{what} is not lower-case hex without spaces")
    return b


def hash_list(items, what: str) -> list[bytes]:
    """A list of 32-byte hashes as lower-case hex strings (one strict check for the whole list)."""
    if not isinstance(items, list) or not all(isinstance(h, str) and len(h) == 64 for h in items):
        raise TranscriptFormatError(f"{what} must be a list of 64-character hex strings")
    raw = strict_hex("".join(items), what)
    return [raw[i:i + 32] for i in range(0, len(raw), 32)]


def get_hex(obj: dict, path: str, length: int | None = None) -> bytes:
    b = strict_hex(get(obj, path, str), f"transcript field {path!r}")
    if length is not None and len(b) != length:
        raise TranscriptFormatError(f"transcript field {path!r} must be {length} bytes, got {len(b)}")
    return b


def get_signed(obj: dict, path: str) -> tuple[bytes, bytes]:
    pair = get(obj, path, list)
    return _signed_pair(pair, path)


def _signed_pair(pair, path: str) -> tuple[bytes, bytes]:
    if not isinstance(pair, list) or len(pair) != 2 or not all(isinstance(p, str) for p in pair):
        raise TranscriptFormatError(f"transcript field {path!r} must be [statement hex, signature hex]")
    return strict_hex(pair[0], f"transcript field {path!r}"), strict_hex(pair[1], f"transcript field {path!r}")


def get_signed_list(obj: dict, path: str) -> list[tuple[bytes, bytes]]:
    return [_signed_pair(p, path) for p in get(obj, path, list)]


def get_int_list(obj: dict, path: str) -> list[int]:
    vals = get(obj, path, list)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
        raise TranscriptFormatError(f"transcript field {path!r} must be a list of integers")
    return vals


def split_leaves(hexstr: str) -> list[bytes]:
    raw = strict_hex(hexstr, "state leaves")
    if not raw or len(raw) % 32:
        raise TranscriptFormatError("state leaves must be a non-empty multiple of 32 bytes")
    return [raw[i:i + 32] for i in range(0, len(raw), 32)]
