"""Hidden tests of ``02_numpy_library/1_layers``: Linear and the activations (course spec, section 2).

Each public function grades one behaviour of one class and is called by one
graded cell with the notebook's ``globals()``. Inputs are fresh random float64
arrays (never the visible ones) plus the edge cases the spec names; expected
values come from PyTorch in float64. Every failure is an ``AssertionError``
whose message a learner can act on.

Fairness rules implemented here:

- a backward cell never fails because of the forward pass alone: for the
  activations whose derivative the spec writes in terms of ``A`` (Sigmoid,
  Tanh, ReLU, Softmax) the backward is also accepted when it is right for the
  ``A`` the learner's own forward stored (errors carried forward);
- any correct style scores: stable or naive-but-correct formulas, ``np.where``
  or masks, ``einsum``, ``math.erf`` through ``np.vectorize`` or
  ``scipy.special.erf``, the per-row Jacobian loop in ``Softmax.backward``;
- vectorisation is timed only where the notebook asks for it (the element-wise
  activations), never for Linear (einsum may be slower than BLAS) or Softmax.
"""

from __future__ import annotations

import inspect
import io
import re
import textwrap
import time
import tokenize
from typing import Any, Callable, Mapping

import numpy as np

from course_tools.hidden.verdicts import reference
from course_tools.hidden.common import (
    NO_TORCH,
    as_float64,
    assert_close,
    best_time,
    learner_class,
    rng,
    swapped,
    torch64,
)

Namespace = Mapping[str, Any]

#: Tanh must be built from exponentials (course spec, section 2).
NO_TANH = {r"\btanh\b": "computes tanh with a library tanh (np.tanh, math.tanh, ...); "
                        "build it from np.exp as the notebook shows"}

#: Activations whose running time is compared with the reference. Not Softmax: the per-row
#: Jacobian loop the notebook teaches is a right answer; not GELU: the notebook allows math.erf
#: through np.vectorize, itself a loop over the elements.
TIMED = ("Sigmoid", "Tanh", "ReLU")

#: Shapes of the large inputs used to time element-wise code: a Python loop over
#: samples (first shape) or over features (second shape) is hundreds of times slower.
TIMING_SHAPES = ((200_000, 4), (4, 200_000))
#: Allowed slowdown against the reference: correct vectorised variants stay within about 3x.
TIMING_RATIO = 10.0
#: Seconds added to the allowed time, for timer noise on a busy machine.
TIMING_SLACK = 0.03


def _torch() -> tuple[Any, Any]:
    import torch
    import torch.nn.functional as F

    return torch, F


