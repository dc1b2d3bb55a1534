"""Verdicts of ``02_numpy_library/1_layers``: Linear and the activations against PyTorch in float64.

For every ``check_<behaviour>`` of :mod:`course_tools.hidden.probes.layers` there is a
function of the same name here. It draws the cell's hidden inputs again from the seed
(with the probe module's ``cases_*`` functions), computes the expected values with
PyTorch in float64 and compares them with what the probe recorded from the learner's
code. Messages say what was called, on what shape and what is wrong, never what the
right value would have been.

Fairness, as before the move out of the kernel:

- a backward cell never fails because of the forward pass alone: the Linear probes
  repair missing ``self.A``/``self.N`` before backward, and for the activations whose
  derivative the spec writes in terms of ``A`` (Sigmoid, Tanh, ReLU, Softmax) backward
  is also accepted when it is right for the ``A`` the learner's own forward stored;
- any right style scores: stable or naive-but-right formulas, ``np.where`` or masks,
  ``einsum``, ``math.erf`` through ``np.vectorize``, the per-row Jacobian loop of
  ``Softmax.backward``;
- vectorisation is judged only where the notebook asks for it (Sigmoid, Tanh and ReLU,
  forward and backward, and Swish), as the learner's time on a large input against
  whole-array NumPy work on the same input, measured in the same cell.

Classes built on other classes of the notebook. Nothing of the grader's own enters the
kernel any more, so a class is run as the learner wrote it, on top of the learner's
other classes. What that could cost is carried forward here instead:

- values: where a class may be built on the learner's ``Sigmoid`` (``Swish``, as the
  notebook suggests, and ``Tanh`` as ``2 sigmoid(2 Z) - 1``), the probe also records
  what that ``Sigmoid`` returns on the arrays the class would hand it, and the class is
  accepted when it is right either against PyTorch or with those sigmoid values in
  place of the true ones. A ``Sigmoid`` bug therefore costs the ``Sigmoid`` cells only,
  as the notebook promises ("hidden tests grade Swish with a correct sigmoid");
- running times: while a class is timed, the probe replaces the notebook's other
  classes by stand-ins that return a constant array, so a slow ``Sigmoid`` does not
  make ``Swish`` or ``Tanh`` slow.

A class that uses another class of the notebook in some other way (``Swish`` built on
``Sigmoid.backward``, say) is graded on the learner's own classes as they are.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from course_tools.hidden.probes import layers as probes
from course_tools.hidden.probes.kit import rng as draw
from course_tools.hidden.verdicts import kit
from course_tools.hidden.verdicts.kit import Evidence, Opaque, Wrong

#: Tanh must be built from exponentials (course spec, section 2).
NO_TANH = {r"\btanh\b": "computes tanh with a library tanh (np.tanh, math.tanh, ...); "
                        "build it from np.exp as the notebook shows"}

#: Allowed slowdown against whole-array NumPy work on the same input (a few exp, abs, * and /).
#: Right styles need at most about 4 times that on a loaded two-core machine (the stable
#: sigmoid with np.where, Swish on Sigmoid, backward passes that recompute forward); a Python
#: loop over samples or features needs 20 to 100 times, np.vectorize about 30.
TIMING_RATIO = 12.0
#: Seconds added to the allowed time, for timer noise.
TIMING_SLACK = 0.05


def _torch() -> tuple[Any, Any]:
    import torch
    import torch.nn.functional as F

    return torch, F


def _shown(value: Any) -> str:
    """A learner's value, briefly (their own output, never an expected one)."""
    if isinstance(value, Opaque):
        return value.type_name
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _made(evidence: Evidence, key: str, what: str) -> None:
    """Fail if building the layer (or setting its parameters) raised."""
    error = evidence.raised(key)
    if error is not None:
        raise Wrong(f"{what} raised {error}")


