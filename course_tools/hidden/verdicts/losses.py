"""Verdicts of ``02_numpy_library/3_losses``: MSELoss and CrossEntropyLoss (course spec, section 4).

Expected values come from PyTorch in float64 (``F.mse_loss``, and ``F.cross_entropy`` with
the logits and row-stochastic targets), on the batches the probe drew from the cell's seed
(:mod:`course_tools.hidden.probes.losses`): N = 1, square batches (N = C, where a missing
``keepdims`` broadcasts silently) and logits of size 1000 with gaps of 800 among them.

- ``mse_forward``, ``ce_forward``: the value, one number (a Python or NumPy scalar, or a 0-d
  array), inputs left unchanged, ``self.A`` and ``self.Y`` stored, at NumPy speed;
- ``mse_backward``, ``ce_backward``: ``dLdA`` after forward on each batch and after two forward
  calls (the latest counts), at NumPy speed. A forward that returns a 1 x 1 matrix or shifts
  ``A`` in place costs the forward cell only;
- ``ce_stable``: a finite forward equal to PyTorch's on the huge logits; backward there too,
  but only when it is right on an ordinary batch, so a missing or wrong backward costs the
  points of ``ce_backward`` alone.

Any right formula scores: the mean, ones-vector products, ``einsum``, SciPy's ``logsumexp``
and ``softmax``; warnings are harmless.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from course_tools.hidden.probes import losses as probes
from course_tools.hidden.probes.kit import rng
from course_tools.hidden.verdicts.kit import Evidence, Opaque, Wrong, as_array, assert_close, torch64, vectorised, \
    written_here

RTOL = 1e-9
ATOL = 1e-12
#: (ratio, slack in seconds): how much slower than the calibration (a few element-wise passes over A)
#: forward or backward may be. Measured on a loaded machine: right forwards take up to about 13 times
#: the calibration (SciPy's logsumexp), a loop over the samples 200 times or more; right backwards up
#: to about 6 times, a loop over the samples 50 times or more.
SPEED = {"forward": (40.0, 0.05), "backward": (20.0, 0.03)}

_KIND = {"MSELoss": "mse", "CrossEntropyLoss": "ce"}
STABLE_HINT = ("use log-softmax = A - m - log(sum(exp(A - m))) with m the row maximum, never the log of a "
               "softmax that has underflowed to 0")


def torch_loss(kind: str, A: np.ndarray, Y: np.ndarray) -> tuple[float, np.ndarray]:
    """PyTorch's loss value and ``dLdA`` for ``kind`` ``"mse"`` or ``"ce"`` (float64, mean reduction)."""
    import torch.nn.functional as F

    a = torch64(A, requires_grad=True)
    y = torch64(Y)
    loss = F.mse_loss(a, y) if kind == "mse" else F.cross_entropy(a, y)
    loss.backward()
    return float(loss.item()), a.grad.numpy().copy()


def _type_name(value: Any) -> str:
    return value.type_name if isinstance(value, Opaque) else type(value).__name__


def _describe(A: np.ndarray) -> str:
    return f"a {A.shape[0]} x {A.shape[1]} batch"