def code_without_text(source: str) -> str:
    """``source`` without comments and string literals (docstrings included), so prose never matches a rule."""
    kept = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type not in (tokenize.COMMENT, tokenize.STRING):
                kept.append(token.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return "\n".join(line.split("#", 1)[0] for line in source.split("\n"))
    return " ".join(kept)


def code_of(cls: type) -> str:
    """The code of every method of ``cls``, comments and strings removed.

    Where the source text cannot be found (code run by ``exec``), the names the
    compiled methods use stand in for it, so a forbidden call is still seen.
    """
    parts = []
    for klass in cls.__mro__:
        if klass is object:
            continue
        for value in vars(klass).values():
            func = getattr(value, "__func__", value)
            if inspect.isfunction(func):
                try:
                    parts.append(code_without_text(textwrap.dedent(inspect.getsource(func))))
                except (OSError, TypeError):
                    parts.append(" ".join(_names(func.__code__)))
    return "\n".join(parts)


def _names(code: Any) -> list[str]:
    names = list(code.co_names)
    for const in code.co_consts:
        if inspect.iscode(const):
            names += _names(const)
    return names


def forbid_in_code(cls: type, patterns: Mapping[str, str]) -> None:
    """Fail if the code of ``cls`` (comments and strings removed) matches a forbidden regex."""
    code = code_of(cls)
    for pattern, reason in patterns.items():
        if re.search(pattern, code):
            raise AssertionError(f"{cls.__name__}: {reason}")


def _cls(namespace: Namespace, name: str, extra: Mapping[str, str] | None = None) -> type:
    cls = learner_class(namespace, name)
    forbid_in_code(cls, {**NO_TORCH, **(extra or {})})
    return cls


#: The classes of this notebook: while one is graded, the others are the reference ones, so a
#: class built on another (Swish on Sigmoid, Tanh on Sigmoid, ...) is graded on its own code only.
LAYER_CLASSES = ("Linear", "Sigmoid", "Tanh", "ReLU", "GELU", "Swish", "Softmax")


def isolated(namespace: Namespace, name: str) -> Any:
    """Context in which every class of this notebook except ``name`` is the reference one."""
    others = {other: getattr(reference, other) for other in LAYER_CLASSES if other != name}
    return swapped(namespace, **others)  # type: ignore[arg-type]


# ---------------------------------------------------------------- Linear

def _random_linear(cls: type, cin: int, cout: int, gen: np.random.Generator) -> Any:
    layer = cls(cin, cout)
    layer.W = gen.standard_normal((cout, cin))
    layer.b = gen.standard_normal((cout, 1))
    return layer


def linear_init(namespace: Namespace) -> None:
    """Linear(in, out) creates W (out x in) and b (out x 1), float64 zeros; keyword arguments work."""
    cls = _cls(namespace, "Linear")
    for cin, cout, by_keyword in ((5, 3, False), (1, 4, False), (6, 1, True)):
        call = f"Linear(in_features={cin}, out_features={cout})" if by_keyword else f"Linear({cin}, {cout})"
        layer = cls(in_features=cin, out_features=cout) if by_keyword else cls(cin, cout)
        for name, shape in (("W", (cout, cin)), ("b", (cout, 1))):
            if not hasattr(layer, name):
                raise AssertionError(f"{call} has no attribute {name}: create self.{name} in __init__")
            value = as_float64(f"{call}.{name}", getattr(layer, name), shape)
            if getattr(layer, name).dtype != np.float64:
                raise AssertionError(f"{call}.{name} has dtype {getattr(layer, name).dtype}, expected float64")
            if np.any(value != 0):
                raise AssertionError(f"{call}.{name} should start as zeros (np.zeros)")


def linear_forward(namespace: Namespace) -> None:
    """forward(A) = A W^T + 1 b^T against torch, stores A and N, leaves A unchanged; N = 1 included."""
    cls = _cls(namespace, "Linear")
    torch, F = _torch()
    gen = rng(301)
    for N, cin, cout in ((7, 5, 3), (1, 4, 6), (11, 1, 2)):
        layer = _random_linear(cls, cin, cout, gen)
        A_in = gen.standard_normal((N, cin)) * 2
        A_copy = A_in.copy()
        what = f"Linear({cin}, {cout}).forward(A) with A of shape {A_in.shape}"
        Z_out = layer.forward(A_in)
        expected = F.linear(torch64(A_copy), torch64(layer.W), torch64(layer.b.ravel())).numpy()
        assert_close(what, Z_out, expected)
        if not np.array_equal(A_in, A_copy):
            raise AssertionError(f"{what} changed its input A in place: compute a new array instead")
        if not hasattr(layer, "A"):
            raise AssertionError(f"{what} did not store its input: set self.A = A (backward needs it)")
        assert_close(f"{what}: the stored self.A", layer.A, A_copy, rtol=0, atol=0)
        stored_N = getattr(layer, "N", None)
        if stored_N is None or np.ndim(stored_N) != 0 or int(stored_N) != N:
            raise AssertionError(f"{what} should store the batch size as self.N = {N}, got {stored_N!r}")


def _linear_backward(namespace: Namespace, seed: int, check: Callable[..., None]) -> None:
    cls = _cls(namespace, "Linear")
    torch, F = _torch()
    gen = rng(seed)
    for N, cin, cout in ((6, 4, 3), (1, 3, 5), (9, 2, 1)):
        layer = _random_linear(cls, cin, cout, gen)
        A_in = gen.standard_normal((N, cin))
        dLdZ_in = gen.standard_normal((N, cout))
        a, w, b = torch64(A_in, True), torch64(layer.W, True), torch64(layer.b.ravel(), True)
        F.linear(a, w, b).backward(torch64(dLdZ_in))
        try:
            layer.forward(A_in.copy())
        except Exception:  # noqa: BLE001 (forward is graded in its own cell)
            pass
        # Forward's bookkeeping is graded in the forward cell: where self.A and self.N are missing or
        # in the spec's form, make sure they hold the right values, so that a slip there does not
        # cost the backward cells too (a learner's own differently shaped bookkeeping is left alone).
        stored_A, stored_N = getattr(layer, "A", None), getattr(layer, "N", None)
        if stored_A is None or (isinstance(stored_A, np.ndarray) and stored_A.shape == A_in.shape):
            layer.A = A_in.copy()
        if stored_N is None or isinstance(stored_N, (int, np.integer)):
            layer.N = N
        returned = layer.backward(dLdZ_in.copy())
        what = f"Linear({cin}, {cout}).backward(dLdZ) after forward(A) with A of shape {A_in.shape}"
        check(what, layer, returned, a.grad.numpy(), w.grad.numpy(), b.grad.numpy().reshape(cout, 1))


def linear_backward_dLdA(namespace: Namespace) -> None:
    """backward returns dLdA = dLdZ W (N x Cin), against torch autograd."""
    def check(what: str, layer: Any, returned: Any, dA: np.ndarray, dW: np.ndarray, db: np.ndarray) -> None:
        assert_close(f"{what}: the returned dLdA", returned, dA)

    _linear_backward(namespace, 302, check)


def linear_backward_dLdW(namespace: Namespace) -> None:
    """backward stores dLdW = dLdZ^T A (Cout x Cin), against torch autograd."""
    def check(what: str, layer: Any, returned: Any, dA: np.ndarray, dW: np.ndarray, db: np.ndarray) -> None:
        if not hasattr(layer, "dLdW"):
            raise AssertionError(f"{what} did not store self.dLdW")
        assert_close(f"{what}: self.dLdW", layer.dLdW, dW)

    _linear_backward(namespace, 303, check)


def linear_backward_dLdb(namespace: Namespace) -> None:
    """backward stores dLdb = dLdZ^T 1 (Cout x 1), against torch autograd."""
    def check(what: str, layer: Any, returned: Any, dA: np.ndarray, dW: np.ndarray, db: np.ndarray) -> None:
        if not hasattr(layer, "dLdb"):
            raise AssertionError(f"{what} did not store self.dLdb")
        assert_close(f"{what}: self.dLdb", layer.dLdb, db)

    _linear_backward(namespace, 304, check)


# ---------------------------------------------------------------- element-wise activations

def _edge_inputs(gen: np.random.Generator, shape: tuple[int, int], scale: float, huge: bool) -> np.ndarray:
    """Random values with an exact 0 and (if ``huge``) entries of +-1000 and +-800 at random places."""
    Z = gen.standard_normal(shape) * scale
    edges = [0.0, 1000.0, -1000.0, 800.0, -800.0] if huge else [0.0]
    places = gen.choice(Z.size, size=min(len(edges), Z.size), replace=False)
    Z.flat[places] = edges[:len(places)]
    return Z


def _vectorised(name: str, layer: Any, ref_layer: Any, gen: np.random.Generator, *, backward: bool) -> None:
    """Time ``layer`` against the reference on large inputs (forward, or backward after a forward).

    For backward the reference time includes one reference forward, so a learner's backward
    that recomputes the forward pass (a correct choice) is never called slow.
    """
    for shape in TIMING_SHAPES:
        big_Z, big_G = gen.standard_normal(shape) * 3, gen.standard_normal(shape)
        with np.errstate(all="ignore"):
            if backward:
                layer.forward(big_Z)
                ref_layer.forward(big_Z)
                _assert_fast(f"{name}.backward on an input of shape {shape}", lambda: layer.backward(big_G),
                             lambda: (ref_layer.forward(big_Z), ref_layer.backward(big_G)))
            else:
                _assert_fast(f"{name}.forward on an input of shape {shape}", lambda: layer.forward(big_Z),
                             lambda: ref_layer.forward(big_Z))


def _assert_fast(what: str, learner: Callable[[], Any], reference: Callable[[], Any]) -> None:
    """Fail if ``learner`` is much slower than the vectorised ``reference`` (same input, same cell).

    The reference is timed best of 3; the learner passes as soon as one of up to 3 runs is within
    ``TIMING_RATIO`` times that plus ``TIMING_SLACK`` (a loop over 800,000 elements is far slower).
    """
    t_ref = best_time(reference)
    limit = TIMING_RATIO * t_ref + TIMING_SLACK
    times = []
    for _ in range(3):
        started = time.perf_counter()
        learner()
        times.append(time.perf_counter() - started)
        if times[-1] <= limit:
            return
    raise AssertionError(
        f"{what} took {min(times):.3f} s, the vectorised reference {t_ref:.4f} s: replace Python loops over "
        "samples or features by whole-array NumPy operations (np.where, np.maximum, element-wise * and /)")


def _torch_activation(name: str, beta: float = 1.0) -> Callable[[Any], Any]:
    torch, F = _torch()
    return {
        "Sigmoid": torch.sigmoid,
        "Tanh": torch.tanh,
        "ReLU": torch.relu,
        "GELU": lambda z: F.gelu(z, approximate="none"),
        "Swish": lambda z: z * torch.sigmoid(beta * z),
        "Softmax": lambda z: torch.softmax(z, dim=1),
    }[name]


def _torch_forward_backward(name: str, Z: np.ndarray, dLdA: np.ndarray | None = None,
                            beta: float = 1.0) -> tuple[np.ndarray, np.ndarray | None]:
    z = torch64(Z, requires_grad=True)
    a = _torch_activation(name, beta)(z)
    if dLdA is None:
        return a.detach().numpy(), None
    a.backward(torch64(dLdA))
    return a.detach().numpy(), z.grad.numpy()


#: Inputs per activation: (shapes, scale, with +-1000 edge cases)
_CASES: dict[str, tuple[tuple[tuple[int, int], ...], float, bool]] = {
    "Sigmoid": (((6, 5), (1, 7)), 4.0, True),
    "Tanh": (((5, 6), (1, 4)), 3.0, True),
    "ReLU": (((7, 4), (1, 5)), 2.0, True),
    "GELU": (((6, 3), (1, 6)), 3.0, False),
    "Swish": (((4, 7), (1, 3)), 3.0, False),
    "Softmax": (((6, 4), (1, 5)), 3.0, True),
}

#: dA/dZ written in terms of the stored A (spec table), for carrying a wrong forward into backward.
_DERIVATIVE_OF_A: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "Sigmoid": lambda A, G: G * (A - A * A),
    "Tanh": lambda A, G: G * (1 - A * A),
    "ReLU": lambda A, G: G * (A > 0),
    "Softmax": lambda A, G: A * (G - np.sum(G * A, axis=1, keepdims=True)),
}


