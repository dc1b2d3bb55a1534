"""Probes of ``03_torch_regression``: what the learner's Regressor, evaluate and train do, and what the trained model predicts.

Every input is drawn from the cell's seed in a ``cases_*`` function: the
weights the probe writes into a ``Regressor``, the small ``nn.Sequential``
models (with their initial weights) handed to ``evaluate`` and ``train``, their
data, and the held-out inputs ``x`` the trained ``model`` predicts. No target
of a held-out point enters the kernel: the record holds the predictions only,
and the verdict computes the targets and the error in the grading process
(where it also replays the reference Adam run on the same initial weights and data).

Models run on the CPU in float32: the learner's trained model is copied there,
so its own device and mode are left as they were.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from course_tools.hidden.probes.kit import FAILED, Probe, one_call

#: Widths of the two Regressors whose forward pass is probed.
STRUCTURE_WIDTHS = (5, 17)
#: Points of each forward pass of the structure check.
STRUCTURE_POINTS = 41
#: The notebook's training set: ``make_regression_1d(TRAIN_SIZE, seed=TRAIN_SEED)``.
TRAIN_SIZE, TRAIN_SEED = 128, 0
#: Held-out points the trained model predicts (fresh for every seed).
HELDOUT_SIZE = 2000
#: The inputs range of the notebook's data.
LOW, HIGH = -3.0, 3.0
#: ``train`` is called with these settings.
TRAIN_EPOCHS, TRAIN_LR = 25, 0.02


def _torch() -> Any:
    import torch

    return torch


@dataclass(frozen=True)
class Network:
    """Weights of ``Linear(1, h) -> tanh -> Linear(h, h) -> tanh -> Linear(h, 1)``: ``layers[k] = (W, b)``."""

    hidden: int
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]


def draw_network(rng: np.random.Generator, hidden: int, scale: float = 1.0) -> Network:
    """Weights drawn like PyTorch's default initialisation (uniform within ``scale / sqrt(fan_in)``)."""
    layers = []
    for fan_in, fan_out in ((1, hidden), (hidden, hidden), (hidden, 1)):
        bound = scale / np.sqrt(fan_in)
        W = rng.uniform(-bound, bound, size=(fan_out, fan_in)).astype(np.float32)
        b = rng.uniform(-bound, bound, size=fan_out).astype(np.float32)
        layers.append((W, b))
    return Network(hidden, tuple(layers))


def sequential(network: Network) -> Any:
    """A plain ``nn.Sequential`` holding ``network``'s weights (float32, CPU).

    The layers' own random initialisation draws from a forked generator, so building the
    model leaves the learner's PyTorch random stream where it was.
    """
    torch = _torch()
    nn = torch.nn
    h = network.hidden
    with torch.random.fork_rng(devices=[]):
        model = nn.Sequential(nn.Linear(1, h), nn.Tanh(), nn.Linear(h, h), nn.Tanh(), nn.Linear(h, 1))
    with torch.no_grad():
        for layer, (W, b) in zip((model[0], model[2], model[4]), network.layers):
            layer.weight.copy_(torch.from_numpy(W))
            layer.bias.copy_(torch.from_numpy(b))
    return model


def _tensor(array: np.ndarray) -> Any:
    return _torch().tensor(np.asarray(array, dtype=np.float32))


def _parameters(model: Any) -> list[np.ndarray]:
    return [p.detach().cpu().numpy().copy() for p in model.parameters()]


def _linear_layers(model: Any) -> list[Any]:
    torch = _torch()
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)]


def predictions(model: Any, x: np.ndarray) -> Any:
    """What a CPU float32 copy of ``model``, in eval mode and without gradients, returns for ``x`` (``N x 1``)."""
    torch = _torch()
    clone = copy.deepcopy(model).to("cpu").float().eval()
    with torch.no_grad():
        return clone(_tensor(x))


# ---------------------------------------------------------------- structure


@dataclass(frozen=True)
class StructureCase:
    """Weights written into ``Regressor(hidden=network.hidden)`` and the inputs ``x`` (``N x 1``) of its forward pass."""

    network: Network
    x: np.ndarray


def cases_structure(rng: np.random.Generator) -> list[StructureCase]:
    cases = []
    for hidden in STRUCTURE_WIDTHS:
        network = draw_network(rng, hidden, scale=2.0)
        x = rng.uniform(LOW, HIGH, size=(STRUCTURE_POINTS, 1)).astype(np.float32)
        cases.append(StructureCase(network, x))
    return cases