def _stored(evidence: Evidence, key: str, what: str, shape: tuple[int, ...], hint: str) -> np.ndarray:
    """A stored array attribute as float64, failing clearly when missing, not an array, or misshapen."""
    value = evidence.attribute(key, what, hint)
    if not isinstance(value, np.ndarray):
        raise Wrong(f"{what} should be a numpy array, got {_shown(value)}")
    if value.shape != tuple(shape):
        raise Wrong(f"{what} has shape {value.shape}, expected {tuple(shape)}")
    return value.astype(np.float64)


def _close_to_any(what: str, actual: np.ndarray, candidates: list[np.ndarray]) -> None:
    """Pass if ``actual`` is close to one of ``candidates``; the message is about the first (PyTorch's)."""
    first: Wrong | None = None
    for expected in candidates:
        try:
            kit.assert_close(what, actual, expected)
            return
        except Wrong as wrong:
            first = first or wrong
    assert first is not None
    raise first


def _learner_sigmoid(evidence: Evidence, key: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """What the learner's own Sigmoid returned on the array under ``key`` (None if unusable)."""
    item = evidence.items.get(key)
    if item is None or evidence.raised(key) is not None:
        return None
    try:
        value = kit.decode(item)
    except Wrong:
        return None
    if not isinstance(value, np.ndarray) or value.shape != tuple(shape):
        return None
    return value.astype(np.float64)


def vectorised_timings(evidence: Evidence, what: str, count: int) -> None:
    """Fail unless the recorded running times (keys time:j, calibration:j) are those of whole-array code."""
    for j, shape in enumerate(probes.TIMING_SHAPES[:count]):
        described = f"{what} on an input of shape {shape}"
        seconds = evidence.seconds(f"time:{j}", described)
        calibration = evidence.seconds(f"calibration:{j}", f"the timing of whole-array work of shape {shape}")
        kit.vectorised(described, seconds, calibration, ratio=TIMING_RATIO, slack=TIMING_SLACK)


# ---------------------------------------------------------------- Linear

def check_linear_init(evidence: Evidence) -> None:
    """Linear(in, out) creates W (out x in) and b (out x 1), float64 zeros; keyword arguments work."""
    kit.written_here(evidence, "Linear")
    for i, (cin, cout, by_keyword) in enumerate(probes.cases_linear_init(draw(evidence.seed))):
        call = f"Linear(in_features={cin}, out_features={cout})" if by_keyword else f"Linear({cin}, {cout})"
        _made(evidence, f"make:{i}", call)
        for name, shape in (("W", (cout, cin)), ("b", (cout, 1))):
            value = evidence.attribute(f"{name}:{i}", f"{call}.{name}", f"create self.{name} in __init__")
            if not isinstance(value, np.ndarray):
                raise Wrong(f"{call}.{name} should be a numpy array, got {_shown(value)}")
            if value.shape != shape:
                raise Wrong(f"{call}.{name} has shape {value.shape}, expected {shape}"
                            + (" (one row per output feature)" if name == "W" else " (a column)"))
            if value.dtype != np.float64:
                raise Wrong(f"{call}.{name} has dtype {value.dtype}, expected float64")
            if np.any(value != 0):
                raise Wrong(f"{call}.{name} should start as zeros (np.zeros)")


def check_linear_forward(evidence: Evidence) -> None:
    """forward(A) = A W^T + 1 b^T against torch; stores A and N; leaves A unchanged; N = 1 included."""
    kit.written_here(evidence, "Linear")
    _, F = _torch()
    for i, case in enumerate(probes.cases_linear_forward(draw(evidence.seed))):
        N, cin, cout = case["N"], case["cin"], case["cout"]
        what = f"Linear({cin}, {cout}).forward(A) with A of shape {(N, cin)}"
        _made(evidence, f"make:{i}", f"Linear({cin}, {cout}) with W and b set")
        Z = evidence.array(f"forward:{i}", what, (N, cout))
        expected = F.linear(kit.torch64(case["A"]), kit.torch64(case["W"]), kit.torch64(case["b"].ravel())).numpy()
        kit.assert_close(what, Z, expected)
        after = evidence.array(f"input:{i}", f"{what}: the input A")
        if after.shape != case["A"].shape or not np.array_equal(after, case["A"]):
            raise Wrong(f"{what} changed its input A in place: compute a new array instead")
        stored = _stored(evidence, f"A:{i}", f"{what}: the stored self.A", (N, cin),
                         "set self.A = A (backward needs it)")
        kit.assert_close(f"{what}: the stored self.A", stored, case["A"], rtol=0, atol=0)
        stored_N = evidence.attribute(f"N:{i}", f"{what}: self.N", "store the batch size, self.N = A.shape[0]")
        if isinstance(stored_N, np.ndarray) and stored_N.size == 1 and stored_N.ndim == 0:
            stored_N = stored_N.item()
        if isinstance(stored_N, bool) or not isinstance(stored_N, (int, float)) or stored_N != N:
            raise Wrong(f"{what} should store the batch size as self.N = {N} (the number of rows of A), "
                        f"got {_shown(stored_N)}")


def _linear_backward(evidence: Evidence, judge: Callable[[str, int, dict[str, Any], dict[str, np.ndarray]], None]) -> None:
    kit.written_here(evidence, "Linear")
    _, F = _torch()
    for i, case in enumerate(probes.cases_linear_backward(draw(evidence.seed))):
        N, cin, cout = case["N"], case["cin"], case["cout"]
        _made(evidence, f"make:{i}", f"Linear({cin}, {cout}) with W and b set")
        a, w = kit.torch64(case["A"], True), kit.torch64(case["W"], True)
        b = kit.torch64(case["b"].ravel(), True)
        F.linear(a, w, b).backward(kit.torch64(case["dLdZ"]))
        grads = {"dLdA": a.grad.numpy(), "dLdW": w.grad.numpy(), "dLdb": b.grad.numpy().reshape(cout, 1)}
        what = f"Linear({cin}, {cout}).backward(dLdZ) after forward(A) with A of shape {(N, cin)}"
        error = evidence.raised(f"backward:{i}")
        if error is not None:
            raise Wrong(f"{what} raised {error}")
        judge(what, i, case, grads)


def check_linear_backward_dLdA(evidence: Evidence) -> None:
    """backward returns dLdA = dLdZ W (N x Cin), against torch autograd."""
    def judge(what: str, i: int, case: dict[str, Any], grads: dict[str, np.ndarray]) -> None:
        returned = evidence.array(f"backward:{i}", f"{what}: the returned dLdA", grads["dLdA"].shape)
        kit.assert_close(f"{what}: the returned dLdA", returned, grads["dLdA"])

    _linear_backward(evidence, judge)


def check_linear_backward_dLdW(evidence: Evidence) -> None:
    """backward stores dLdW = dLdZ^T A (Cout x Cin), against torch autograd."""
    def judge(what: str, i: int, case: dict[str, Any], grads: dict[str, np.ndarray]) -> None:
        stored = _stored(evidence, f"dLdW:{i}", f"{what}: self.dLdW", grads["dLdW"].shape,
                         "store the weight gradient as self.dLdW (the shape of W)")
        kit.assert_close(f"{what}: self.dLdW", stored, grads["dLdW"])

    _linear_backward(evidence, judge)


def check_linear_backward_dLdb(evidence: Evidence) -> None:
    """backward stores dLdb = dLdZ^T 1 (Cout x 1), against torch autograd."""
    def judge(what: str, i: int, case: dict[str, Any], grads: dict[str, np.ndarray]) -> None:
        stored = _stored(evidence, f"dLdb:{i}", f"{what}: self.dLdb", grads["dLdb"].shape,
                         "store the bias gradient as self.dLdb (the shape of b, a column)")
        kit.assert_close(f"{what}: self.dLdb", stored, grads["dLdb"])

    _linear_backward(evidence, judge)


# ---------------------------------------------------------------- activations

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


def _forward_backward(name: str, Z: np.ndarray, dLdA: np.ndarray | None = None,
                      beta: float = 1.0) -> tuple[np.ndarray, np.ndarray | None]:
    z = kit.torch64(Z, requires_grad=True)
    a = _torch_activation(name, beta)(z)
    if dLdA is None:
        return a.detach().numpy(), None
    a.backward(kit.torch64(dLdA))
    return a.detach().numpy(), z.grad.numpy()


#: dA/dZ written in terms of the stored A (spec table), for carrying a wrong forward into backward.
DERIVATIVE_OF_A: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "Sigmoid": lambda A, G: G * (A - A * A),
    "Tanh": lambda A, G: G * (1 - A * A),
    "ReLU": lambda A, G: G * (A > 0),
    "Softmax": lambda A, G: A * (G - np.sum(G * A, axis=1, keepdims=True)),
}