def _single_number(what: str, value: Any) -> float:
    """``value`` as a float if it is one number (Python or NumPy scalar, 0-d array); fails otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.ndarray)):
        raise Wrong(f"{what} should return a single number, got {_type_name(value)}")
    if np.ndim(value) != 0:
        raise Wrong(f"{what} should return a single number, got an array of shape {np.shape(value)}: "
                    "sum over every axis (np.sum(...) without axis=), or take the single entry "
                    "of a 1 x 1 matrix with .item()")
    return float(np.asarray(value, dtype=np.float64))


def _raised(evidence: Evidence, key: str, what: str) -> None:
    error = evidence.raised(key)
    if error is not None:
        raise Wrong(f"{what} raised {error}")


def _ran_forward(evidence: Evidence, name: str, key: str, A: np.ndarray) -> Any:
    """What forward returned on batch ``key`` (the loss object was built and forward did not raise)."""
    _raised(evidence, f"init:{key}", f"{name}()")
    return evidence.value(f"value:{key}", f"{name}.forward(A, Y) on {_describe(A)}")


def _untouched(evidence: Evidence, name: str, key: str, A: np.ndarray, Y: np.ndarray) -> None:
    inputs = evidence.value(f"inputs:{key}", f"{name}.forward(A, Y)")
    if not (isinstance(inputs, list) and len(inputs) == 2):
        raise Wrong("the record of this check is malformed (was grading code replaced?)")
    for label, given, original in (("A", inputs[0], A), ("Y", inputs[1], Y)):
        if not (isinstance(given, np.ndarray) and given.shape == original.shape and np.array_equal(given, original)):
            raise Wrong(f"{name}.forward changed its input {label} in place: compute with new arrays "
                        f"(for example shifted = A - m, not A -= m)")


def _stored(evidence: Evidence, name: str, key: str, A: np.ndarray, Y: np.ndarray) -> None:
    for attr, expected in (("A", A), ("Y", Y)):
        stored = evidence.attribute(f"{attr}:{key}", f"{name}.forward: self.{attr}",
                                    f"{name}.forward must store its input as self.{attr}")
        assert_close(f"{name}.forward on {_describe(A)}: the stored self.{attr}", stored, expected, rtol=0, atol=0)


def _dLdA(evidence: Evidence, name: str, key: str, shape: tuple[int, ...], what: str) -> np.ndarray:
    dLdA = evidence.value(f"dLdA:{key}", f"{name}.backward() {what}")
    if not isinstance(dLdA, np.ndarray):
        raise Wrong(f"{name}.backward() should return dLdA as a numpy array, got {_type_name(dLdA)}")
    if dLdA.shape != shape:
        raise Wrong(f"{name}.backward() returned shape {dLdA.shape}; dLdA has the shape of A, {shape}")
    return as_array(f"{name}.backward()", dLdA)


def _speed(evidence: Evidence, name: str, method: str, large: probes.Batch) -> None:
    A, _ = large
    what = f"{name}.{method}"
    _raised(evidence, "init:large", f"{name}()")
    _raised(evidence, "forward:large", f"{what}: forward on {_describe(A)}")
    seconds = evidence.seconds("seconds", f"{what} on {_describe(A)}")
    calibration = evidence.seconds("calibration", "the timing of whole-array NumPy work")
    if not (np.isfinite(calibration) and calibration > 0):
        raise Wrong("the record of this check is malformed (was grading code replaced?)")
    ratio, slack = SPEED[method]
    vectorised(f"{what} on {_describe(A)}", seconds, calibration, ratio=ratio, slack=slack)


def _forward_cell(evidence: Evidence, name: str, case: probes.ForwardCase) -> None:
    """forward against PyTorch on every batch (one number, inputs untouched, value, stored A and Y), then speed."""
    written_here(evidence, name)
    for i, (A, Y) in enumerate(case.batches):
        key = str(i)
        value = _single_number(f"{name}.forward(A, Y)", _ran_forward(evidence, name, key, A))
        _untouched(evidence, name, key, A, Y)
        expected, _ = torch_loss(_KIND[name], A, Y)
        assert_close(f"{name}.forward on {_describe(A)}", np.float64(value), expected, rtol=RTOL, atol=ATOL)
        _stored(evidence, name, key, A, Y)
    _speed(evidence, name, "forward", case.large)


def _backward_cell(evidence: Evidence, name: str, case: probes.BackwardCase) -> None:
    """backward against PyTorch after forward on each batch and after two forwards (the latest counts), then speed."""
    written_here(evidence, name)
    for i, (A, Y) in enumerate(case.batches):
        _ran_forward(evidence, name, str(i), A)
        what = f"after forward on {_describe(A)}"
        assert_close(f"{name}.backward() {what}", _dLdA(evidence, name, str(i), A.shape, what),
                     torch_loss(_KIND[name], A, Y)[1], rtol=RTOL, atol=ATOL)
    _ran_forward(evidence, name, "first", case.first[0])
    A, Y = case.batches[-1]
    evidence.value("value:latest", f"a second {name}.forward(A, Y) on the same object, on {_describe(A)}")
    what = "after two forward calls (it must use the latest A and Y)"
    assert_close(f"{name}.backward() {what}", _dLdA(evidence, name, "latest", A.shape, what),
                 torch_loss(_KIND[name], A, Y)[1], rtol=RTOL, atol=ATOL)
    _speed(evidence, name, "backward", case.large)


def check_mse_forward(evidence: Evidence) -> None:
    """MSELoss.forward: PyTorch's F.mse_loss on hidden batches; stores A and Y; one number; vectorised."""
    _forward_cell(evidence, "MSELoss", probes.cases_mse_forward(rng(evidence.seed)))


