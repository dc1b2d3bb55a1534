"""Hidden tests of ``02_numpy_library/3_losses.ipynb``: MSELoss and CrossEntropyLoss (course spec, section 4).

One public function per graded cell; each takes the notebook namespace
(``globals()``) and raises an ``AssertionError`` a learner can act on. Expected
values come from PyTorch in float64 (``F.mse_loss``, ``F.cross_entropy`` with
float targets). Inputs are random, with shapes and names the notebook never
shows; N = 1, square batches (N = C, where a missing ``keepdims`` broadcasts
silently) and logits of size 1000 with gaps of 800 are among them.

Cells and behaviours:

- :func:`mse_forward`: value, stored ``A`` and ``Y``, a single number, inputs
  untouched, vectorised;
- :func:`mse_backward`: ``dLdA`` after the latest forward, vectorised;
- :func:`ce_forward`: value for one-hot and row-stochastic targets, stored
  ``A`` and ``Y``, a single number, inputs untouched, vectorised;
- :func:`ce_stable`: finite, exact values for huge logits (forward; backward too
  when it is right on ordinary logits, so a missing or wrong backward is charged
  to :func:`ce_backward` only);
- :func:`ce_backward`: ``dLdA = (softmax - Y) / N`` on ordinary logits, vectorised.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from course_tools.hidden.verdicts import reference
from course_tools.hidden.common import NO_TORCH, assert_close, assert_vectorised, forbid, learner_class, rng, torch64

RTOL = 1e-9
ATOL = 1e-12


def _learner(namespace: Mapping[str, Any], name: str) -> type:
    cls = learner_class(namespace, name)
    forbid(cls, NO_TORCH)
    return cls


def torch_loss(kind: str, A: np.ndarray, Y: np.ndarray) -> tuple[float, np.ndarray]:
    """PyTorch's loss value and ``dLdA`` for ``kind`` ``"mse"`` or ``"ce"`` (float64, mean reduction)."""
    import torch.nn.functional as F

    a = torch64(A, requires_grad=True)
    y = torch64(Y)
    loss = F.mse_loss(a, y) if kind == "mse" else F.cross_entropy(a, y)
    loss.backward()
    return float(loss.item()), a.grad.numpy().copy()


