"""Probing helpers: the only grader code that runs in the learner's kernel.

A hidden test cell calls one ``check_<behaviour>(namespace, seed=...)``
function of a probe module. That function draws the hidden inputs from
``seed``, runs the learner's code on them and publishes what came back as one
*record*: a display output of MIME type :data:`RECORD_MIME` holding the
return values, the attributes the code stored, the exceptions it raised and
the running times.

Nothing here decides anything. No reference implementation, no expected value,
no tolerance and no comparison lives in a probe: the grading process reads the
record after the kernel has run, draws the same inputs again from the same
seed (with the same ``cases_*`` functions of the probe module, imported there
from the genuine files) and decides in :mod:`course_tools.hidden.verdicts`.

A learner cell can replace anything here (it runs in the same kernel). That
can only spoil the learner's own record: the verdict never trusts an input or
an expected value from the kernel, and a missing or malformed record scores 0.
"""

from __future__ import annotations

import base64
import contextlib
import io
import sys
import time
import zlib
from typing import Any, Callable, Mapping

import numpy as np

#: MIME type of a record in a cell's outputs (removed again before anyone sees the notebook).
RECORD_MIME = "application/vnd.mytorch.record+json"
RECORD_VERSION = 1
#: Largest array a record carries (bytes); larger ones are recorded by shape and type only.
MAX_ARRAY_BYTES = 8 * 2**20
#: Longest text (exception message, string value) a record carries.
MAX_TEXT = 400

#: When a list, records go there instead of to the notebook (in-process runs: tests, baselines).
SINK: list[dict[str, Any]] | None = None


def default_seed(behaviour: str) -> int:
    """The seed a hidden cell uses when it runs outside grading (no seed was written into it)."""
    return zlib.crc32(behaviour.encode("utf-8"))


def rng(seed: int) -> np.random.Generator:
    """The generator the hidden inputs of one cell are drawn from (probe and verdict alike)."""
    return np.random.default_rng(seed)


class Failed:
    """What :meth:`Probe.call` returns when the learner's code raised (the record holds the error)."""

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "<learner code raised>"


FAILED = Failed()


def encode(value: Any, depth: int = 0) -> dict[str, Any]:
    """A JSON-safe description of ``value`` that :func:`course_tools.hidden.verdicts.kit.decode` reads back.

    Arrays travel as raw bytes (exact, NaN and infinity included); numbers as ``repr``;
    PyTorch tensors as arrays marked ``tensor``; anything else by its type name.
    """
    if depth > 4:
        return {"object": "nested too deeply"}
    if value is None:
        return {"none": True}
    if isinstance(value, (bool, np.bool_)):
        return {"bool": bool(value)}
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return {"int": str(int(value))}
    if isinstance(value, (float, np.floating)):
        return {"float": repr(float(value)), "type": type(value).__name__}
    if isinstance(value, str):
        return {"str": value[:MAX_TEXT]}
    if type(value).__module__ == "torch" and hasattr(value, "detach"):
        try:
            array = value.detach().cpu().numpy()
        except Exception:  # noqa: BLE001 (an exotic tensor: record what it is)
            return {"object": f"tensor {type(value).__name__}"}
        described = encode(array, depth + 1)
        described["tensor"] = str(value.dtype)
        return described
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            return {"object": f"ndarray of dtype {value.dtype}", "shape": list(value.shape)}
        if value.nbytes > MAX_ARRAY_BYTES:
            return {"object": "ndarray too large to record", "shape": list(value.shape), "dtype": value.dtype.str}
        data = np.ascontiguousarray(value)
        return {"array": base64.b64encode(data.tobytes()).decode("ascii"), "dtype": data.dtype.str,
                "shape": list(data.shape)}
    if isinstance(value, (list, tuple)):
        items = [encode(item, depth + 1) for item in list(value)[:10_000]]
        return {"list": items, "tuple": isinstance(value, tuple)}
    if isinstance(value, dict):
        return {"dict": {str(k)[:MAX_TEXT]: encode(v, depth + 1) for k, v in list(value.items())[:1000]}}
    return {"object": type(value).__name__}


def describe_error(error: BaseException) -> str:
    """``"ValueError: message"``, cut to :data:`MAX_TEXT` characters."""
    return f"{type(error).__name__}: {error}"[:MAX_TEXT]


def describe_definition(value: Any) -> dict[str, Any]:
    """Where a name the learner defined comes from: its kind, module and the names its code uses."""
    if value is None:
        return {"kind": "missing"}
    if isinstance(value, type):
        names: list[str] = []
        for klass in value.__mro__[:-1]:
            for member in vars(klass).values():
                func = getattr(member, "__func__", member)
                code = getattr(func, "__code__", None)
                if code is not None:
                    names += _code_names(code)
        return {"kind": "class", "module": str(value.__module__), "qualname": str(value.__qualname__),
                "bases": [f"{b.__module__}.{b.__qualname__}" for b in value.__mro__[1:-1]],
                "names": sorted(set(names))}
    code = getattr(value, "__code__", None)
    if code is not None:
        return {"kind": "function", "module": str(getattr(value, "__module__", "")), "names": sorted(set(_code_names(code)))}
    return {"kind": type(value).__name__}