def _activation_forward(name: str) -> Callable[[Evidence], None]:
    def check(evidence: Evidence) -> None:
        kit.written_here(evidence, name, NO_TANH if name == "Tanh" else None)
        huge = probes.ACTIVATION_CASES[name][2]
        for i, Z in enumerate(probes.cases_activation_forward(name, draw(evidence.seed))):
            what = f"{name}().forward(Z) with Z of shape {Z.shape}" + (" (entries up to +-1000)" if huge else "")
            _made(evidence, f"make:{i}", f"{name}()")
            expected, _ = _forward_backward(name, Z)
            candidates = [expected]
            if name in probes.SIGMOID_FACTOR:  # built on the learner's own Sigmoid: 2 sigmoid(2 Z) - 1
                s = _learner_sigmoid(evidence, f"sigmoid:{i}", Z.shape)
                if s is not None:
                    candidates.append(2 * s - 1)
            out = evidence.array(f"forward:{i}", what, Z.shape)
            _close_to_any(what, out, candidates)
            after = evidence.array(f"input:{i}", f"{what}: the input Z")
            if after.shape != Z.shape or not np.array_equal(after, Z):
                raise Wrong(f"{what} changed its input Z in place: compute a new array instead")
            stored = _stored(evidence, f"A:{i}", f"{what}: the stored self.A", Z.shape,
                             "set self.A to the output (backward uses it)")
            _close_to_any(f"{what}: the stored self.A", stored, candidates)
        if name in probes.TIMED:
            vectorised_timings(evidence, f"{name}.forward", len(probes.TIMING_SHAPES))

    check.__name__ = check.__qualname__ = f"check_{name.lower()}_forward"
    check.__doc__ = f"{name}.forward against torch on random and edge-case inputs; stores A."
    return check


