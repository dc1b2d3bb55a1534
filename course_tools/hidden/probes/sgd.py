"""Probes of ``02_numpy_library/4_sgd``: what the learner's SGD stores and does to a model's parameters.

The models are plain data holders, never layers: a holder named ``Linear``
carries ``W`` and ``b`` (and, before each step, the ``dLdW`` and ``dLdb`` the
probe hands it), and holders named after activations carry nothing, like a
layer without parameters. So a bug in the learner's own ``Linear`` costs
nothing here. Every starting parameter, learning rate, momentum and gradient
is drawn from the cell's seed in a ``cases_*`` function; the record holds
what ``SGD.__init__`` stored and every parameter and velocity after each
step. The verdict replays ``torch.optim.SGD`` on the same draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Mapping, Sequence

import numpy as np

from course_tools.hidden.probes.kit import FAILED, Probe, one_call

#: The two models: each layer is the (out, in) shape of a layer with W and b, or the name of one without.
#: The second has two parameter layers of the same shapes, so one velocity per layer is needed.
ARCHITECTURES: tuple[tuple[Any, ...], ...] = (
    ((4, 2), "ReLU", (8, 4), "ReLU", (8, 8), "ReLU", (4, 8), "ReLU", (2, 4), "ReLU"),
    ((5, 4), "ReLU", (5, 5), "Sigmoid", (5, 5), "Tanh", (2, 5), "Softmax"),
)
#: a model of activations only (SGD has nothing to update)
ACTIVATIONS_ONLY = ("ReLU", "Sigmoid")
#: learning rate given to SGD on the model of activations only
ACTIVATIONS_LR = 0.3
#: steps of every trajectory
STEPS = 5


@dataclass(frozen=True)
class Parameters:
    """Starting ``W`` and ``b`` of every parameter layer of one architecture."""

    architecture: int
    W: tuple[np.ndarray, ...]
    b: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class InitCase:
    """Inputs of ``sgd_init``: the arguments of ``SGD(model, lr=lr, momentum=momentum)`` and the models."""

    lr: float
    momentum: float
    models: tuple[Parameters, ...]
    default_model: Parameters


@dataclass(frozen=True)
class Trajectory:
    """One run of several steps: ``SGD(model, lr=lr)`` (``momentum`` None) or ``SGD(model, lr=lr, momentum=...)``.

    ``dLdW[k][j]`` and ``dLdb[k][j]`` are the gradients parameter layer ``j`` holds before step ``k + 1``.
    """

    lr: float
    momentum: float | None
    start: Parameters
    dLdW: tuple[tuple[np.ndarray, ...], ...]
    dLdb: tuple[tuple[np.ndarray, ...], ...]


def shapes(architecture: int) -> list[tuple[int, int]]:
    """(out, in) of the parameter layers of an architecture, in order."""
    return [layer for layer in ARCHITECTURES[architecture] if isinstance(layer, tuple)]


def draw_parameters(rng: np.random.Generator, architecture: int) -> Parameters:
    """Starting ``W`` and ``b`` for every parameter layer of an architecture, standard normal."""
    sizes = shapes(architecture)
    W = tuple(rng.standard_normal(size) for size in sizes)
    b = tuple(rng.standard_normal((size[0], 1)) for size in sizes)
    return Parameters(architecture, W, b)


def cases_sgd_init(rng: np.random.Generator) -> InitCase:
    """A learning rate and momentum (neither the default), a model of each architecture, and one more."""
    lr = round(float(rng.uniform(0.15, 0.6)), 3)
    momentum = round(float(rng.uniform(0.5, 0.95)), 2)
    models = tuple(draw_parameters(rng, a) for a in range(len(ARCHITECTURES)))
    return InitCase(lr, momentum, models, draw_parameters(rng, 0))


def draw_gradients(rng: np.random.Generator, start: Parameters) -> tuple[tuple[tuple[np.ndarray, ...], ...], ...]:
    """``(dLdW, dLdb)``: for each of :data:`STEPS` steps, one gradient per parameter, at scales 0.1 to 3."""
    dLdW, dLdb = [], []
    for _ in range(STEPS):
        dLdW.append(tuple(rng.standard_normal(W.shape) * rng.uniform(0.1, 3) for W in start.W))
        dLdb.append(tuple(rng.standard_normal(b.shape) * rng.uniform(0.1, 3) for b in start.b))
    return tuple(dLdW), tuple(dLdb)


def _trajectory(rng: np.random.Generator, architecture: int, lr: float, momentum: float | None) -> Trajectory:
    start = draw_parameters(rng, architecture)
    return Trajectory(lr, momentum, start, *draw_gradients(rng, start))


def _trajectories(rng: np.random.Generator, momenta: Sequence[float | None]) -> list[Trajectory]:
    runs = []
    for momentum in momenta:
        lr = round(float(rng.uniform(0.05, 0.5)), 3)
        runs += [_trajectory(rng, a, lr, momentum) for a in range(len(ARCHITECTURES))]
    return runs


def cases_sgd_plain(rng: np.random.Generator) -> list[Trajectory]:
    """Runs without momentum: once with ``momentum=0.0`` given, once with the default."""
    return _trajectories(rng, (0.0, None))


def cases_sgd_momentum(rng: np.random.Generator) -> list[Trajectory]:
    """Runs with two momenta, one high and one moderate."""
    return _trajectories(rng, (round(float(rng.uniform(0.8, 0.95)), 2), round(float(rng.uniform(0.3, 0.7)), 2)))


# ---------------------------------------------------------------- the data holders

class _Holder:
    """A layer's parameters (and the gradients handed to it), nothing else."""


