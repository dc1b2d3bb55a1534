"""Probes of ``02_numpy_library/5_batchnorm``: what the learner's BatchNorm1d stores, returns and costs.

Every batch, upstream gradient, parameter (``BW``, ``Bb``), running statistic and
``alpha`` is drawn from the cell's seed in a ``cases_*`` function; the shapes differ
from the visible ones, and constant and near-constant features, a running variance
of 0 and batches of one sample are among them. The probe gives the drawn parameters
to the learner's layer, calls it, and records what came back and what the layer
holds afterwards; for the speed cell it records the time of forward, backward and
eval forward on a tall and a wide batch next to :meth:`Probe.calibrate` on the same
batch. The verdict computes PyTorch's values on the same draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from course_tools.hidden.probes.kit import FAILED, Probe, describe_error, one_call

NAME = "BatchNorm1d"
#: the six (1, C) arrays the constructor creates
ARRAYS = ("BW", "Bb", "dLdBW", "dLdBb", "running_M", "running_V")
#: the tall and the wide batch of the speed cell, and the loop each one exposes
LARGE = ((100_000, 1, "over samples"), (4, 50_000, "over features"))
#: size of the two layers built one after the other (do they share an array?)
TWO_LAYERS_C = 3


@dataclass(frozen=True)
class Params:
    """``BW`` and ``Bb`` (1 x C) the probe gives a layer."""

    BW: np.ndarray
    Bb: np.ndarray


@dataclass(frozen=True)
class InitCase:
    """``BatchNorm1d(C, *args, **kwargs)``."""

    C: int
    args: tuple[float, ...]
    kwargs: dict[str, float]


@dataclass(frozen=True)
class Step:
    """One batch ``Z`` (N x C) with the parameters the layer holds for it and the upstream gradient."""

    Z: np.ndarray
    params: Params
    dLdBZ: np.ndarray


@dataclass(frozen=True)
class RunningCase:
    """A layer ``BatchNorm1d(C)`` (``alpha`` None) or ``BatchNorm1d(C, alpha=alpha)`` fed ``batches`` in turn."""

    C: int
    alpha: float | None
    params: Params
    batches: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class EvalCase:
    """Eval forward of ``Z`` on a layer holding ``params``, ``running_M`` and ``running_V``."""

    Z: np.ndarray
    params: Params
    running_M: np.ndarray
    running_V: np.ndarray


def batch(rng: np.random.Generator, N: int, C: int) -> np.ndarray:
    """N x C float64 batch whose features have different offsets and scales."""
    offsets = rng.uniform(-5, 5, size=(1, C))
    scales = rng.uniform(0.2, 4, size=(1, C))
    return offsets + scales * rng.standard_normal((N, C))


def params(rng: np.random.Generator, C: int) -> Params:
    """Random BW (either sign, away from 0) and Bb, 1 x C."""
    BW = rng.uniform(0.5, 2, size=(1, C)) * rng.choice([-1.0, 1.0], size=(1, C))
    return Params(BW, rng.standard_normal((1, C)))


def _step(rng: np.random.Generator, N: int, C: int, scale: float = 1.0) -> Step:
    p = params(rng, C)
    return Step(scale * batch(rng, N, C), p, rng.standard_normal((N, C)))


def cases_init(rng: np.random.Generator) -> list[InitCase]:
    """Three sizes: the default alpha, alpha given by position, alpha given by name."""
    C1, C2, C3 = (int(c) for c in rng.integers(2, 10, size=3))
    return [InitCase(C1, (), {}),
            InitCase(C2, (round(float(rng.uniform(0.3, 0.8)), 2),), {}),
            InitCase(C3, (), {"alpha": round(float(rng.uniform(0.1, 0.5)), 2)})]


def cases_forward_train(rng: np.random.Generator) -> list[Step]:
    """Batches of several shapes; where C >= 5, feature 1 is constant and feature 3 nearly so."""
    steps = []
    for N, C in ((9, 5), (2, 3), (40, 1), (6, 8)):
        Z = batch(rng, N, C)
        if C >= 5:
            Z[:, 1] = round(float(rng.uniform(-4, 4)), 1)  # variance 0: only eps keeps the division finite
            Z[:, 3] = 1.0 + 1e-5 * rng.standard_normal(N)  # variance ~1e-10, far below eps
        steps.append(Step(Z, params(rng, C), np.zeros((0, C))))
    return steps


def cases_running_stats(rng: np.random.Generator) -> list[RunningCase]:
    """The default alpha over five batches (one of a single sample), another alpha over four."""
    alpha = round(float(rng.uniform(0.55, 0.8)), 2)
    runs = []
    for a, sizes, C in ((None, (6, 11, 1, 8, 20), 4), (alpha, (5, 9, 2, 13), 3)):
        p = params(rng, C)
        runs.append(RunningCase(C, a, p, tuple(batch(rng, N, C) for N in sizes)))
    return runs


def cases_eval(rng: np.random.Generator) -> list[EvalCase]:
    """Eval batches (one of a single sample) with running statistics; the first running variance is 0."""
    cases = []
    for N, C in ((7, 4), (1, 3), (12, 6)):
        p = params(rng, C)
        running_M = rng.standard_normal((1, C))
        running_V = rng.uniform(0.1, 3, size=(1, C))
        running_V[0, 0] = 0.0  # eps must be added here too
        cases.append(EvalCase(batch(rng, N, C), p, running_M, running_V))
    return cases


#: features of the layer the parameter gradients are followed on, over several steps
PARAMS_C = 5


def cases_backward_params(rng: np.random.Generator) -> list[Step]:
    """Three steps on one layer, with new parameters each step."""
    return [_step(rng, N, PARAMS_C) for N in (8, 3, 15)]


def cases_backward_input(rng: np.random.Generator) -> list[Step]:
    """Batches of several shapes and scales (a single feature, values near 100, values near 0.01)."""
    return [_step(rng, N, C, scale) for N, C, scale in ((10, 4, 1.0), (2, 3, 1.0), (25, 6, 80.0), (7, 1, 0.01))]


def cases_batch_of_one(rng: np.random.Generator) -> list[Step]:
    """One sample, with several features and with one."""
    return [_step(rng, 1, C) for C in (4, 1)]


def cases_vectorised(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(Z, dLdBZ)`` of the tall and the wide batch of :data:`LARGE`."""
    return [(batch(rng, N, C), rng.standard_normal((N, C))) for N, C, _ in LARGE]


