"""Verdicts of ``02_numpy_library/4_sgd``: SGD with and without momentum (course spec, section 5).

- ``sgd_init``: ``SGD(model, lr, momentum)`` stores ``l`` (the layers of ``model.layers`` with
  ``W`` and ``b``, in order, the objects themselves), ``L``, ``lr``, ``mu`` and one zero velocity
  per parameter (``v_W``, ``v_b``, float64, shaped like it), leaves the parameters alone, defaults
  to ``lr=0.1, momentum=0``, and keeps nothing of a model made of activations only;
- ``sgd_plain``, ``sgd_momentum``: after every one of several steps, each ``W`` and ``b`` is what
  ``torch.optim.SGD(lr, momentum, dampening=0, nesterov=False)`` gives in float64 on the same
  starting parameters and gradients.

Only the parameters are compared after a step, never the velocities: a velocity that carries
the learning rate (``v := mu v - lr g``, ``W := W + v``), velocities updated in place, or a
branch on ``mu == 0`` all give the same parameters and all score. The recorded velocities only
sharpen the hint of a wrong momentum step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from course_tools.hidden.probes import sgd as probes
from course_tools.hidden.probes.kit import rng
from course_tools.hidden.verdicts.kit import Evidence, Opaque, Wrong, assert_close, torch64, written_here

RTOL = 1e-10
ATOL = 1e-12
DEFAULT_LR = 0.1
DEFAULT_MOMENTUM = 0

PLAIN_HINT = ("hint: W := W - lr * dLdW and b := b - lr * dLdb, written onto the layer object (layer.W -= ...), "
              "with the gradients the layer holds at that step")
MOMENTUM_HINT = ("hint: v_W := mu * v_W + dLdW, then W := W - lr * v_W, and the same for b with its own velocity "
                 "v_b (torch.optim.SGD with dampening=0 and nesterov=False)")
KEEP_HINT = ("after this step {names} held only zeros: keep each velocity in self.v_W[i] and self.v_b[i] "
             "from one step to the next")


def _type_name(value: Any) -> str:
    return value.type_name if isinstance(value, Opaque) else type(value).__name__


def describe(architecture: int) -> str:
    """The model's layers as the notebook writes them: ``[Linear(2, 4), ReLU, ...]``."""
    names = [f"Linear({layer[1]}, {layer[0]})" if isinstance(layer, tuple) else layer
             for layer in probes.ARCHITECTURES[architecture]]
    return "[" + ", ".join(names) + "]"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def raised(evidence: Evidence, key: str, what: str) -> None:
    error = evidence.raised(key)
    if error is not None:
        raise Wrong(f"{what} raised {error}")


# ---------------------------------------------------------------- sgd_init

def layers_kept(evidence: Evidence, key: str, architecture: tuple[Any, ...], call: str, owner: str = "SGD") -> None:
    """<owner>.l holds the places of the layers with W and b, in order; <owner>.L counts them."""
    wanted = [i for i, layer in enumerate(architecture) if isinstance(layer, tuple)]
    stored = evidence.attribute(f"l:{key}", f"{owner}.l", "set self.l in __init__ (the tests read it)")
    if not isinstance(stored, list):
        raise Wrong(f"{owner}.l should be a list of layers, got {_type_name(stored)}")
    if stored != wanted:
        names = [layer if isinstance(layer, str) else "Linear" for layer in architecture]
        held = [names[entry] if isinstance(entry, int) and 0 <= entry < len(names) else str(entry) for entry in stored]
        raise Wrong(f"{owner}.l should hold the {len(wanted)} layers of model.layers that have W and b, in order (the "
                    f"layer objects themselves), and skip the activations; after {call} on a model with layers "
                    f"{names} it holds {held}")
    count = evidence.attribute(f"L:{key}", f"{owner}.L", "set self.L in __init__ (the tests read it)")
    if not _is_number(count) or count != len(wanted):
        raise Wrong(f"{owner}.L is {count!r}, expected {len(wanted)} (the number of layers in {owner}.l)")


