"""The spot-check openings' rows in a transcript file: packed (docs/PROTOCOL.md section 9, "Packed rows").

At 1,000,000 rows a spot check opens K * B = 16,384 rows, each with its data leaf and a ~20-hash inclusion proof:
as JSON lists (one integer or hash per line) about 45 MB of text, whose encoding was most of the time spent
saving a session and whose canonical-form check most of the time spent loading one. In a
``vtrain-transcript/3`` file an opening's rows that are regular (protocol/opening_rows.py: what an honest
client records) are one string instead: the standard base64 (with padding) of ``Rows.encoding()``, the byte
string the trainer's openings statement already hashes (protocol/evidence.py). Rows that are not regular (a
hostile trainer's malformed answer, salted rows of the trainer's own data) stay JSON lists.

One file text per content, as for every other field: the writer packs every regular rows list; the loader
unpacks every string (strict base64, re-encoded and compared, and an exact parse: every count and width
checked, no byte left over) and refuses a regular list written as a list. A ``vtrain-transcript/2`` file
(lists only) is still read as before; a packed string in one is refused. In memory a transcript always holds
the lists, so the checks, the openings hash and the evidence are those of the JSON form.
"""

from __future__ import annotations

import base64
import struct

import numpy as np

from . import opening_rows
from .errors import TranscriptFormatError

FORMAT = "vtrain-transcript/3"  # regular rows packed
LIST_FORMAT = "vtrain-transcript/2"  # every rows list as JSON lists (read, and re-saved as it was)
FORMATS = (FORMAT, LIST_FORMAT)


def _openings(obj: dict):
    proof = obj.get("proof")
    ops = proof.get("openings") if isinstance(proof, dict) else None
    return ops if isinstance(ops, list) else None


def file_form(obj: dict) -> dict:
    """``obj`` as its file holds it: for a vtrain-transcript/3 transcript, every regular rows list packed (new
    dicts along the way; ``obj`` is not changed). Anything else is returned as it is."""
    ops = _openings(obj)
    if obj.get("format") != FORMAT or not ops:
        return obj
    packed = []
    for op in ops:
        fast = opening_rows.regular(op.get("rows")) if isinstance(op, dict) else None
        packed.append(op if fast is None else {**op, "rows": pack(fast)})
    return {**obj, "proof": {**obj["proof"], "openings": packed}}


def memory_form(obj: dict, label: str) -> None:
    """The loaded file ``obj`` (canonical, integrity checked) as the checks read it: packed rows unpacked, in
    place. TranscriptFormatError for a packed string that does not decode exactly, a regular list in a
    vtrain-transcript/3 file, or a packed string in a vtrain-transcript/2 one."""
    ops = _openings(obj)
    if not ops:
        return
    packs = obj.get("format") == FORMAT
    for i, op in enumerate(ops):
        rows = op.get("rows") if isinstance(op, dict) else None
        where = f"{label}: proof.openings[{i}].rows"
        if isinstance(rows, str):
            if not packs:
                raise TranscriptFormatError(f"{where} is packed, which a {obj.get('format')} file never is: it was "
                                            f"edited")
            op["rows"] = unpack(rows, where)
        elif packs and opening_rows.regular(rows) is not None:
            raise TranscriptFormatError(f"{where} is a list the writer would have packed: the file is not in "
                                        f"canonical form (it was modified after it was written)")


def pack(rows: opening_rows.Rows) -> str:
    return base64.b64encode(rows.encoding()).decode("ascii")


