"""Probes of ``02_numpy_library/2_mlp``: how MLP0, MLP1 and MLP4 build and call their layers.

The models are graded on their own objective, the wiring, never on the maths
of a layer: while a model is built, the names ``Linear`` and ``ReLU`` of the
notebook are recording stand-ins. A stand-in remembers what it was built with
and every array it receives, and answers each ``forward`` and ``backward``
call with an array drawn in advance from the cell's seed (the pools of a
:class:`Case`), shaped as the real layer's answer would be. The record holds
what each stand-in was built with, the model's ``self.layers`` (as numbers of
the stand-ins), every call in order with what it received, and what the model
returned. The verdict draws the same pools again and follows them through the
model's own layer list.

Nothing here computes a layer: a stand-in's answer depends only on the seed,
on which stand-in it is and on the shape it has to have.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, MutableMapping

import numpy as np

from course_tools.hidden.probes.kit import FAILED, Probe, one_call

MODELS = ("MLP0", "MLP1", "MLP4")
#: every model of the notebook maps N x 2 inputs to N x OUTPUT_WIDTH[model] outputs
INPUT_WIDTH = 2
OUTPUT_WIDTH = {"MLP0": 3, "MLP1": 2, "MLP4": 2}
#: batch sizes of the forward and backward calls, one round each (a batch of one sample included)
FORWARD_BATCHES = (9, 1)
BACKWARD_BATCHES = (7, 1)
#: stand-in number i answers from pool row i % SLOTS; each row holds BUFFER numbers per round
SLOTS = 64
BUFFER = 512
#: calls kept per round (a model that calls its layers more often is wrong anyway)
MAX_CALLS = 200


@dataclass(frozen=True)
class Case:
    """The hidden inputs of one cell.

    Attributes:
        A0: the model's input of each round (N x 2).
        dLdA: the gradient handed to ``backward`` in each round (N x the model's output width).
        forward_pool, backward_pool: SLOTS x rounds x BUFFER numbers the stand-ins answer from.
    """

    A0: tuple[np.ndarray, ...]
    dLdA: tuple[np.ndarray, ...]
    forward_pool: np.ndarray
    backward_pool: np.ndarray


def _case(rng: np.random.Generator, model: str, batches: tuple[int, ...]) -> Case:
    A0 = tuple(rng.standard_normal((n, INPUT_WIDTH)) for n in batches)
    dLdA = tuple(rng.standard_normal((n, OUTPUT_WIDTH[model])) for n in batches)
    forward_pool = rng.standard_normal((SLOTS, len(batches), BUFFER))
    backward_pool = rng.standard_normal((SLOTS, len(batches), BUFFER))
    return Case(A0, dLdA, forward_pool, backward_pool)


def cases_forward(rng: np.random.Generator, model: str) -> Case:
    """Inputs of the forward cell of ``model``."""
    return _case(rng, model, FORWARD_BATCHES)


def cases_backward(rng: np.random.Generator, model: str) -> Case:
    """Inputs of the backward cell of ``model`` (``A0`` feeds the forward pass that comes first)."""
    return _case(rng, model, BACKWARD_BATCHES)


def linear_sizes(args: Any, kwargs: Any) -> tuple[int, int] | None:
    """``(in_features, out_features)`` of a ``Linear(...)`` call when both are positive whole numbers, else None."""
    values = list(args) if isinstance(args, (list, tuple)) else []
    kwargs = kwargs if isinstance(kwargs, dict) else {}
    for name in ("in_features", "out_features")[len(values):]:
        if name in kwargs:
            values.append(kwargs[name])
    if len(values) != 2 or set(kwargs) - {"in_features", "out_features"}:
        return None
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and v > 0 for v in values):
        return None
    return int(values[0]), int(values[1])


def answer_shape(kind: str, args: Any, kwargs: Any, method: str, received: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of a stand-in's answer: Linear(i, o) gives N x o forward and N x i backward; others keep the shape."""
    sizes = linear_sizes(args, kwargs) if kind == "Linear" else None
    if sizes is None or len(received) < 1:
        return tuple(int(n) for n in received)
    return int(received[0]), sizes[1] if method == "forward" else sizes[0]


def stand_in_answer(pool: np.ndarray, index: int, round_: int, shape: tuple[int, ...]) -> np.ndarray:
    """What stand-in number ``index`` returns in round ``round_``: its row of ``pool``, repeated to ``shape``."""
    return np.resize(pool[index % SLOTS, round_], shape)


class _Recording:
    """The stand-ins of one cell and everything they saw."""

    def __init__(self, case: Case | None) -> None:
        self.case = case
        self.stand_ins: list[Any] = []
        self.built: list[list[Any]] = []
        self.calls: list[list[Any]] = []
        self.round = 0
        self.round_start = 0
        self.classes = _stand_in_classes(self)

    def start_round(self, round_: int) -> int:
        """Answer from the pools' round ``round_`` from now on; returns where its calls start."""
        self.round, self.round_start = round_, len(self.calls)
        return self.round_start

    def answer(self, layer: Any, method: str, received: Any) -> np.ndarray:
        if len(self.calls) - self.round_start < MAX_CALLS:
            snapshot = received.copy() if isinstance(received, np.ndarray) else received
            self.calls.append([method, layer.stand_in_number, snapshot])
        try:
            shape = tuple(np.shape(received))
        except Exception:  # noqa: BLE001 (a ragged list: answer with a scalar)
            shape = ()
        kind, args, kwargs = self.built[layer.stand_in_number]
        if self.case is None:
            return np.zeros(shape)
        pool = self.case.forward_pool if method == "forward" else self.case.backward_pool
        return stand_in_answer(pool, layer.stand_in_number, self.round, answer_shape(kind, args, kwargs, method, shape))

    def layer_list(self, model: Any) -> dict[str, Any]:
        """``model.layers`` as the record holds it: its type, and each entry's stand-in number (or type name)."""
        try:
            layers = getattr(model, "layers")
        except Exception:  # noqa: BLE001 (missing, or a property that raises)
            return {"type": "missing"}
        if not isinstance(layers, (list, tuple)):
            return {"type": type(layers).__name__}
        numbers = {id(layer): layer.stand_in_number for layer in self.stand_ins}
        entries = [numbers.get(id(layer), type(layer).__name__) for layer in layers]
        return {"type": type(layers).__name__, "entries": entries, "id": id(layers)}


def _stand_in_classes(recording: _Recording) -> dict[str, type]:
    """Fresh ``Linear`` and ``ReLU`` stand-in classes that report to ``recording``."""

    class StandIn:
        kind = "Layer"

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.stand_in_number = len(recording.stand_ins)
            recording.stand_ins.append(self)
            recording.built.append([self.kind, list(args), dict(kwargs)])
            sizes = linear_sizes(args, kwargs) if self.kind == "Linear" else None
            if sizes is not None:  # the attributes a real Linear has after __init__ (zeros, as the spec says)
                self.W = np.zeros((sizes[1], sizes[0]))
                self.b = np.zeros((sizes[1], 1))

        def forward(self, A: Any) -> np.ndarray:
            return recording.answer(self, "forward", A)

        def backward(self, dLdA: Any) -> np.ndarray:
            return recording.answer(self, "backward", dLdA)

    return {kind: type(kind, (StandIn,), {"kind": kind, "__doc__": f"Recording stand-in for {kind}."})
            for kind in ("Linear", "ReLU")}


@contextlib.contextmanager
def _swapped(namespace: Mapping[str, Any], replacements: Mapping[str, Any]) -> Iterator[None]:
    """Within the block, the notebook's names ``Linear`` and ``ReLU`` are the stand-ins."""
    names: MutableMapping[str, Any] = namespace  # type: ignore[assignment] (the notebook's globals())
    missing = object()
    saved = {name: names.get(name, missing) for name in replacements}
    names.update(replacements)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is missing:
                names.pop(name, None)
            else:
                names[name] = value


def _build(probe: Probe, key: str, cls: Any, recording: _Recording) -> Any:
    """An instance of the learner's model class, built from stand-ins (FAILED if ``__init__`` raised)."""
    with _swapped(probe.namespace, recording.classes):
        return probe.attempt(key, cls)


def _structure(probe: Probe, name: str) -> None:
    cls = probe.learner(name)
    if cls is None:
        return
    recording = _Recording(None)
    models = []
    for k in range(2):  # two models: each must have layer objects of its own
        model = _build(probe, f"build:{k}", cls, recording)
        if model is FAILED:
            break
        models.append(model)
        probe.record(f"layers:{k}", recording.layer_list(model))
    probe.record("built", recording.built)


def _forward(probe: Probe, name: str) -> None:
    case = cases_forward(probe.rng, name)
    cls = probe.learner(name)
    if cls is None:
        return
    recording = _Recording(case)
    model = _build(probe, "build", cls, recording)
    if model is not FAILED:
        probe.record("layers", recording.layer_list(model))
        for r, A0 in enumerate(case.A0):
            start = recording.start_round(r)
            probe.call(f"forward:{r}", lambda: model.forward(A0.copy()))
            probe.record(f"calls:{r}", recording.calls[start:])
    probe.record("built", recording.built)


def _backward(probe: Probe, name: str) -> None:
    case = cases_backward(probe.rng, name)
    cls = probe.learner(name)
    if cls is None:
        return
    recording = _Recording(case)
    model = _build(probe, "build", cls, recording)
    if model is not FAILED:
        probe.record("layers", recording.layer_list(model))
        for r, (A0, dLdA) in enumerate(zip(case.A0, case.dLdA)):
            recording.start_round(r)
            # the model's own forward pass first, so it can keep what it needs; its errors belong to the forward cell
            probe.attempt(f"forward:{r}", lambda: model.forward(A0.copy()))
            start = recording.start_round(r)
            probe.call(f"backward:{r}", lambda: model.backward(dLdA.copy()))
            probe.record(f"calls:{r}", recording.calls[start:])
    probe.record("built", recording.built)


_PARTS: dict[str, Callable[[Probe, str], None]] = {"structure": _structure, "forward": _forward,
                                                   "backward": _backward}
_DOCS = {
    "structure": "Build {model} twice from stand-ins; record what each layer was built with and self.layers.",
    "forward": "Run {model}.forward on hidden inputs through stand-ins; record every layer call and the output.",
    "backward": "Run {model}.backward on hidden gradients through stand-ins; record every layer call and the result.",
}


def _check(model: str, part: str) -> Callable[..., None]:
    behaviour = f"check_{model.lower()}_{part}"

    def check(namespace: Mapping[str, Any], seed: int | None = None) -> None:
        return one_call(namespace, behaviour, seed, lambda probe: _PARTS[part](probe, model))

    check.__name__ = check.__qualname__ = behaviour
    check.__doc__ = _DOCS[part].format(model=model)
    return check


check_mlp0_structure = _check("MLP0", "structure")
check_mlp0_forward = _check("MLP0", "forward")
check_mlp0_backward = _check("MLP0", "backward")
check_mlp1_structure = _check("MLP1", "structure")
check_mlp1_forward = _check("MLP1", "forward")
check_mlp1_backward = _check("MLP1", "backward")
check_mlp4_structure = _check("MLP4", "structure")
check_mlp4_forward = _check("MLP4", "forward")
check_mlp4_backward = _check("MLP4", "backward")
