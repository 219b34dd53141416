"""Cosine similarity and summary statistics: pure numpy, no I/O.

Everything here takes arrays and returns arrays or numbers, so the CLI, the
TUI and the tests share one definition of every score.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class VectorError(ValueError):
    """An embedding that cannot give a cosine similarity (zero norm, NaN, wrong shape)."""


def _label(texts: Sequence[str] | None, index: int) -> str:
    if texts is None:
        return f"row {index}"

    text = texts[index]
    if len(text) > 60:
        text = text[:57] + "..."
    return f"row {index} ({text!r})"


def _scale_rows(matrix: np.ndarray) -> np.ndarray:
    """Return the rows in float64, each divided by its largest absolute value.

    Squares of raw float64 values overflow to infinity above about 1e154 and
    underflow to zero below about 2e-162. Unscaled, such rows would give a
    NaN cosine or a false "zero norm". Scaled rows have values in [-1, 1]
    with at least one of magnitude 1, and scaling does not change cosines.
    """
    values = matrix.astype(np.float64)
    peaks = np.abs(values).max(axis=1, keepdims=True)
    return values / np.where(peaks == 0, 1.0, peaks)


def check_vectors(matrix: np.ndarray, texts: Sequence[str] | None = None) -> None:
    """Raise `VectorError` unless every row of `matrix` is finite with a non-zero norm.

    The message names the text the bad row came from, when `texts` is given.
    """
    if matrix.ndim != 2:
        raise VectorError(f"expected a 2-D matrix of embeddings, got shape {matrix.shape}")
    if matrix.shape[1] == 0:
        raise VectorError(f"embeddings have no dimensions: shape {matrix.shape}")
    if texts is not None and len(texts) != matrix.shape[0]:
        raise VectorError(f"{matrix.shape[0]} embeddings but {len(texts)} texts; pass one text per row")

    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        index = int(np.flatnonzero(~finite)[0])
        raise VectorError(f"embedding of {_label(texts, index)} contains NaN or infinity")

    zero = ~matrix.any(axis=1)
    if zero.any():
        index = int(np.flatnonzero(zero)[0])
        raise VectorError(f"embedding of {_label(texts, index)} has zero norm")


def cosine_pairs(
    left: np.ndarray,
    right: np.ndarray,
    left_texts: Sequence[str] | None = None,
    right_texts: Sequence[str] | None = None,
) -> np.ndarray:
    """Return the cosine similarity of each row of `left` with the same row of `right`.

    Both are (n, d) matrices. The sums run in float64, so the result does not
    depend on whether a provider returned float32 or float64 vectors.
    """
    if left.shape != right.shape:
        raise VectorError(f"embedding shapes differ: {left.shape} vs {right.shape}")

    check_vectors(left, left_texts)
    check_vectors(right, right_texts)

    left64 = _scale_rows(left)
    right64 = _scale_rows(right)
    dots = np.einsum("ij,ij->i", left64, right64)
    norms = np.linalg.norm(left64, axis=1) * np.linalg.norm(right64, axis=1)
    cosines = dots / norms

    # Rounding can push a cosine of identical vectors a hair past 1.
    return np.clip(cosines, -1.0, 1.0)


def summarize(scores: Sequence[float]) -> dict[str, float]:
    """Return count, mean, standard deviation, minimum and maximum of the scores."""
    values = np.asarray(scores, dtype=np.float64)
    if values.size == 0:
        return {"count": 0}

    return {
        "count": int(values.size),
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
        "min": float(values.min()),
        "max": float(values.max()),
    }
