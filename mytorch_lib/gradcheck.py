"""Numeric gradient checking by central differences, in float64.

One checker for the whole course: layers (anything with ``forward`` and
``backward``) and losses (``forward(A, Y)`` returning a scalar and
``backward()`` returning ``dLdA``). The relative error of two gradients is
``|a - b| / max(1e-8, |a| + |b|)``, taken element-wise; the worst element is
reported.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np

from mytorch_lib.checks import CheckFailure, diagnose

__all__ = [
    "GRADIENT_ATTRIBUTES",
    "check_layer_gradients",
    "check_loss_gradients",
    "numeric_gradient",
    "relative_error",
]

#: Parameter attribute -> attribute where ``backward`` stores its gradient.
GRADIENT_ATTRIBUTES: dict[str, str] = {
    "W": "dLdW",
    "b": "dLdb",
    "BW": "dLdBW",
    "Bb": "dLdBb",
    "beta": "dLdbeta",
}


def relative_error(a: Any, b: Any) -> float:
    """Largest element-wise ``|a - b| / max(1e-8, |a| + |b|)``; 0.0 for empty arrays."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def numeric_gradient(f: Callable[[], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of the scalar ``f()`` with respect to array ``x``.

    ``x`` is perturbed in place, one element at a time, and restored afterwards;
    ``f`` must read ``x`` each time it is called. Returns an array shaped like ``x``.
    """
    if not isinstance(x, np.ndarray) or x.dtype != np.float64:
        raise TypeError("numeric_gradient needs a float64 numpy array to perturb in place")
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        f_plus = float(f())
        x[i] = old - eps
        f_minus = float(f())
        x[i] = old
        grad[i] = (f_plus - f_minus) / (2 * eps)
    return grad


def _scalar_numeric_gradient(f: Callable[[], float], obj: Any, name: str, eps: float) -> float:
    old = getattr(obj, name)
    setattr(obj, name, old + eps)
    f_plus = float(f())
    setattr(obj, name, old - eps)
    f_minus = float(f())
    setattr(obj, name, old)
    return (f_plus - f_minus) / (2 * eps)


#: Where to look when a gradient of a layer with weights is wrong, and when an element-wise one is.
MATRIX_HINT = "write the chain rule for one element first, then check every transpose and sum axis"
ELEMENTWISE_HINT = ("each element of the gradient is the incoming dLdA times the derivative dA/dZ at that element, "
                    "from what forward stored: check the derivative formula and that it uses the right stored array")


def _worst(what: str, name: str, analytic: Any, numeric: np.ndarray, tol: float, atol: float = 1e-7,
           hint: str = MATRIX_HINT) -> None:
    """Fail on the worst element whose relative error exceeds ``tol``.

    Elements whose absolute difference is below ``atol`` always pass: central
    differences carry a rounding error of about 1e-10, which makes the relative
    error of tiny gradient entries meaningless.
    """
    __tracebackhide__ = True
    analytic_arr = np.asarray(analytic, dtype=np.float64) if analytic is not None else None
    if analytic_arr is None:
        raise CheckFailure(f"{what}: backward did not set {name}\n  hint: store it on self inside backward")
    if analytic_arr.shape != numeric.shape:
        raise CheckFailure(
            f"{what}: {name} has shape {analytic_arr.shape}, expected {numeric.shape} "
            "(a gradient always has the shape of what it is the gradient of)"
        )
    diff = np.abs(analytic_arr - numeric)
    err = np.where(diff > atol, diff / np.maximum(1e-8, np.abs(analytic_arr) + np.abs(numeric)), 0.0)
    if err.size and float(err.max()) > tol:
        index = tuple(int(i) for i in np.unravel_index(int(np.argmax(err)), err.shape)) if err.ndim else ()
        diagnosis = diagnose(analytic_arr, numeric)
        raise CheckFailure(
            f"{what}: {name} disagrees with the numeric gradient; worst at index {index}: "
            f"backward gave {analytic_arr[index]:.8g}, central differences give {numeric[index]:.8g} "
            f"(relative error {err[index]:.2e} > {tol:.0e})"
            + (f"\n  diagnosis: {diagnosis}" if diagnosis else f"\n  hint: {hint}")
        )


def check_layer_gradients(
    layer: Any,
    X: np.ndarray,
    *,
    params: Iterable[str] | None = None,
    seed: int = 0,
    eps: float = 1e-6,
    tol: float = 1e-6,
    what: str | None = None,
) -> None:
    """Check ``layer.backward`` against central differences.

    The scalar used is ``L = sum(layer.forward(X) * G)`` with a fixed random
    ``G``, so ``dLd(output) = G``. Checks the returned input gradient and, for
    each parameter in ``params`` (default: every attribute of
    :data:`GRADIENT_ATTRIBUTES` the layer has), the stored gradient.

    Args:
        layer: object with ``forward(X)`` and ``backward(dLdOut) -> dLdX``.
        X: float64 input of shape ``N x Cin``; not modified.
        params: parameter attribute names to check, for example ``["W", "b"]``.
        seed: seed of the random upstream gradient ``G``.
    Raises:
        CheckFailure naming the layer, the gradient and the worst element.
    """
    __tracebackhide__ = True
    what = what or f"{type(layer).__name__}.backward"
    X = np.array(X, dtype=np.float64)
    out = layer.forward(X.copy())
    if not isinstance(out, np.ndarray):
        raise CheckFailure(f"{what}: forward returned {type(out).__name__}, expected a numpy array")
    G = np.random.default_rng(seed).standard_normal(out.shape)
    names = [p for p in GRADIENT_ATTRIBUTES if hasattr(layer, p)] if params is None else list(params)

    layer.forward(X.copy())
    dLdX = layer.backward(G.copy())
    analytic = {p: np.array(getattr(layer, GRADIENT_ATTRIBUTES[p], None), dtype=np.float64)
                if getattr(layer, GRADIENT_ATTRIBUTES[p], None) is not None else None for p in names}

    def loss_of_input() -> float:
        return float(np.sum(layer.forward(X_work) * G))

    X_work = X.copy()
    hint = MATRIX_HINT if any(hasattr(layer, p) for p in ("W", "BW")) else ELEMENTWISE_HINT
    _worst(what, "the returned dLdX", dLdX, numeric_gradient(loss_of_input, X_work, eps), tol, hint=hint)
    for p in names:
        value = getattr(layer, p)
        if isinstance(value, np.ndarray):
            numeric = numeric_gradient(loss_of_input, value, eps)
        else:
            numeric = np.asarray(_scalar_numeric_gradient(loss_of_input, layer, p, eps))
        _worst(what, GRADIENT_ATTRIBUTES[p], analytic[p], numeric, tol, hint=hint)


def check_loss_gradients(
    loss: Any,
    A: np.ndarray,
    Y: np.ndarray,
    *,
    eps: float = 1e-6,
    tol: float = 1e-6,
    what: str | None = None,
) -> None:
    """Check ``loss.backward()`` (the ``dLdA`` of a loss object) against central differences.

    Args:
        loss: object with ``forward(A, Y) -> scalar`` and ``backward() -> dLdA``.
        A: float64 predictions, ``N x C``; Y: targets, ``N x C``.
    """
    __tracebackhide__ = True
    what = what or f"{type(loss).__name__}.backward"
    A_work = np.array(A, dtype=np.float64)
    Y = np.array(Y, dtype=np.float64)
    loss.forward(A_work.copy(), Y)
    dLdA = loss.backward()
    numeric = numeric_gradient(lambda: loss.forward(A_work, Y), A_work, eps)
    _worst(what, "dLdA", dLdA, numeric, tol)
