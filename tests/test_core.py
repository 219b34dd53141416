"""Tests of cosine similarity, vector checks and summaries against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wordorder_tui.core import VectorError, check_vectors, cosine_pairs, summarize


def rows(*vectors: list[float], dtype: type = np.float64) -> np.ndarray:
    return np.array(vectors, dtype=dtype)


def test_cosine_hand_computed() -> None:
    cosines = cosine_pairs(rows([3, 4, 0], [1, 2, 3]), rows([4, 3, 0], [4, 5, 6]))

    # 3*4 + 4*3 = 24 over 5 * 5, and 1*4 + 2*5 + 3*6 = 32 over sqrt(14 * 77).
    assert cosines[0] == pytest.approx(24 / 25, abs=1e-15)
    assert cosines[1] == pytest.approx(32 / math.sqrt(1078), abs=1e-15)


def test_cosine_row_by_row() -> None:
    left = rows([1, 0], [1, 1], [2, 0])
    right = rows([1, 1], [1, 1], [0, 7])

    cosines = cosine_pairs(left, right)

    assert cosines.shape == (3,)
    assert cosines[0] == pytest.approx(1 / math.sqrt(2), abs=1e-15)
    assert cosines[1] == pytest.approx(1.0, abs=1e-15)
    assert cosines[2] == 0.0


def test_cosine_antiparallel_is_minus_one() -> None:
    cosines = cosine_pairs(rows([1, 2, -3]), rows([-2, -4, 6]))

    assert cosines[0] == pytest.approx(-1.0, abs=1e-15)
    assert cosines[0] >= -1.0


def test_cosine_orthogonal_is_zero() -> None:
    cosines = cosine_pairs(rows([1, 0, 0], [1, 1, 0]), rows([0, 5, 0], [1, -1, 3]))

    assert cosines[0] == 0.0
    assert cosines[1] == 0.0


def test_cosine_identical_not_above_one() -> None:
    vector = np.random.default_rng(7).normal(size=(50, 384))

    cosines = cosine_pairs(vector, vector.copy())

    assert (cosines <= 1.0).all()
    assert cosines == pytest.approx(np.ones(50), abs=1e-12)


def test_cosine_float32_sums_in_float64() -> None:
    left32 = rows([0.1, 0.2, 0.3], [1e-3, 7.5, -2.25], dtype=np.float32)
    right32 = rows([0.3, -0.1, 0.7], [3.0, 1e-4, 0.5], dtype=np.float32)
    left64 = left32.astype(np.float64)
    right64 = right32.astype(np.float64)
    expected = (left64 * right64).sum(axis=1) / (
        np.sqrt((left64**2).sum(axis=1)) * np.sqrt((right64**2).sum(axis=1))
    )

    cosines = cosine_pairs(left32, right32)

    assert cosines.dtype == np.float64
    assert cosines == pytest.approx(expected, rel=1e-14)


def test_cosine_float32_equals_float64_input() -> None:
    left32 = rows([0.1, 0.2, 0.3], dtype=np.float32)
    right32 = rows([0.3, -0.1, 0.7], dtype=np.float32)

    from_float32 = cosine_pairs(left32, right32)
    from_float64 = cosine_pairs(left32.astype(np.float64), right32.astype(np.float64))

    assert from_float32[0] == from_float64[0]


@pytest.mark.parametrize("scale", [1e-200, 1e-30, 1e-3, 7.0, 1e3, 1e30, 1e200])
def test_cosine_scale_invariant(scale: float) -> None:
    left = rows([1, 2, 3], [0.5, -1, 0])
    right = rows([4, 5, 6], [2, 2, 1])
    unscaled = cosine_pairs(left, right)

    scaled_left = cosine_pairs(left * scale, right)
    scaled_both = cosine_pairs(left * scale, right * scale)

    assert scaled_left == pytest.approx(unscaled, rel=1e-14)
    assert scaled_both == pytest.approx(unscaled, rel=1e-14)


def test_cosine_empty_matrix() -> None:
    cosines = cosine_pairs(np.zeros((0, 4)), np.zeros((0, 4)))

    assert cosines.shape == (0,)


BAD_VALUES = [
    pytest.param(0.0, "zero norm", id="zero"),
    pytest.param(math.nan, "NaN or infinity", id="nan"),
    pytest.param(math.inf, "NaN or infinity", id="inf"),
    pytest.param(-math.inf, "NaN or infinity", id="minus-inf"),
]


@pytest.mark.parametrize(("value", "problem"), BAD_VALUES)
def test_cosine_bad_left_names_text(value: float, problem: str) -> None:
    left = rows([1, 2, 3], [4, 5, 6])
    right = rows([1, 1, 1], [2, 2, 2])
    if problem == "zero norm":
        left[1] = 0.0
    else:
        left[1, 2] = value
    texts = ["the dog bit the man", "the man bit the dog"]

    with pytest.raises(VectorError) as caught:
        cosine_pairs(left, right, texts, ["a", "b"])

    message = str(caught.value)
    assert "'the man bit the dog'" in message
    assert "row 1" in message
    assert problem in message


@pytest.mark.parametrize(("value", "problem"), BAD_VALUES)
def test_cosine_bad_right_names_text(value: float, problem: str) -> None:
    left = rows([1, 2, 3], [4, 5, 6], dtype=np.float32)
    right = rows([1, 1, 1], [2, 2, 2], dtype=np.float32)
    if problem == "zero norm":
        right[0] = 0.0
    else:
        right[0, 0] = value
    texts = ["猫が犬を追いかけた", "犬が猫を追いかけた"]

    with pytest.raises(VectorError) as caught:
        cosine_pairs(left, right, ["a", "b"], texts)

    message = str(caught.value)
    assert "'猫が犬を追いかけた'" in message
    assert problem in message


def test_check_vectors_negative_zero_is_zero_norm() -> None:
    with pytest.raises(VectorError) as caught:
        check_vectors(rows([1, 2], [-0.0, 0.0]), ["x", "negative zero"])

    assert "'negative zero'" in str(caught.value)


def test_check_vectors_tiny_values_valid() -> None:
    # Squares of 1e-170 underflow to zero in float64, but the vector is not zero.
    matrix = rows([1e-170, 0.0], [0.0, 5e-324])

    check_vectors(matrix)
    cosines = cosine_pairs(matrix, rows([1e-170, 1e-170], [0.0, 1.0]))

    assert cosines[0] == pytest.approx(1 / math.sqrt(2), abs=1e-15)
    assert cosines[1] == 1.0


def test_check_vectors_huge_values_finite() -> None:
    matrix = rows([1e300, 1e300], [-1e308, 1e308])

    cosines = cosine_pairs(matrix, rows([1.0, 0.0], [1.0, 1.0]))

    assert np.isfinite(cosines).all()
    assert cosines[0] == pytest.approx(1 / math.sqrt(2), abs=1e-15)
    assert cosines[1] == 0.0


def test_check_vectors_without_texts() -> None:
    matrix = rows([1, 2], [3, math.nan])

    with pytest.raises(VectorError) as caught:
        check_vectors(matrix)

    assert "row 1" in str(caught.value)


def test_check_vectors_long_text_truncated() -> None:
    text = "word " * 40

    with pytest.raises(VectorError) as caught:
        check_vectors(rows([0.0, 0.0]), [text])

    message = str(caught.value)
    assert repr(text[:57] + "...") in message
    assert text not in message


def test_check_vectors_text_count_mismatch() -> None:
    with pytest.raises(VectorError) as caught:
        check_vectors(rows([1, 2], [3, 4]), ["only one text"])

    assert "2 embeddings but 1 texts" in str(caught.value)


def test_check_vectors_one_dimensional() -> None:
    with pytest.raises(VectorError) as caught:
        check_vectors(np.array([1.0, 2.0]))

    assert "2-D" in str(caught.value)


def test_check_vectors_no_dimensions() -> None:
    with pytest.raises(VectorError) as caught:
        check_vectors(np.zeros((2, 0)))

    assert "no dimensions" in str(caught.value)


def test_cosine_dimension_mismatch() -> None:
    with pytest.raises(VectorError) as caught:
        cosine_pairs(np.ones((2, 3)), np.ones((2, 4)))

    assert "(2, 3) vs (2, 4)" in str(caught.value)


def test_cosine_row_count_mismatch() -> None:
    with pytest.raises(VectorError) as caught:
        cosine_pairs(np.ones((2, 3)), np.ones((3, 3)))

    assert "(2, 3) vs (3, 3)" in str(caught.value)


def test_vector_error_is_value_error() -> None:
    assert issubclass(VectorError, ValueError)


def test_summarize_values() -> None:
    summary = summarize([0.5, 0.7, 0.9])

    assert summary["count"] == 3
    assert summary["mean"] == pytest.approx(0.7, abs=1e-15)
    # Sample standard deviation: sqrt((0.04 + 0 + 0.04) / 2) = 0.2.
    assert summary["std"] == pytest.approx(0.2, abs=1e-15)
    assert summary["min"] == 0.5
    assert summary["max"] == 0.9


def test_summarize_numpy_input() -> None:
    summary = summarize(np.array([-1.0, 1.0], dtype=np.float32))

    assert summary["mean"] == 0.0
    assert summary["std"] == pytest.approx(math.sqrt(2), abs=1e-15)
    assert type(summary["min"]) is float


def test_summarize_single_value() -> None:
    summary = summarize([0.25])

    assert summary == {"count": 1, "mean": 0.25, "std": 0.0, "min": 0.25, "max": 0.25}


def test_summarize_empty() -> None:
    assert summarize([]) == {"count": 0}