def _activation_backward(name: str) -> Callable[[Evidence], None]:
    def check(evidence: Evidence) -> None:
        kit.written_here(evidence, name)  # no library tanh is the forward cell's rule: one penalty per mistake
        huge = probes.ACTIVATION_CASES[name][2]
        for i, (Z, dLdA) in enumerate(probes.cases_activation_backward(name, draw(evidence.seed))):
            what = f"{name}().backward(dLdA) after forward(Z) with Z of shape {Z.shape}" + \
                (" (entries up to +-1000)" if huge else "")
            _made(evidence, f"make:{i}", f"{name}()")
            error = evidence.raised(f"backward:{i}")
            if error is not None:
                forward_error = evidence.raised(f"forward:{i}")
                raise Wrong(f"{what} raised {error}"
                            + (f" (forward had raised {forward_error})" if forward_error else ""))
            _, expected = _forward_backward(name, Z, dLdA)
            returned = evidence.array(f"backward:{i}", f"{what}: the returned dLdZ", Z.shape)
            try:
                kit.assert_close(f"{what}: the returned dLdZ", returned, expected)
            except Wrong as wrong:
                if _carried_forward(evidence, name, i, dLdA, returned):
                    continue
                if name == "ReLU" and np.any((Z == 0) & (returned != 0)):
                    raise Wrong(f"{wrong}. ReLU's gradient where Z is exactly 0 must be 0 (as in PyTorch): "
                                "use A > 0, not A >= 0") from None
                raise
        if name in probes.TIMED:
            vectorised_timings(evidence, f"{name}.backward", len(probes.TIMING_SHAPES))

    check.__name__ = check.__qualname__ = f"check_{name.lower()}_backward"
    check.__doc__ = (f"{name}.backward(dLdA) = dLdA * dA/dZ against torch, or right for the A the learner's "
                     "own forward stored.")
    return check


