"""Checks whose failure messages tell a learner what went wrong and why.

Every check raises :class:`CheckFailure` (a subclass of ``AssertionError``, so
nbgrader counts it as a failed test) with a message that names

- what was called (``what``, for example ``"Linear.forward(A)"``),
- the input it was called with (shapes, optionally a small array),
- what was expected and what came back (shape, dtype, the worst element),
- a hint on the usual cause.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

__all__ = [
    "CheckFailure",
    "as_answer_array",
    "check_close",
    "check_scalar",
    "check_shape",
    "check_type",
    "describe",
]


class CheckFailure(AssertionError):
    """A check failed; the message says what, with which input, and a hint."""


def describe(value: Any) -> str:
    """One-line description of a value: type, shape and dtype for arrays."""
    if isinstance(value, np.ndarray):
        return f"numpy array of shape {value.shape} and dtype {value.dtype}"
    if isinstance(value, (list, tuple)):
        try:
            shape = np.asarray(value, dtype=float).shape
            return f"{type(value).__name__} of shape {shape}"
        except (TypeError, ValueError):
            return f"{type(value).__name__} of length {len(value)} (not rectangular numbers)"
    if value is None:
        return "None"
    return f"{type(value).__name__} {value!r}"


def _inputs_text(inputs: dict[str, Any] | None) -> str:
    if not inputs:
        return ""
    parts = []
    for name, value in inputs.items():
        if isinstance(value, np.ndarray) and value.size <= 12:
            parts.append(f"{name} = {np.array2string(value, precision=4, separator=', ')}")
        else:
            parts.append(f"{name}: {describe(value)}")
    return "\n  called with " + "; ".join(parts)


def _fail(what: str, problem: str, inputs: dict[str, Any] | None, hint: str | None) -> CheckFailure:
    message = f"{what}: {problem}{_inputs_text(inputs)}"
    if hint:
        message += f"\n  hint: {hint}"
    return CheckFailure(message)


def check_type(what: str, value: Any, expected: type | tuple[type, ...], *, hint: str | None = None) -> None:
    """Fail unless ``value`` is an instance of ``expected``."""
    if not isinstance(value, expected):
        names = (
            " or ".join(t.__name__ for t in expected) if isinstance(expected, tuple) else expected.__name__
        )
        raise _fail(what, f"expected a {names}, got {describe(value)}", None, hint)


def check_shape(
    what: str,
    value: Any,
    shape: Sequence[int],
    *,
    dtype: Any = np.float64,
    inputs: dict[str, Any] | None = None,
    hint: str | None = None,
) -> None:
    """Fail unless ``value`` is a NumPy array of the given shape (and dtype).

    This check looks at form only, never at values: it is what visible tests use
    so that they do not give the answer away. Pass ``dtype=None`` to skip the
    dtype check.
    """
    if not isinstance(value, np.ndarray):
        raise _fail(
            what,
            f"expected a numpy array of shape {tuple(shape)}, got {describe(value)}",
            inputs,
            hint or "return a numpy array (np.asarray(...) converts a list)",
        )
    if value.shape != tuple(shape):
        raise _fail(
            what,
            f"expected shape {tuple(shape)}, got shape {value.shape}",
            inputs,
            hint or "draw the shapes of every operand; a missing transpose or a wrong axis= is the usual cause",
        )
    if dtype is not None and value.dtype != np.dtype(dtype):
        raise _fail(
            what,
            f"expected dtype {np.dtype(dtype)}, got dtype {value.dtype}",
            inputs,
            hint or "integer arrays lose the fractional part; keep the computation in float64",
        )


def check_close(
    what: str,
    actual: Any,
    expected: np.ndarray,
    *,
    inputs: dict[str, Any] | None = None,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    hint: str | None = None,
) -> None:
    """Fail unless ``actual`` has ``expected``'s shape and matches it element-wise.

    The comparison is ``|actual - expected| <= atol + rtol * |expected|`` for
    every element; NaN never matches. On failure the message names the worst
    element: its index, the expected and the actual value.
    """
    expected = np.asarray(expected, dtype=np.float64)
    check_shape(what, actual, expected.shape, dtype=None, inputs=inputs, hint=hint)
    actual_f = np.asarray(actual, dtype=np.float64)
    if not np.all(np.isfinite(actual_f)) and np.all(np.isfinite(expected)):
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(actual_f))[0])
        raise _fail(
            what,
            f"got a non-finite value {actual_f[index]} at index {index} where {expected[index]:.6g} was expected",
            inputs,
            hint or "an overflow in np.exp is the usual cause: rewrite the formula so exp only sees non-positive numbers",
        )
    error = np.abs(actual_f - expected)
    allowed = atol + rtol * np.abs(expected)
    if np.all(error <= allowed):
        return
    excess = np.where(np.isnan(error), np.inf, error - allowed)
    index = np.unravel_index(int(np.argmax(excess)), expected.shape) if expected.ndim else ()
    index = tuple(int(i) for i in index)
    n_bad = int(np.sum(~(error <= allowed)))
    raise _fail(
        what,
        f"wrong values in {n_bad} of {expected.size} elements; worst at index {index}: "
        f"expected {expected[index]:.8g}, got {actual_f[index]:.8g}",
        inputs,
        hint,
    )


def check_scalar(
    what: str,
    actual: Any,
    expected: float,
    *,
    inputs: dict[str, Any] | None = None,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    hint: str | None = None,
) -> None:
    """Fail unless ``actual`` is a real number (or size-1 array) close to ``expected``."""
    try:
        value = float(np.asarray(actual, dtype=np.float64).reshape(()))
    except (TypeError, ValueError):
        raise _fail(what, f"expected a single number, got {describe(actual)}", inputs, hint) from None
    if not math.isclose(value, expected, rel_tol=rtol, abs_tol=atol):
        raise _fail(what, f"expected {expected:.8g}, got {value:.8g}", inputs, hint)


def as_answer_array(name: str, value: Any, shape: Sequence[int]) -> np.ndarray:
    """Turn a pen-and-paper answer into a float64 array of the given shape.

    Accepts a plain number (for shape ``()``), a nested list, a tuple or a NumPy
    array. Raises :class:`CheckFailure` naming the answer when it is missing
    (still ``None``), not numeric, or of another shape. A length-1 list is
    accepted where a scalar is asked for, and a scalar where shape ``(1,)`` is
    asked for, since both are natural ways to write one number.
    """
    shape = tuple(shape)
    if value is None:
        raise CheckFailure(f"{name} is still None: replace None with your answer (shape {shape})")
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CheckFailure(
            f"{name} must contain plain numbers, got {describe(value)}"
            "\n  hint: write numbers such as 0.25, not strings or expressions with undefined names"
        ) from None
    if array.size == 1 and int(np.prod(shape, dtype=int)) == 1:
        array = array.reshape(shape)
    if array.shape != shape:
        raise CheckFailure(
            f"{name} should have shape {shape}, got {describe(value)}"
            "\n  hint: a (2, 3) answer is a list of 2 rows, each a list of 3 numbers"
        )
    if not np.all(np.isfinite(array)):
        raise CheckFailure(f"{name} contains a value that is not a finite number: {array}")
    return array
