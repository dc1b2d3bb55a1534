"""Verdict helpers: decide, in the grading process, whether what a probe recorded is right.

A verdict module mirrors a probe module: for every ``check_<behaviour>`` of
``course_tools.hidden.probes.<module>`` there is a ``check_<behaviour>(evidence)``
in ``course_tools.hidden.verdicts.<module>``. It draws the same hidden inputs
from ``evidence.seed`` (calling the probe module's ``cases_*`` functions here,
outside the kernel), computes the expected values with the references
(PyTorch in float64, :mod:`course_tools.hidden.verdicts.reference`), and raises
:class:`Wrong` with a message a learner can act on. Returning means right.

Nothing of this package is ever mounted into the grading sandbox.
"""

from __future__ import annotations

import base64
import io
import re
import tokenize
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np


class Wrong(AssertionError):
    """A hidden check failed; the message is what the learner reads in the feedback."""


class GradingMachineError(RuntimeError):
    """The grading machine lacks something a verdict needs (data files): grading stops with this message
    for the course team instead of scoring learners 0 for it."""


_MISSING = object()


def decode(encoded: Any) -> Any:
    """The value :func:`course_tools.hidden.probes.kit.encode` described (arrays as read-only copies).

    Raises :class:`Wrong` for something that is not a description (a tampered record).
    """
    if not isinstance(encoded, dict):
        raise Wrong("the record of this check is malformed (was grading code replaced?)")
    if "raised" in encoded:
        raise Wrong(str(encoded["raised"]))
    if "none" in encoded:
        return None
    if "bool" in encoded:
        return bool(encoded["bool"])
    if "int" in encoded:
        return int(str(encoded["int"]))
    if "float" in encoded:
        return float(str(encoded["float"]))
    if "str" in encoded:
        return str(encoded["str"])
    if "array" in encoded:
        dtype = np.dtype(str(encoded["dtype"]))
        if dtype.kind not in "biuf":
            raise Wrong("the record of this check is malformed (was grading code replaced?)")
        shape = tuple(int(n) for n in encoded["shape"])
        data = base64.b64decode(str(encoded["array"]))
        array = np.frombuffer(data, dtype=dtype)
        if array.size != int(np.prod(shape, dtype=np.int64)):
            raise Wrong("the record of this check is malformed (was grading code replaced?)")
        return array.reshape(shape).copy()
    if "list" in encoded:
        items = [decode(item) for item in encoded["list"]]
        return tuple(items) if encoded.get("tuple") else items
    if "dict" in encoded:
        return {str(k): decode(v) for k, v in dict(encoded["dict"]).items()}
    if "missing" in encoded:
        return _MISSING
    if "object" in encoded:
        return Opaque(str(encoded["object"]), tuple(encoded.get("shape", ())))
    raise Wrong("the record of this check is malformed (was grading code replaced?)")


@dataclass(frozen=True)
class Opaque:
    """A value a record describes only by its type (a string, a dict of strings, a learner object)."""

    type_name: str
    shape: tuple[int, ...] = ()


@dataclass
class Evidence:
    """What one hidden cell's probe recorded, with what the verdict needs around it.

    Attributes:
        behaviour: the check's name (``"check_linear_forward"``).
        seed: the seed the grading process gave the cell (the probe's inputs came from it).
        items: the raw record items (use the accessors below).
        learner_code: the code of the notebook's answer cells, as submitted (for rules
            about how the code is written, decided from the file rather than from the kernel).
        torch_loaded: whether ``torch`` was imported in the kernel when the probe ran.
    """

    behaviour: str
    seed: int
    items: Mapping[str, Any]
    learner_code: str = ""
    torch_loaded: bool = False
    notes: list[str] = field(default_factory=list)

    def has(self, key: str) -> bool:
        return key in self.items

    def raised(self, key: str) -> str | None:
        """The learner's exception recorded under ``key`` (``"ValueError: ..."``), or None."""
        item = self.items.get(key)
        return str(item["raised"]) if isinstance(item, dict) and "raised" in item else None

    def value(self, key: str, what: str) -> Any:
        """The decoded value under ``key``; ``what`` names the call in messages (``"Linear(5, 3).forward(A)"``)."""
        if key not in self.items:
            raise Wrong(f"{what} was never run: an earlier step failed or the grading code was replaced")
        error = self.raised(key)
        if error is not None:
            raise Wrong(f"{what} raised {error}")
        value = decode(self.items[key])
        if value is _MISSING:
            raise Wrong(f"{what} does not exist")
        return value

    def attribute(self, key: str, what: str, hint: str = "") -> Any:
        """A stored attribute; a missing one fails with ``"<what> was not stored"`` and ``hint``."""
        if isinstance(self.items.get(key), dict) and self.items[key].get("missing"):
            raise Wrong(f"{what} was not stored" + (f": {hint}" if hint else ""))
        return self.value(key, what)

    def array(self, key: str, what: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """A recorded NumPy array (float64 copy), failing clearly on another type or shape."""
        value = self.value(key, what)
        return as_array(what, value, shape)

    def number(self, key: str, what: str) -> float:
        """A recorded number (a Python or NumPy scalar, or an array of one element)."""
        value = self.value(key, what)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.ndarray)):
            raise Wrong(f"{what} should be a number, got {_type_name(value)}")
        if isinstance(value, np.ndarray):
            if value.size != 1:
                raise Wrong(f"{what} should be one number, got an array of shape {value.shape}")
            value = value.reshape(())
        return float(value)

    def definition(self, name: str) -> dict[str, Any]:
        item = self.items.get(f"defined:{name}")
        return dict(item) if isinstance(item, dict) else {"kind": "missing"}

    def seconds(self, key: str, what: str) -> float:
        return self.number(key, what)


