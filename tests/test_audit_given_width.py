"""`audit --data` with rows whose canonical width is not the session's committed width is the user's input
error (exit 2 path: InputError naming both widths), checked before any root is computed; never a verdict."""

from __future__ import annotations

import numpy as np
import pytest

from protocol.errors import InputError
from verifier.audit import check_given_data


def _tr(w: int) -> dict:
    return {"num_rows": 4, "num_features": 1, "value_bytes": w, "rows_per_leaf": 1,
            "data_root": "00" * 32}


@pytest.mark.parametrize(("committed", "values", "need"), [(1, [300, -5, 0, 1], 2), (4, [1, 2, 3, 4], 1),
                                                           (2, [1 << 40, 0, 0, 0], 8)])
def test_rows_of_another_width_are_an_input_error_naming_both_widths(committed, values, need):
    rows = np.array([[v, 0] for v in values], dtype=np.int64)
    with pytest.raises(InputError, match=f"needs {need}-byte values, the session committed {committed}-byte"):
        check_given_data(_tr(committed), rows)


def test_rows_of_the_committed_width_pass_the_width_check_and_reach_the_root_check():
    rows = np.array([[300, 0], [-5, 0], [0, 0], [1, 0]], dtype=np.int64)
    with pytest.raises(InputError) as e:  # the root here is a placeholder: the next check, not the width, fires
        check_given_data(_tr(2), rows)
    assert "byte values" not in str(e.value)