# ---------------------------------------------------------------- running the learner's class

def _layer(probe: Probe, key: str, cls: type, C: int, p: Params | None, **kwargs: Any) -> Any:
    """``cls(C, **kwargs)`` holding copies of ``p``; FAILED (recorded) if building it raised."""
    layer = probe.attempt(f"init:{key}", cls, C, **kwargs)
    if layer is FAILED or p is None:
        return layer
    return layer if _give(probe, f"init:{key}", layer, p) else FAILED


def _give(probe: Probe, key: str, layer: Any, p: Params) -> bool:
    """Set the layer's BW and Bb to copies of ``p`` (False, with the error recorded, if the layer refuses)."""
    try:
        layer.BW, layer.Bb = p.BW.copy(), p.Bb.copy()
    except Exception as error:  # noqa: BLE001 (a layer that refuses attributes)
        probe.items[key] = {"raised": describe_error(error)}
        return False
    return True


def _shared(arrays: list[tuple[str, Any]], others: list[tuple[str, Any]] | None = None) -> list[list[str]]:
    """Pairs of names whose values are NumPy arrays sharing memory (within one layer, or across two)."""
    pairs = []
    for i, (a_name, a) in enumerate(arrays):
        for b_name, b in (others if others is not None else arrays[i + 1:]):
            if isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.shares_memory(a, b):
                pairs.append([a_name, b_name])
    return pairs


def _attributes(layer: Any) -> list[tuple[str, Any]]:
    return [(name, getattr(layer, name, None)) for name in ARRAYS]


def _init(probe: Probe) -> None:
    cls = probe.learner(NAME)
    if cls is None:
        return
    for k, case in enumerate(cases_init(probe.rng)):
        layer = probe.attempt(f"init:{k}", cls, case.C, *case.args, **case.kwargs)
        if layer is FAILED:
            return
        for name in ARRAYS:
            probe.attribute(f"{name}:{k}", layer, name)
        probe.record(f"shared:{k}", _shared(_attributes(layer)))
    first = probe.attempt("init:first", cls, TWO_LAYERS_C)
    second = probe.attempt("init:second", cls, TWO_LAYERS_C)
    if first is not FAILED and second is not FAILED:
        pairs = _shared(_attributes(first), _attributes(second))
        probe.record("shared:two", [a for a, b in pairs if a == b])


def _forward_train(probe: Probe) -> None:
    cls = probe.learner(NAME)
    if cls is None:
        return
    for i, step in enumerate(cases_forward_train(probe.rng)):
        layer = _layer(probe, str(i), cls, step.Z.shape[1], step.params)
        if layer is FAILED:
            return
        with np.errstate(all="ignore"):
            probe.call(f"out:{i}", lambda: layer.forward(step.Z.copy()))
            probe.call(f"out:{i}:eval=False", lambda: layer.forward(step.Z.copy(), eval=False))


