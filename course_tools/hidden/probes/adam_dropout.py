"""Probes of ``02_numpy_library/6_bonus_adam_dropout``: the learner's Adam and Dropout on hidden inputs.

Adam steps the same plain data holders as the SGD probes (:mod:`course_tools.hidden.probes.sgd`):
a bug in the learner's own layers costs nothing here. Every starting parameter, setting and
gradient is drawn from the cell's seed; the record holds what ``Adam.__init__`` stored and every
parameter after each step. The verdict replays ``torch.optim.Adam`` on the same draws.

Dropout draws its mask from a random generator the learner chooses, so no verdict can know the
mask in advance. The probes record the mask the layer stored next to what it returned, on inputs
large enough for the mask's statistics to be decided: the fraction of kept entries, how often
neighbouring entries agree (a mask shared along a row or column shows there), and how often the
masks of two successive calls agree (a mask drawn once, or from a re-seeded generator, shows there).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Iterator, Mapping

import numpy as np

from course_tools.hidden.probes.kit import FAILED, Probe, one_call
from course_tools.hidden.probes.layers import TIMING_SHAPES
from course_tools.hidden.probes.sgd import (ACTIVATIONS_ONLY, ARCHITECTURES, Parameters, holder_class,
                                            draw_gradients, draw_parameters, model_of, record_layers,
                                            record_steps)

#: The attributes Adam.__init__ must set (course spec, section 9), besides l and L.
MOMENTS = ("m_W", "v_W", "m_b", "v_b")
#: Shape of the inputs whose masks are judged by their statistics (10,000 entries: the kept fraction
#: is then known to within 0.5 percentage points, and a record stays small).
LARGE = (100, 100)


@dataclass(frozen=True)
class AdamRun:
    """One run of :data:`~course_tools.hidden.probes.sgd.STEPS` steps of ``Adam(model, **settings)``.

    ``settings`` empty means the defaults; ``positional`` passes lr, betas and eps by position.
    """

    settings: dict[str, Any]
    positional: bool
    start: Parameters
    dLdW: tuple[tuple[np.ndarray, ...], ...]
    dLdb: tuple[tuple[np.ndarray, ...], ...]


@dataclass(frozen=True)
class DropoutCase:
    """``Dropout(p)`` (``p`` None: ``Dropout()``) run forward on ``A`` (and backward on ``G``)."""

    p: float | None
    A: np.ndarray
    G: np.ndarray


def _settings(rng: np.random.Generator) -> dict[str, Any]:
    """A learning rate, betas and an eps, none of them the default (eps large enough to matter)."""
    return {"lr": round(float(rng.uniform(0.01, 0.1)), 4),
            "betas": (round(float(rng.uniform(0.5, 0.85)), 3), round(float(rng.uniform(0.9, 0.99)), 3)),
            "eps": float(10.0 ** rng.uniform(-3, -1))}


def cases_adam_init(rng: np.random.Generator) -> tuple[dict[str, Any], tuple[Parameters, ...]]:
    """Settings and a model of each architecture."""
    return _settings(rng), tuple(draw_parameters(rng, a) for a in range(len(ARCHITECTURES)))


def cases_adam_step(rng: np.random.Generator) -> list[AdamRun]:
    """The defaults on one model, then hidden settings by keyword and by position on each architecture."""
    runs = []
    for architecture, settings, positional in ((0, {}, False), (1, _settings(rng), False),
                                               (0, _settings(rng), True)):
        start = draw_parameters(rng, architecture)
        runs.append(AdamRun(settings, positional, start, *draw_gradients(rng, start)))
    return runs


def _inputs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Normal entries pushed away from 0, so that a dropped entry is never confused with a kept zero."""
    A = rng.standard_normal(shape)
    return A + np.where(A >= 0, 0.1, -0.1)


def _drop_rates(rng: np.random.Generator) -> tuple[float, float]:
    """One drop rate well below one half and one well above (keeping p entries instead of 1 - p shows)."""
    return round(float(rng.uniform(0.2, 0.4)), 2), round(float(rng.uniform(0.6, 0.8)), 2)


def cases_dropout_train(rng: np.random.Generator) -> list[DropoutCase]:
    """Two large inputs at hidden rates, one at the default rate, a batch of one sample, and p = 0."""
    low, high = _drop_rates(rng)
    cases = [DropoutCase(p, _inputs(rng, LARGE), np.empty(0)) for p in (low, high, None)]
    cases.append(DropoutCase(low, _inputs(rng, (1, int(rng.integers(5, 9)))), np.empty(0)))
    cases.append(DropoutCase(0.0, _inputs(rng, (int(rng.integers(3, 7)), 5)), np.empty(0)))
    return cases


def cases_dropout_eval(rng: np.random.Generator) -> list[DropoutCase]:
    """Inputs of several shapes at hidden rates (the default rate once)."""
    low, high = _drop_rates(rng)
    return [DropoutCase(p, _inputs(rng, (int(rng.integers(1, 6)), int(rng.integers(2, 9)))), np.empty(0))
            for p in (low, high, None)]


def cases_dropout_backward(rng: np.random.Generator) -> list[DropoutCase]:
    """Forward then backward at hidden rates, on a large input and on a batch of one sample."""
    low, high = _drop_rates(rng)
    cases = []
    for p, shape in ((low, (60, 40)), (high, (1, 9)), (None, (30, 20))):
        A = _inputs(rng, shape)
        cases.append(DropoutCase(p, A, rng.standard_normal(shape)))
    return cases