def activation_forward(namespace: Namespace, name: str, *, seed: int) -> None:
    """forward(Z) against torch on random and edge-case inputs; stores A; vectorised where element-wise."""
    cls = _cls(namespace, name, NO_TANH if name == "Tanh" else None)
    with isolated(namespace, name):
        _activation_forward(cls, name, seed)


def _activation_forward(cls: type, name: str, seed: int) -> None:
    gen = rng(seed)
    shapes, scale, huge = _CASES[name]
    for shape in shapes:
        Z_in = _edge_inputs(gen, shape, scale, huge)
        Z_copy = Z_in.copy()
        layer = cls()
        what = f"{name}().forward(Z) with Z of shape {shape}" + (" (entries up to +-1000)" if huge else "")
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            A_out = layer.forward(Z_in)
        expected, _ = _torch_forward_backward(name, Z_copy)
        assert_close(what, A_out, expected, atol=1e-12)
        if not np.array_equal(Z_in, Z_copy):
            raise AssertionError(f"{what} changed its input Z in place: compute a new array instead")
        if not isinstance(getattr(layer, "A", None), np.ndarray):
            raise AssertionError(f"{what} did not store its output: set self.A (backward uses it)")
        assert_close(f"{what}: the stored self.A", layer.A, expected, atol=1e-12)
    if name in TIMED:
        _vectorised(name, cls(), getattr(reference, name)(), gen, backward=False)