def _single_number(what: str, value: Any) -> float:
    """``value`` as a float if it is one number (Python or NumPy scalar, 0-d array); fails otherwise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number, np.ndarray)):
        raise AssertionError(f"{what} should return a single number, got {value.__class__.__name__}")
    if np.ndim(value) != 0:
        raise AssertionError(f"{what} should return a single number, got an array of shape {np.shape(value)}: "
                             "sum over every axis (np.sum(...) without axis=), or take the single entry "
                             "of a 1 x 1 matrix with .item()")
    return float(value)


def _forward(cls: type, name: str, A: np.ndarray, Y: np.ndarray, loss: Any = None, *,
             strict: bool = True) -> tuple[Any, Any]:
    """Call ``forward`` on copies of ``A`` and ``Y``; returns the loss object and what forward returned.

    ``strict`` (the forward cells): the result must be one number (returned as a float) and the inputs
    must stay unchanged. Backward cells call it with ``strict=False`` so that a forward that returns
    a 1 x 1 matrix or shifts ``A`` in place is charged to the forward cell only.
    """
    loss = cls() if loss is None else loss
    A_in, Y_in = A.copy(), Y.copy()
    value = loss.forward(A_in, Y_in)
    if not strict:
        return loss, value
    value = _single_number(f"{name}.forward(A, Y)", value)
    for label, given, original in (("A", A_in, A), ("Y", Y_in, Y)):
        if not np.array_equal(given, original):
            raise AssertionError(f"{name}.forward changed its input {label} in place: compute with new arrays "
                                 f"(for example shifted = A - m, not A -= m)")
    return loss, value


def _stored(loss: Any, name: str, A: np.ndarray, Y: np.ndarray) -> None:
    for attr, expected in (("A", A), ("Y", Y)):
        if not hasattr(loss, attr):
            raise AssertionError(f"{name}.forward must store its input as self.{attr}")
        assert_close(f"{name}.forward: the stored self.{attr}", getattr(loss, attr), expected, rtol=0, atol=0)


def _backward(loss: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    dLdA = loss.backward()
    if not isinstance(dLdA, np.ndarray):
        raise AssertionError(f"{name}.backward() should return dLdA as a numpy array, got {dLdA.__class__.__name__}")
    if dLdA.shape != shape:
        raise AssertionError(f"{name}.backward() returned shape {dLdA.shape}; dLdA has the shape of A, {shape}")
    return dLdA


def _describe(A: np.ndarray) -> str:
    return f"a {A.shape[0]} x {A.shape[1]} batch"


# --- the checks every loss shares ------------------------------------------------------------

Batch = tuple[np.ndarray, np.ndarray]
_KIND = {"MSELoss": "mse", "CrossEntropyLoss": "ce"}


def _check_forward(namespace: Mapping[str, Any], name: str, cases: list[Batch], large: Batch) -> None:
    """forward against PyTorch on ``cases`` (value, one number, stored A and Y, inputs untouched), then speed."""
    cls = _learner(namespace, name)
    for A, Y in cases:
        loss, value = _forward(cls, name, A, Y)
        expected, _ = torch_loss(_KIND[name], A, Y)
        assert_close(f"{name}.forward on {_describe(A)}", np.float64(value), expected, rtol=RTOL, atol=ATOL)
        _stored(loss, name, A, Y)
    A, Y = large
    learner, ref = cls(), getattr(reference, name)()
    assert_vectorised(f"{name}.forward", lambda: learner.forward(A, Y), lambda: ref.forward(A, Y))


def _check_backward(namespace: Mapping[str, Any], name: str, cases: list[Batch], first: Batch, large: Batch) -> None:
    """backward against PyTorch after forward on each of ``cases``; after ``first`` then the last case; speed."""
    cls = _learner(namespace, name)
    for A, Y in cases:
        loss, _ = _forward(cls, name, A, Y, strict=False)
        assert_close(f"{name}.backward() after forward on {_describe(A)}", _backward(loss, name, A.shape),
                     torch_loss(_KIND[name], A, Y)[1], rtol=RTOL, atol=ATOL)
    loss, _ = _forward(cls, name, *first, strict=False)
    A, Y = cases[-1]
    _forward(cls, name, A, Y, loss, strict=False)
    assert_close(f"{name}.backward() after two forward calls (it must use the latest A and Y)",
                 _backward(loss, name, A.shape), torch_loss(_KIND[name], A, Y)[1], rtol=RTOL, atol=ATOL)
    A, Y = large
    learner, ref = cls(), getattr(reference, name)()
    learner.forward(A, Y)
    ref.forward(A, Y)
    assert_vectorised(f"{name}.backward", learner.backward, ref.backward)


# --- targets ---------------------------------------------------------------------------------

def one_hot_targets(gen: np.random.Generator, N: int, C: int) -> np.ndarray:
    """Random one-hot rows, ``N x C`` float64."""
    Y = np.zeros((N, C))
    Y[np.arange(N), gen.integers(0, C, size=N)] = 1.0
    return Y


def soft_targets(gen: np.random.Generator, N: int, C: int) -> np.ndarray:
    """Random row-stochastic rows (each sums to 1), ``N x C`` float64."""
    return gen.dirichlet(np.ones(C), size=N)


# --- MSELoss ---------------------------------------------------------------------------------

MSE_SHAPES = ((7, 3), (1, 5), (4, 4), (12, 1), (1, 1), (3, 9))


def _mse_cases(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    gen = rng(seed)
    return [(gen.standard_normal(s) * gen.uniform(0.5, 4), gen.standard_normal(s) * 2 + 1) for s in MSE_SHAPES]


def _mse_large(seed: int) -> Batch:
    gen = rng(seed)
    return gen.standard_normal((50_000, 4)), gen.standard_normal((50_000, 4))


def mse_forward(namespace: Mapping[str, Any]) -> None:
    """MSELoss.forward: PyTorch's F.mse_loss on random batches; stores A and Y; one number; vectorised."""
    _check_forward(namespace, "MSELoss", _mse_cases(301), _mse_large(302))


def mse_backward(namespace: Mapping[str, Any]) -> None:
    """MSELoss.backward: PyTorch's gradient of F.mse_loss, for the latest forward; vectorised."""
    _check_backward(namespace, "MSELoss", _mse_cases(311), _mse_cases(312)[0], _mse_large(313))


# --- CrossEntropyLoss ------------------------------------------------------------------------

