"""Verdicts of ``02_numpy_library/2_mlp``: MLP0, MLP1 and MLP4 (course spec, section 3).

Each model earns three cells, each graded on its own:

- ``structure``: ``self.layers`` is the ordered list the spec fixes, each place its own layer
  object, and two models share no layer;
- ``forward``: every layer of the model's OWN list is called once, first to last; the first
  receives ``A0``, each next one what the one before returned, and the model returns what the
  last one returned (so a wrong structure whose calls still chain costs only the structure points);
- ``backward``: the same in reverse, starting from ``dLdA`` and returning what the first layer
  returned (``dLdA0``); a layer object used in two places fails here too, since a real layer's
  backward uses what its last forward stored.

The probe built the model from recording stand-ins for ``Linear`` and ``ReLU`` whose answers
are drawn from the seed (:mod:`course_tools.hidden.probes.mlp`). Here the same answers are drawn
again and followed through the model's layer list, so what each layer received is checked
against arrays the kernel cannot choose; no layer maths is involved, and a bug in the learner's
own ``Linear`` costs nothing here.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from course_tools.hidden.probes import mlp as probes
from course_tools.hidden.probes.kit import rng
from course_tools.hidden.verdicts.kit import Evidence, Opaque, Wrong, written_here

#: (in_features, out_features) of each Linear layer; every Linear is followed by a ReLU (course spec).
SIZES: dict[str, list[tuple[int, int]]] = {
    "MLP0": [(2, 3)],
    "MLP1": [(2, 3), (3, 2)],
    "MLP4": [(2, 4), (4, 8), (8, 8), (8, 4), (4, 2)],
}

BUILD_HINT = "hint: build every layer by calling Linear(...) or ReLU() inside __init__"
FORWARD_HINT = ("hint: forward must call every layer of self.layers in order, activations included, "
                "passing each layer's output to the next (A = layer.forward(A)), and return the last output")
BACKWARD_HINT = ("hint: backward must call backward on every layer of self.layers in reverse order, activations "
                 "included, passing each returned gradient to the layer before (dLdA = layer.backward(dLdA)), "
                 "and return the last one (dLdA0)")


# ---------------------------------------------------------------- reading the record

class _Built:
    """What each stand-in was built with, by stand-in number: ``(kind, args, kwargs)``."""

    def __init__(self, evidence: Evidence, name: str) -> None:
        value = evidence.value("built", f"building {name}()")
        if not isinstance(value, list):
            raise Wrong("the record of this check is malformed (was grading code replaced?)")
        self.entries: list[tuple[str, list[Any], dict[str, Any]]] = []
        for item in value:
            if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)
                    and isinstance(item[1], list) and isinstance(item[2], dict)):
                raise Wrong("the record of this check is malformed (was grading code replaced?)")
            self.entries.append((item[0], item[1], item[2]))

    def __getitem__(self, number: int) -> tuple[str, list[Any], dict[str, Any]]:
        return self.entries[number]

    def kind(self, number: int) -> str:
        return self.entries[number][0]

    def describe(self, number: int) -> str:
        """``"Linear(2, 3)"`` or ``"ReLU()"``: how the layer was built, as the spec writes it."""
        kind, args, kwargs = self.entries[number]
        sizes = probes.linear_sizes(args, kwargs) if kind == "Linear" else None
        if sizes is not None:
            return f"Linear({sizes[0]}, {sizes[1]})"
        shown = [_show(a) for a in args] + [f"{k}={_show(v)}" for k, v in kwargs.items()]
        return f"{kind}({', '.join(shown)})"


def _show(value: Any) -> str:
    text = f"<{value.type_name}>" if isinstance(value, Opaque) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _build_ok(evidence: Evidence, key: str, name: str) -> None:
    error = evidence.raised(key)
    if error is not None:
        raise Wrong(f"{name}() raised {error}\n  {BUILD_HINT}")


def _layers(evidence: Evidence, key: str, name: str, built: _Built) -> list[int]:
    """Stand-in numbers of ``model.layers``, in order; fails clearly on anything else."""
    value = evidence.value(key, f"{name}().layers")
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise Wrong("the record of this check is malformed (was grading code replaced?)")
    if value["type"] == "missing":
        raise Wrong(f"{name}() has no attribute layers\n  hint: set self.layers = [...] in __init__")
    entries = value.get("entries")
    if not isinstance(entries, list):
        raise Wrong(f"{name}().layers should be an ordered list of layers, got {value['type']}")
    if not entries:
        raise Wrong(f"{name}().layers is empty")
    for i, entry in enumerate(entries):
        if isinstance(entry, str) or not isinstance(entry, int) or not 0 <= entry < len(built.entries):
            shown = entry if isinstance(entry, str) else "object"
            raise Wrong(f"{name}().layers[{i}] is a {shown}, not a layer built from the names Linear or ReLU\n"
                        f"  {BUILD_HINT}")
    return list(entries)


def _calls(evidence: Evidence, key: str, method: str, what: str) -> list[tuple[int, Any]]:
    """``(stand-in number, what it received)`` of every ``method`` call in one round, in order."""
    value = evidence.value(key, what)
    if not isinstance(value, list):
        raise Wrong("the record of this check is malformed (was grading code replaced?)")
    calls = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[1], int)):
            raise Wrong("the record of this check is malformed (was grading code replaced?)")
        if item[0] == method:
            calls.append((item[1], item[2]))
    return calls


def _same(actual: Any, expected: np.ndarray) -> bool:
    """Whether ``actual`` (something the model passed or returned) is exactly the array ``expected``."""
    if isinstance(actual, (list, tuple)):
        try:
            actual = np.asarray(actual, dtype=np.float64)
        except (TypeError, ValueError):
            return False
    if not isinstance(actual, np.ndarray) or actual.shape != expected.shape:
        return False
    return bool(np.array_equal(actual.astype(np.float64), expected))


def _positions(layers: list[int], numbers: list[int]) -> list[int]:
    """Where in ``layers`` each called stand-in sits (its first place; -1 for one not in the list)."""
    return [layers.index(n) if n in layers else -1 for n in numbers]


def _answer(case: probes.Case, built: _Built, number: int, round_: int, method: str,
            received: np.ndarray) -> np.ndarray:
    """What stand-in ``number`` returned in ``round_`` for ``received`` (drawn again from the seed)."""
    kind, args, kwargs = built[number]
    pool = case.forward_pool if method == "forward" else case.backward_pool
    shape = probes.answer_shape(kind, args, kwargs, method, received.shape)
    return probes.stand_in_answer(pool, number, round_, shape).astype(np.float64)


# ---------------------------------------------------------------- the three cells

def structure(evidence: Evidence, name: str) -> None:
    """self.layers is the ordered list the spec fixes; each place and each model has its own layer objects."""
    written_here(evidence, name)
    _build_ok(evidence, "build:0", name)
    built = _Built(evidence, name)
    layers = _layers(evidence, "layers:0", name, built)
    expected = [text for cin, cout in SIZES[name] for text in (f"Linear({cin}, {cout})", "ReLU()")]
    got = [built.describe(n) for n in layers]
    if got != expected:
        raise Wrong(f"{name}().layers should be {expected}, got {got}\n  hint: draw the network and write the "
                    "shape on every arrow; Linear(in_features, out_features) maps N x in_features to N x out_features")
    if len(set(layers)) != len(layers):
        raise Wrong(f"{name}().layers holds the same layer object twice: build a new ReLU() for each place "
                    "(a layer remembers its own input for backward)")
    _build_ok(evidence, "build:1", name)
    other = _layers(evidence, "layers:1", name, built)
    first, second = evidence.value("layers:0", "layers"), evidence.value("layers:1", "layers")
    if first.get("id") == second.get("id") or set(layers) & set(other):
        raise Wrong(f"two {name} models share layer objects: build the layers inside __init__ "
                    "(not as a class attribute), so every model gets its own")


def forward(evidence: Evidence, name: str) -> None:
    """forward(A0) calls each layer once, first to last, passing each output on; returns the last output."""
    written_here(evidence, name)
    _build_ok(evidence, "build", name)
    built = _Built(evidence, name)
    layers = _layers(evidence, "layers", name, built)
    case = probes.cases_forward(rng(evidence.seed), name)
    for r, A0 in enumerate(case.A0):
        what = f"{name}.forward(A0) with A0 of shape {A0.shape}"
        error = evidence.raised(f"forward:{r}")
        if error is not None:
            raise Wrong(f"{what} raised {error}\n  {FORWARD_HINT}")
        returned = evidence.value(f"forward:{r}", what)
        calls = _calls(evidence, f"calls:{r}", "forward", what)
        numbers = [n for n, _ in calls]
        if numbers != layers:
            raise Wrong(f"{what} visited self.layers at positions {_positions(layers, numbers)}, expected "
                        f"{list(range(len(layers)))} (each layer once, first to last)\n  {FORWARD_HINT}")
        A = A0
        for k, (number, received) in enumerate(calls):
            if not _same(received, A):
                if k == 0:
                    raise Wrong(f"{what}: the first layer did not receive A0\n  {FORWARD_HINT}")
                raise Wrong(f"{what}: layers[{k}] ({built.kind(number)}) did not receive the output of "
                            f"layers[{k - 1}] ({built.kind(calls[k - 1][0])})\n  {FORWARD_HINT}")
            A = _answer(case, built, number, r, "forward", A)
        if not isinstance(returned, np.ndarray):
            shown = returned.type_name if isinstance(returned, Opaque) else type(returned).__name__
            raise Wrong(f"{what} returned {shown}, expected the numpy array the last layer returned\n"
                        f"  {FORWARD_HINT}")
        if not _same(returned, A):
            raise Wrong(f"{what} did not return the output of the last layer\n  {FORWARD_HINT}")


def backward(evidence: Evidence, name: str) -> None:
    """backward(dLdA) calls each layer once, last to first, passing each gradient on; returns dLdA0."""
    written_here(evidence, name)
    _build_ok(evidence, "build", name)
    built = _Built(evidence, name)
    layers = _layers(evidence, "layers", name, built)
    for i, number in enumerate(layers):
        if layers.index(number) != i:
            raise Wrong(f"{name}().layers[{layers.index(number)}] and layers[{i}] are the same layer object: its "
                        "backward would use what its last forward stored, not what it stored at the first place; "
                        "build a new layer (a new ReLU()) for each place")
    case = probes.cases_backward(rng(evidence.seed), name)
    for r, (A0, dLdA) in enumerate(zip(case.A0, case.dLdA)):
        what = f"{name}.backward(dLdA) after a forward pass with A0 of shape {A0.shape}"
        error = evidence.raised(f"backward:{r}")
        if error is not None:
            raise Wrong(f"{what} raised {error}\n  {BACKWARD_HINT}")
        returned = evidence.value(f"backward:{r}", what)
        calls = _calls(evidence, f"calls:{r}", "backward", what)
        numbers = [n for n, _ in calls]
        if numbers != layers[::-1]:
            raise Wrong(f"{what} visited self.layers at positions {_positions(layers, numbers)}, expected "
                        f"{list(range(len(layers)))[::-1]} (each layer once, last to first)\n  {BACKWARD_HINT}")
        gradient = dLdA
        for k, (number, received) in enumerate(calls):
            position = len(layers) - 1 - k
            if not _same(received, gradient):
                if k == 0:
                    raise Wrong(f"{what}: the last layer did not receive dLdA\n  {BACKWARD_HINT}")
                raise Wrong(f"{what}: layers[{position}] ({built.kind(number)}) did not receive the gradient "
                            f"returned by layers[{position + 1}] ({built.kind(calls[k - 1][0])})\n  {BACKWARD_HINT}")
            gradient = _answer(case, built, number, r, "backward", gradient)
        if not isinstance(returned, np.ndarray):
            shown = returned.type_name if isinstance(returned, Opaque) else type(returned).__name__
            raise Wrong(f"{what} returned {shown}, expected the numpy array dLdA0 of shape {gradient.shape}\n"
                        f"  {BACKWARD_HINT}")
        if not _same(returned, gradient):
            raise Wrong(f"{what} did not return the gradient returned by the first layer (dLdA0)\n  {BACKWARD_HINT}")


_PARTS: dict[str, Callable[[Evidence, str], None]] = {"structure": structure, "forward": forward,
                                                      "backward": backward}


def _verdict(model: str, part: str) -> Callable[[Evidence], None]:
    def check(evidence: Evidence) -> None:
        _PARTS[part](evidence, model)

    check.__name__ = check.__qualname__ = f"check_{model.lower()}_{part}"
    check.__doc__ = f"{model}: {_PARTS[part].__doc__}"
    return check


check_mlp0_structure = _verdict("MLP0", "structure")
check_mlp0_forward = _verdict("MLP0", "forward")
check_mlp0_backward = _verdict("MLP0", "backward")
check_mlp1_structure = _verdict("MLP1", "structure")
check_mlp1_forward = _verdict("MLP1", "forward")
check_mlp1_backward = _verdict("MLP1", "backward")
check_mlp4_structure = _verdict("MLP4", "structure")
check_mlp4_forward = _verdict("MLP4", "forward")
check_mlp4_backward = _verdict("MLP4", "backward")