def _code_names(code: Any) -> list[str]:
    names = list(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names += _code_names(const)
    return names


class Probe:
    """Collects one hidden cell's record: call :meth:`call`, :meth:`record`, ... then :meth:`publish`.

    Args:
        namespace: the notebook's ``globals()``.
        behaviour: the name of the check (``"check_linear_forward"``), written into the record.
        seed: where the hidden inputs come from; ``None`` outside grading (:func:`default_seed`).
    """

    def __init__(self, namespace: Mapping[str, Any], behaviour: str, seed: int | None) -> None:
        self.namespace = namespace
        self.behaviour = behaviour
        self.seed = default_seed(behaviour) if seed is None else int(seed)
        self.items: dict[str, Any] = {}

    @property
    def rng(self) -> np.random.Generator:
        return rng(self.seed)

    def learner(self, name: str) -> Any:
        """The object the notebook defines as ``name`` (None if missing); records where it comes from."""
        value = self.namespace.get(name)
        self.items[f"defined:{name}"] = describe_definition(value)
        return value

    def call(self, key: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run learner code; record its return value (or the exception) under ``key``.

        Returns what the code returned, or :data:`FAILED` if it raised. Whatever the code
        prints is dropped (feedback shows none of it).
        """
        try:
            with _quiet():
                value = fn(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 (any learner exception is recorded, not raised)
            self.items[key] = {"raised": describe_error(error)}
            return FAILED
        self.items[key] = encode(value)
        return value

    def attempt(self, key: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Like :meth:`call`, but record only an exception (for calls whose result is read elsewhere)."""
        try:
            with _quiet():
                return fn(*args, **kwargs)
        except Exception as error:  # noqa: BLE001
            self.items[key] = {"raised": describe_error(error)}
            return FAILED

    def record(self, key: str, value: Any) -> None:
        """Record ``value`` (an attribute the code stored, a shape, ...) under ``key``."""
        self.items[key] = encode(value)

    def attribute(self, key: str, obj: Any, name: str) -> Any:
        """Record ``obj.name`` under ``key`` (``{"missing": true}`` when there is no such attribute)."""
        try:
            value = getattr(obj, name)
        except Exception:  # noqa: BLE001 (missing, or a property that raises)
            self.items[key] = {"missing": True}
            return None
        self.items[key] = encode(value)
        return value

    def seconds(self, key: str, fn: Callable[[], Any], repeats: int = 3) -> None:
        """Record the best wall time of ``repeats`` calls of ``fn`` (an exception is recorded instead)."""
        best = float("inf")
        try:
            with _quiet():
                for _ in range(repeats):
                    started = time.perf_counter()
                    fn()
                    best = min(best, time.perf_counter() - started)
        except Exception as error:  # noqa: BLE001
            self.items[key] = {"raised": describe_error(error)}
            return
        self.items[key] = encode(best)

    def calibrate(self, key: str, array: np.ndarray, repeats: int = 3) -> None:
        """Record the best time of :func:`whole_array_work` on ``array``: the yardstick of vectorisation.

        Verdicts compare a learner's time on the same input with this time, measured in the
        same kernel and cell, so machine load affects both alike.
        """
        self.seconds(key, lambda: whole_array_work(array), repeats)

    def publish(self) -> dict[str, Any]:
        """Hand the record to the grading process (one display output of this cell)."""
        record = {"version": RECORD_VERSION, "behaviour": self.behaviour, "seed": str(self.seed),
                  "torch_loaded": "torch" in sys.modules, "items": self.items}
        if SINK is not None:
            SINK.append(record)
            return record
        from IPython.display import publish_display_data

        publish_display_data({RECORD_MIME: record, "text/plain": "(record for grading)"})
        return record


def whole_array_work(array: np.ndarray) -> np.ndarray:
    """A few element-wise NumPy passes over ``array`` (about what one activation costs; computes nothing graded)."""
    magnitude = np.abs(array)
    return (np.exp(-magnitude) + array * array) / (1.0 + magnitude)


@contextlib.contextmanager
def _quiet() -> Any:
    """Drop what learner code prints (stdout and stderr, warnings included) while a probe runs it."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def one_call(namespace: Mapping[str, Any], behaviour: str, seed: int | None,
             run: Callable[[Probe], None]) -> None:
    """Make a probe, let ``run`` fill it, publish it: the body of every ``check_<behaviour>``.

    Returns None, so the cell shows no result (nbgrader would read a number as a partial score).
    """
    probe = Probe(namespace, behaviour, seed)
    run(probe)
    probe.publish()