def _running_stats(probe: Probe) -> None:
    cls = probe.learner(NAME)
    if cls is None:
        return
    for r, run in enumerate(cases_running_stats(probe.rng)):
        kwargs = {} if run.alpha is None else {"alpha": run.alpha}
        layer = _layer(probe, str(r), cls, run.C, run.params, **kwargs)
        if layer is FAILED:
            continue
        for s, Z in enumerate(run.batches):
            with np.errstate(all="ignore"):
                if probe.attempt(f"forward:{r}:{s}", lambda: layer.forward(Z.copy())) is FAILED:
                    break
            probe.attribute(f"running_M:{r}:{s}", layer, "running_M")
            probe.attribute(f"running_V:{r}:{s}", layer, "running_V")


def _eval(probe: Probe) -> None:
    cls = probe.learner(NAME)
    if cls is None:
        return
    for i, case in enumerate(cases_eval(probe.rng)):
        layer = _layer(probe, str(i), cls, case.Z.shape[1], case.params)
        if layer is FAILED:
            return
        try:
            layer.running_M, layer.running_V = case.running_M.copy(), case.running_V.copy()
        except Exception as error:  # noqa: BLE001 (a layer that refuses attributes)
            probe.items[f"init:{i}"] = {"raised": describe_error(error)}
            return
        with np.errstate(all="ignore"):
            probe.call(f"out:{i}", lambda: layer.forward(case.Z.copy(), eval=True))
        for name in ("running_M", "running_V", "BW", "Bb"):
            probe.attribute(f"{name}:{i}", layer, name)


def _backward_params(probe: Probe) -> None:
    cls = probe.learner(NAME)
    if cls is None:
        return
    layer = probe.attempt("init", cls, PARAMS_C)
    if layer is FAILED:
        return
    for s, step in enumerate(cases_backward_params(probe.rng)):
        if not _give(probe, f"forward:{s}", layer, step.params):
            return
        with np.errstate(all="ignore"):
            if probe.attempt(f"forward:{s}", lambda: layer.forward(step.Z.copy())) is FAILED:
                return
            if probe.attempt(f"backward:{s}", lambda: layer.backward(step.dLdBZ.copy())) is FAILED:
                return
        probe.attribute(f"dLdBW:{s}", layer, "dLdBW")
        probe.attribute(f"dLdBb:{s}", layer, "dLdBb")


def _backward_input(probe: Probe, steps: list[Step], parameter_gradients: bool) -> None:
    cls = probe.learner(NAME)
    if cls is None:
        return
    for i, step in enumerate(steps):
        layer = _layer(probe, str(i), cls, step.Z.shape[1], step.params)
        if layer is FAILED:
            return
        with np.errstate(all="ignore"):
            if probe.call(f"out:{i}", lambda: layer.forward(step.Z.copy())) is FAILED:
                return
            probe.call(f"dLdZ:{i}", lambda: layer.backward(step.dLdBZ.copy()))
        if parameter_gradients:
            probe.attribute(f"dLdBW:{i}", layer, "dLdBW")
            probe.attribute(f"dLdBb:{i}", layer, "dLdBb")


def _vectorised(probe: Probe) -> None:
    cls = probe.learner(NAME)
    if cls is None:
        return
    for k, ((N, C, _), (Z, dLdBZ)) in enumerate(zip(LARGE, cases_vectorised(probe.rng))):
        def run() -> None:
            layer = cls(C)
            layer.forward(Z)
            layer.backward(dLdBZ)
            layer.forward(Z, eval=True)

        with np.errstate(all="ignore"):
            probe.seconds(f"seconds:{k}", run)
        probe.calibrate(f"calibration:{k}", Z)


def check_init(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Build BatchNorm1d of hidden sizes and alphas; record the six arrays and which of them share memory."""
    one_call(namespace, "check_init", seed, _init)


def check_forward_train(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Training forward (plain and eval=False) on hidden batches with hidden BW and Bb; record the outputs."""
    one_call(namespace, "check_forward_train", seed, _forward_train)


def check_running_stats(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Several training forwards on one layer, two alphas; record running_M and running_V after each."""
    one_call(namespace, "check_running_stats", seed, _running_stats)


def check_eval(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Eval forward with hidden running statistics; record the output and the attributes afterwards."""
    one_call(namespace, "check_eval", seed, _eval)


def check_backward_params(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Forward and backward, three steps on one layer; record dLdBW and dLdBb after each."""
    one_call(namespace, "check_backward_params", seed, _backward_params)


def check_backward_input(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Forward and backward on hidden batches; record the dLdZ backward returns."""
    one_call(namespace, "check_backward_input", seed,
             lambda probe: _backward_input(probe, cases_backward_input(probe.rng), parameter_gradients=False))


def check_batch_of_one(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Forward and backward on batches of one sample; record the output, dLdZ, dLdBW and dLdBb."""
    one_call(namespace, "check_batch_of_one", seed,
             lambda probe: _backward_input(probe, cases_batch_of_one(probe.rng), parameter_gradients=True))


def check_vectorised(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Time forward, backward and eval forward on a tall and a wide batch, with the calibration on each."""
    one_call(namespace, "check_vectorised", seed, _vectorised)