def _type_name(value: Any) -> str:
    return value.type_name if isinstance(value, Opaque) else type(value).__name__


def as_array(what: str, value: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``value`` as a float64 array, failing with a clear message on a wrong type or shape."""
    if not isinstance(value, np.ndarray):
        raise Wrong(f"{what} should return a numpy array, got {_type_name(value)}")
    if shape is not None and value.shape != tuple(shape):
        raise Wrong(f"{what} returned shape {value.shape}, expected {tuple(shape)}")
    return value.astype(np.float64)


def assert_close(what: str, actual: Any, expected: Any, *, rtol: float = 1e-9, atol: float = 1e-12) -> None:
    """Element-wise comparison with a message naming how many elements are off (NaN never matches).

    The message never states an expected value: the hidden inputs differ for every learner,
    and the feedback must not hand out the answer to an input the learner could reproduce.
    """
    expected = np.asarray(expected, dtype=np.float64)
    actual = as_array(what, actual, expected.shape) if isinstance(actual, np.ndarray) or expected.shape \
        else np.asarray(actual, dtype=np.float64)
    with np.errstate(all="ignore"):
        error = np.abs(actual - expected)
        ok = error <= atol + rtol * np.abs(expected)
    if not np.all(ok):
        bad = int(np.sum(~ok))
        where = tuple(int(i) for i in np.argwhere(~ok)[0]) if expected.shape else ()
        detail = f" (first at index {where})" if where else ""
        special = " (your result has nan or inf there)" if not np.all(np.isfinite(actual[~ok])) else ""
        raise Wrong(f"{what} is wrong in {bad} of {expected.size} elements{detail}{special}")


def torch64(array: Any, requires_grad: bool = False) -> Any:
    """A float64 torch tensor of ``array`` (PyTorch runs here, in the grading process only)."""
    import torch

    return torch.tensor(np.asarray(array, dtype=np.float64), dtype=torch.float64, requires_grad=requires_grad)


# ---------------------------------------------------------------- rules written once

#: Shortcuts no class of a NumPy notebook may take (course spec: NumPy, SciPy and math only).
NO_TORCH = {r"\btorch\b": "uses PyTorch; the from-scratch notebooks allow NumPy, SciPy and math only"}
#: No class may use grader code (it is not in the kernel; an attempt is still named for what it is).
NO_GRADER = {r"\bcourse_tools\b": "uses grader code (course_tools); write your own implementation"}


def code_without_text(source: str) -> str:
    """``source`` without comments and string literals, so prose never matches a rule."""
    kept = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type not in (tokenize.COMMENT, tokenize.STRING):
                kept.append(token.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return "\n".join(line.split("#", 1)[0] for line in source.split("\n"))
    return " ".join(kept)


def class_source(learner_code: str, name: str) -> str | None:
    """The source of the last ``class <name>`` statement in the learner's code (None if there is none)."""
    import ast

    found = None
    for chunk in learner_code.split("\n# --- cell ---\n"):
        try:
            tree = ast.parse(chunk)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name == name:
                found = ast.get_source_segment(chunk, node)
    return found


def written_here(evidence: Evidence, name: str, rules: Mapping[str, str] | None = None,
                 modules: tuple[str, ...] = ("__main__",)) -> None:
    """Fail unless ``name`` is a class the learner wrote in this notebook, breaking none of ``rules``.

    Decided from the submitted file (a ``class <name>`` statement in an answer cell, whose code,
    comments and strings removed, matches no rule) and from the kernel's record (the class
    exists, was defined in ``modules``, and the names its compiled methods use match no rule).
    :data:`NO_TORCH` and :data:`NO_GRADER` always apply.
    """
    rules = {**NO_TORCH, **NO_GRADER, **(rules or {})}
    definition = evidence.definition(name)
    if definition.get("kind") == "missing":
        raise Wrong(f"{name} is not defined: run the cell that defines class {name}")
    if definition.get("kind") != "class":
        raise Wrong(f"{name} should be a class, got {definition.get('kind')}")
    source = class_source(evidence.learner_code, name)
    if source is None or definition.get("module") not in modules:
        raise Wrong(f"{name} must be the class written in this notebook (a `class {name}` statement in your "
                    "answer cell), not one imported or created elsewhere")
    code = code_without_text(source) + " " + " ".join(str(n) for n in definition.get("names", ()))
    code += " " + " ".join(str(b) for b in definition.get("bases", ()))
    for pattern, reason in rules.items():
        if re.search(pattern, code):
            raise Wrong(f"{name}: {reason}")


def vectorised(what: str, learner_seconds: float, calibration_seconds: float, *, ratio: float,
               slack: float = 0.03) -> None:
    """Fail if the learner's code took far longer than whole-array NumPy work of the same size.

    ``calibration_seconds`` is the time the probe measured, in the same kernel and cell, for a
    few whole-array operations on the same input (no reference implementation is needed for
    that); ``ratio`` is generous, since a Python loop over the elements is hundreds of times slower.
    """
    if not (np.isfinite(calibration_seconds) and calibration_seconds > 0):
        raise Wrong(f"{what}: the timing record is malformed (was grading code replaced?)")
    if not np.isfinite(learner_seconds) or learner_seconds > ratio * calibration_seconds + slack:
        raise Wrong(f"{what} took {learner_seconds:.3f} s where whole-array NumPy code needs about "
                    f"{calibration_seconds:.4f} s: replace Python loops over samples or features by whole-array "
                    "NumPy operations")
