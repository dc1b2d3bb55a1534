"""Refuse to grade in a kernel whose basic tools were tampered with.

Hidden tests run in the learner's kernel, after the learner's cells. A learner
cell could replace ``numpy.allclose``, ``numpy.testing`` helpers or builtins
with functions that always agree. :func:`require_untampered` checks that the
functions hidden tests rely on are still the genuine ones and fails the test
with a clear message otherwise.
"""

from __future__ import annotations

import builtins
import math
import sys
import types
from typing import Any

_FLOAT = (0.0).__class__
_BUILTIN_FUNCTION = (len).__class__
_BUILTINS_TO_CHECK = ("abs", "all", "any", "isinstance", "len", "max", "min", "round", "sum", "print",
                      "getattr", "hasattr", "issubclass", "type", "float", "int", "bool", "range", "zip")
_TYPES = {"float": _FLOAT, "int": (0).__class__, "bool": (True).__class__, "type": (int).__class__,
          "range": (range(0)).__class__, "zip": (zip()).__class__}
_NUMPY_FUNCTIONS = ("allclose", "isclose", "array_equal", "abs", "absolute", "max", "min", "sum", "all", "any",
                    "asarray", "array", "isfinite", "mean", "exp", "log", "tanh", "maximum", "where")


class TamperedEnvironment(AssertionError):
    """A function that grading relies on was replaced by notebook code."""


def genuine_float(name: str, value: Any) -> float:
    """``value`` as a genuine Python float; refuses strings, None and objects posing as numbers."""
    numeric_types = (_FLOAT, (0).__class__)
    if isinstance(value, (True).__class__) or not (isinstance(value, numeric_types) or _is_numpy_number(value)):
        raise AssertionError(f"{name} must contain plain numbers, found {value!r} ({value.__class__.__name__})")
    return _FLOAT.__new__(_FLOAT, value)


def _is_numpy_number(value: Any) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and value.__class__.__module__ == "numpy" and isinstance(value, (np.floating, np.integer))


def _numpy_problems() -> list[str]:
    np = sys.modules.get("numpy")
    if np is None:
        return []
    problems = []
    root = np.__file__.rsplit("/", 1)[0]
    for name in _NUMPY_FUNCTIONS:
        f = getattr(np, name, None)
        if f is None:
            problems.append(f"numpy.{name} was deleted")
        elif f.__class__ is types.FunctionType and not f.__code__.co_filename.startswith(root):
            problems.append(f"numpy.{name} was replaced")
        elif f.__class__ not in (types.FunctionType, np.ufunc, _BUILTIN_FUNCTION) and \
                f.__class__.__module__ not in ("numpy", "numpy._core._multiarray_umath", "builtins"):
            problems.append(f"numpy.{name} was replaced")
    testing = getattr(np, "testing", None)
    for name in ("assert_allclose", "assert_array_equal", "assert_array_almost_equal", "assert_equal"):
        f = getattr(testing, name, None) if testing is not None else None
        if f is None or f.__class__ is not types.FunctionType or not f.__code__.co_filename.startswith(root):
            problems.append(f"numpy.testing.{name} was replaced")
    return problems


def problems() -> list[str]:
    """Descriptions of every tampered function found (empty when all is genuine)."""
    found = []
    for name in _BUILTINS_TO_CHECK:
        f = builtins.__dict__.get(name)
        expected = _TYPES.get(name)
        if expected is not None:
            if f is not expected:
                found.append(f"builtins.{name} was replaced")
        elif f.__class__ is not _BUILTIN_FUNCTION or getattr(f, "__module__", "builtins") != "builtins":
            found.append(f"builtins.{name} was replaced")
    for name in ("tanh", "exp", "isclose", "isfinite", "fabs", "sqrt", "erf", "prod"):
        f = math.__dict__.get(name)
        if f is None or f.__class__ is not _BUILTIN_FUNCTION:
            found.append(f"math.{name} was replaced")
    return found + _numpy_problems()


def require_untampered() -> None:
    """Fail the calling hidden test if notebook code replaced what grading relies on."""
    found = problems()
    if found:
        raise TamperedEnvironment(
            "grading refused: " + "; ".join(found)
            + ". Remove the code that changes numpy, math or Python's builtins, restart the kernel and run all cells."
        )
