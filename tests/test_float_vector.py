"""Tests of `float_vector`, which turns a JSON list of numbers from a response into a float32 vector."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from wordorder_tui.providers.http import Caller, InvalidResponse, float_vector

CALLER = Caller("openai", "text-embedding-3-small")


def test_float_vector_ints_and_floats() -> None:
    vector = float_vector([1, -2.5, 0, 3e-3], CALLER, 0)

    assert vector.dtype == np.float32
    assert vector.tolist() == pytest.approx([1.0, -2.5, 0.0, 3e-3])


def test_float_vector_infinity_passes() -> None:
    # check_vectors rejects NaN and infinity later, with its own message.
    vector = float_vector([1.0, math.inf, math.nan], CALLER, 0)

    assert np.isinf(vector[1])
    assert np.isnan(vector[2])


@pytest.mark.parametrize(
    "value",
    [
        pytest.param([0.5, "0.25"], id="string"),
        pytest.param([0.5, None], id="null"),
        pytest.param([0.5, True], id="true"),
        pytest.param([False, 0.5], id="false"),
        pytest.param([[0.5, 0.25], [0.5, 0.25]], id="nested-rectangular"),
        pytest.param([0.5, [0.25]], id="nested-ragged"),
        pytest.param([{"value": 0.5}], id="object"),
    ],
)
def test_float_vector_rejects_non_number(value: list[Any]) -> None:
    with pytest.raises(InvalidResponse, match="embedding 3 contains a value that is not a number"):
        float_vector(value, CALLER, 3)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param([], id="empty"),
        pytest.param("0.5, 0.25", id="string"),
        pytest.param(None, id="null"),
        pytest.param({"embedding": [0.5]}, id="object"),
        pytest.param(0.5, id="number"),
    ],
)
def test_float_vector_rejects_non_list(value: Any) -> None:
    with pytest.raises(InvalidResponse, match="embedding 3 should be a non-empty list of numbers"):
        float_vector(value, CALLER, 3)


def test_float_vector_rejects_huge_integer() -> None:
    with pytest.raises(InvalidResponse, match="integer too large"):
        float_vector([0.5, 10**400], CALLER, 0)


@pytest.mark.parametrize(
    ("header", "expected"),
    [("3", 3.0), ("0.1", 0.1), ("0", 0.0), (" 2 ", 2.0), ("nan", None), ("inf", None), ("1e2", None),
     ("1_0", None), ("-1", None), ("soon", None), ("", None)],
)
def test_parse_retry_after_seconds(header, expected):
    from wordorder_tui.providers.http import parse_retry_after

    assert parse_retry_after(header) == expected