def holder_class(name: str) -> type:
    return type(name, (_Holder,), {"__doc__": f"Data holder in the place of a {name} layer."})


def model_of(parameters: Parameters) -> tuple[Any, list[Any]]:
    """A model (``.layers``) of fresh holders with copies of ``parameters``, and its parameter holders in order."""
    layers, holders = [], []
    for layer in ARCHITECTURES[parameters.architecture]:
        if isinstance(layer, tuple):
            holder = holder_class("Linear")()
            holder.W = parameters.W[len(holders)].copy()
            holder.b = parameters.b[len(holders)].copy()
            holders.append(holder)
            layers.append(holder)
        else:
            layers.append(holder_class(layer)())
    return SimpleNamespace(layers=layers), holders


def record_layers(probe: Probe, key: str, optimizer: Any, layers: list[Any]) -> None:
    """Record ``optimizer.l`` as the places in ``layers`` of its entries (type names for anything else)."""
    try:
        stored = getattr(optimizer, "l")
    except Exception:  # noqa: BLE001 (missing, or a property that raises)
        probe.items[key] = {"missing": True}
        return
    try:
        entries = list(stored)
    except Exception:  # noqa: BLE001 (not a sequence)
        probe.record(key, type(stored).__name__)
        return
    places = {id(layer): i for i, layer in enumerate(layers)}
    probe.record(key, [places.get(id(entry), type(entry).__name__) for entry in entries])


def _stored(probe: Probe, key: str, optimizer: Any) -> None:
    """Record the attributes the spec names: l (as places), L, lr, mu, v_W, v_b."""
    for name in ("L", "lr", "mu", "v_W", "v_b"):
        probe.attribute(f"{name}:{key}", optimizer, name)


def _init(probe: Probe) -> None:
    case = cases_sgd_init(probe.rng)
    SGD = probe.learner("SGD")
    if SGD is None:
        return
    for m, parameters in enumerate(case.models):
        model, holders = model_of(parameters)
        optimizer = probe.attempt(f"init:{m}", SGD, model, lr=case.lr, momentum=case.momentum)
        if optimizer is FAILED:
            return
        record_layers(probe, f"l:{m}", optimizer, model.layers)
        _stored(probe, str(m), optimizer)
        probe.record(f"W:{m}", [getattr(h, "W", None) for h in holders])
        probe.record(f"b:{m}", [getattr(h, "b", None) for h in holders])
    model, _ = model_of(case.default_model)
    optimizer = probe.attempt("init:default", SGD, model)
    if optimizer is FAILED:
        return
    probe.attribute("lr:default", optimizer, "lr")
    probe.attribute("mu:default", optimizer, "mu")
    activations = SimpleNamespace(layers=[holder_class(name)() for name in ACTIVATIONS_ONLY])
    optimizer = probe.attempt("init:activations", SGD, activations, lr=ACTIVATIONS_LR)
    if optimizer is FAILED:
        return
    record_layers(probe, "l:activations", optimizer, activations.layers)
    probe.attribute("L:activations", optimizer, "L")


def _steps(probe: Probe, runs: list[Trajectory]) -> None:
    SGD = probe.learner("SGD")
    if SGD is None:
        return
    for t, run in enumerate(runs):
        model, holders = model_of(run.start)
        arguments = {"lr": run.lr} if run.momentum is None else {"lr": run.lr, "momentum": run.momentum}
        optimizer = probe.attempt(f"init:{t}", SGD, model, **arguments)
        if optimizer is not FAILED:
            record_steps(probe, t, optimizer, holders, run, ("v_W", "v_b"))


def record_steps(probe: Probe, t: int, optimizer: Any, holders: list[Any], run: Any, tracked: Sequence[str]) -> None:
    """Step ``optimizer`` :data:`STEPS` times on the gradients of ``run`` (``run.dLdW``, ``run.dLdb``).

    After each step, record every parameter layer's ``W`` and ``b`` and the optimizer's ``tracked`` attributes.
    """
    for k in range(STEPS):
        for j, holder in enumerate(holders):
            holder.dLdW, holder.dLdb = run.dLdW[k][j].copy(), run.dLdb[k][j].copy()
        if probe.attempt(f"step:{t}:{k}", lambda: optimizer.step()) is FAILED:
            return
        probe.record(f"W:{t}:{k}", [getattr(h, "W", None) for h in holders])
        probe.record(f"b:{t}:{k}", [getattr(h, "b", None) for h in holders])
        for name in tracked:
            probe.attribute(f"{name}:{t}:{k}", optimizer, name)


def check_sgd_init(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Build SGD on hidden models and arguments, with defaults, and on activations only; record what it stored."""
    one_call(namespace, "check_sgd_init", seed, _init)


def check_sgd_plain(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Step SGD without momentum on hidden models and gradients; record parameters and velocities after each step."""
    one_call(namespace, "check_sgd_plain", seed, lambda probe: _steps(probe, cases_sgd_plain(probe.rng)))


def check_sgd_momentum(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Step SGD with momentum on hidden models and gradients; record parameters and velocities after each step."""
    one_call(namespace, "check_sgd_momentum", seed, lambda probe: _steps(probe, cases_sgd_momentum(probe.rng)))

