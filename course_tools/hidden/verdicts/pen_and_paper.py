"""Verdicts of the pen-and-paper notebook: right to 2 decimals, with errors carried forward.

Every expected value is recomputed from the learner's own earlier answers
(course spec, section 1): a slip in ``a`` costs the points of ``a`` only, as
long as ``z``, ``y``, ... are computed correctly from that wrong ``a``. An
answer is right when it is within :data:`TOLERANCE` of the value computed from
the learner's earlier answers or of the exact value (a learner who carried full
precision and rounded only at the end matches the latter).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from course_tools.hidden.verdicts.kit import Evidence, Opaque, Wrong

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


def _flatten(name: str, value: Any) -> list[float]:
    """Numbers of an answer (scalar, nested list or array) as floats."""
    if value is None:
        raise Wrong(f"{name} is still None: replace None with your answer")
    if isinstance(value, np.ndarray):
        value = value.tolist()
    out: list[float] = []

    def walk(v: Any) -> None:
        if isinstance(v, (list, tuple)):
            for item in v:
                walk(item)
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            shown = v.type_name if isinstance(v, Opaque) else type(v).__name__
            raise Wrong(f"{name} must contain plain numbers, found a {shown}")
        else:
            out.append(float(v))

    walk(value)
    return out


def answer(name: str, evidence: Evidence) -> list[float]:
    """The learner's answer ``name`` as a flat list of floats; checks presence and size."""
    item = evidence.items.get(f"answer:{name}")
    if item is None or (isinstance(item, dict) and item.get("missing")):
        raise Wrong(f"{name} is not defined: run the cell that defines it")
    values = _flatten(name, evidence.value(f"answer:{name}", name))
    size = math.prod(SHAPES[name])
    if len(values) != size:
        raise Wrong(f"{name} should hold {size} number(s) (shape {SHAPES[name]}), got {len(values)}")
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


def exact_values() -> dict[str, list[float]]:
    """The exact answers (full precision throughout)."""
    exact: dict[str, list[float]] = {}
    rules = _rules(lambda n: exact[n])
    for name in SHAPES:
        exact[name] = rules[name]()
    return exact


def _verdict(name: str) -> Callable[[Evidence], None]:
    def check(evidence: Evidence) -> None:
        given = answer(name, evidence)
        exact = exact_values()[name]
        carried = _rules(lambda n: answer(n, evidence))[name]()
        for candidate in (carried, exact):
            if all(-TOLERANCE <= g - e <= TOLERANCE for g, e in zip(given, candidate)):
                return
        raise Wrong(f"{name} is not right to 2 decimals. Recompute it from the formula in the notebook, "
                    "using your own answers above.")

    check.__name__ = check.__qualname__ = f"check_{name}"
    check.__doc__ = f"{name} is right to 2 decimals, from the exact values or from the learner's earlier answers."
    return check


check_a = _verdict("a")
check_z = _verdict("z")
check_y = _verdict("y")
check_loss = _verdict("loss")
check_dL_dy = _verdict("dL_dy")
check_dL_dw2 = _verdict("dL_dw2")
check_dL_db2 = _verdict("dL_db2")
check_dL_dw1 = _verdict("dL_dw1")
check_W2_updated = _verdict("W2_updated")
check_b2_updated = _verdict("b2_updated")
check_W1_updated = _verdict("W1_updated")
check_b1_updated = _verdict("b1_updated")