def check_structure(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Build ``Regressor(hidden=h)``, record its linear layers, write drawn weights into them and record forward."""

    def run(probe: Probe) -> None:
        torch = _torch()
        Regressor = probe.learner("Regressor")
        if not isinstance(Regressor, type):
            return
        for k, case in enumerate(cases_structure(probe.rng)):
            h = case.network.hidden
            with torch.random.fork_rng(devices=[]):
                model = probe.attempt(f"build:{k}", lambda: Regressor(hidden=h))
            if model is FAILED:
                return
            if not isinstance(model, torch.nn.Module):
                probe.record(f"type:{k}", type(model).__name__)
                return
            linears = _linear_layers(model)
            probe.record(f"linears:{k}", [[m.in_features, m.out_features, m.bias is not None] for m in linears])
            probe.record(f"parameters:{k}", sum(p.numel() for p in model.parameters()))
            by_shape = {(m.in_features, m.out_features): m for m in linears}
            slots = [(1, h), (h, h), (h, 1)]
            if len(linears) != 3 or sorted(by_shape) != sorted(slots) or any(m.bias is None for m in linears):
                return
            with torch.no_grad():
                for slot, (W, b) in zip(slots, case.network.layers):
                    by_shape[slot].weight.copy_(torch.from_numpy(W))
                    by_shape[slot].bias.copy_(torch.from_numpy(b))
                probe.call(f"forward:{k}", model, torch.from_numpy(case.x))

    return one_call(namespace, "check_structure", seed, run)


# ---------------------------------------------------------------- evaluate


@dataclass(frozen=True)
class EvaluateCase:
    network: Network
    x: np.ndarray
    y: np.ndarray


def cases_evaluate(rng: np.random.Generator) -> EvaluateCase:
    network = draw_network(rng, 6)
    n = int(rng.integers(250, 350))
    x = rng.uniform(LOW, HIGH, size=(n, 1)).astype(np.float32)
    y = (np.sin(x) + 0.3 * rng.standard_normal((n, 1))).astype(np.float32)
    return EvaluateCase(network, x, y)


def check_evaluate(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Call ``evaluate(model, x, y)`` on a drawn model and data; record the value, the parameters and gradients after."""

    def run(probe: Probe) -> None:
        evaluate = probe.learner("evaluate")
        if not callable(evaluate):
            return
        case = cases_evaluate(probe.rng)
        model = sequential(case.network)
        probe.call("value", evaluate, model, _tensor(case.x), _tensor(case.y))
        probe.record("parameters_after", _parameters(model))
        probe.record("gradients", [p.grad is not None for p in model.parameters()])

    return one_call(namespace, "check_evaluate", seed, run)


# ---------------------------------------------------------------- train


@dataclass(frozen=True)
class TrainCase:
    """``train(sequential(network), x, y, epochs=epochs, lr=lr)``."""

    network: Network
    x: np.ndarray
    y: np.ndarray
    epochs: int
    lr: float


def cases_train(rng: np.random.Generator) -> TrainCase:
    network = draw_network(rng, 8)
    n = int(rng.integers(30, 50))
    x = rng.uniform(LOW, HIGH, size=(n, 1)).astype(np.float32)
    phase = rng.uniform(-1.0, 1.0)
    y = (np.sin(1.5 * x + phase) + 0.15 * rng.standard_normal((n, 1))).astype(np.float32)
    return TrainCase(network, x, y, TRAIN_EPOCHS, TRAIN_LR)


def check_train_function(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Hand ``train`` a drawn model and data; record the losses it returns and the model's parameters after."""

    def run(probe: Probe) -> None:
        torch = _torch()
        train = probe.learner("train")
        if not callable(train):
            return
        case = cases_train(probe.rng)
        model = sequential(case.network)
        with torch.random.fork_rng(devices=[]):
            losses = probe.call("losses", train, model, _tensor(case.x), _tensor(case.y), epochs=case.epochs,
                                lr=case.lr)
        if losses is not FAILED:
            probe.record("parameters_after", _parameters(model))

    return one_call(namespace, "check_train_function", seed, run)


# ---------------------------------------------------------------- the learner's run


def cases_training_run(rng: np.random.Generator) -> np.ndarray:
    """The inputs ``x`` of the notebook's training points (the same for every seed).

    Drawn here as ``make_regression_1d(TRAIN_SIZE, seed=TRAIN_SEED)`` draws them, not through
    the library, which a learner cell could replace; the verdict takes the targets from the
    genuine library in the grading process.
    """
    return np.random.default_rng(TRAIN_SEED).uniform(LOW, HIGH, size=(TRAIN_SIZE, 1))


def _model_facts(probe: Probe, model: Any) -> bool:
    """Record what ``model`` is; True when it is a torch module the probe can run."""
    torch = _torch()
    probe.record("model_type", type(model).__name__)
    probe.record("model_is_module", isinstance(model, torch.nn.Module))
    return isinstance(model, torch.nn.Module)


def check_training_run(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Record ``losses`` and what ``model`` predicts for the notebook's training inputs."""

    def run(probe: Probe) -> None:
        Regressor = probe.learner("Regressor")
        probe.learner("model")
        probe.learner("losses")
        if "model" not in namespace or "losses" not in namespace:
            return
        model, losses = namespace["model"], namespace["losses"]
        probe.record("model_is_regressor", isinstance(Regressor, type) and isinstance(model, Regressor))
        probe.record("losses", list(losses) if isinstance(losses, Sequence) and not isinstance(losses, str)
                     else losses)
        if _model_facts(probe, model):
            probe.call("predictions", predictions, model, cases_training_run(probe.rng))

    return one_call(namespace, "check_training_run", seed, run)


# ---------------------------------------------------------------- held-out points


def cases_heldout(rng: np.random.Generator) -> np.ndarray:
    """Inputs ``x`` (``N x 1``) of the held-out points; their targets are drawn by the verdict, after these."""
    return rng.uniform(LOW, HIGH, size=(HELDOUT_SIZE, 1))


def _heldout(behaviour: str) -> Any:
    def check(namespace: Mapping[str, Any], seed: int | None = None) -> None:
        def run(probe: Probe) -> None:
            probe.learner("model")
            if "model" in namespace and _model_facts(probe, namespace["model"]):
                probe.call("predictions", predictions, namespace["model"], cases_heldout(probe.rng))

        return one_call(namespace, behaviour, seed, run)

    check.__name__ = check.__qualname__ = behaviour
    check.__doc__ = "Record what the trained ``model`` predicts for held-out inputs drawn from the seed."
    return check


check_heldout_loose = _heldout("check_heldout_loose")
check_heldout_target = _heldout("check_heldout_target")
