"""Hidden tests of ``02_numpy_library/4_sgd.ipynb``: SGD with and without momentum (course spec, section 5).

One public function per graded cell; each takes the notebook namespace
(``globals()``). The learner's ``SGD`` steps models built from the grader's
reference layers (``course_tools.hidden.verdicts.reference``), never the learner's own
``Linear``: a bug in ``Linear`` costs points in the layers notebook only.
Expected parameters come from ``torch.optim.SGD(lr, momentum, dampening=0,
nesterov=False)`` in float64, fed the same gradients, compared after every step.

Cells and behaviours:

- :func:`sgd_init`: ``l``, ``L``, ``lr``, ``mu``, ``v_W``, ``v_b`` (activations
  skipped, zero velocities shaped like each ``W`` and ``b``), defaults;
- :func:`sgd_plain`: several steps without momentum;
- :func:`sgd_momentum`: several steps with momentum.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Mapping

import numpy as np

from course_tools.hidden.verdicts import reference
from course_tools.hidden.common import NO_TORCH, assert_close, forbid, learner_class, rng, torch64

RTOL = 1e-10
ATOL = 1e-12
STEPS = 5


def _learner(namespace: Mapping[str, Any]) -> type:
    cls = learner_class(namespace, "SGD")
    forbid(cls, NO_TORCH)
    return cls


def _randomise(model: Any, gen: np.random.Generator) -> Any:
    """Give every layer with ``W`` and ``b`` random parameters (reference layers start at zero)."""
    for layer in model.layers:
        if hasattr(layer, "W"):
            layer.W = gen.standard_normal(layer.W.shape)
            layer.b = gen.standard_normal(layer.b.shape)
    return model


def models(gen: np.random.Generator) -> list[Any]:
    """Reference models: MLP4, and a stack mixing activations with two Linear layers of equal shape."""
    stack = SimpleNamespace(layers=[
        reference.Linear(4, 5), reference.ReLU(), reference.Linear(5, 5), reference.Sigmoid(),
        reference.Linear(5, 5), reference.Tanh(), reference.Linear(5, 2), reference.Softmax(),
    ])
    return [_randomise(reference.MLP4(), gen), _randomise(stack, gen)]


def _with_params(model: Any) -> list[Any]:
    return [layer for layer in model.layers if hasattr(layer, "W") and hasattr(layer, "b")]


def _attribute(opt: Any, name: str) -> Any:
    if not hasattr(opt, name):
        raise AssertionError(f"SGD.__init__ must set self.{name} (the tests read it)")
    return getattr(opt, name)


def _velocities(opt: Any, name: str, params: list[np.ndarray]) -> None:
    v = _attribute(opt, name)
    try:
        n = len(v)
    except TypeError:
        raise AssertionError(f"SGD.{name} should be a list with one array per layer that has W and b") from None
    if n != len(params):
        raise AssertionError(f"SGD.{name} holds {n} arrays, expected {len(params)} (one per layer with W and b)")
    for i, p in enumerate(params):
        item = v[i]
        if not isinstance(item, np.ndarray):
            raise AssertionError(f"SGD.{name}[{i}] should be a numpy array, got {item.__class__.__name__}")
        if item.shape != p.shape:
            raise AssertionError(f"SGD.{name}[{i}] has shape {item.shape}, expected {p.shape} (the shape of the "
                                 "parameter it belongs to: np.zeros_like helps)")
        if item.dtype != np.float64:
            raise AssertionError(f"SGD.{name}[{i}] has dtype {item.dtype}, expected float64")
        if item is p or not np.all(item == 0):
            raise AssertionError(f"SGD.{name}[{i}] should start as an array of zeros of its own, "
                                 "not the parameter itself or a copy of it")


def sgd_init(namespace: Mapping[str, Any]) -> None:
    """SGD.__init__: l, L, lr, mu, zero velocities v_W and v_b; activations skipped; defaults lr=0.1, momentum=0."""
    SGD = _learner(namespace)
    gen = rng(401)
    for model in models(gen):
        layers = _with_params(model)
        before = [(layer.W.copy(), layer.b.copy()) for layer in layers]
        opt = SGD(model, lr=0.05, momentum=0.7)
        l_ = _attribute(opt, "l")
        try:
            got = list(l_)
        except TypeError:
            raise AssertionError("SGD.l should be a list of layers") from None
        if len(got) != len(layers) or any(a is not b for a, b in zip(got, layers)):
            kinds = [type(x).__name__ for x in got]
            raise AssertionError(
                f"SGD.l should hold the {len(layers)} layers of model.layers that have W and b, in order, and "
                f"skip the activations; for a model with layers {[type(x).__name__ for x in model.layers]} "
                f"it holds {kinds}")
        if _attribute(opt, "L") != len(layers):
            raise AssertionError(f"SGD.L is {opt.L!r}, expected {len(layers)} (the number of layers in SGD.l)")
        if _attribute(opt, "lr") != 0.05:
            raise AssertionError(f"SGD(model, lr=0.05, momentum=0.7) stored self.lr = {opt.lr!r}")
        if _attribute(opt, "mu") != 0.7:
            raise AssertionError(f"SGD(model, lr=0.05, momentum=0.7) stored self.mu = {opt.mu!r}")
        _velocities(opt, "v_W", [layer.W for layer in layers])
        _velocities(opt, "v_b", [layer.b for layer in layers])
        for layer, (W, b) in zip(layers, before):
            if not (np.array_equal(layer.W, W) and np.array_equal(layer.b, b)):
                raise AssertionError("SGD.__init__ changed the model's parameters; only step() may change them")
    opt = SGD(reference.MLP1())
    if _attribute(opt, "lr") != 0.1 or _attribute(opt, "mu") != 0:
        raise AssertionError(f"SGD(model) should default to lr=0.1 and momentum=0, got lr={opt.lr!r}, mu={opt.mu!r}")
    opt = SGD(SimpleNamespace(layers=[reference.ReLU(), reference.Sigmoid()]), lr=0.3)
    if len(_attribute(opt, "l")) != 0 or _attribute(opt, "L") != 0:
        raise AssertionError("SGD on a model made of activations only should have l = [] and L = 0")


def _trajectories(SGD: type, cases: list[tuple[float, float | None]], seed: int) -> None:
    """Step the learner's SGD and torch.optim.SGD side by side with the same random gradients."""
    import torch

    gen = rng(seed)
    for lr, mu in cases:
        for model in models(gen):
            layers = _with_params(model)
            opt = SGD(model, lr=lr) if mu is None else SGD(model, lr=lr, momentum=mu)
            params = [(torch64(layer.W, True), torch64(layer.b, True)) for layer in layers]
            expected_opt = torch.optim.SGD([p for pair in params for p in pair], lr=lr, momentum=mu or 0.0,
                                           dampening=0, nesterov=False)
            setting = f"lr={lr}" + ("" if mu is None else f", momentum={mu}")
            for step in range(1, STEPS + 1):
                for layer, (W, b) in zip(layers, params):
                    dLdW = gen.standard_normal(layer.W.shape) * gen.uniform(0.1, 3)
                    dLdb = gen.standard_normal(layer.b.shape) * gen.uniform(0.1, 3)
                    layer.dLdW, layer.dLdb = dLdW.copy(), dLdb.copy()
                    W.grad, b.grad = torch64(dLdW), torch64(dLdb)
                opt.step()
                expected_opt.step()
                for k, (layer, (W, b)) in enumerate(zip(layers, params)):
                    where = f"SGD({setting}) after step {step}: layer {k} of SGD.l"
                    assert_close(f"{where}, W", layer.W, W.detach().numpy(), rtol=RTOL, atol=ATOL)
                    assert_close(f"{where}, b", layer.b, b.detach().numpy(), rtol=RTOL, atol=ATOL)


def sgd_plain(namespace: Mapping[str, Any]) -> None:
    """SGD.step without momentum: torch.optim.SGD's parameters after each of several steps."""
    _trajectories(_learner(namespace), [(0.1, 0.0), (0.37, None)], seed=411)


def sgd_momentum(namespace: Mapping[str, Any]) -> None:
    """SGD.step with momentum: torch.optim.SGD(momentum=mu, dampening=0, nesterov=False) over several steps."""
    _trajectories(_learner(namespace), [(0.05, 0.9), (0.2, 0.5)], seed=421)