def timing_inputs(rng: np.random.Generator) -> list[np.ndarray]:
    """Large inputs for the running time of forward (a loop over samples or features shows)."""
    return [rng.standard_normal(shape) for shape in TIMING_SHAPES]


# ---------------------------------------------------------------- Adam

def _arguments(run: AdamRun) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if run.positional:
        return (run.settings["lr"], run.settings["betas"], run.settings["eps"]), {}
    return (), dict(run.settings)


def _adam_init(probe: Probe) -> None:
    settings, models = cases_adam_init(probe.rng)
    Adam = probe.learner("Adam")
    if Adam is None:
        return
    for m, parameters in enumerate(models):
        model, holders = model_of(parameters)
        optimizer = probe.attempt(f"init:{m}", Adam, model, **settings)
        if optimizer is FAILED:
            return
        record_layers(probe, f"l:{m}", optimizer, model.layers)
        for name in ("L", "t") + MOMENTS:
            probe.attribute(f"{name}:{m}", optimizer, name)
        probe.record(f"W:{m}", [getattr(h, "W", None) for h in holders])
        probe.record(f"b:{m}", [getattr(h, "b", None) for h in holders])
    activations = SimpleNamespace(layers=[holder_class(name)() for name in ACTIVATIONS_ONLY])
    optimizer = probe.attempt("init:activations", Adam, activations)
    if optimizer is FAILED:
        return
    record_layers(probe, "l:activations", optimizer, activations.layers)
    probe.attribute("L:activations", optimizer, "L")


def _adam_step(probe: Probe) -> None:
    Adam = probe.learner("Adam")
    if Adam is None:
        return
    for t, run in enumerate(cases_adam_step(probe.rng)):
        model, holders = model_of(run.start)
        args, kwargs = _arguments(run)
        optimizer = probe.attempt(f"init:{t}", Adam, model, *args, **kwargs)
        if optimizer is not FAILED:
            record_steps(probe, t, optimizer, holders, run, ())


def check_adam_init(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Build Adam on hidden models and settings, and on activations only; record what it stored."""
    one_call(namespace, "check_adam_init", seed, _adam_init)


def check_adam_step(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Step Adam (defaults, hidden settings by keyword and by position); record the parameters after each step."""
    one_call(namespace, "check_adam_step", seed, _adam_step)


# ---------------------------------------------------------------- Dropout

def _layers(probe: Probe, cases: list[DropoutCase]) -> Iterator[tuple[int, DropoutCase, Any]]:
    """``(i, case, layer)`` for every case whose ``Dropout(p)`` the learner's class built (a failure is recorded)."""
    Dropout = probe.learner("Dropout")
    if Dropout is None:
        return
    for i, case in enumerate(cases):
        arguments = () if case.p is None else (case.p,)
        layer = probe.attempt(f"init:{i}", Dropout, *arguments)
        if layer is not FAILED:
            yield i, case, layer


def input_digest(A: np.ndarray) -> str:
    """A short fingerprint of an input array (to see whether learner code changed it in place)."""
    return hashlib.sha256(np.ascontiguousarray(A, dtype=np.float64).tobytes()).hexdigest()[:32]


def _dropout_train(probe: Probe) -> None:
    for i, case, layer in _layers(probe, cases_dropout_train(probe.rng)):
        given = case.A.copy()
        probe.call(f"out:{i}", layer.forward, given)
        probe.attribute(f"mask:{i}", layer, "mask")
        probe.record(f"input:{i}", input_digest(given))
        if case.A.size >= 1000:
            probe.attempt(f"again:{i}", layer.forward, case.A.copy(), train=True)
            probe.attribute(f"mask:{i}:again", layer, "mask")
    Dropout = probe.learner("Dropout")
    if Dropout is None:
        return
    for j, A in enumerate(timing_inputs(probe.rng)):
        layer = probe.attempt(f"time:{j}", Dropout, 0.5)
        if layer is not FAILED:
            probe.seconds(f"time:{j}", lambda: layer.forward(A))
        probe.calibrate(f"calibration:{j}", A)


def _dropout_eval(probe: Probe) -> None:
    for i, case, layer in _layers(probe, cases_dropout_eval(probe.rng)):
        given = case.A.copy()
        probe.call(f"out:{i}", layer.forward, given, train=False)
        probe.record(f"input:{i}", input_digest(given))
        # after a training step, evaluation still passes everything through (by position this time)
        probe.attempt(f"train:{i}", layer.forward, case.A.copy())
        probe.call(f"out:{i}:after", layer.forward, case.A.copy(), False)


def _dropout_backward(probe: Probe) -> None:
    for i, case, layer in _layers(probe, cases_dropout_backward(probe.rng)):
        if probe.attempt(f"forward:{i}", layer.forward, case.A.copy()) is not FAILED:
            probe.attribute(f"mask:{i}", layer, "mask")
            probe.call(f"out:{i}", layer.backward, case.G.copy())


def check_dropout_train(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Dropout.forward in training on hidden inputs and rates: record outputs, masks and running times."""
    one_call(namespace, "check_dropout_train", seed, _dropout_train)


def check_dropout_eval(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Dropout.forward with train=False, before and after a training forward: record the outputs."""
    one_call(namespace, "check_dropout_eval", seed, _dropout_eval)


def check_dropout_backward(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Dropout.backward after a training forward: record the stored mask and the returned gradient."""
    one_call(namespace, "check_dropout_backward", seed, _dropout_backward)
