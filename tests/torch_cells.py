"""Helpers of the PyTorch notebooks' tests: run cells in process, grade a variant through nbgrader."""

from __future__ import annotations

import math
import textwrap
from typing import Any

from course_tools.course import notebooks
from course_tools.submissions import learner_notebook
from course_tools.torch_baselines import VARIANTS


def exec_cells(*cells: str) -> dict[str, Any]:
    """Run code cells like a kernel does: one namespace whose ``__name__`` is ``__main__``."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    for cell in cells:
        exec(compile(textwrap.dedent(cell), "<learner cell>", "exec"), namespace)
    return namespace


def grade_variant(grading: Any, student: str, assignment: str, variant: str) -> tuple[float, set[str]]:
    """Submit a variant of ``course_tools.torch_baselines.VARIANTS`` through nbgrader.

    Returns the total score and the grade ids of the cells that lost points.
    """
    edits = VARIANTS[assignment][variant].edits
    nbs = {nb.stem: learner_notebook(assignment, nb.stem, edits, release_dir=grading.release_dir)
           for nb in notebooks(assignment)}
    scores = grading.grade(student, assignment, nbs)
    lost = {cell for nb in scores["notebooks"].values() for cell, (got, full) in nb["cells"].items()
            if not math.isclose(got, full)}
    return scores["score"], lost
