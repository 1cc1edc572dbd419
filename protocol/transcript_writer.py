"""A transcript written to its file as it is encoded (docs/PROTOCOL.md section 9, "Transcript").

The saved text is ``dumps({**obj, "integrity": integrity(obj)})``: the integrity line sits among the top-level
keys, yet its digest covers the whole text without it. So the body (every key but ``integrity``) is encoded
piece by piece into a scratch file beside the target while it is hashed; then the file is assembled from the
scratch file with the integrity line inserted before the first key that sorts after it, hashed (sha256) as it
is written, and renamed into place. At a million rows the encoded openings are ~50 MB of text; held as
pieces, then joined, then encoded to bytes, they added ~130 MB to the client's peak memory.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from json.encoder import encode_basestring_ascii
from pathlib import Path

from . import canonical_json
from .errors import InputError
from .fileio import ensure_parent
from .hashing import tag_bytes
from .packed_rows import file_form
from .state_leaves import StreamedHex

_FLUSH = 1 << 20


class _Sink:
    """``append(str)`` as canonical_json's encoder calls it: buffered, then written (ASCII) and hashed."""

    def __init__(self, fh, hasher):
        self.fh, self.hasher, self.parts, self.size, self.offset = fh, hasher, [], 0, 0

    def append(self, piece: str) -> None:
        self.parts.append(piece)
        self.size += len(piece)
        if self.size >= _FLUSH:
            self.flush()

    def flush(self) -> None:
        data = "".join(self.parts).encode("ascii")  # ensure_ascii: every piece is ASCII
        self.fh.write(data)
        self.hasher.update(data)
        self.offset += len(data)
        self.parts, self.size = [], 0


def write_streaming(path: str | os.PathLike, obj: dict) -> tuple[str, str] | None:
    """Write ``obj``'s saved text to ``path`` (atomically, 0644); -> (sha256 of the file, integrity digest), or
    None for what the in-memory writer handles (state leaves read from a file, no body, a dict key that is not
    a string: canonical_json's fallback)."""
    body = file_form({k: v for k, v in obj.items() if k != "integrity"})  # protocol/packed_rows.py
    if not body or isinstance(body.get("state_leaves"), StreamedHex) or not all(type(k) is str for k in body):
        return None
    path = Path(path)
    directory = ensure_parent(path)
    later = sorted(k for k in body if k > "integrity")
    tmps: list[str] = []
    try:
        fd, scratch = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".body", dir=directory)
        tmps.append(scratch)
        h = hashlib.sha256(tag_bytes("transcript"))  # = tagged_hash("transcript", body text)
        at = None
        with os.fdopen(fd, "wb") as fh:
            sink = _Sink(fh, h)
            sink.append("{")
            sep = "\n "
            for k in sorted(body):
                if later and k == later[0]:
                    sink.flush()
                    at = sink.offset + len(sep) - 1  # after the separator's newline: where the line goes
                sink.append(sep + encode_basestring_ascii(k) + ": ")
                try:
                    canonical_json._encode(body[k], 1, sink)
                except canonical_json._Fallback:
                    return None
                sep = ",\n "
            sink.append("\n}\n")
            sink.flush()
        digest = h.hexdigest()
        line = f' "integrity": "{digest}"'.encode()
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
        tmps.append(tmp)
        out_hash = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, open(scratch, "rb") as src:
            os.fchmod(out.fileno(), 0o644)

            def put(data: bytes) -> None:
                out.write(data)
                out_hash.update(data)

            if at is None:  # every key sorts before "integrity": the line goes last
                size = sink.offset - 3  # the text ends with "\n}\n"
                _copy(src, size, put)
                put(b",\n" + line + b"\n}\n")
            else:
                _copy(src, at, put)
                put(line + b",\n")
                _copy(src, sink.offset - at, put)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        tmps.remove(tmp)
        return out_hash.hexdigest(), digest
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        for t in tmps:
            try:
                os.unlink(t)
            except FileNotFoundError:
                pass


def _copy(src, count: int, put) -> None:
    while count > 0:
        data = src.read(min(count, _FLUSH))
        if not data:
            raise OSError("the scratch file ended early")
        put(data)
        count -= len(data)
