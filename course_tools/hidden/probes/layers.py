"""Probes of ``02_numpy_library/1_layers``: run the learner's Linear and activations on hidden inputs.

Every graded cell of the notebook calls one ``check_<behaviour>(globals())``
here. It draws fresh float64 inputs from the cell's seed (the ``cases_*``
functions, which the verdicts call again outside the kernel), runs the
learner's own class on them and records what came back: returned arrays, the
attributes the class stored (``A``, ``N``, ``dLdW``, ``dLdb``, ``beta``,
``dLdbeta``), the input array after the call (to see whether it was changed in
place) and, for the element-wise activations the notebook asks to vectorise,
running times next to a calibration on the same large input.

Two kinds of bookkeeping happen here, neither of which computes anything graded:

- the Linear backward cells put the right ``self.A`` and ``self.N`` into the
  layer where forward left them missing or in the spec's form, so that a slip
  in forward does not cost the backward cells too;
- while a class is *timed*, the notebook's other layer classes are replaced by
  :class:`StandIn`, which returns a constant array of the right shape, so a
  ``Swish`` built on a slow ``Sigmoid`` is timed on its own work only.

Where a class may be built on the learner's ``Sigmoid`` (``Swish``, ``Tanh``),
the probe also records what that ``Sigmoid`` returns on the arrays such a
class would hand it, so that the verdict can carry a ``Sigmoid`` bug forward.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from course_tools.hidden.probes.kit import FAILED, Probe, one_call

#: The classes of this notebook (replaced by stand-ins while another one is timed).
LAYER_CLASSES = ("Linear", "Sigmoid", "Tanh", "ReLU", "GELU", "Swish", "Softmax")

#: Activations whose running time is recorded (the notebook asks for whole-array code), besides
#: Swish. Not GELU: the notebook allows math.erf through np.vectorize; not Softmax: the per-row
#: Jacobian loop it teaches.
TIMED = ("Sigmoid", "Tanh", "ReLU")

#: Shapes of the large timing inputs: a Python loop over samples (first) or features (second) shows.
TIMING_SHAPES = ((200_000, 4), (4, 200_000))

#: Inputs per activation: (shapes, scale, with entries of +-1000 and +-800)
ACTIVATION_CASES: dict[str, tuple[tuple[tuple[int, int], ...], float, bool]] = {
    "Sigmoid": (((6, 5), (1, 7)), 4.0, True),
    "Tanh": (((5, 6), (1, 4)), 3.0, True),
    "ReLU": (((7, 4), (1, 5)), 2.0, True),
    "GELU": (((6, 3), (1, 6)), 3.0, False),
    "Swish": (((4, 7), (1, 3)), 3.0, False),
    "Softmax": (((6, 4), (1, 5)), 3.0, True),
}

#: ReLU's backward also sees exact zeros (both signs) and the tiniest numbers either side of 0.
RELU_ZEROS = ((0.0, -0.0, 1e-300, -1e-300), (0.0, 3.5, -2.25, 0.0))

#: Where a class may be built on Sigmoid, the factor the composition scales Z by before
#: calling it: Tanh(Z) = 2 Sigmoid(2 Z) - 1.
SIGMOID_FACTOR = {"Tanh": 2.0}


# ---------------------------------------------------------------- hidden inputs

def cases_linear_init(rng: np.random.Generator) -> list[tuple[int, int, bool]]:
    """(in_features, out_features, by keyword): a general size, a single input, a single output."""
    def size() -> int:
        return int(rng.integers(2, 9))

    return [(size(), size(), False), (1, size(), False), (size(), 1, True)]


def cases_linear_forward(rng: np.random.Generator) -> list[dict[str, Any]]:
    """Layers with random W and b, and a batch A: a general batch, N = 1, Cin = 1."""
    cases = []
    for N, cin, cout in ((7, 5, 3), (1, 4, 6), (11, 1, 2)):
        W, b = rng.standard_normal((cout, cin)), rng.standard_normal((cout, 1))
        cases.append({"N": N, "cin": cin, "cout": cout, "W": W, "b": b, "A": rng.standard_normal((N, cin)) * 2})
    return cases


def cases_linear_backward(rng: np.random.Generator) -> list[dict[str, Any]]:
    """As :func:`cases_linear_forward`, with a gradient dLdZ for backward: N = 1 and Cout = 1 included."""
    cases = []
    for N, cin, cout in ((6, 4, 3), (1, 3, 5), (9, 2, 1)):
        W, b = rng.standard_normal((cout, cin)), rng.standard_normal((cout, 1))
        A, dLdZ = rng.standard_normal((N, cin)), rng.standard_normal((N, cout))
        cases.append({"N": N, "cin": cin, "cout": cout, "W": W, "b": b, "A": A, "dLdZ": dLdZ})
    return cases


def edge_inputs(rng: np.random.Generator, shape: tuple[int, int], scale: float, huge: bool) -> np.ndarray:
    """Random values with an exact 0 and (if ``huge``) entries of +-1000 and +-800 at random places."""
    Z = rng.standard_normal(shape) * scale
    edges = [0.0, 1000.0, -1000.0, 800.0, -800.0] if huge else [0.0]
    places = rng.choice(Z.size, size=min(len(edges), Z.size), replace=False)
    Z.flat[places] = edges[:len(places)]
    return Z


def cases_timing(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """(Z, dLdA) of every shape in :data:`TIMING_SHAPES` (drawn after a cell's other inputs)."""
    return [(rng.standard_normal(shape) * 3, rng.standard_normal(shape)) for shape in TIMING_SHAPES]


def cases_activation_forward(name: str, rng: np.random.Generator) -> list[np.ndarray]:
    """The inputs Z of ``name``'s forward cell."""
    shapes, scale, huge = ACTIVATION_CASES[name]
    return [edge_inputs(rng, shape, scale, huge) for shape in shapes]


def cases_activation_backward(name: str, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """(Z, dLdA) of ``name``'s backward cell (ReLU's starts with :data:`RELU_ZEROS`)."""
    shapes, scale, huge = ACTIVATION_CASES[name]
    inputs = [edge_inputs(rng, shape, scale, huge) for shape in shapes]
    if name == "ReLU":
        inputs.insert(0, np.array(RELU_ZEROS))
    return [(Z, rng.standard_normal(Z.shape)) for Z in inputs]


def cases_swish_forward(rng: np.random.Generator) -> dict[str, Any]:
    """Swish forward: the default beta, two other betas, and a beta changed after construction.

    ``cases`` holds (beta, Z, built with the default); ``learnable`` holds (beta at construction,
    beta set afterwards, Z).
    """
    cases = [(1.0, edge_inputs(rng, (5, 4), 3.0, False), True)]
    for low, high, shape in ((0.3, 0.9, (3, 7)), (1.5, 3.0, (1, 6))):
        beta = float(np.round(rng.uniform(low, high), 3))
        cases.append((beta, edge_inputs(rng, shape, 3.0, False), False))
    first, then = float(np.round(rng.uniform(0.5, 1.0), 3)), float(np.round(rng.uniform(1.2, 2.0), 3))
    return {"cases": cases, "learnable": (first, then, rng.standard_normal((4, 3)) * 2)}


def cases_swish_backward(rng: np.random.Generator) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """(beta, Z, dLdA) for the default beta and two others."""
    cases = []
    for beta, shape in ((1.0, (5, 3)), (None, (2, 6)), (None, (1, 4))):
        if beta is None:
            beta = float(np.round(rng.uniform(0.3, 2.0), 3))
        cases.append((beta, rng.standard_normal(shape) * 2.5, rng.standard_normal(shape)))
    return cases


# ---------------------------------------------------------------- stand-ins and timing

class StandIn:
    """Takes the place of another class of this notebook while a class is timed.

    Its forward returns (and stores as ``self.A``) an array of the input's shape filled with
    one constant, its backward one of the gradient's shape: it computes nothing, so only the
    timed class's own work is measured.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.A = np.zeros((1, 1))

    def forward(self, X: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        self.A = np.full(np.shape(X), 0.5)
        return self.A

    def backward(self, G: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        return np.full(np.shape(G), 0.25)


@contextlib.contextmanager
def stand_ins(namespace: Any, timed: str) -> Iterator[None]:
    """Replace every class of :data:`LAYER_CLASSES` but ``timed`` in the notebook by :class:`StandIn`."""
    saved = {name: namespace[name] for name in LAYER_CLASSES if name != timed and name in namespace}
    try:
        for name in saved:
            namespace[name] = StandIn
        yield
    finally:
        for name, value in saved.items():
            namespace[name] = value


def timed(probe: Probe, key: str, name: str, prepare: Callable[[], Any], work: Callable[[Any], Any]) -> None:
    """Record under ``key`` the best time of ``work(prepare())`` with the other classes stood in for.

    ``prepare`` builds (and, for a backward, runs forward on) the layer; it is not timed. Where
    the learner's code raises with the stand-ins in place, it is timed again with the notebook's
    own classes.
    """
    for replaced in (True, False):
        with np.errstate(all="ignore"), (stand_ins(probe.namespace, name) if replaced else contextlib.nullcontext()):
            layer = probe.attempt(key, prepare)
            if layer is not FAILED:
                probe.seconds(key, lambda: work(layer))
        item = probe.items.get(key)
        if not (isinstance(item, dict) and "raised" in item):
            return


def _time_forward(probe: Probe, name: str, make: Callable[[], Any],
                  timing: list[tuple[np.ndarray, np.ndarray]]) -> None:
    for j, (Z, _) in enumerate(timing):
        timed(probe, f"time:{j}", name, make, lambda layer, Z=Z: layer.forward(Z))
        probe.calibrate(f"calibration:{j}", Z)


def _time_backward(probe: Probe, name: str, make: Callable[[], Any],
                   timing: list[tuple[np.ndarray, np.ndarray]]) -> None:
    for j, (Z, G) in enumerate(timing):
        def prepare(Z: np.ndarray = Z) -> Any:
            layer = make()
            layer.forward(Z)
            return layer

        timed(probe, f"time:{j}", name, prepare, lambda layer, G=G: layer.backward(G))
        probe.calibrate(f"calibration:{j}", G)


def _sigmoid_of(probe: Probe, key: str, X: np.ndarray) -> None:
    """Record what the learner's own Sigmoid returns on ``X`` (for carrying a Sigmoid bug forward)."""
    sigmoid = probe.namespace.get("Sigmoid")
    probe.call(key, lambda: sigmoid().forward(X.copy()))


# ---------------------------------------------------------------- Linear

def _with_parameters(probe: Probe, key: str, cls: Any, case: Mapping[str, Any]) -> Any:
    """``Linear(cin, cout)`` with the case's W and b (FAILED, recorded under ``key``, if that raised)."""
    def build() -> Any:
        layer = cls(case["cin"], case["cout"])
        layer.W, layer.b = case["W"].copy(), case["b"].copy()
        return layer

    return probe.attempt(key, build)


def check_linear_init(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Linear(in, out) with sizes from the seed (one by keyword): record W and b."""
    def run(probe: Probe) -> None:
        cls = probe.learner("Linear")
        if not isinstance(cls, type):
            return
        for i, (cin, cout, by_keyword) in enumerate(cases_linear_init(probe.rng)):
            if by_keyword:
                layer = probe.attempt(f"make:{i}", lambda: cls(in_features=cin, out_features=cout))
            else:
                layer = probe.attempt(f"make:{i}", cls, cin, cout)
            if layer is not FAILED:
                probe.attribute(f"W:{i}", layer, "W")
                probe.attribute(f"b:{i}", layer, "b")

    one_call(namespace, "check_linear_init", seed, run)


def check_linear_forward(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Linear.forward on random layers and batches: record Z, the input afterwards, self.A and self.N."""
    def run(probe: Probe) -> None:
        cls = probe.learner("Linear")
        if not isinstance(cls, type):
            return
        for i, case in enumerate(cases_linear_forward(probe.rng)):
            layer = _with_parameters(probe, f"make:{i}", cls, case)
            if layer is FAILED:
                continue
            A = case["A"].copy()
            probe.call(f"forward:{i}", layer.forward, A)
            probe.record(f"input:{i}", A)
            probe.attribute(f"A:{i}", layer, "A")
            probe.attribute(f"N:{i}", layer, "N")

    one_call(namespace, "check_linear_forward", seed, run)


def _repair_bookkeeping(layer: Any, case: Mapping[str, Any]) -> None:
    """Where forward left self.A / self.N missing or in the spec's form, make them hold the right values.

    Forward's bookkeeping is graded in the forward cell; a learner's own, differently shaped
    bookkeeping is left alone (their backward may rely on it).
    """
    try:
        stored_A, stored_N = getattr(layer, "A", None), getattr(layer, "N", None)
        if stored_A is None or (isinstance(stored_A, np.ndarray) and stored_A.shape == case["A"].shape):
            layer.A = case["A"].copy()
        if stored_N is None or isinstance(stored_N, (int, np.integer)):
            layer.N = case["N"]
    except Exception:  # noqa: BLE001 (a property that refuses: backward runs on what forward left)
        pass


def _linear_backward(namespace: Mapping[str, Any], behaviour: str, seed: int | None) -> None:
    def run(probe: Probe) -> None:
        cls = probe.learner("Linear")
        if not isinstance(cls, type):
            return
        for i, case in enumerate(cases_linear_backward(probe.rng)):
            layer = _with_parameters(probe, f"make:{i}", cls, case)
            if layer is FAILED:
                continue
            probe.attempt(f"forward:{i}", layer.forward, case["A"].copy())  # graded in its own cell
            _repair_bookkeeping(layer, case)
            probe.call(f"backward:{i}", layer.backward, case["dLdZ"].copy())
            probe.attribute(f"dLdW:{i}", layer, "dLdW")
            probe.attribute(f"dLdb:{i}", layer, "dLdb")

    one_call(namespace, behaviour, seed, run)


def check_linear_backward_dLdA(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Linear.backward after forward: record the returned dLdA (and the stored gradients)."""
    _linear_backward(namespace, "check_linear_backward_dLdA", seed)


def check_linear_backward_dLdW(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Linear.backward after forward: record self.dLdW (and the rest of what backward produced)."""
    _linear_backward(namespace, "check_linear_backward_dLdW", seed)


def check_linear_backward_dLdb(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Linear.backward after forward: record self.dLdb (and the rest of what backward produced)."""
    _linear_backward(namespace, "check_linear_backward_dLdb", seed)


# ---------------------------------------------------------------- element-wise activations and Softmax

def _activation_forward(name: str) -> Callable[..., None]:
    behaviour = f"check_{name.lower()}_forward"

    def check(namespace: Mapping[str, Any], seed: int | None = None) -> None:
        def run(probe: Probe) -> None:
            cls = probe.learner(name)
            if not isinstance(cls, type):
                return
            gen = probe.rng
            for i, Z in enumerate(cases_activation_forward(name, gen)):
                layer = probe.attempt(f"make:{i}", cls)
                if layer is FAILED:
                    continue
                Z_in = Z.copy()
                with np.errstate(all="ignore"):
                    probe.call(f"forward:{i}", layer.forward, Z_in)
                    probe.record(f"input:{i}", Z_in)
                    probe.attribute(f"A:{i}", layer, "A")
                    if name in SIGMOID_FACTOR:
                        _sigmoid_of(probe, f"sigmoid:{i}", SIGMOID_FACTOR[name] * Z)
            if name in TIMED:
                _time_forward(probe, name, cls, cases_timing(gen))

        one_call(namespace, behaviour, seed, run)

    check.__name__ = check.__qualname__ = behaviour
    check.__doc__ = (f"{name}().forward(Z) on random and edge-case inputs: record A, the input afterwards"
                     f" and self.A{' (and the running time)' if name in TIMED else ''}.")
    return check


def _activation_backward(name: str) -> Callable[..., None]:
    behaviour = f"check_{name.lower()}_backward"

    def check(namespace: Mapping[str, Any], seed: int | None = None) -> None:
        def run(probe: Probe) -> None:
            cls = probe.learner(name)
            if not isinstance(cls, type):
                return
            gen = probe.rng
            for i, (Z, dLdA) in enumerate(cases_activation_backward(name, gen)):
                layer = probe.attempt(f"make:{i}", cls)
                if layer is FAILED:
                    continue
                with np.errstate(all="ignore"):
                    probe.call(f"forward:{i}", layer.forward, Z.copy())
                    probe.attribute(f"A:{i}", layer, "A")
                    probe.call(f"backward:{i}", layer.backward, dLdA.copy())
            if name in TIMED:
                _time_backward(probe, name, cls, cases_timing(gen))

        one_call(namespace, behaviour, seed, run)

    check.__name__ = check.__qualname__ = behaviour
    check.__doc__ = (f"{name}().backward(dLdA) after forward(Z): record dLdZ with the forward output and the"
                     f" stored self.A{' (and the running time)' if name in TIMED else ''}.")
    return check


check_sigmoid_forward = _activation_forward("Sigmoid")
check_sigmoid_backward = _activation_backward("Sigmoid")
check_tanh_forward = _activation_forward("Tanh")
check_tanh_backward = _activation_backward("Tanh")
check_relu_forward = _activation_forward("ReLU")
check_relu_backward = _activation_backward("ReLU")
check_gelu_forward = _activation_forward("GELU")
check_gelu_backward = _activation_backward("GELU")
check_softmax_forward = _activation_forward("Softmax")
check_softmax_backward = _activation_backward("Softmax")


# ---------------------------------------------------------------- Swish

def check_swish_forward(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Swish forward: the default beta, other betas, a beta changed after construction, the running time."""
    def run(probe: Probe) -> None:
        cls = probe.learner("Swish")
        if not isinstance(cls, type):
            return
        gen = probe.rng
        drawn = cases_swish_forward(gen)
        default = probe.attempt("make:default", cls)
        if default is not FAILED:
            probe.attribute("beta:default", default, "beta")
        with np.errstate(all="ignore"):
            for i, (beta, Z, by_default) in enumerate(drawn["cases"]):
                layer = probe.attempt(f"make:{i}", cls) if by_default else probe.attempt(f"make:{i}", cls, beta)
                if layer is FAILED:
                    continue
                probe.attribute(f"beta:{i}", layer, "beta")
                probe.call(f"forward:{i}", layer.forward, Z.copy())
                probe.attribute(f"A:{i}", layer, "A")
                _sigmoid_of(probe, f"sigmoid:{i}", beta * Z)
            first, then, Z = drawn["learnable"]

            def changed() -> Any:
                layer = cls(first)
                layer.beta = then  # what an optimiser does to a learnable parameter
                return layer

            layer = probe.attempt("make:learnable", changed)
            if layer is not FAILED:
                probe.call("forward:learnable", layer.forward, Z.copy())
            _sigmoid_of(probe, "sigmoid:learnable", then * Z)
        _time_forward(probe, "Swish", lambda: cls(1.0), cases_timing(gen))

    one_call(namespace, "check_swish_forward", seed, run)


def _swish_backward(namespace: Mapping[str, Any], behaviour: str, seed: int | None, time_it: bool) -> None:
    def run(probe: Probe) -> None:
        cls = probe.learner("Swish")
        if not isinstance(cls, type):
            return
        gen = probe.rng
        with np.errstate(all="ignore"):
            for i, (beta, Z, dLdA) in enumerate(cases_swish_backward(gen)):
                layer = probe.attempt(f"make:{i}", cls, beta)
                if layer is FAILED:
                    continue
                probe.attempt(f"forward:{i}", layer.forward, Z.copy())
                probe.call(f"backward:{i}", layer.backward, dLdA.copy())
                probe.attribute(f"dLdbeta:{i}", layer, "dLdbeta")
                _sigmoid_of(probe, f"sigmoid:{i}", beta * Z)
        if time_it:
            _time_backward(probe, "Swish", lambda: cls(1.0), cases_timing(gen))

    one_call(namespace, behaviour, seed, run)


def check_swish_backward_dLdZ(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Swish backward for a few betas: record the returned dLdZ, and the running time."""
    _swish_backward(namespace, "check_swish_backward_dLdZ", seed, time_it=True)


def check_swish_backward_dLdbeta(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Swish backward for a few betas: record self.dLdbeta."""
    _swish_backward(namespace, "check_swish_backward_dLdbeta", seed, time_it=False)