def activation_backward(namespace: Namespace, name: str, *, seed: int) -> None:
    """backward(dLdA) = dLdA * dA/dZ against torch (or carried from the learner's own forward output)."""
    cls = _cls(namespace, name)  # no library tanh is the forward cell's rule; one penalty per mistake
    gen = rng(seed)
    shapes, scale, huge = _CASES[name]
    cases = [_edge_inputs(gen, shape, scale, huge) for shape in shapes]
    if name == "ReLU":
        cases.insert(0, np.array([[0.0, -0.0, 1e-300, -1e-300], [0.0, 3.5, -2.25, 0.0]]))
    with isolated(namespace, name):
        for Z_in in cases:
            dLdA_in = gen.standard_normal(Z_in.shape)
            layer = cls()
            what = f"{name}().backward(dLdA) after forward(Z) with Z of shape {Z_in.shape}" + \
                (" (entries up to +-1000)" if huge else "")
            _, expected = _torch_forward_backward(name, Z_in, dLdA_in)
            with np.errstate(over="ignore", under="ignore", invalid="ignore"):
                out = layer.forward(Z_in.copy())
                stored = getattr(layer, "A", None)
                returned = layer.backward(dLdA_in.copy())
            as_float64(what, returned, Z_in.shape)
            try:
                assert_close(f"{what}: the returned dLdZ", returned, expected, atol=1e-12)
            except AssertionError as wrong:
                if _carried_forward(name, out, stored, dLdA_in, returned):
                    continue
                if name == "ReLU" and np.any((Z_in == 0) & (np.asarray(returned) != 0)):
                    raise AssertionError(f"{wrong}\n  ReLU's gradient where Z is exactly 0 must be 0 (as in PyTorch): "
                                         "use A > 0, not A >= 0") from None
                raise
        if name in TIMED:
            _vectorised(name, cls(), getattr(reference, name)(), gen, backward=True)