def _ce_cases(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    gen = rng(seed)
    cases = []
    for (N, C), soft in (((6, 4), False), ((5, 5), True), ((1, 3), False), ((1, 7), True), ((9, 10), False),
                         ((3, 2), True), ((4, 4), False)):
        A = gen.standard_normal((N, C)) * gen.uniform(1, 4) + gen.uniform(-3, 3)
        cases.append((A, soft_targets(gen, N, C) if soft else one_hot_targets(gen, N, C)))
    return cases


def extreme_cases() -> list[tuple[np.ndarray, np.ndarray]]:
    """Logits of size 1000 and gaps of 800, with one-hot and soft targets; N = 1 among them."""
    A = np.array([[1000.0, -1000.0, 0.0],
                  [-1000.0, -1000.0, -200.0],
                  [0.0, 800.0, 1.0],
                  [-800.0, 0.0, 3.0],
                  [1000.0, 1000.0, 1000.0]])
    Y = np.array([[0.0, 1.0, 0.0],
                  [0.2, 0.3, 0.5],
                  [1.0, 0.0, 0.0],
                  [0.0, 0.0, 1.0],
                  [0.0, 1.0, 0.0]])
    return [
        (A, Y),
        (np.array([[0.0, 800.0]]), np.array([[1.0, 0.0]])),
        (np.array([[-1000.0, 1000.0]]), np.array([[0.3, 0.7]])),
        (np.array([[1000.0, 999.0, -1000.0, 200.0], [-999.0, -1000.0, -998.5, -1000.0]]),
         np.array([[0.0, 0.0, 1.0, 0.0], [0.25, 0.25, 0.25, 0.25]])),
    ]


def _ce_large(seed: int, N: int) -> Batch:
    gen = rng(seed)
    return gen.standard_normal((N, 3)) * 3, soft_targets(gen, N, 3)


def ce_forward(namespace: Mapping[str, Any]) -> None:
    """CrossEntropyLoss.forward: PyTorch's F.cross_entropy (float targets) on random logits; stores A, Y."""
    _check_forward(namespace, "CrossEntropyLoss", _ce_cases(321), _ce_large(322, 40_000))


def _backward_right_on_ordinary_logits(cls: type) -> bool:
    """True if the learner's backward matches PyTorch on one ordinary batch (errors count as False)."""
    gen = rng(341)
    A, Y = gen.standard_normal((4, 3)), soft_targets(gen, 4, 3)
    try:
        loss, _ = _forward(cls, "CrossEntropyLoss", A, Y, strict=False)
        dLdA = _backward(loss, "CrossEntropyLoss", A.shape)
        assert_close("dLdA", dLdA, torch_loss("ce", A, Y)[1], rtol=RTOL, atol=ATOL)
    except Exception:
        return False
    return True


def ce_stable(namespace: Mapping[str, Any]) -> None:
    """CrossEntropyLoss with logits of size 1000 and gaps of 800: finite, equal to PyTorch's values.

    The backward is checked on these logits only if it is right on ordinary ones: an unwritten or
    wrong backward costs the points of :func:`ce_backward`, not of this cell too.
    """
    CrossEntropyLoss = _learner(namespace, "CrossEntropyLoss")
    check_backward = _backward_right_on_ordinary_logits(CrossEntropyLoss)
    for A, Y in extreme_cases():
        expected, grad = torch_loss("ce", A, Y)
        largest = f"{np.abs(A).max():g}"
        with np.errstate(all="ignore"):
            loss, value = _forward(CrossEntropyLoss, "CrossEntropyLoss", A, Y, strict=False)
        value = _single_number("CrossEntropyLoss.forward(A, Y)", value)
        if not np.isfinite(value):
            raise AssertionError(
                f"CrossEntropyLoss.forward returned {value} for logits as large as {largest} "
                f"(expected {expected:.6g}): use log-softmax = A - m - log(sum(exp(A - m))) with m the row maximum, "
                "never the log of a softmax that has underflowed to 0")
        assert_close(f"CrossEntropyLoss.forward on logits as large as {largest}", np.float64(value), expected,
                     rtol=RTOL, atol=ATOL)
        if check_backward:
            with np.errstate(all="ignore"):
                dLdA = _backward(loss, "CrossEntropyLoss", A.shape)
            assert_close(f"CrossEntropyLoss.backward() after forward on logits as large as {largest} (it is right "
                         "on ordinary logits: compute the softmax with the row maximum subtracted)",
                         dLdA, grad, rtol=RTOL, atol=ATOL)


def ce_backward(namespace: Mapping[str, Any]) -> None:
    """CrossEntropyLoss.backward: PyTorch's gradient (softmax - Y) / N, for the latest forward; vectorised."""
    _check_backward(namespace, "CrossEntropyLoss", _ce_cases(331), _ce_cases(332)[0], _ce_large(333, 100_000))
