"""Expected answers of the pen-and-paper notebook, with errors carried forward.

Every expected value is recomputed from the learner's own earlier answers
(``course spec, section 1``): a slip in ``a`` costs the points of ``a`` only,
as long as ``z``, ``y``, ... are computed correctly from that wrong ``a``.
An answer is right when it is within :data:`TOLERANCE` of the value computed
from the learner's earlier answers or of the exact value (a learner who
carried full precision and rounded only at the end matches the latter).

Arithmetic is plain Python on genuine floats, so a learner cell that patches
NumPy cannot change the verdict.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from course_tools.hidden.integrity import genuine_float, require_untampered

TOLERANCE = 0.01  # answers are asked for to 2 decimals

W1 = [[0.1, 0.3, -0.5], [-0.2, 0.4, 0.6]]
b1 = [0.1, 0.2]
W2 = [[0.7, -0.8]]
b2 = [0.3]
x = [0.3, 0.4, -0.1]
t = 0.5
LR = 0.5

# name -> shape the notebook asks for
SHAPES: dict[str, tuple[int, ...]] = {
    "a": (2,), "z": (2,), "y": (1,), "loss": (), "dL_dy": (), "dL_dw2": (1, 2), "dL_db2": (1,),
    "dL_dw1": (2, 3), "W2_updated": (1, 2), "b2_updated": (1,), "W1_updated": (2, 3), "b1_updated": (2,),
}


class AnswerError(AssertionError):
    """A pen-and-paper answer is missing, malformed or wrong."""


def _flatten(name: str, value: Any) -> list[float]:
    """Numbers of an answer (scalar, nested list or array) as genuine Python floats."""
    if value is None:
        raise AnswerError(f"{name} is still None: replace None with your answer")
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple)):
        value = value.tolist()
    out: list[float] = []

    def walk(v: Any) -> None:
        if isinstance(v, (list, tuple)):
            for item in v:
                walk(item)
        else:
            out.append(genuine_float(name, v))

    walk(value)
    return out


def _shape_of(value: Any) -> tuple[int, ...]:
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple)):
        value = value.tolist()
    shape: list[int] = []
    while isinstance(value, (list, tuple)):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return tuple(shape)


def answer(name: str, answers: dict[str, Any]) -> list[float]:
    """The learner's answer ``name`` as a flat list of floats; checks presence and size."""
    if name not in answers:
        raise AnswerError(f"{name} is not defined: run the cell that defines it")
    values = _flatten(name, answers[name])
    size = math.prod(SHAPES[name])
    if len(values) != size:
        raise AnswerError(f"{name} should hold {size} number(s) (shape {SHAPES[name]}), got {len(values)}")
    return values


def _dL_da(values: Callable[[str], list[float]]) -> list[float]:
    """dL/da = (W2^T dL/dy) * (1 - z^2), from the given source of dL_dy and z."""
    z, g = values("z"), values("dL_dy")[0]
    return [W2[0][j] * g * (1 - z[j] * z[j]) for j in range(2)]


def _rules(values: Callable[[str], list[float]]) -> dict[str, Callable[[], list[float]]]:
    """Expected value of each answer, computed from ``values(name)`` of the earlier answers."""
    def dlda() -> list[float]:
        return _dL_da(values)

    return {
        "a": lambda: [sum(W1[i][k] * x[k] for k in range(3)) + b1[i] for i in range(2)],
        "z": lambda: [math.tanh(v) for v in values("a")],
        "y": lambda: [sum(W2[0][j] * values("z")[j] for j in range(2)) + b2[0]],
        "loss": lambda: [(values("y")[0] - t) ** 2],
        "dL_dy": lambda: [2 * (values("y")[0] - t)],
        "dL_dw2": lambda: [values("dL_dy")[0] * zj for zj in values("z")],
        "dL_db2": lambda: [values("dL_dy")[0]],
        "dL_dw1": lambda: [g * xk for g in dlda() for xk in x],
        "W2_updated": lambda: [W2[0][j] - LR * values("dL_dw2")[j] for j in range(2)],
        "b2_updated": lambda: [b2[0] - LR * values("dL_db2")[0]],
        "W1_updated": lambda: [W1[i][k] - LR * values("dL_dw1")[3 * i + k] for i in range(2) for k in range(3)],
        "b1_updated": lambda: [b1[i] - LR * dlda()[i] for i in range(2)],
    }


def _exact_values() -> dict[str, list[float]]:
    exact: dict[str, list[float]] = {}
    rules = _rules(lambda n: exact[n])
    for name in SHAPES:
        exact[name] = rules[name]()
    return exact


def check(name: str, answers: dict[str, Any]) -> None:
    """Hidden check of one answer: right to 2 decimals, with errors carried forward."""
    require_untampered()
    given = answer(name, answers)
    exact = _exact_values()[name]
    carried = _rules(lambda n: answer(n, answers))[name]()
    for candidate in (carried, exact):
        if all(-TOLERANCE <= g - e <= TOLERANCE for g, e in zip(given, candidate)):
            return
    raise AnswerError(
        f"{name} is not right to 2 decimals. Recompute it from the formula in the notebook, "
        "using your own answers above."
    )