def zero_arrays(evidence: Evidence, key: str, name: str, parameters: tuple[np.ndarray, ...],
                owner: str = "SGD") -> None:
    """<owner>.<name> is a list of float64 arrays of zeros, one per parameter, shaped like it."""
    stored = evidence.attribute(f"{name}:{key}", f"{owner}.{name}", f"set self.{name} in __init__ (the tests read it)")
    if not isinstance(stored, (list, tuple)):
        raise Wrong(f"{owner}.{name} should be a list with one array per layer that has W and b, "
                    f"got {_type_name(stored)}")
    if len(stored) != len(parameters):
        raise Wrong(f"{owner}.{name} holds {len(stored)} arrays, expected {len(parameters)} (one per layer with W and b)")
    for i, (item, parameter) in enumerate(zip(stored, parameters)):
        if not isinstance(item, np.ndarray):
            raise Wrong(f"{owner}.{name}[{i}] should be a numpy array, got {_type_name(item)}")
        if item.shape != parameter.shape:
            raise Wrong(f"{owner}.{name}[{i}] has shape {item.shape}, expected {parameter.shape} (the shape of the "
                        "parameter it belongs to: np.zeros_like helps)")
        if item.dtype != np.float64:
            raise Wrong(f"{owner}.{name}[{i}] has dtype {item.dtype}, expected float64")
        if not np.all(item == 0):
            raise Wrong(f"{owner}.{name}[{i}] should start as an array of zeros of its own, "
                        "not the parameter itself or a copy of it")


def parameters_untouched(evidence: Evidence, key: str, start: probes.Parameters, owner: str = "SGD") -> None:
    for name, arrays in (("W", start.W), ("b", start.b)):
        stored = evidence.value(f"{name}:{key}", f"the model's {name} after {owner}.__init__")
        if not isinstance(stored, list) or len(stored) != len(arrays) or not all(
                isinstance(s, np.ndarray) and s.shape == a.shape and np.array_equal(s, a)
                for s, a in zip(stored, arrays)):
            raise Wrong(f"{owner}.__init__ changed the model's parameters; only step() may change them")


def check_sgd_init(evidence: Evidence) -> None:
    """SGD.__init__: l, L, lr, mu, zero velocities v_W and v_b; activations skipped; defaults lr=0.1, momentum=0."""
    written_here(evidence, "SGD")
    case = probes.cases_sgd_init(rng(evidence.seed))
    call = f"SGD(model, lr={case.lr}, momentum={case.momentum})"
    for m, start in enumerate(case.models):
        raised(evidence, f"init:{m}", f"{call} on a model with layers {describe(start.architecture)}")
        layers_kept(evidence, str(m), probes.ARCHITECTURES[start.architecture], call)
        lr = evidence.attribute(f"lr:{m}", "SGD.lr", "set self.lr in __init__ (the tests read it)")
        if not _is_number(lr) or lr != case.lr:
            raise Wrong(f"{call} stored self.lr = {lr!r}")
        mu = evidence.attribute(f"mu:{m}", "SGD.mu", "set self.mu in __init__ (the tests read it)")
        if not _is_number(mu) or mu != case.momentum:
            raise Wrong(f"{call} stored self.mu = {mu!r}")
        zero_arrays(evidence, str(m), "v_W", start.W)
        zero_arrays(evidence, str(m), "v_b", start.b)
        parameters_untouched(evidence, str(m), start)
    raised(evidence, "init:default", "SGD(model)")
    lr = evidence.attribute("lr:default", "SGD.lr", "set self.lr in __init__ (the tests read it)")
    mu = evidence.attribute("mu:default", "SGD.mu", "set self.mu in __init__ (the tests read it)")
    if not (_is_number(lr) and lr == DEFAULT_LR and _is_number(mu) and mu == DEFAULT_MOMENTUM):
        raise Wrong(f"SGD(model) should default to lr=0.1 and momentum=0, got lr={lr!r}, mu={mu!r}")
    call = f"SGD(model, lr={probes.ACTIVATIONS_LR})"
    raised(evidence, "init:activations", f"{call} on a model made of activations only")
    stored = evidence.attribute("l:activations", "SGD.l", "set self.l in __init__ (the tests read it)")
    count = evidence.attribute("L:activations", "SGD.L", "set self.L in __init__ (the tests read it)")
    if stored != [] or not _is_number(count) or count != 0:
        raise Wrong("SGD on a model made of activations only should have l = [] and L = 0")


