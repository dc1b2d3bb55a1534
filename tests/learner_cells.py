"""Run learner code against grader modules, in this process or through nbgrader (helpers for the NumPy tests).

In process: :func:`run_as_notebook` executes answer-cell code the way a kernel
does (one namespace named ``__main__``), and :func:`failing` lists the graded
cells whose hidden check raises for it. Through nbgrader: :func:`whole_cell`
and :func:`submission` build a learner-style submission of a whole assignment
for the ``grading`` fixture.
"""

from __future__ import annotations

import textwrap
from typing import Any, Callable, Mapping

import nbformat

from course_tools.course import SOURCE_DIR, notebooks
from course_tools.submissions import learner_notebook, solution_text


def reference_code(assignment: str, notebook: str, grade_id: str) -> str:
    """The solution of an answer cell, as a learner who got it right would write it (no markers)."""
    nb = nbformat.read(SOURCE_DIR / assignment / f"{notebook}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.get("id") == grade_id:
            return solution_text(cell.source)
    raise KeyError(f"{assignment}/{notebook} has no cell {grade_id}")


def run_as_notebook(*cells: str) -> dict[str, Any]:
    """Execute code cells like a kernel: one namespace whose ``__name__`` is ``__main__``, numpy imported."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    for cell in ("import numpy as np",) + cells:
        exec(compile(textwrap.dedent(cell), "<learner cell>", "exec"), namespace)
    return namespace


def failing(checks: Any, cells: tuple[str, ...], namespace: dict[str, Any]) -> set[str]:
    """The graded cells (names of functions of the grader module ``checks``) whose check raises."""
    failed = set()
    for cell in cells:
        check: Callable[[dict[str, Any]], None] = getattr(checks, cell)
        try:
            check(namespace)
        except Exception:
            failed.add(cell)
    return failed


def whole_cell(assignment: str, notebook: str, grade_id: str, new_text: str) -> tuple[str, str]:
    """A ``learner_notebook`` edit that replaces the whole solution of an answer cell by ``new_text``."""
    return reference_code(assignment, notebook, grade_id), textwrap.dedent(new_text).strip()


def submission(grading: Any, assignment: str, edits: Mapping[str, Mapping[str, tuple[str, str]]]) -> dict[str, Any]:
    """Every notebook of ``assignment``, filled with the reference solution apart from ``edits``."""
    return {nb.stem: learner_notebook(assignment, nb.stem, edits.get(nb.stem), release_dir=grading.release_dir)
            for nb in notebooks(assignment)}
