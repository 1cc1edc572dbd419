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
    return base64.b64encode(rows.take_encoding()).decode("ascii")


def unpack(text: str, where: str = "rows") -> list[dict]:
    """The JSON-form rows list whose ``Rows.encoding()`` is the base64 ``text``; TranscriptFormatError unless
    ``text`` is exactly what ``pack`` writes for a regular list."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise TranscriptFormatError(f"{where} is not base64: it is damaged or was edited") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise TranscriptFormatError(f"{where} is not in canonical base64: it was edited")
    return decode(raw, where)


def decode(raw: bytes, where: str = "rows") -> list[dict]:
    """The JSON-form rows list whose ``Rows.encoding()`` is ``raw`` (a transcript's packed string decoded, or the
    trainer's StepOpening.rows_packed); TranscriptFormatError for bytes that encoding never produces. Within
    ``opening_rows.reading()`` the arrays are remembered, so ``regular`` does not rebuild them from the lists."""
    rows, arrays = _parse(raw, where)
    opening_rows.remember(rows, arrays)
    return rows


def _head(raw: bytes, at: int, fmt: str, where: str):
    size = struct.calcsize(fmt)
    if at + size > len(raw):
        raise TranscriptFormatError(f"{where} ends early (byte {len(raw)} of a field at {at}): it is damaged")
    return struct.unpack_from(fmt, raw, at)


def _parse(raw: bytes, where: str) -> tuple[list[dict], opening_rows.Rows]:
    """One pass over the rows' fixed fields (every count checked against the bytes left; proofs may differ in
    length: a tree whose size is not a power of two has shallower leaves), then each field of all rows
    gathered and converted at once."""
    (B,) = _head(raw, 0, ">I", where)
    if B == 0:
        raise TranscriptFormatError(f"{where}: a packed rows list is never empty")
    w = R = None
    starts, counts, at = [], [], 4
    for _ in range(B):
        (rw,) = _head(raw, at + 8, ">I", where)
        w = rw if w is None else w
        if rw != w or w == 0:
            raise TranscriptFormatError(f"{where}: rows of different or zero widths are never packed")
        (sibs,) = _head(raw, at + 20 + 8 * w, ">I", where)
        (rr,) = _head(raw, at + 24 + 8 * w + 32 * sibs, ">I", where)
        R = rr if R is None else R
        if rr != R or R == 0:
            raise TranscriptFormatError(f"{where}: leaves of different or zero sizes are never packed")
        starts.append(at)
        counts.append(sibs)
        at += 28 + 8 * w + 32 * sibs + R * (4 + 8 * w)
        if at > len(raw):
            raise TranscriptFormatError(f"{where} ends early (a row ending at byte {at} of {len(raw)}): it is "
                                        f"damaged")
    if at != len(raw):
        raise TranscriptFormatError(f"{where} has {len(raw) - at} bytes after its last row: it was edited")
    mv = memoryview(raw)
    index = np.frombuffer(b"".join(mv[a:a + 8] for a in starts), ">u8").tolist()
    V = np.frombuffer(b"".join(mv[a + 12:a + 12 + 8 * w] for a in starts), "<i8").reshape(B, w).astype(np.int64)
    values = V.tolist()
    pidx = np.frombuffer(b"".join(mv[a + 12 + 8 * w:a + 20 + 8 * w] for a in starts), ">u8").tolist()
    proofs = [bytes(mv[a + 24 + 8 * w:a + 24 + 8 * w + 32 * c]) for a, c in zip(starts, counts)]
    hx = b"".join(proofs).hex()
    hashes = [hx[i:i + 64] for i in range(0, len(hx), 64)]
    leaf = np.frombuffer(b"".join(mv[a + 28 + 8 * w + 32 * c:a + 28 + 8 * w + 32 * c + R * (4 + 8 * w)]
                                  for a, c in zip(starts, counts)), [("w", ">u4"), ("v", "<i8", (w,))])
    if not (leaf["w"] == w).all():
        raise TranscriptFormatError(f"{where}: a leaf row of another width than its rows")
    L = leaf["v"].reshape(B, R, w).astype(np.int64)
    leaves = L.tolist()
    rows, h = [], 0
    for k in range(B):
        rows.append({"index": index[k], "values": values[k], "proof": hashes[h:h + counts[k]],
                     "proof_index": pidx[k], "leaf_rows": leaves[k]})
        h += counts[k]
    return rows, opening_rows.Rows(index, V, pidx, proofs, L, bytes(raw))
