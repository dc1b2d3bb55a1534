"""Small, reproducible data sets for the notebooks.

Every generator takes a ``seed`` and returns float64 NumPy arrays with one
sample per row. Nothing here downloads anything.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

__all__ = [
    "iterate_minibatches",
    "load_digits_split",
    "make_regression_1d",
    "make_spirals",
    "one_hot",
    "regression_target",
]


def regression_target(x: np.ndarray) -> np.ndarray:
    """The noise-free curve behind :func:`make_regression_1d` (element-wise)."""
    return np.sin(1.5 * x) + 0.3 * x


def make_regression_1d(
    n: int = 128, *, noise: float = 0.15, seed: int = 0, low: float = -3.0, high: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy samples of a smooth nonlinear 1-D function.

    Returns ``(x, y)``, both of shape ``n x 1``: ``x`` uniform in ``[low, high]``
    and ``y = regression_target(x) + noise * standard normal``.
    """
    rng = np.random.default_rng(seed)
    x = rng.uniform(low, high, size=(n, 1))
    y = regression_target(x) + noise * rng.standard_normal((n, 1))
    return x, y


def make_spirals(
    n_per_class: int = 100, *, n_classes: int = 3, noise: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Interleaved 2-D spirals, a classic data set no linear model can separate.

    Returns ``(X, labels)``: ``X`` of shape ``N x 2`` and integer ``labels`` of
    shape ``(N,)`` with ``N = n_per_class * n_classes``.
    """
    rng = np.random.default_rng(seed)
    X = np.zeros((n_per_class * n_classes, 2))
    labels = np.zeros(n_per_class * n_classes, dtype=np.int64)
    for k in range(n_classes):
        rows = slice(k * n_per_class, (k + 1) * n_per_class)
        radius = np.linspace(0.05, 1.0, n_per_class)
        angle = np.linspace(k * 2 * np.pi / n_classes, k * 2 * np.pi / n_classes + 3.5, n_per_class)
        angle = angle + noise * rng.standard_normal(n_per_class)
        X[rows] = np.column_stack([radius * np.sin(angle), radius * np.cos(angle)])
        labels[rows] = k
    return X, labels


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Integer labels of shape ``(N,)`` to a float64 one-hot matrix ``N x num_classes``."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"one_hot needs a 1-D integer array of labels, got {labels.dtype} of shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}")
    Y = np.zeros((labels.size, num_classes))
    Y[np.arange(labels.size), labels] = 1.0
    return Y


def iterate_minibatches(
    X: np.ndarray, Y: np.ndarray, batch_size: int, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(X_batch, Y_batch)`` pairs covering every row once, in random order."""
    if len(X) != len(Y):
        raise ValueError(f"X has {len(X)} rows but Y has {len(Y)}")
    order = rng.permutation(len(X))
    for start in range(0, len(X), batch_size):
        rows = order[start : start + batch_size]
        yield X[rows], Y[rows]


def load_digits_split(
    *, test_fraction: float = 0.25, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits, scaled to [0, 1] and split reproducibly.

    Returns ``(X_train, labels_train, X_test, labels_test)`` with ``X`` of shape
    ``N x 64`` (float64) and integer labels in 0..9. Needs scikit-learn, which
    ships these 1,797 images inside its wheel (no download).
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = digits.data.astype(np.float64) / 16.0
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(X))
    n_test = int(round(test_fraction * len(X)))
    test, train = order[:n_test], order[n_test:]
    return X[train], labels[train], X[test], labels[test]
