"""Building blocks of the hidden tests of the NumPy library notebooks.

Hidden tests receive the notebook's namespace (``globals()``) and use these
helpers to fetch the learner's classes, swap in reference components, check
for forbidden shortcuts and compare against PyTorch in float64. Each helper
fails with an ``AssertionError`` whose message a learner can act on (it is
what the feedback shows; the hidden test source is never shown).
"""

from __future__ import annotations

import contextlib
import inspect
import re
import time
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from course_tools.hidden.integrity import require_untampered


def learner_class(namespace: Mapping[str, Any], name: str) -> type:
    """The class ``name`` as the learner defined it in the notebook.

    Fails when it is missing, not a class, or not defined in the notebook
    itself (a class imported from elsewhere, such as grader code, earns nothing).
    """
    require_untampered()
    cls = namespace.get(name)
    if cls is None:
        raise AssertionError(f"{name} is not defined: run the cell that defines class {name}")
    if not inspect.isclass(cls):
        raise AssertionError(f"{name} should be a class, got {type(cls).__name__}")
    if cls.__module__ != "__main__" and not cls.__module__.startswith(("1_", "2_", "3_", "4_", "5_")):
        raise AssertionError(f"{name} must be the class written in this assignment's notebooks, "
                             f"not one imported from {cls.__module__}")
    return cls


def source_of(cls: type) -> str:
    """Source text of every function defined in ``cls`` (methods, static and class methods)."""
    parts = []
    for klass in cls.__mro__:
        if klass is object:
            continue
        for value in vars(klass).values():
            func = getattr(value, "__func__", value)
            if inspect.isfunction(func):
                try:
                    parts.append(inspect.getsource(func))
                except (OSError, TypeError):
                    parts.append(func.__code__.co_names.__repr__())
    return "\n".join(parts)


def forbid(cls: type, patterns: Mapping[str, str]) -> None:
    """Fail if the source of ``cls`` matches a forbidden regex; ``patterns`` maps regex -> reason."""
    text = source_of(cls)
    code_only = "\n".join(line.split("#", 1)[0] for line in text.split("\n"))
    for pattern, reason in patterns.items():
        if re.search(pattern, code_only):
            raise AssertionError(f"{cls.__name__}: {reason}")


#: Shortcuts no NumPy-notebook class may take.
NO_TORCH = {
    r"\btorch\b": "uses PyTorch; the from-scratch notebooks allow NumPy, SciPy and math only",
    r"\bcourse_tools\b": "uses grader code; write your own implementation",
}


@contextlib.contextmanager
def swapped(namespace: dict[str, Any], **replacements: Any) -> Iterator[None]:
    """Temporarily replace names in the notebook namespace (e.g. ``Linear=reference.Linear``)."""
    missing = object()
    saved = {name: namespace.get(name, missing) for name in replacements}
    namespace.update(replacements)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is missing:
                namespace.pop(name, None)
            else:
                namespace[name] = value


def rng(seed: int) -> np.random.Generator:
    """A local generator for one test (no reliance on global random state)."""
    return np.random.default_rng(seed)


def as_float64(what: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` as a float64 array, failing with a clear message on a wrong type or shape."""
    if not isinstance(value, np.ndarray):
        raise AssertionError(f"{what} should return a numpy array, got {type(value).__name__}")
    if value.shape != shape:
        raise AssertionError(f"{what} returned shape {value.shape}, expected {shape}")
    return value.astype(np.float64)


def assert_close(what: str, actual: Any, expected: Any, *, rtol: float = 1e-9, atol: float = 1e-12) -> None:
    """Element-wise comparison with a message naming the worst element (NaN never matches)."""
    expected = np.asarray(expected, dtype=np.float64)
    actual = as_float64(what, actual, expected.shape) if expected.shape else np.asarray(actual, dtype=np.float64)
    if actual.shape != expected.shape:
        raise AssertionError(f"{what} has shape {actual.shape}, expected {expected.shape}")
    error = np.abs(actual - expected)
    ok = error <= atol + rtol * np.abs(expected)
    if not np.all(ok):
        index = tuple(int(i) for i in np.argwhere(~ok)[0])
        raise AssertionError(
            f"{what} is wrong in {int(np.sum(~ok))} of {expected.size} elements; "
            f"e.g. at index {index}: expected {expected[index]:.10g}, got {actual[index]:.10g}")


def torch64(array: np.ndarray, requires_grad: bool = False) -> Any:
    """A float64 torch tensor of ``array`` (PyTorch is imported here, in the hidden tests only)."""
    import torch

    return torch.tensor(np.asarray(array, dtype=np.float64), dtype=torch.float64, requires_grad=requires_grad)


def best_time(fn: Callable[[], Any], repeats: int = 3) -> float:
    """Best wall time of ``repeats`` calls of ``fn`` in seconds."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def assert_vectorised(what: str, learner: Callable[[], Any], reference: Callable[[], Any], *, ratio: float = 25.0,
                      slack: float = 0.05) -> None:
    """Fail if ``learner`` is much slower than the vectorised ``reference`` on the same large input.

    Both run in the same cell, best of 3, so machine load affects both alike;
    ``ratio`` is generous (a Python loop over 10^5 elements is hundreds of
    times slower than NumPy) and ``slack`` seconds absorb timer noise.
    """
    t_ref = best_time(reference)
    t_learner = best_time(learner)
    if t_learner > ratio * t_ref + slack:
        raise AssertionError(
            f"{what} took {t_learner:.3f} s on a large input, the vectorised reference {t_ref:.4f} s: "
            "replace Python loops over samples or features by whole-array NumPy operations")
