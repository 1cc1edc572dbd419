"""Transcript files: canonical JSON holding everything needed to re-verify a session offline.

The file is ``json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=True) + "\\n"``; a loader refuses
any file that is not byte-for-byte in that form, so no byte can change without the change being either a
parse error, a non-canonical file, or a changed value (which a signature, a binding or the recomputed
verdict then rejects). Byte strings are lower-case hex. See docs/PROTOCOL.md, "Transcript".
"""

from __future__ import annotations

import hashlib
import json

from .errors import TranscriptFormatError
from .fileio import write_atomic
from .hashing import tagged_hash

FORMAT = "vtrain-transcript/1"


def dumps(obj: dict) -> str:
    return json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=True, allow_nan=False) + "\n"


def save(path: str, obj: dict) -> str:
    text = dumps(obj)
    write_atomic(path, text)
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def loads(text: str, what: str = "transcript") -> dict:
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except (json.JSONDecodeError, ValueError, RecursionError) as e:
        raise TranscriptFormatError(f"the {what} is not valid JSON ({e}); it is damaged or was edited") from None
    if not isinstance(obj, dict):
        raise TranscriptFormatError(f"the {what} is not a JSON object")
    if dumps(obj) != text:
        raise TranscriptFormatError(f"the {what} is not in canonical form: it was modified after it was written")
    return obj


def _reject_constant(name):
    raise ValueError(f"{name} is not allowed")


def load(path: str, what: str = "transcript") -> tuple[dict, str]:
    """-> (object, sha256 of the file)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as e:
        raise TranscriptFormatError(f"cannot read {what} {path}: {e.strerror}") from e
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise TranscriptFormatError(f"the {what} {path} contains non-ASCII bytes: it is damaged or was edited") from None
    obj = loads(text, what)
    if what == "transcript" and obj.get("format") != FORMAT:
        raise TranscriptFormatError(f"{path} is not a {FORMAT} file (format {obj.get('format')!r})")
    return obj, hashlib.sha256(raw).hexdigest()


def metadata_binding(metadata: dict, nonce_secret: bytes) -> bytes:
    """The client nonce: binds the client's own record (data source, feature names, standardization) into
    the trainer-signed session statement."""
    return tagged_hash("session-binding", json.dumps(metadata, sort_keys=True).encode(), nonce_secret)


# -- typed accessors (every malformed field becomes a TranscriptFormatError) --------------------------------

def get(obj: dict, path: str, kind: type | tuple = object):
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise TranscriptFormatError(f"transcript field {path!r} is missing")
        cur = cur[part]
    if kind is not object and (not isinstance(cur, kind) or (kind is int and isinstance(cur, bool))):
        raise TranscriptFormatError(f"transcript field {path!r} has the wrong type")
    return cur


def get_hex(obj: dict, path: str, length: int | None = None) -> bytes:
    s = get(obj, path, str)
    try:
        b = bytes.fromhex(s)
    except ValueError:
        raise TranscriptFormatError(f"transcript field {path!r} is not hex") from None
    if length is not None and len(b) != length:
        raise TranscriptFormatError(f"transcript field {path!r} must be {length} bytes, got {len(b)}")
    return b


def get_signed(obj: dict, path: str) -> tuple[bytes, bytes]:
    pair = get(obj, path, list)
    return _signed_pair(pair, path)


def _signed_pair(pair, path: str) -> tuple[bytes, bytes]:
    if len(pair) != 2 or not all(isinstance(p, str) for p in pair):
        raise TranscriptFormatError(f"transcript field {path!r} must be [statement hex, signature hex]")
    try:
        return bytes.fromhex(pair[0]), bytes.fromhex(pair[1])
    except ValueError:
        raise TranscriptFormatError(f"transcript field {path!r} is not hex") from None


def get_signed_list(obj: dict, path: str) -> list[tuple[bytes, bytes]]:
    return [_signed_pair(p, path) for p in get(obj, path, list)]


def get_int_list(obj: dict, path: str) -> list[int]:
    vals = get(obj, path, list)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
        raise TranscriptFormatError(f"transcript field {path!r} must be a list of integers")
    return vals


def split_leaves(hexstr: str) -> list[bytes]:
    try:
        raw = bytes.fromhex(hexstr)
    except ValueError:
        raise TranscriptFormatError("state leaves are not hex") from None
    if not raw or len(raw) % 32:
        raise TranscriptFormatError("state leaves must be a non-empty multiple of 32 bytes")
    return [raw[i:i + 32] for i in range(0, len(raw), 32)]
