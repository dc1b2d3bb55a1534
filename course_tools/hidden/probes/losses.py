"""Probes of ``02_numpy_library/3_losses``: what the learner's MSELoss and CrossEntropyLoss return.

Every batch (predictions or logits ``A``, targets ``Y``) is drawn from the
cell's seed in a ``cases_*`` function; the logits of size 1000 with gaps of 800
are fixed, with one more such batch drawn. The record holds what ``forward``
returned, the inputs after the call (were they changed in place?), the stored
``self.A`` and ``self.Y``, what ``backward`` returned, and the running times of
``forward`` or ``backward`` on a large batch next to :meth:`Probe.calibrate` on
the same batch. The verdict computes PyTorch's values on the same draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from course_tools.hidden.probes.kit import FAILED, Probe, one_call

Batch = tuple[np.ndarray, np.ndarray]

#: shapes of the MSE batches: N = 1, square (N = C), a single column and a single entry among them
MSE_SHAPES = ((7, 3), (1, 5), (4, 4), (12, 1), (1, 1), (3, 9))
#: (N, C) and whether the targets are soft (row-stochastic) rather than one-hot, for cross-entropy
CE_SHAPES = (((6, 4), False), ((5, 5), True), ((1, 3), False), ((1, 7), True), ((9, 10), False),
             ((3, 2), True), ((4, 4), False))
#: the large batches the running times are measured on (narrow, so that a loop over the samples stands out)
MSE_LARGE = (100_000, 1)
CE_LARGE = (40_000, 3)
#: size of the ordinary batch on which the stability cell first tries backward
ORDINARY = (4, 3)


@dataclass(frozen=True)
class ForwardCase:
    """Inputs of a forward cell: ``batches`` are compared with PyTorch, ``large`` is timed."""

    batches: tuple[Batch, ...]
    large: Batch


@dataclass(frozen=True)
class BackwardCase:
    """Inputs of a backward cell: ``batches`` one forward each; ``first`` then the last batch on one
    object (backward must use the latest forward); ``large`` is timed."""

    batches: tuple[Batch, ...]
    first: Batch
    large: Batch


@dataclass(frozen=True)
class StableCase:
    """Inputs of the stability cell: logits up to 1000 in size, and one ordinary batch for backward."""

    extreme: tuple[Batch, ...]
    ordinary: Batch


def one_hot_targets(rng: np.random.Generator, N: int, C: int) -> np.ndarray:
    """Random one-hot rows, ``N x C`` float64."""
    Y = np.zeros((N, C))
    Y[np.arange(N), rng.integers(0, C, size=N)] = 1.0
    return Y


def soft_targets(rng: np.random.Generator, N: int, C: int) -> np.ndarray:
    """Random row-stochastic rows (each sums to 1), ``N x C`` float64."""
    return rng.dirichlet(np.ones(C), size=N)


def _mse_batches(rng: np.random.Generator) -> tuple[Batch, ...]:
    return tuple((rng.standard_normal(s) * rng.uniform(0.5, 4), rng.standard_normal(s) * 2 + 1) for s in MSE_SHAPES)


def _mse_large(rng: np.random.Generator) -> Batch:
    return rng.standard_normal(MSE_LARGE), rng.standard_normal(MSE_LARGE)


def _ce_batches(rng: np.random.Generator) -> tuple[Batch, ...]:
    batches = []
    for (N, C), soft in CE_SHAPES:
        A = rng.standard_normal((N, C)) * rng.uniform(1, 4) + rng.uniform(-3, 3)
        batches.append((A, soft_targets(rng, N, C) if soft else one_hot_targets(rng, N, C)))
    return tuple(batches)


def _ce_large(rng: np.random.Generator) -> Batch:
    N, C = CE_LARGE
    return rng.standard_normal((N, C)) * 3, soft_targets(rng, N, C)


def cases_mse_forward(rng: np.random.Generator) -> ForwardCase:
    return ForwardCase(_mse_batches(rng), _mse_large(rng))


def cases_mse_backward(rng: np.random.Generator) -> BackwardCase:
    batches = _mse_batches(rng)
    return BackwardCase(batches, _mse_batches(rng)[0], _mse_large(rng))


def cases_ce_forward(rng: np.random.Generator) -> ForwardCase:
    return ForwardCase(_ce_batches(rng), _ce_large(rng))


def cases_ce_backward(rng: np.random.Generator) -> BackwardCase:
    batches = _ce_batches(rng)
    return BackwardCase(batches, _ce_batches(rng)[0], _ce_large(rng))


def fixed_extreme_batches() -> tuple[Batch, ...]:
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
    return (
        (A, Y),
        (np.array([[0.0, 800.0]]), np.array([[1.0, 0.0]])),
        (np.array([[-1000.0, 1000.0]]), np.array([[0.3, 0.7]])),
        (np.array([[1000.0, 999.0, -1000.0, 200.0], [-999.0, -1000.0, -998.5, -1000.0]]),
         np.array([[0.0, 0.0, 1.0, 0.0], [0.25, 0.25, 0.25, 0.25]])),
    )


def cases_ce_stable(rng: np.random.Generator) -> StableCase:
    """The fixed extreme batches, one more drawn (logits of up to 1000 in size), and an ordinary batch."""
    N, C = 3, 4
    drawn = (np.round(rng.uniform(-1000, 1000, size=(N, C)), 1), soft_targets(rng, N, C))
    ordinary = (rng.standard_normal(ORDINARY), soft_targets(rng, *ORDINARY))
    return StableCase(fixed_extreme_batches() + (drawn,), ordinary)


# ---------------------------------------------------------------- running the learner's class

def _forward(probe: Probe, cls: type, key: str, A: np.ndarray, Y: np.ndarray) -> Any:
    """A new loss object, ``forward`` on copies of A and Y; records the value and the inputs after the call.

    Returns the loss object, or FAILED if building it raised.
    """
    loss = probe.attempt(f"init:{key}", cls)
    if loss is FAILED:
        return FAILED
    A_in, Y_in = A.copy(), Y.copy()
    with np.errstate(all="ignore"):
        probe.call(f"value:{key}", lambda: loss.forward(A_in, Y_in))
    probe.record(f"inputs:{key}", [A_in, Y_in])
    return loss


def _backward(probe: Probe, key: str, loss: Any) -> None:
    with np.errstate(all="ignore"):
        probe.call(f"dLdA:{key}", lambda: loss.backward())


def _timed(probe: Probe, cls: type, large: Batch, backward: bool) -> None:
    """Time forward (or backward after one forward) on the large batch, and the calibration on the same A."""
    A, Y = large
    loss = probe.attempt("init:large", cls)
    if loss is FAILED:
        return
    run: Callable[[], Any]
    if backward:
        if probe.attempt("forward:large", lambda: loss.forward(A, Y)) is FAILED:
            return
        run = loss.backward
    else:
        def run() -> Any:
            return loss.forward(A, Y)
    with np.errstate(all="ignore"):
        probe.seconds("seconds", run)
    probe.calibrate("calibration", A)


def _forward_cell(probe: Probe, name: str, case: ForwardCase) -> None:
    cls = probe.learner(name)
    if cls is None:
        return
    for i, (A, Y) in enumerate(case.batches):
        loss = _forward(probe, cls, str(i), A, Y)
        if loss is FAILED:
            return
        probe.attribute(f"A:{i}", loss, "A")
        probe.attribute(f"Y:{i}", loss, "Y")
    _timed(probe, cls, case.large, backward=False)


def _backward_cell(probe: Probe, name: str, case: BackwardCase) -> None:
    cls = probe.learner(name)
    if cls is None:
        return
    for i, (A, Y) in enumerate(case.batches):
        loss = _forward(probe, cls, str(i), A, Y)
        if loss is FAILED:
            return
        _backward(probe, str(i), loss)
    loss = _forward(probe, cls, "first", *case.first)
    if loss is FAILED:
        return
    A_in, Y_in = case.batches[-1][0].copy(), case.batches[-1][1].copy()
    with np.errstate(all="ignore"):
        probe.call("value:latest", lambda: loss.forward(A_in, Y_in))
    _backward(probe, "latest", loss)
    _timed(probe, cls, case.large, backward=True)


def _stable_cell(probe: Probe, case: StableCase) -> None:
    cls = probe.learner("CrossEntropyLoss")
    if cls is None:
        return
    loss = _forward(probe, cls, "ordinary", *case.ordinary)
    if loss is not FAILED:
        _backward(probe, "ordinary", loss)
    for i, (A, Y) in enumerate(case.extreme):
        loss = _forward(probe, cls, str(i), A, Y)
        if loss is FAILED:
            return
        _backward(probe, str(i), loss)


def check_mse_forward(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """MSELoss.forward on hidden batches (value, inputs after the call, stored A and Y), and its time on a large one."""
    one_call(namespace, "check_mse_forward", seed,
             lambda probe: _forward_cell(probe, "MSELoss", cases_mse_forward(probe.rng)))


def check_mse_backward(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """MSELoss.backward after forward on hidden batches and after two forwards, and its time on a large batch."""
    one_call(namespace, "check_mse_backward", seed,
             lambda probe: _backward_cell(probe, "MSELoss", cases_mse_backward(probe.rng)))


def check_ce_forward(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """CrossEntropyLoss.forward on hidden logits and targets, and its time on a large batch."""
    one_call(namespace, "check_ce_forward", seed,
             lambda probe: _forward_cell(probe, "CrossEntropyLoss", cases_ce_forward(probe.rng)))


def check_ce_stable(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """CrossEntropyLoss forward and backward on logits up to 1000 in size, and backward on an ordinary batch."""
    one_call(namespace, "check_ce_stable", seed, lambda probe: _stable_cell(probe, cases_ce_stable(probe.rng)))


def check_ce_backward(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """CrossEntropyLoss.backward after forward on hidden batches and after two forwards, and its time."""
    one_call(namespace, "check_ce_backward", seed,
             lambda probe: _backward_cell(probe, "CrossEntropyLoss", cases_ce_backward(probe.rng)))
