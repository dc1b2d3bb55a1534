"""Hidden tests of ``02_numpy_library/2_mlp``: MLP0, MLP1, MLP4 (course spec, section 3).

Grading isolation: the learner's model class is instantiated while the names
``Linear`` and ``ReLU`` in the notebook namespace are the instructors'
reference layers (:func:`course_tools.hidden.common.swapped`), so a bug in the
learner's own layers never costs points here. Each behaviour is graded on
its own:

- ``structure``: the ordered ``self.layers`` the spec fixes, each model with its own layer objects;
- ``forward``: the output equals PyTorch run through the model's OWN layer
  list, so a wrong structure whose shapes still chain costs only the
  structure points;
- ``backward``: the layers are put into a correct forward state first (after
  calling the learner's forward, whose errors are ignored here), then the
  returned ``dLdA0`` and every Linear layer's ``dLdW`` and ``dLdb`` are
  compared with PyTorch autograd.
"""

from __future__ import annotations

from typing import Any, MutableMapping

import numpy as np

from course_tools.hidden.verdicts import reference
from course_tools.hidden.common import NO_TORCH, assert_close, forbid, learner_class, rng, swapped, torch64

Namespace = MutableMapping[str, Any]

#: (in_features, out_features) of each Linear layer; every Linear is followed by a ReLU.
SIZES: dict[str, list[tuple[int, int]]] = {
    "MLP0": [(2, 3)],
    "MLP1": [(2, 3), (3, 2)],
    "MLP4": [(2, 4), (4, 8), (8, 8), (8, 4), (4, 2)],
}


def _build(namespace: Namespace, name: str) -> Any:
    cls = learner_class(namespace, name)
    forbid(cls, NO_TORCH)
    with swapped(namespace, Linear=reference.Linear, ReLU=reference.ReLU):
        return cls()


def _layers(model: Any, name: str) -> list[Any]:
    layers = getattr(model, "layers", None)
    if not isinstance(layers, (list, tuple)):
        raise AssertionError(f"{name}() should have self.layers, an ordered list of layers; "
                             f"got {type(layers).__name__}")
    if not layers:
        raise AssertionError(f"{name}().layers is empty")
    for i, layer in enumerate(layers):
        if not isinstance(layer, (reference.Linear, reference.ReLU)):
            raise AssertionError(f"{name}().layers[{i}] is a {type(layer).__name__}: build every layer by calling "
                                 "Linear(...) or ReLU() inside __init__")
    return list(layers)


def _describe(layer: Any) -> str:
    if isinstance(layer, reference.Linear):
        return f"Linear({layer.W.shape[1]}, {layer.W.shape[0]})"
    return "ReLU()"


def structure(namespace: Namespace, name: str) -> None:
    """self.layers is the ordered list the spec fixes; two models do not share layer objects."""
    model = _build(namespace, name)
    layers = _layers(model, name)
    expected = [text for cin, cout in SIZES[name] for text in (f"Linear({cin}, {cout})", "ReLU()")]
    got = [_describe(layer) for layer in layers]
    if got != expected:
        raise AssertionError(f"{name}().layers should be {expected}, got {got}")
    if len({id(layer) for layer in layers}) != len(layers):
        raise AssertionError(f"{name}().layers holds the same layer object twice: build a new ReLU() for each place")
    other_model = _build(namespace, name)
    other = _layers(other_model, name)
    if other_model.layers is model.layers or any(a is b for a, b in zip(layers, other)):
        raise AssertionError(f"two {name} models share layer objects: build the layers inside __init__ "
                             "(not as a class attribute), so every model gets its own")


def _randomise(layers: list[Any], gen: np.random.Generator) -> None:
    for layer in layers:
        if isinstance(layer, reference.Linear):
            layer.W = gen.standard_normal(layer.W.shape)
            layer.b = gen.standard_normal(layer.b.shape) * 0.5 + 0.2