def unpack(text: str, where: str = "rows") -> list[dict]:
    """The JSON-form rows list whose ``Rows.encoding()`` is the base64 ``text``; TranscriptFormatError unless
    ``text`` is exactly what ``pack`` writes for a regular list."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise TranscriptFormatError(f"{where} is not base64: it is damaged or was edited") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise TranscriptFormatError(f"{where} is not in canonical base64: it was edited")
    rows = _uniform(raw) or _sequential(raw, where)
    return rows


def _head(raw: bytes, at: int, fmt: str, where: str):
    size = struct.calcsize(fmt)
    if at + size > len(raw):
        raise TranscriptFormatError(f"{where} ends early (byte {len(raw)} of a field at {at}): it is damaged")
    return struct.unpack_from(fmt, raw, at), at + size


def _uniform(raw: bytes) -> list[dict] | None:
    """The common case in one numpy pass: every row with the same width, proof length and leaf size (all
    checked); None otherwise (then the sequential parse reads it, or says what is wrong)."""
    if len(raw) < 16:
        return None
    (B,) = struct.unpack_from(">I", raw, 0)
    (w,) = struct.unpack_from(">I", raw, 12)
    at = 16 + 8 * w + 8
    if B == 0 or w == 0 or at + 4 > len(raw):
        return None
    (s,) = struct.unpack_from(">I", raw, at)
    at += 4 + 32 * s
    if at + 4 > len(raw):
        return None
    (R,) = struct.unpack_from(">I", raw, at)
    size = 8 + 4 + 8 * w + 8 + 4 + 32 * s + 4 + R * (4 + 8 * w)
    if R == 0 or len(raw) != 4 + B * size:
        return None
    dt = np.dtype([("index", ">u8"), ("w", ">u4"), ("values", "<i8", (w,)), ("pidx", ">u8"), ("s", ">u4"),
                   ("sib", "u1", (32 * s,)), ("R", ">u4"), ("leaf", [("w", ">u4"), ("v", "<i8", (w,))], (R,))])
    a = np.frombuffer(raw, dt, count=B, offset=4)
    if not ((a["w"] == w).all() and (a["s"] == s).all() and (a["R"] == R).all() and (a["leaf"]["w"] == w).all()):
        return None
    hx = a["sib"].tobytes().hex()
    hashes = [hx[i:i + 64] for i in range(0, len(hx), 64)]
    return [{"index": i, "values": v, "proof": hashes[k * s:(k + 1) * s], "proof_index": p, "leaf_rows": lr}
            for k, (i, v, p, lr) in enumerate(zip(a["index"].tolist(), a["values"].tolist(), a["pidx"].tolist(),
                                                  a["leaf"]["v"].tolist()))]


def _sequential(raw: bytes, where: str) -> list[dict]:
    """Row by row (proofs of different lengths), every count checked against the bytes left."""
    (B,), at = _head(raw, 0, ">I", where)
    if B == 0:
        raise TranscriptFormatError(f"{where}: a packed rows list is never empty")
    rows, width, leaf_count = [], None, None
    for _ in range(B):
        (index, w), at = _head(raw, at, ">QI", where)
        if width is None:
            width = w
        if w != width or w == 0:
            raise TranscriptFormatError(f"{where}: rows of different or zero widths are never packed")
        values, at = _ints(raw, at, w, where)
        (proof_index, s), at = _head(raw, at, ">QI", where)
        if at + 32 * s > len(raw):
            raise TranscriptFormatError(f"{where} ends early (a proof of {s} hashes at byte {at}): it is damaged")
        proof = raw[at:at + 32 * s].hex()
        at += 32 * s
        (R,), at = _head(raw, at, ">I", where)
        if leaf_count is None:
            leaf_count = R
        if R != leaf_count or R == 0:
            raise TranscriptFormatError(f"{where}: leaves of different or zero sizes are never packed")
        leaf = []
        for _ in range(R):
            (lw,), at = _head(raw, at, ">I", where)
            if lw != w:
                raise TranscriptFormatError(f"{where}: a leaf row of width {lw} beside rows of width {w}")
            vals, at = _ints(raw, at, w, where)
            leaf.append(vals)
        rows.append({"index": index, "values": values, "proof": [proof[j:j + 64] for j in range(0, len(proof), 64)],
                     "proof_index": proof_index, "leaf_rows": leaf})
    if at != len(raw):
        raise TranscriptFormatError(f"{where} has {len(raw) - at} bytes after its last row: it was edited")
    return rows


def _ints(raw: bytes, at: int, w: int, where: str) -> tuple[list[int], int]:
    if at + 8 * w > len(raw):
        raise TranscriptFormatError(f"{where} ends early ({w} values at byte {at}): it is damaged")
    return np.frombuffer(raw, "<i8", count=w, offset=at).tolist(), at + 8 * w