def check_mse_backward(evidence: Evidence) -> None:
    """MSELoss.backward: PyTorch's gradient of F.mse_loss, for the latest forward; vectorised."""
    _backward_cell(evidence, "MSELoss", probes.cases_mse_backward(rng(evidence.seed)))


def check_ce_forward(evidence: Evidence) -> None:
    """CrossEntropyLoss.forward: PyTorch's F.cross_entropy (float targets) on hidden logits; stores A, Y."""
    _forward_cell(evidence, "CrossEntropyLoss", probes.cases_ce_forward(rng(evidence.seed)))


def check_ce_backward(evidence: Evidence) -> None:
    """CrossEntropyLoss.backward: PyTorch's gradient (softmax - Y) / N, for the latest forward; vectorised."""
    _backward_cell(evidence, "CrossEntropyLoss", probes.cases_ce_backward(rng(evidence.seed)))


def _backward_right_on_ordinary_logits(evidence: Evidence, batch: probes.Batch) -> bool:
    """True if backward matched PyTorch on the ordinary batch (anything else counts as False)."""
    A, Y = batch
    try:
        _ran_forward(evidence, "CrossEntropyLoss", "ordinary", A)
        dLdA = _dLdA(evidence, "CrossEntropyLoss", "ordinary", A.shape, "")
        assert_close("dLdA", dLdA, torch_loss("ce", A, Y)[1], rtol=RTOL, atol=ATOL)
    except Wrong:
        return False
    return True


def check_ce_stable(evidence: Evidence) -> None:
    """CrossEntropyLoss with logits of size 1000 and gaps of 800: finite, equal to PyTorch's values.

    The backward is judged on these logits only if it is right on ordinary ones: an unwritten or
    wrong backward costs the points of ``ce_backward``, not of this cell too.
    """
    name = "CrossEntropyLoss"
    written_here(evidence, name)
    case = probes.cases_ce_stable(rng(evidence.seed))
    check_backward = _backward_right_on_ordinary_logits(evidence, case.ordinary)
    for i, (A, Y) in enumerate(case.extreme):
        expected, grad = torch_loss("ce", A, Y)
        largest = f"{np.abs(A).max():g}"
        value = _single_number(f"{name}.forward(A, Y)", _ran_forward(evidence, name, str(i), A))
        if not np.isfinite(value):
            raise Wrong(f"{name}.forward returned {value} on {_describe(A)} with logits as large as {largest}: "
                        f"{STABLE_HINT}")
        assert_close(f"{name}.forward on {_describe(A)} with logits as large as {largest}", np.float64(value),
                     expected, rtol=RTOL, atol=ATOL)
        if check_backward:
            what = f"after forward on {_describe(A)} with logits as large as {largest}"
            assert_close(f"{name}.backward() {what} (it is right on ordinary logits: compute the softmax with the "
                         "row maximum subtracted)", _dLdA(evidence, name, str(i), A.shape, what), grad,
                         rtol=RTOL, atol=ATOL)
