"""train-2pc's checks on the schema and standardization a trainer sends to a client without rows
(verifier/cli_2pc_rows.py, docs/MPC.md sections 1 and 4): a malformed one is refused before any dealer
material is drawn, whatever the trainer sends."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from protocol.training import TrainConfig
from protocol.wire import mpc_pb2
from verifier.cli import CliError
from verifier.cli_2pc_rows import Rows

CFG = TrainConfig(model="linear", epochs=1, batch_size=8, lr_num=20, lr_shift=10)
ARGS = SimpleNamespace(trainer_data="mine", target=None, data=None)
GOOD = {"trainer_rows": 24, "feature_names": ["a", "b"], "target": "y", "mean": [0.5, -1.0], "std": [2.0, 1.0],
        "target_mean": 3.0, "target_std": 4.0}


def _reply(**changes):
    return mpc_pb2.MpcHelloReply(trainer_nonce=b"\x00" * 32, **{**GOOD, **changes})


def _header(tmp_path, text="a,b,y\n"):
    p = tmp_path / "h.csv"
    p.write_text(text)
    return str(p)


def test_a_well_formed_standardization_is_taken_with_the_trainers_schema():
    rows = Rows.load(None, None, CFG)
    assert rows.n == 0 and rows.hello_fields() == {}
    s = rows.settle(_reply(), ARGS)
    assert (s.feature_names, s.target, s.stdz_from) == (["a", "b"], "y", "trainer")
    assert s.stdz.mean == [0.5, -1.0] and s.stdz.std == [2.0, 1.0] and (s.stdz.target_mean, s.stdz.target_std) == (3, 4)
    assert rows.Xq.shape == (0, 2) and rows.Yq.shape == (0,)


@pytest.mark.parametrize("changes,want", [
    ({"std": [2.0, 0.0]}, "malformed"),                  # a zero scale (a constant column has std 1)
    ({"std": [2.0, -1.0]}, "malformed"),
    ({"mean": [math.nan, 0.0]}, "malformed"),            # not finite
    ({"std": [math.inf, 1.0]}, "malformed"),
    ({"target_std": 0.0}, "malformed"),
    ({"mean": [0.0], "std": [1.0]}, "has 1 columns, its schema 2 features"),   # the wrong length
    ({"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0]}, "malformed"),
    ({"feature_names": []}, "schema"),
    ({"feature_names": ["a", "a"]}, "schema"),
    ({"feature_names": ["a", ""]}, "schema"),
    ({"target": ""}, "schema"),
    ({"trainer_rows": 0}, "neither party holds rows"),
])
def test_a_malformed_answer_from_the_trainer_is_refused(changes, want):
    with pytest.raises(CliError, match=want):
        Rows.load(None, None, CFG).settle(_reply(**changes), ARGS)


def test_a_header_only_csv_is_a_schema_the_trainers_must_match(tmp_path):
    rows = Rows.load(_header(tmp_path), "y", CFG)
    assert rows.n == 0 and rows.hello_fields() == {"feature_names": ["a", "b"], "target": "y"}
    assert rows.settle(_reply(), ARGS).stdz_from == "trainer"
    with pytest.raises(CliError, match="has columns"):
        Rows.load(_header(tmp_path, "a,c,y\n"), "y", CFG).settle(_reply(), ARGS)


def test_a_client_with_rows_keeps_its_standardization_and_refuses_one_from_the_trainer(tmp_path):
    rows = Rows.load(_header(tmp_path, "a,b,y\n1,2,3\n4,6,5\n"), "y", CFG)
    assert rows.n == 2 and rows.hello_fields()["std"] == [1.5, 2.0]
    s = rows.settle(_reply(mean=[], std=[], target_mean=0.0, target_std=0.0, trainer_rows=0), ARGS)
    assert s.stdz_from == "client" and s.stdz.mean == [2.5, 4.0]
    with pytest.raises(CliError, match="sent a standardization although yours is used"):
        rows.settle(_reply(), ARGS)


def test_target_without_data_is_checked_against_the_trainers():
    with pytest.raises(CliError, match="not --target 'z'"):
        Rows.load(None, None, CFG).settle(_reply(), SimpleNamespace(trainer_data="mine", target="z", data=None))