def _carried_forward(name: str, out: Any, stored: Any, dLdA: np.ndarray, returned: Any) -> bool:
    """True if ``returned`` is the right backward for what the learner's own forward produced.

    A wrong forward pass (graded in the forward cell) must not cost the backward cell too: where the
    spec writes dA/dZ in terms of A (Sigmoid, Tanh, ReLU, Softmax), ``returned`` is accepted when it
    equals dLdA * dA/dZ evaluated at the stored self.A, provided that self.A is what forward returned
    (nan where forward overflowed counts as equal) and is not non-finite everywhere.
    """
    if name not in _DERIVATIVE_OF_A or not isinstance(stored, np.ndarray) or not isinstance(out, np.ndarray):
        return False
    if stored.shape != dLdA.shape or out.shape != stored.shape:
        return False
    stored = stored.astype(np.float64)
    if not np.any(np.isfinite(stored)) or not _same_or_both_nan(out.astype(np.float64), stored, rtol=0, atol=0):
        return False
    with np.errstate(all="ignore"):
        carried = _DERIVATIVE_OF_A[name](stored, dLdA)
    return _same_or_both_nan(np.asarray(returned, dtype=np.float64), carried)


def _same_or_both_nan(actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-9, atol: float = 1e-12) -> bool:
    """Element-wise closeness where a nan (or inf) may stand only where the expected value has the same."""
    with np.errstate(all="ignore"):
        close = np.abs(actual - expected) <= atol + rtol * np.abs(expected)
    same_special = (np.isnan(actual) & np.isnan(expected)) | (~np.isfinite(expected) & (actual == expected))
    return bool(np.all(close | same_special))


# ---------------------------------------------------------------- Swish

def swish_forward(namespace: Namespace) -> None:
    """Swish(beta) forward against torch; default beta 1.0; reads self.beta at call time (learnable)."""
    cls = _cls(namespace, "Swish")
    with isolated(namespace, "Swish"):
        _swish_forward(cls)


