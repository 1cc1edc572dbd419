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
from .packed_rows import FORMATS, file_form, memory_form
from .state_leaves import StreamedHex, decode_hex_field
from .transcript_schema import FORMAT, SCHEMA, validate  # noqa: F401 - the schema's module; re-exported


def dumps(obj: dict) -> str:
    # = json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=True, allow_nan=False) + "\n", faster
    return canonical_json.dumps(obj) + "\n"


def integrity(obj: dict) -> str:
    """H("transcript", canonical JSON of everything but this field): any changed byte of a saved file is then
    a clear "damaged" error. It is not a signature (anyone can recompute it); what a forger could change is
    covered by the trainer's signatures, the client-nonce binding and the recomputed verdict. A loaded
    transcript's state leaves (a StreamedHex) are hashed block by block, never held as text."""
    body = file_form({k: v for k, v in obj.items() if k != "integrity"})  # the text the file holds
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
    """Write ``obj`` with its integrity digest; -> the sha256 of the file."""
    return save_with_integrity(path, obj)[0]


def save_with_integrity(path: str, obj: dict) -> tuple[str, str]:
    """``save``, -> (sha256 of the file, the integrity digest written in it = ``integrity(obj)``): a caller that
    needs the digest (a replay attestation, verifier/attest.py) does not encode the transcript again. The text is
    written as it is encoded (protocol/transcript_writer.py): the file is never held whole in memory."""
    from .transcript_writer import write_streaming

    done = write_streaming(path, obj)
    if done is not None:
        return done
    data, digest = _saved_bytes(obj)
    write_atomic(path, data)
    return hashlib.sha256(data).hexdigest(), digest


def saved_text(obj: dict) -> str:
    """``dumps({**obj, "integrity": integrity(obj)})``, encoding the transcript once."""
    return _saved_bytes(obj)[0].decode("ascii")


def _saved_bytes(obj: dict) -> tuple[bytes, str]:
    """(``saved_text(obj)`` as ASCII bytes, integrity digest): the integrity line is inserted into the text of the
    body (a top-level key is the only line starting with one space and a quote); the text is encoded once."""
    obj = file_form(obj)  # regular opening rows packed (protocol/packed_rows.py)
    body = {k: v for k, v in obj.items() if k != "integrity"}
    if isinstance(body.get("state_leaves"), StreamedHex) or not body:
        digest = integrity(obj)
        return dumps({**obj, "integrity": digest}).encode("ascii"), digest
    data = dumps(body).encode("ascii")  # ensure_ascii: the text is ASCII
    digest = tagged_hash("transcript", data).hex()
    line = f' "integrity": "{digest}"'.encode()
    later = sorted(k for k in body if k > "integrity")
    if later:
        at = data.index(("\n " + json.dumps(later[0]) + ": ").encode()) + 1
        return b"".join((data[:at], line, b",\n", data[at:])), digest
    return b"".join((data[:-3], b",\n", line, b"\n}\n")), digest  # the text ends with "\n}\n"


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
    if not is_canonical(obj, text):
        raise TranscriptFormatError(f"the {what} is not in canonical form: it was modified after it was written")
    return obj


def is_canonical(obj, text: str) -> bool:
    """``dumps(obj) == text``, compared piece by piece as the encoder produces them (a transcript's canonical
    text is never built whole a second time: bounded memory, docs/PROTOCOL.md section 9)."""
    enc = json.JSONEncoder(sort_keys=True, indent=1, ensure_ascii=True, allow_nan=False)
    pos = 0
    for piece in enc.iterencode(obj):
        if not text.startswith(piece, pos):
            return False
        pos += len(piece)
    return text.startswith("\n", pos) and pos + 1 == len(text)


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
    if what == "transcript" and obj.get("format") not in FORMATS:
        raise TranscriptFormatError(f"{path} is not a {FORMAT} file (format {obj.get('format')!r}; this version "
                                    f"reads {' and '.join(FORMATS)})")
    if what == "transcript" and obj.get("integrity") != body_hash:
        raise TranscriptFormatError(f"the transcript {path} is damaged or was edited (its integrity digest does not "
                                    f"match its content)")
    if what == "transcript":
        memory_form(obj, path)  # packed opening rows as the JSON lists the checks read
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
    parts = bytearray()  # one buffer (a list of lines costs an object per line)
    leaves = None
    line_start = True
    key = _LEAVES_LINE[1:].encode()
    while True:
        piece = fh.readline(_READ)
        if not piece:
            break
        digest.update(piece)
        if transcript and line_start and leaves is None and piece.startswith(key):
            parts += key
            body.update(key)
            leaves, rest = decode_hex_field(fh, piece[len(key):], (digest, body), _READ, STREAM_MIN_HEX)
            parts += rest
            body.update(rest)
            line_start = rest.endswith(b"\n")
            continue
        parts += piece
        if not (line_start and piece.startswith(_INTEGRITY_LINE)):
            body.update(piece)
        line_start = piece.endswith(b"\n")
    text = parts.decode("ascii")
    del parts
    return text, leaves, digest.hexdigest(), body.hexdigest()


def metadata_binding(metadata: dict, nonce_secret: bytes) -> bytes:
    """The client nonce: binds the client's own record (data source, feature names, standardization) into
    the trainer-signed session statement."""
    return tagged_hash("session-binding", json.dumps(metadata, sort_keys=True).encode(), nonce_secret)


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