# ---------------------------------------------------------------- sgd_plain, sgd_momentum

def _unkept_velocities(evidence: Evidence, t: int, k: int) -> list[str]:
    """Names of the velocity lists that still hold only zeros after a step (they were not kept)."""
    unkept = []
    for name in ("v_W", "v_b"):
        try:
            stored = evidence.value(f"{name}:{t}:{k}", f"SGD.{name}")
        except Wrong:
            continue
        if isinstance(stored, (list, tuple)) and stored and all(
                isinstance(a, np.ndarray) and np.all(a == 0) for a in stored):
            unkept.append(name)
    return unkept


def _trajectories(evidence: Evidence, runs: list[probes.Trajectory], hint: str, momentum: bool) -> None:
    """Step torch.optim.SGD on the same draws and compare every W and b after every step."""
    import torch

    written_here(evidence, "SGD")
    for t, run in enumerate(runs):
        setting = f"lr={run.lr}" + ("" if run.momentum is None else f", momentum={run.momentum}")
        call = f"SGD(model, {setting}) on a model with layers {describe(run.start.architecture)}"
        raised(evidence, f"init:{t}", call)
        params = [(torch64(W, True), torch64(b, True)) for W, b in zip(run.start.W, run.start.b)]
        expected = torch.optim.SGD([p for pair in params for p in pair], lr=run.lr, momentum=run.momentum or 0.0,
                                   dampening=0, nesterov=False)
        for k in range(probes.STEPS):
            for j, (W, b) in enumerate(params):
                W.grad, b.grad = torch64(run.dLdW[k][j]), torch64(run.dLdb[k][j])
            expected.step()
            raised(evidence, f"step:{t}:{k}", f"step {k + 1} of {call}: step()")
            for name, index in (("W", 0), ("b", 1)):
                stored = evidence.value(f"{name}:{t}:{k}", f"the parameters after step {k + 1}")
                if not isinstance(stored, list) or len(stored) != len(params):
                    raise Wrong("the record of this check is malformed (was grading code replaced?)")
                for j, pair in enumerate(params):
                    what = f"{call}, after step {k + 1}: layer {j} of SGD.l, {name}"
                    try:
                        assert_close(what, stored[j], pair[index].detach().numpy(), rtol=RTOL, atol=ATOL)
                    except Wrong as wrong:
                        unkept = _unkept_velocities(evidence, t, k) if momentum else []
                        extra = "\n  " + KEEP_HINT.format(names=" and ".join(f"SGD.{n}" for n in unkept)) \
                            if unkept else ""
                        raise Wrong(f"{wrong}\n  {hint}{extra}") from None


def check_sgd_plain(evidence: Evidence) -> None:
    """SGD.step without momentum: torch.optim.SGD's parameters after each of several steps."""
    _trajectories(evidence, probes.cases_sgd_plain(rng(evidence.seed)), PLAIN_HINT, momentum=False)


def check_sgd_momentum(evidence: Evidence) -> None:
    """SGD.step with momentum: torch.optim.SGD(momentum=mu, dampening=0, nesterov=False) over several steps."""
    _trajectories(evidence, probes.cases_sgd_momentum(rng(evidence.seed)), MOMENTUM_HINT, momentum=True)
