"""Probes of ``01_pen_and_paper``: hand the learner's twelve answers to the grader.

The answers are numbers the learner typed, so there is nothing to call and no
hidden input: each cell records the answer it grades and the earlier answers
its expected value is carried forward from (the verdict computes both).
"""

from __future__ import annotations

from typing import Any, Mapping

from course_tools.hidden.probes.kit import Probe, one_call

#: the answers in the order the notebook asks for them
ANSWERS = ("a", "z", "y", "loss", "dL_dy", "dL_dw2", "dL_db2", "dL_dw1", "W2_updated", "b2_updated",
           "W1_updated", "b1_updated")


def _answers(namespace: Mapping[str, Any], behaviour: str, seed: int | None) -> None:
    def run(probe: Probe) -> None:
        for name in ANSWERS:
            if name in namespace:
                probe.record(f"answer:{name}", namespace[name])
            else:
                probe.items[f"answer:{name}"] = {"missing": True}

    return one_call(namespace, behaviour, seed, run)


def _check(name: str) -> Any:
    def check(namespace: Mapping[str, Any], seed: int | None = None) -> None:
        return _answers(namespace, f"check_{name}", seed)

    check.__name__ = check.__qualname__ = f"check_{name}"
    check.__doc__ = f"Record the answer {name} (and the answers it is carried forward from)."
    return check


check_a = _check("a")
check_z = _check("z")
check_y = _check("y")
check_loss = _check("loss")
check_dL_dy = _check("dL_dy")
check_dL_dw2 = _check("dL_dw2")
check_dL_db2 = _check("dL_db2")
check_dL_dw1 = _check("dL_dw1")
check_W2_updated = _check("W2_updated")
check_b2_updated = _check("b2_updated")
check_W1_updated = _check("W1_updated")
check_b1_updated = _check("b1_updated")