def _carried_forward(evidence: Evidence, name: str, i: int, dLdA: np.ndarray, returned: np.ndarray) -> bool:
    """True if ``returned`` is the right backward for what the learner's own forward produced.

    A wrong forward pass (graded in the forward cell) must not cost the backward cell too: where the
    spec writes dA/dZ in terms of A (Sigmoid, Tanh, ReLU, Softmax), ``returned`` is accepted when it
    equals dLdA * dA/dZ evaluated at the stored self.A, provided that self.A is what forward returned
    (nan where forward overflowed counts as equal) and is not non-finite everywhere.
    """
    if name not in DERIVATIVE_OF_A:
        return False
    try:
        out = evidence.value(f"forward:{i}", "forward")
        stored = evidence.value(f"A:{i}", "self.A")
    except Wrong:
        return False
    if not isinstance(stored, np.ndarray) or not isinstance(out, np.ndarray):
        return False
    if stored.shape != dLdA.shape or out.shape != stored.shape:
        return False
    stored = stored.astype(np.float64)
    if not np.any(np.isfinite(stored)) or not _same_or_both_nan(out.astype(np.float64), stored, rtol=0, atol=0):
        return False
    with np.errstate(all="ignore"):
        carried = DERIVATIVE_OF_A[name](stored, dLdA)
    return _same_or_both_nan(returned, carried)


def _same_or_both_nan(actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-9, atol: float = 1e-12) -> bool:
    """Element-wise closeness where a nan (or inf) may stand only where the expected value has the same."""
    with np.errstate(all="ignore"):
        close = np.abs(actual - expected) <= atol + rtol * np.abs(expected)
        same_special = (np.isnan(actual) & np.isnan(expected)) | (~np.isfinite(expected) & (actual == expected))
    return bool(np.all(close | same_special))


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

def _is_number(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return value.size == 1 and value.dtype.kind in "iuf"
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value: Any) -> float:
    return float(np.asarray(value, dtype=np.float64).reshape(()))


def check_swish_forward(evidence: Evidence) -> None:
    """Swish(beta) forward against torch; default beta 1.0; reads self.beta at call time (learnable)."""
    kit.written_here(evidence, "Swish")
    drawn = probes.cases_swish_forward(draw(evidence.seed))
    _made(evidence, "make:default", "Swish()")
    default = evidence.attribute("beta:default", "Swish().beta", "store the beta argument as self.beta")
    if not _is_number(default) or _number(default) != 1.0:
        raise Wrong(f"Swish() should store beta = 1.0 (the default) as self.beta, got {_shown(default)}")
    for i, (beta, Z, by_default) in enumerate(drawn["cases"]):
        call = "Swish()" if by_default else "Swish(beta)"
        other = "" if by_default else " (a beta other than 1)"
        _made(evidence, f"make:{i}", call + other)
        stored_beta = evidence.attribute(f"beta:{i}", f"{call}{other}: self.beta", "store the beta argument as self.beta")
        if not _is_number(stored_beta) or _number(stored_beta) != beta:
            raise Wrong(f"{call}{other} should store the beta it is given as self.beta, got {_shown(stored_beta)}")
        what = f"{call}.forward(Z) with Z of shape {Z.shape}{other}"
        expected, _ = _forward_backward("Swish", Z, beta=beta)
        candidates = [expected]
        s = _learner_sigmoid(evidence, f"sigmoid:{i}", Z.shape)
        if s is not None:  # built on the learner's own Sigmoid: Z sigmoid(beta Z)
            candidates.append(Z * s)
        _close_to_any(what, evidence.array(f"forward:{i}", what, Z.shape), candidates)
        stored = _stored(evidence, f"A:{i}", f"{what}: the stored self.A", Z.shape, "set self.A to the output")
        _close_to_any(f"{what}: the stored self.A", stored, candidates)
    first, then, Z = drawn["learnable"]
    what = f"Swish(beta).forward(Z) with Z of shape {Z.shape}, after self.beta was changed (as an optimiser does)"
    _made(evidence, "make:learnable", "Swish(beta), then setting self.beta")
    expected, _ = _forward_backward("Swish", Z, beta=then)
    candidates = [expected]
    s = _learner_sigmoid(evidence, "sigmoid:learnable", Z.shape)
    if s is not None:
        candidates.append(Z * s)
    try:
        _close_to_any(what, evidence.array("forward:learnable", what, Z.shape), candidates)
    except Wrong as wrong:
        raise Wrong(f"{wrong}: forward must use the current self.beta, not a value copied in __init__") from None
    vectorised_timings(evidence, "Swish.forward", len(probes.TIMING_SHAPES))


