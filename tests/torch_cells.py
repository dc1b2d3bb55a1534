"""Helpers of the PyTorch notebooks' tests: run cells in process, probe and judge hidden regions, grade through nbgrader."""

from __future__ import annotations

import importlib
import math
import textwrap
from typing import Any

import nbformat

from course_tools.course import notebooks
from course_tools.hidden.probes import kit
from course_tools.hidden.probes.kit import default_seed
from course_tools.hidden.verdicts.engine import hidden_call, judge
from course_tools.hidden.verdicts.kit import Evidence, Wrong
from course_tools.authoring.submissions import learner_notebook
from course_tools.quality.torch_baselines import VARIANTS


def exec_cells(*cells: str) -> dict[str, Any]:
    """Run code cells like a kernel does: one namespace whose ``__name__`` is ``__main__``."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    for cell in cells:
        exec(compile(textwrap.dedent(cell), "<learner cell>", "exec"), namespace)
    return namespace


def grade_variant(grading: Any, student: str, assignment: str, variant: str) -> tuple[float, set[str]]:
    """Submit a variant of ``course_tools.quality.torch_baselines.VARIANTS`` through nbgrader.

    Returns the total score and the grade ids of the cells that lost points.
    """
    edits = VARIANTS[assignment][variant].edits
    nbs = {nb.stem: learner_notebook(assignment, nb.stem, edits, release_dir=grading.release_dir)
           for nb in notebooks(assignment)}
    scores = grading.grade(student, assignment, nbs)
    lost = {cell for nb in scores["notebooks"].values() for cell, (got, full) in nb["cells"].items()
            if not math.isclose(got, full)}
    return scores["score"], lost


def test_cell(assignment: str, grade_id: str) -> Any:
    """The graded test cell ``grade_id`` of the assignment's PyTorch notebook."""
    from course_tools.course import SOURCE_DIR
    from course_tools.quality.torch_baselines import NOTEBOOK

    nb = nbformat.read(SOURCE_DIR / assignment / f"{NOTEBOOK[assignment]}.ipynb", as_version=4)
    return next(c for c in nb.cells if c.get("id") == grade_id)


def record(assignment: str, grade_id: str, namespace: dict[str, Any], seed: int | None = None) -> dict[str, Any]:
    """What the probe of a test cell's hidden region records when run in ``namespace`` (the visible part is not run)."""
    call = hidden_call(test_cell(assignment, grade_id).source)
    assert call is not None, f"{grade_id} has no hidden region"
    kit.SINK = records = []
    try:
        getattr(importlib.import_module(f"course_tools.hidden.probes.{call.module}"), call.check)(namespace, seed=seed)
    finally:
        kit.SINK = None
    (only,) = records
    return only


def evidence(assignment: str, grade_id: str, namespace: dict[str, Any], seed: int | None = None) -> Evidence:
    """The evidence the verdict of a test cell's hidden region reads, after its probe ran in ``namespace``."""
    rec = record(assignment, grade_id, namespace, seed)
    return Evidence(rec["behaviour"], int(rec["seed"]), rec["items"])


def hidden_verdict(assignment: str, grade_id: str, namespace: dict[str, Any], seed: int | None = None) -> str | None:
    """None if the hidden part of a test cell passes in ``namespace``, else the learner's message (as in grading)."""
    call = hidden_call(test_cell(assignment, grade_id).source)
    assert call is not None
    rec = record(assignment, grade_id, namespace, seed)
    return judge(call, [rec], default_seed(call.check) if seed is None else seed, "")


def judged(module_name: str, evidence: Evidence) -> str | None:
    """None if the verdict (``course_tools.hidden.verdicts.<module_name>``) accepts ``evidence``, else its message."""
    module = importlib.import_module(f"course_tools.hidden.verdicts.{module_name}")
    try:
        getattr(module, evidence.behaviour)(evidence)
    except Wrong as wrong:
        return str(wrong)
    return None
