"""Stand-in layers that record how a model builds and calls them.

The checks of the MLP notebook test a model's *wiring* (which layers it
builds, whether ``forward`` feeds each layer's output to the next, whether
``backward`` walks the layers in reverse and returns the first layer's
gradient) with these recorders instead of your own ``Linear`` and ``ReLU``.
So a bug in a layer never shows up as a bug in the model, and the other way
round.

A recorder's ``forward`` returns an array of the right shape filled with a
marker (layer ``i`` returns the value ``i + 1``), and its ``backward`` returns
the marker ``-(i + 1)``; the checks follow the markers through the model.

Example::

    with recording_layers(globals(), "Linear", "ReLU"):
        model = MLP0()          # MLP0 builds recorders instead of real layers
    check_layers(model, [("Linear", 2, 3), ("ReLU",)])
    check_forward_wiring(model)
    check_backward_wiring(model)
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from typing import Any, Iterator, MutableMapping, Sequence

import numpy as np

from mytorch_lib.checks import CheckFailure

__all__ = [
    "Recording",
    "check_backward_wiring",
    "check_forward_wiring",
    "check_layers",
    "recording_layers",
]


@dataclass
class Recording:
    """What the recorders saw: every layer built (in order) and every call, in order.

    A call is ``(method, layer, received array, returned array)``.
    """

    layers: list[Any] = field(default_factory=list)
    calls: list[tuple[str, Any, np.ndarray, np.ndarray]] = field(default_factory=list)


class _Recorder:
    """Base of the generated stand-in classes; ``kind`` is the name it replaces (``"Linear"``, ...)."""

    kind = "Layer"
    recording: Recording

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs
        self.index = len(self.recording.layers)
        self.recording.layers.append(self)
        self.received = self.returned = self.received_grad = self.returned_grad = None

    def describe(self) -> str:
        arguments = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.kind}({', '.join(arguments)})"

    def sizes(self) -> tuple[Any, ...]:
        """The constructor's arguments in order, keywords ``in_features``/``out_features`` included."""
        names = ("in_features", "out_features")
        values = list(self.args)
        for name in names[len(values):]:
            if name in self.kwargs:
                values.append(self.kwargs[name])
        return tuple(values)

    def forward(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        self.received = X
        sizes = self.sizes()
        width = sizes[1] if self.kind == "Linear" and len(sizes) == 2 else X.shape[-1]
        self.returned = np.full((X.shape[0], width), float(self.index + 1))
        self.recording.calls.append(("forward", self, X, self.returned))
        return self.returned

    def backward(self, dLdOut: np.ndarray) -> np.ndarray:
        self.received_grad = np.asarray(dLdOut)
        shape = self.received.shape if self.received is not None else np.shape(dLdOut)
        self.returned_grad = np.full(shape, -float(self.index + 1))
        self.recording.calls.append(("backward", self, self.received_grad, self.returned_grad))
        return self.returned_grad


@contextlib.contextmanager
def recording_layers(namespace: MutableMapping[str, Any], *names: str) -> Iterator[Recording]:
    """Within the block, the names (e.g. ``"Linear", "ReLU"``) in ``namespace`` are recording stand-ins.

    Pass the notebook's ``globals()``: a model class looks its layer classes up
    there when it is instantiated. The real classes are put back afterwards.
    """
    recording = Recording()
    missing = object()
    saved = {name: namespace.get(name, missing) for name in names}
    for name in names:
        namespace[name] = type(name, (_Recorder,), {"kind": name, "recording": recording})
    try:
        yield recording
    finally:
        for name, value in saved.items():
            if value is missing:
                namespace.pop(name, None)
            else:
                namespace[name] = value


def _layers(model: Any) -> list[Any]:
    name = type(model).__name__
    layers = getattr(model, "layers", None)
    if layers is None:
        raise CheckFailure(f"{name} has no attribute layers\n  hint: set self.layers = [...] in __init__")
    if not isinstance(layers, (list, tuple)):
        raise CheckFailure(f"{name}.layers should be a list of layers, got {type(layers).__name__}")
    for i, layer in enumerate(layers):
        if not isinstance(layer, _Recorder):
            raise CheckFailure(
                f"{name}.layers[{i}] is a {type(layer).__name__}, not a layer built from the names Linear or ReLU"
                "\n  hint: build every layer by calling Linear(...) or ReLU() inside __init__")
    return list(layers)


def check_layers(model: Any, expected: Sequence[tuple[Any, ...]]) -> None:
    """Fail unless ``model.layers`` was built as ``expected``, e.g. ``[("Linear", 2, 3), ("ReLU",)]``."""
    name = type(model).__name__
    layers = _layers(model)
    want = [f"{e[0]}({', '.join(map(str, e[1:]))})" for e in expected]
    got = [layer.describe() for layer in layers]
    if len(layers) != len(expected):
        raise CheckFailure(f"{name}.layers holds {len(layers)} layers, expected {len(expected)}: "
                           f"expected {want}, got {got}")
    for i, (layer, exp) in enumerate(zip(layers, expected)):
        if layer.kind != exp[0] or (layer.kind == "Linear" and layer.sizes() != tuple(exp[1:])):
            raise CheckFailure(
                f"{name}.layers[{i}] is {got[i]}, expected {want[i]} (all layers: {got})"
                "\n  hint: draw the network and write the shape on every arrow; "
                "Linear(in_features, out_features) maps N x in_features to N x out_features")
    if len({id(layer) for layer in layers}) != len(layers):
        raise CheckFailure(f"{name}.layers holds the same layer object twice: build a new ReLU() for each place "
                           "(a layer remembers its own input for backward)")


def _input(layers: list[Any], n: int) -> np.ndarray:
    sizes = layers[0].sizes() if layers and layers[0].kind == "Linear" else ()
    width = sizes[0] if len(sizes) == 2 and isinstance(sizes[0], int) else 2
    return np.arange(n * width, dtype=np.float64).reshape(n, width) / 10


def _visits(layers: list[Any], calls: list[tuple[str, Any, np.ndarray, np.ndarray]], method: str) -> list[Any]:
    """Positions in ``layers`` of the layers called with ``method``, in call order (-1: not in the model)."""
    positions = []
    for called, layer, _, _ in calls:
        if called == method:
            positions.append(next((pos for pos, other in enumerate(layers) if other is layer), -1))
    return positions


def check_forward_wiring(model: Any, n: int = 4) -> None:
    """Fail unless ``model.forward`` feeds each layer's output to the next and returns the last output."""
    name = type(model).__name__
    layers = _layers(model)
    if not layers:
        raise CheckFailure(f"{name}.layers is empty")
    recording = layers[0].recording
    recording.calls.clear()
    A0 = _input(layers, n)
    out = model.forward(A0.copy())
    calls = [c for c in recording.calls if c[0] == "forward"]
    order, expected_order = _visits(layers, calls, "forward"), list(range(len(layers)))
    if len(calls) != len(layers) or any(call[1] is not layer for call, layer in zip(calls, layers)):
        raise CheckFailure(f"{name}.forward visited self.layers at positions {order}, expected {expected_order} "
                           "(each layer once, first to last)"
                           "\n  hint: the model's forward must call every layer of self.layers once, in list order")
    if not np.array_equal(calls[0][2], A0):
        raise CheckFailure(f"{name}.forward(A0): the first layer did not receive A0")
    for k in range(1, len(calls)):
        if not np.array_equal(calls[k][2], calls[k - 1][3]):
            raise CheckFailure(
                f"{name}.forward: layers[{k}] ({layers[k].kind}) did not receive the output of layers[{k - 1}] "
                f"({layers[k - 1].kind})\n  hint: each layer's input is what the layer before it returned")
    if not isinstance(out, np.ndarray) or not np.array_equal(out, calls[-1][3]):
        raise CheckFailure(f"{name}.forward did not return the output of the last layer")


def check_backward_wiring(model: Any, n: int = 4) -> None:
    """Fail unless ``model.backward`` walks the layers in reverse, passing gradients, and returns dLdA0."""
    name = type(model).__name__
    layers = _layers(model)
    if not layers:
        raise CheckFailure(f"{name}.layers is empty")
    recording = layers[0].recording
    A = _input(layers, n)
    A = functools.reduce(lambda inputs, layer: layer.forward(inputs), layers, A)  # a right forward pass, done here
    recording.calls.clear()
    dLdA_last = np.full(A.shape, 0.5)
    returned = model.backward(dLdA_last.copy())
    calls = [c for c in recording.calls if c[0] == "backward"]
    order, expected_order = _visits(layers, calls, "backward"), list(range(len(layers)))[::-1]
    if len(calls) != len(layers) or any(call[1] is not layer for call, layer in zip(calls, layers[::-1])):
        raise CheckFailure(f"{name}.backward visited self.layers at positions {order}, expected {expected_order}"
                           "\n  hint: backward visits the layers from the last to the first")
    if not np.array_equal(calls[0][2], dLdA_last):
        raise CheckFailure(f"{name}.backward(dLdA): the last layer did not receive dLdA")
    for k in range(1, len(calls)):
        pos = len(layers) - 1 - k
        if not np.array_equal(calls[k][2], calls[k - 1][3]):
            raise CheckFailure(
                f"{name}.backward: layers[{pos}] ({layers[pos].kind}) did not receive the gradient returned by "
                f"layers[{pos + 1}] ({layers[pos + 1].kind})\n  hint: each layer's backward receives what the layer after "
                "it returned")
    if not isinstance(returned, np.ndarray) or not np.array_equal(returned, calls[-1][3]):
        raise CheckFailure(f"{name}.backward did not return the gradient returned by the first layer (dLdA0)")
