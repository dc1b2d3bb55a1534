"""Checks whose failure messages tell a learner what went wrong and why.

Every check raises :class:`CheckFailure` (a subclass of ``AssertionError``, so
nbgrader counts it as a failed test) with a message that names

- what was called (``what``, for example ``"Linear.forward(A)"``),
- the input it was called with (shapes, optionally small arrays),
- what was expected and what came back (shape, dtype, the worst element),
- a diagnosis when the wrong answer has a recognisable cause: one of the
  typical slips the check was given (``diagnoses``: message -> the answer that
  slip produces), a constant factor or a flipped sign, a transpose, an axis lost
  to a missing ``keepdims=True``; otherwise a hint that points at the cause
  without handing over the solution.

The checks mark their frames with ``__tracebackhide__``, so IPython's
tracebacks show the learner's cell and the failed check, not the library's
inner workings.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

__all__ = [
    "CheckFailure",
    "as_answer_array",
    "call_checked",
    "check_close",
    "check_scalar",
    "check_shape",
    "check_type",
    "describe",
    "diagnose",
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
            text = " ".join(np.array2string(value, precision=4, separator=", ").split())  # one line per input
            parts.append(f"{name} = {text}")
        else:
            parts.append(f"{name}: {describe(value)}")
    return "\n  called with:" + "".join(f"\n    {part}" for part in parts)


def _fail(what: str, problem: str, inputs: dict[str, Any] | None, hint: str | None,
          diagnosis: str | None = None) -> CheckFailure:
    message = f"{what}: {problem}{_inputs_text(inputs)}"
    if diagnosis:
        message += f"\n  diagnosis: {diagnosis}"
    elif hint:
        message += f"\n  hint: {hint}"
    return CheckFailure(message)


def _factor_text(k: float) -> str:
    """``k`` as a learner would say it: ``2``, ``1/4``, ``0.37``."""
    if abs(k - round(k)) < 1e-9 * max(1.0, abs(k)):
        return f"{int(round(k))}"
    if abs(1 / k - round(1 / k)) < 1e-9 * max(1.0, abs(1 / k)):
        return f"1/{int(round(1 / k))}"
    return f"{k:.4g}"


def diagnose(actual: Any, expected: Any, diagnoses: Mapping[str, Any] | None = None) -> str | None:
    """The likely cause of ``actual`` being wrong, or None.

    First the typical slips given in ``diagnoses`` (message -> the answer that slip
    produces, compared within a relative 1e-6), then the causes any check can see:
    every value off by the same factor, the sign flipped, the transpose returned.
    """
    actual_f = np.asarray(actual, dtype=np.float64)
    expected_f = np.asarray(expected, dtype=np.float64)
    for message, wrong in (diagnoses or {}).items():
        wrong_f = np.asarray(wrong, dtype=np.float64)
        if wrong_f.shape == actual_f.shape and np.allclose(actual_f, wrong_f, rtol=1e-6, atol=1e-9):
            return message
    if actual_f.shape != expected_f.shape or not np.all(np.isfinite(actual_f)):
        return None
    e, a = expected_f.ravel(), actual_f.ravel()
    if e @ e > 0 and np.count_nonzero(e) > 0:
        k = float(a @ e / (e @ e))
        nice = "." not in _factor_text(k)  # one number is always some multiple of another: only name plain factors
        if k != 0 and abs(k - 1) > 1e-6 and (a.size > 1 or nice) and np.allclose(a, k * e, rtol=1e-6, atol=1e-12):
            if abs(k + 1) < 1e-6:
                return "every value has the right size but the wrong sign"
            return (f"every value is {_factor_text(k)} times the expected one: a constant factor is missing or "
                    "extra (a division by N, a 2 from a derivative, a mean where a sum belongs, or the reverse)")
    if expected_f.ndim == 2 and expected_f.shape[0] == expected_f.shape[1] and not np.allclose(e, a) \
            and np.allclose(actual_f, expected_f.T, rtol=1e-6, atol=1e-9):
        return "these are the right numbers, transposed: check the order of the factors of each product"
    return None


def _shape_diagnosis(got: tuple[int, ...], expected: tuple[int, ...]) -> str | None:
    if got == expected[::-1] and len(expected) == 2:
        return "the transpose of the expected shape: check the order of the factors of each product"
    if tuple(d for d in got if d != 1) == tuple(d for d in expected if d != 1):
        lost = len(got) < len(expected)
        return (f"the right number of values in another layout: expected {expected}, got {got}. "
                + ("A sum, max or mean over an axis removed it; keepdims=True keeps it as an axis of size 1."
                   if lost else "An axis of size 1 too many: check keepdims and reshapes."))
    return None


def check_type(what: str, value: Any, expected: type | tuple[type, ...], *, hint: str | None = None) -> None:
    """Fail unless ``value`` is an instance of ``expected``."""
    __tracebackhide__ = True
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
    __tracebackhide__ = True
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
            _shape_diagnosis(value.shape, tuple(shape)),
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
    diagnoses: Mapping[str, Any] | None = None,
) -> None:
    """Fail unless ``actual`` has ``expected``'s shape and matches it element-wise.

    The comparison is ``|actual - expected| <= atol + rtol * |expected|`` for
    every element; NaN never matches. On failure the message names the worst
    element (its index, the expected and the actual value) and, when it can
    tell, the cause (:func:`diagnose`; ``diagnoses`` maps a message to the answer
    a typical slip produces). ``hint`` is shown when no cause is recognised.
    """
    __tracebackhide__ = True
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
        diagnose(actual_f, expected, diagnoses),
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
    diagnoses: Mapping[str, float] | None = None,
) -> None:
    """Fail unless ``actual`` is a real number (or size-1 array) close to ``expected``.

    ``diagnoses`` maps a message to the value a typical slip produces, as in :func:`check_close`.
    """
    __tracebackhide__ = True
    try:
        value = float(np.asarray(actual, dtype=np.float64).reshape(()))
    except (TypeError, ValueError):
        raise _fail(what, f"expected a single number, got {describe(actual)}", inputs, hint) from None
    if not math.isclose(value, expected, rel_tol=rtol, abs_tol=atol):
        raise _fail(what, f"expected {expected:.8g}, got {value:.8g}", inputs, hint,
                    diagnose(np.array([value]), np.array([expected]), {k: [v] for k, v in (diagnoses or {}).items()}))


def _layout_hint(shape: tuple[int, ...]) -> str:
    """How to write an answer of ``shape`` as Python numbers."""
    if shape == ():
        return "a single number, such as 0.25"
    if len(shape) == 1:
        return f"a {shape} answer is a list of {shape[0]} numbers, such as [{', '.join(['0.1'] * min(shape[0], 3))}{', ...' if shape[0] > 3 else ''}]"
    rows, cols = shape[0], int(np.prod(shape[1:]))
    row = "[" + ", ".join(["0.1"] * min(cols, 3)) + (", ..." if cols > 3 else "") + "]"
    return f"a {shape} answer is a list of {rows} rows, each a list of {cols} numbers: [{row}, ...]"


def call_checked(what: str, fn: Callable[..., Any], *args: Any, inputs: dict[str, Any] | None = None) -> Any:
    """``fn(*args)``, with NumPy's bare broadcasting error explained.

    An ``N x C`` matrix minus a reduction over its rows taken without ``keepdims``
    (shape ``(N,)``) is the classic cause: NumPy lines the ``(N,)`` vector up with the
    rows' *columns* and gives up. The :class:`CheckFailure` raised instead says so; the
    learner's line stays visible in the chained traceback above it.
    """
    __tracebackhide__ = True
    try:
        return fn(*args)
    except ValueError as error:
        if "broadcast" not in str(error):
            raise
        raise _fail(what, f"NumPy could not combine two arrays ({error})", inputs, None,
                    "an N x C matrix and a vector of N values (for example a max or sum over axis=1 without "
                    "keepdims=True) cannot be combined row by row: with keepdims=True the vector stays an N x 1 "
                    "column, which NumPy repeats across each row") from error


def as_answer_array(name: str, value: Any, shape: Sequence[int]) -> np.ndarray:
    """Turn a pen-and-paper answer into a float64 array of the given shape.

    Accepts a plain number (for shape ``()``), a nested list, a tuple or a NumPy
    array. Raises :class:`CheckFailure` naming the answer when it is missing
    (still ``None``), not numeric, or of another shape. A length-1 list is
    accepted where a scalar is asked for, and a scalar where shape ``(1,)`` is
    asked for, since both are natural ways to write one number.
    """
    __tracebackhide__ = True
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
        raise CheckFailure(f"{name} should have shape {shape}, got {describe(value)}\n  hint: {_layout_hint(shape)}")
    if not np.all(np.isfinite(array)):
        raise CheckFailure(f"{name} contains a value that is not a finite number: {array}")
    return array
