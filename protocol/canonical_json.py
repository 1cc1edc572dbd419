"""``json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=True, allow_nan=False)``, byte for byte, faster.

With ``indent`` set, CPython's json module runs its pure-Python encoder (the C encoder is used only when
``indent`` is None): at a million rows a transcript's spot-check openings took ~7 s per encoding. Here every
list or dict whose members are all scalars -- the bulk of a transcript: values, proofs, leaf rows -- is encoded
by the C encoder in one call, with the newline-and-indent written into its item separator; only the nesting
above them is walked in Python. Anything unusual (a dict key that is not a string) falls back to json.dumps.
tests/test_canonical_json.py checks the equality on generated documents.
"""

from __future__ import annotations

import functools
import json
from json.encoder import c_make_encoder, encode_basestring_ascii


class _Fallback(Exception):
    pass


def dumps(obj) -> str:
    out: list[str] = []
    try:
        _encode(obj, 0, out)
    except _Fallback:
        return json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=True, allow_nan=False)
    return "".join(out)


def _default(o):
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


@functools.lru_cache(maxsize=64)
def _flat_encoder(pad: str):
    """The C encoder (as json.JSONEncoder.iterencode builds it when indent is None) with items separated by
    ``"," + pad``, dict keys sorted, no NaN; built once per indentation level."""
    if c_make_encoder is None:  # no C accelerator: the same output from the Python encoder
        return json.JSONEncoder(sort_keys=True, ensure_ascii=True, allow_nan=False, separators=("," + pad, ": ")).encode
    enc = c_make_encoder(None, _default, encode_basestring_ascii, None, ": ", "," + pad, True, False, False)
    return lambda o: "".join(enc(o, 0))


def _flat(o, pad: str) -> str:
    """A list or dict of scalars by the C encoder, items separated by ``"," + pad`` (dict keys sorted)."""
    return _flat_encoder(pad)(o)


_SCALAR_TYPES = frozenset((str, int, float, bool, type(None)))


def _scalar(o) -> str:
    if isinstance(o, str):
        return encode_basestring_ascii(o)
    if o is None:
        return "null"
    if o is True:
        return "true"
    if o is False:
        return "false"
    if isinstance(o, int):
        return int.__repr__(o)
    if isinstance(o, float):
        return json.dumps(o, allow_nan=False)  # repr, and ValueError for nan/inf as json.dumps raises
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def _encode(o, level: int, out: list[str]) -> None:
    if isinstance(o, dict):
        if not o:
            out.append("{}")
            return
        if not all(type(k) is str for k in o):  # json.dumps converts other keys; leave that to it
            raise _Fallback()
        pad = "\n" + " " * (level + 1)
        if set(map(type, o.values())) <= _SCALAR_TYPES:
            out.append("{" + pad + _flat(o, pad)[1:-1] + "\n" + " " * level + "}")
            return
        out.append("{")
        sep = pad
        for k in sorted(o):
            out.append(sep + encode_basestring_ascii(k) + ": ")
            _encode(o[k], level + 1, out)
            sep = "," + pad
        out.append("\n" + " " * level + "}")
    elif isinstance(o, (list, tuple)):
        if not o:
            out.append("[]")
            return
        pad = "\n" + " " * (level + 1)
        if set(map(type, o)) <= _SCALAR_TYPES:
            out.append("[" + pad + _flat(o, pad)[1:-1] + "\n" + " " * level + "]")
            return
        out.append("[")
        sep = pad
        for v in o:
            out.append(sep)
            _encode(v, level + 1, out)
            sep = "," + pad
        out.append("\n" + " " * level + "]")
    else:
        out.append(_scalar(o))
