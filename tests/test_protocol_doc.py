"""docs/PROTOCOL.md states what an independent verifier needs: these tests hold the document and the code to
the same facts (tag list, canonical transcript JSON and its digest, schema fields, standardization, bounds)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from protocol import transcript as tx
from protocol.dataset import fit_standardization, load_table, quantized_rows
from protocol.errors import InputError
from protocol.hashing import TAGS
from protocol.training import TrainConfig

DOC = (Path(__file__).resolve().parents[1] / "docs" / "PROTOCOL.md").read_text()


def test_the_tag_list_is_complete():
    para = DOC[DOC.index("Tags (the complete list"):]
    para = para[:para.index("\n- ")]
    assert set(re.findall(r"`([a-z0-9/-]+)`", para)) - {"protocol/hashing.py"} == set(TAGS)


def test_integrity_digest_from_the_documented_form():
    """Section 9: H("transcript", canonical JSON without `integrity`), with H of section 3, written from the
    document (not from protocol.transcript)."""
    obj = {"format": tx.FORMAT, "b": [1, {"z": 0.1, "a": "\u00e9\U0001f600"}], "a": {}, "c": [], "d": 1e-05}
    text = json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=True, allow_nan=False) + "\n"
    tag = b"vtrain/v1/transcript"
    assert tx.integrity({**obj, "integrity": "00"}) == hashlib.sha256(bytes([len(tag)]) + tag + text.encode()).hexdigest()
    assert tx.dumps(obj) == text and '"\\u00e9\\ud83d\\ude00"' in text and "1e-05" in text


def test_the_schema_table_names_every_top_level_field():
    table = DOC[DOC.index("| field | type |"):DOC.index("Required: `format`")]
    documented = {name.split(".")[0] for row in table.splitlines()[2:] if row.startswith("|") for name in re.findall(r"`([a-z_.]+)`",
                                                                                              re.sub(r"\(.*?\)", "", row.split("|")[1]))}
    assert documented == set(tx.SCHEMA)


def test_standardization_and_quantization_as_documented():
    """z = (x - mean) / std, clipped, then rint(z * 2^f); the target unclipped; columns: all but the target,
    in file order; rows in file order."""
    table = load_table("builtin:diabetes")
    stdz = fit_standardization(table, "linear")
    f = 16
    text = (Path(__file__).resolve().parents[1] / "protocol" / "data" / "diabetes.csv").read_text().splitlines()
    header = [h.strip() for h in text[0].split(",")]
    t = header.index("progression")
    vals = np.array([[float(c) for c in line.split(",")] for line in text[1:] if line.strip()])
    X, y = np.delete(vals, t, axis=1), vals[:, t]
    z = np.minimum(np.maximum((X - np.array(stdz.mean)) / np.array(stdz.std), -stdz.clip), stdz.clip)
    want = np.column_stack([np.rint(z * 2.0**f), np.rint(((y - stdz.target_mean) / stdz.target_std) * 2.0**f)])
    assert table.feature_names == [h for k, h in enumerate(header) if k != t]
    assert np.array_equal(quantized_rows(table, stdz, f), want.astype(np.int64))


@pytest.mark.parametrize("field, low, high", [
    ("epochs", 1, 10_000), ("batch_size", 1, 2**20), ("frac_bits", 4, 30), ("lr_shift", 0, 30),
    ("lr_num", 1, 2**31 - 1), ("l2_num", 0, 2**31 - 1), ("checkpoint_interval", 1, 2**32 - 1),
])
def test_documented_config_bounds(field, low, high):
    base = TrainConfig(model="linear", weight_bits=40)
    TrainConfig(**{**base.to_dict(), field: low}).validate()
    TrainConfig(**{**base.to_dict(), field: high}).validate()
    for bad in (low - 1, high + 1):
        with pytest.raises(InputError):
            TrainConfig(**{**base.to_dict(), field: bad}).validate()
    for text in ("`1 <= E <= 10000`", "`1 <= B <= 2^20`", "`1 <= C <= 2^32 - 1`", "`1 <= K_spot`", "`4 <= f <= 30`"):
        assert text in DOC