def _swish_forward(cls: type) -> None:
    gen = rng(351)
    default = cls()
    if not hasattr(default, "beta") or np.ndim(default.beta) != 0 or float(default.beta) != 1.0:
        raise AssertionError(f"Swish() should store beta = 1.0 as self.beta, got {getattr(default, 'beta', None)!r}")
    for beta, shape in ((1.0, (5, 4)), (0.6, (3, 7)), (2.5, (1, 6))):
        Z_in = _edge_inputs(gen, shape, 3.0, False)
        layer = cls() if beta == 1.0 else cls(beta)
        if float(layer.beta) != beta:
            raise AssertionError(f"Swish({beta}) should store self.beta = {beta}, got {layer.beta!r}")
        what = f"Swish({beta}).forward(Z) with Z of shape {shape}"
        expected, _ = _torch_forward_backward("Swish", Z_in, beta=beta)
        assert_close(what, layer.forward(Z_in.copy()), expected)
        if not isinstance(getattr(layer, "A", None), np.ndarray):
            raise AssertionError(f"{what} did not store its output: set self.A")
        assert_close(f"{what}: the stored self.A", layer.A, expected)
    layer = cls(0.8)
    layer.beta = 1.7  # what an optimiser does to a learnable parameter
    Z_in = gen.standard_normal((4, 3)) * 2
    expected, _ = _torch_forward_backward("Swish", Z_in, beta=1.7)
    assert_close("Swish(0.8) whose self.beta was then set to 1.7 (as an optimiser would): forward(Z) must use "
                 "the current self.beta, not a value copied in __init__", layer.forward(Z_in), expected)
    _vectorised("Swish", cls(), reference.Swish(1.0), gen, backward=False)


def _swish_cases(cls: type, seed: int) -> list[tuple[str, Any, Any, np.ndarray, float]]:
    """(what, layer, returned dLdZ, expected dLdZ, expected dLdbeta) for a few betas and shapes."""
    torch, _ = _torch()
    gen = rng(seed)
    cases = []
    for beta, shape in ((1.0, (5, 3)), (0.4, (2, 6)), (1.9, (1, 4))):
        Z_in = gen.standard_normal(shape) * 2.5
        dLdA_in = gen.standard_normal(shape)
        z = torch64(Z_in, requires_grad=True)
        b = torch.tensor(beta, dtype=torch.float64, requires_grad=True)
        (z * torch.sigmoid(b * z)).backward(torch64(dLdA_in))
        layer = cls(beta)
        layer.forward(Z_in.copy())
        returned = layer.backward(dLdA_in.copy())
        what = f"Swish({beta}).backward(dLdA) after forward(Z) with Z of shape {shape}"
        cases.append((what, layer, returned, z.grad.numpy(), float(b.grad)))
    return cases


def swish_backward_dLdZ(namespace: Namespace) -> None:
    """Swish backward returns dLdZ against torch autograd; vectorised."""
    cls = _cls(namespace, "Swish")
    with isolated(namespace, "Swish"):
        _swish_backward_dLdZ(cls)


def _swish_backward_dLdZ(cls: type) -> None:
    for what, _layer, returned, expected, _ in _swish_cases(cls, 352):
        assert_close(f"{what}: the returned dLdZ", returned, expected)
    _vectorised("Swish", cls(1.0), reference.Swish(1.0), rng(353), backward=True)


def swish_backward_dLdbeta(namespace: Namespace) -> None:
    """Swish backward stores dLdbeta = sum(dLdA * Z^2 s (1 - s)), one number, against torch autograd."""
    cls = _cls(namespace, "Swish")
    with isolated(namespace, "Swish"):
        _swish_backward_dLdbeta(cls)


def _swish_backward_dLdbeta(cls: type) -> None:
    for what, layer, _returned_value, _, expected in _swish_cases(cls, 354):
        if not hasattr(layer, "dLdbeta"):
            raise AssertionError(f"{what} did not store self.dLdbeta")
        value = layer.dLdbeta
        if not isinstance(value, (float, int, np.floating, np.integer, np.ndarray)) or np.size(value) != 1:
            raise AssertionError(f"{what}: self.dLdbeta should be one number (a sum over every element), "
                                 f"got {type(value).__name__} of size {np.size(value)}")
        assert_close(f"{what}: self.dLdbeta", np.asarray(value, dtype=np.float64).reshape(()), np.float64(expected))