def _torch_chain(layers: list[Any], A0: np.ndarray, dLdA: np.ndarray | None = None) -> dict[str, Any]:
    """Output (and gradients) of the model's own layer list, computed by PyTorch."""
    import torch
    import torch.nn.functional as F

    a0 = torch64(A0, requires_grad=True)
    params = []
    a = a0
    for layer in layers:
        if isinstance(layer, reference.Linear):
            w, b = torch64(layer.W, True), torch64(layer.b.ravel(), True)
            params.append((w, b))
            a = F.linear(a, w, b)
        else:
            a = torch.relu(a)
    result: dict[str, Any] = {"out": a.detach().numpy()}
    if dLdA is not None:
        a.backward(torch64(dLdA))
        result["dLdA0"] = a0.grad.numpy()
        result["grads"] = [(w.grad.numpy(), b.grad.numpy().reshape(-1, 1)) for w, b in params]
    return result


def _width(layers: list[Any]) -> int:
    first = layers[0]
    return first.W.shape[1] if isinstance(first, reference.Linear) else 2


FORWARD_HINT = ("hint: forward must call every layer of self.layers in order, activations included, "
                "passing each layer's output to the next, and return the last output")
BACKWARD_HINT = ("hint: backward must call backward on every layer of self.layers in reverse order, activations "
                 "included, passing each returned gradient to the layer before, and return the last one (dLdA0)")


def _call(what: str, method: Any, argument: np.ndarray, hint: str) -> Any:
    """``method(argument)``; an error inside the model becomes a failure that names the call and a hint."""
    try:
        return method(argument)
    except AssertionError:
        raise
    except Exception as exc:  # noqa: BLE001 (reported to the learner with a hint)
        raise AssertionError(f"{what} raised {type(exc).__name__}: {exc}\n  {hint}") from None


def _close(what: str, actual: Any, expected: np.ndarray, hint: str) -> None:
    try:
        assert_close(what, actual, expected)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n  {hint}") from None


def forward(namespace: Namespace, name: str) -> None:
    """forward(A0) feeds each layer's output to the next: equals PyTorch through the model's layers; N = 1 too."""
    model = _build(namespace, name)
    layers = _layers(model, name)
    gen = rng({"MLP0": 401, "MLP1": 411, "MLP4": 441}[name])
    _randomise(layers, gen)
    for N in (9, 1):
        A0 = gen.standard_normal((N, _width(layers)))
        expected = _torch_chain(layers, A0)["out"]
        what = f"{name}.forward(A0) with A0 of shape {A0.shape}"
        _close(what, _call(what, model.forward, A0.copy(), FORWARD_HINT), expected, FORWARD_HINT)


def backward(namespace: Namespace, name: str) -> None:
    """backward(dLdA) walks the layers in reverse: returned dLdA0 and every dLdW, dLdb against PyTorch."""
    model = _build(namespace, name)
    layers = _layers(model, name)
    gen = rng({"MLP0": 402, "MLP1": 412, "MLP4": 442}[name])
    _randomise(layers, gen)
    for N in (7, 1):
        A0 = gen.standard_normal((N, _width(layers)))
        try:  # let the learner's forward keep whatever it needs; its errors are graded elsewhere
            model.forward(A0.copy())
        except Exception:  # noqa: BLE001 (any failure of forward belongs to the forward test)
            pass
        A = A0.copy()
        for layer in layers:  # the correct forward state of every layer
            A = layer.forward(A)
        dLdA = gen.standard_normal(A.shape)
        expected = _torch_chain(layers, A0, dLdA)
        what = f"{name}.backward(dLdA) after a forward pass with A0 of shape {A0.shape}"
        returned = _call(what, model.backward, dLdA.copy(), BACKWARD_HINT)
        if not isinstance(returned, np.ndarray):
            raise AssertionError(f"{what} returned {type(returned).__name__}, expected the numpy array dLdA0 "
                                 f"of shape {A0.shape}\n  {BACKWARD_HINT}")
        _close(f"{what}: the returned dLdA0", returned, expected["dLdA0"], BACKWARD_HINT)
        linear_positions = [i for i, layer in enumerate(layers) if isinstance(layer, reference.Linear)]
        for i, (dW, db) in zip(linear_positions, expected["grads"]):
            layer = layers[i]
            if not hasattr(layer, "dLdW"):
                raise AssertionError(f"{what}: layers[{i}].backward was never called\n  {BACKWARD_HINT}")
            _close(f"{what}: layers[{i}].dLdW", layer.dLdW, dW, BACKWARD_HINT)
            _close(f"{what}: layers[{i}].dLdb", layer.dLdb, db, BACKWARD_HINT)
            del layer.dLdW, layer.dLdb  # the next batch must set them again