def _swish_cases(evidence: Evidence) -> list[tuple[str, int, np.ndarray, np.ndarray, float, np.ndarray | None]]:
    """(what, index, Z, dLdZ, dLdbeta, learner's sigmoid(beta Z)) of each case, gradients from torch."""
    torch, _ = _torch()
    cases = []
    for i, (beta, Z, dLdA) in enumerate(probes.cases_swish_backward(draw(evidence.seed))):
        call, other = ("Swish()", "") if beta == 1.0 else ("Swish(beta)", " (a beta other than 1)")
        what = f"{call}.backward(dLdA) after forward(Z) with Z of shape {Z.shape}{other}"
        _made(evidence, f"make:{i}", call + other)
        error = evidence.raised(f"backward:{i}")
        if error is not None:
            forward_error = evidence.raised(f"forward:{i}")
            raise Wrong(f"{what} raised {error}" + (f" (forward had raised {forward_error})" if forward_error else ""))
        z = kit.torch64(Z, requires_grad=True)
        b = torch.tensor(beta, dtype=torch.float64, requires_grad=True)
        (z * torch.sigmoid(b * z)).backward(kit.torch64(dLdA))
        cases.append((what, i, Z, z.grad.numpy(), float(b.grad), _learner_sigmoid(evidence, f"sigmoid:{i}", Z.shape)))
    return cases


def check_swish_backward_dLdZ(evidence: Evidence) -> None:
    """Swish backward returns dLdZ against torch autograd (or with the learner's own sigmoid); vectorised."""
    kit.written_here(evidence, "Swish")
    drawn = probes.cases_swish_backward(draw(evidence.seed))
    for (what, i, Z, expected, _, s), (beta, _, dLdA) in zip(_swish_cases(evidence), drawn):
        candidates = [expected]
        if s is not None:
            candidates.append(dLdA * (s + beta * Z * s * (1 - s)))
        returned = evidence.array(f"backward:{i}", f"{what}: the returned dLdZ", Z.shape)
        _close_to_any(f"{what}: the returned dLdZ", returned, candidates)
    vectorised_timings(evidence, "Swish.backward", len(probes.TIMING_SHAPES))


def check_swish_backward_dLdbeta(evidence: Evidence) -> None:
    """Swish backward stores dLdbeta = sum(dLdA * Z^2 s (1 - s)), one number, against torch autograd."""
    kit.written_here(evidence, "Swish")
    drawn = probes.cases_swish_backward(draw(evidence.seed))
    for (what, i, Z, _, expected, s), (_, _, dLdA) in zip(_swish_cases(evidence), drawn):
        value = evidence.attribute(f"dLdbeta:{i}", f"{what}: self.dLdbeta", "store the gradient of beta as self.dLdbeta")
        if not _is_number(value):
            size = value.size if isinstance(value, np.ndarray) else None
            raise Wrong(f"{what}: self.dLdbeta should be one number (a sum over every element), got "
                        f"{_shown(value)}" + (f" of size {size}" if size is not None else ""))
        candidates = [np.float64(expected)]
        if s is not None:
            candidates.append(np.float64(np.sum(dLdA * Z * Z * s * (1 - s))))
        _close_to_any(f"{what}: self.dLdbeta", np.asarray(_number(value)), candidates)
