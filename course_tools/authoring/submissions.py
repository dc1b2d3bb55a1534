"""Make learner-style submissions from the release: filled in, untouched or buggy.

A learner submits the *release* notebook with the answer cells filled in.
:func:`learner_notebook` builds exactly that: the release notebook whose
answer cells hold the instructors' solution (marker lines removed), with
optional edits applied per answer cell. Tests, the demo and benchmarks use it
instead of committing copies of notebooks that would drift from the source.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Mapping

import nbformat

from course_tools.course import RELEASE_DIR, SOURCE_DIR
from course_tools.notebook_model import grade_id as cell_grade_id, is_code_answer, solution_text

#: grade_id of an answer cell -> (text to find, replacement), applied to the solution text
Edits = Mapping[str, tuple[str, str]]

def learner_notebook(
    assignment: str,
    notebook: str,
    edits: Edits | None = None,
    *,
    filled: bool = True,
    release_dir: Path = RELEASE_DIR,
) -> Any:
    """The release notebook ``notebook`` (name without .ipynb) as a learner would submit it.

    Args:
        filled: put the reference solution into every answer cell (False: untouched release).
        edits: per answer cell, a ``(find, replace)`` pair applied to the filled text; a
            pair whose ``find`` text is missing raises, so examples cannot silently go stale.
    """
    release = nbformat.read(release_dir / assignment / f"{notebook}.ipynb", as_version=4)
    if not filled:
        return release
    source = nbformat.read(SOURCE_DIR / assignment / f"{notebook}.ipynb", as_version=4)
    solutions = {cell_grade_id(c): c.source for c in source.cells if is_code_answer(c)}
    pending = dict(edits or {})
    for cell in release.cells:
        if not is_code_answer(cell):
            continue
        grade_id = cell_grade_id(cell)
        text = solution_text(solutions[grade_id])
        if grade_id in pending:
            find, replace = pending.pop(grade_id)
            if find not in text:
                raise ValueError(f"{assignment}/{notebook}: cell {grade_id} does not contain {find!r}")
            text = text.replace(find, replace)
        cell.source = text
    if pending:
        raise ValueError(f"{assignment}/{notebook}: no answer cells named {sorted(pending)}")
    return release


def write_submission(folder: Path, notebooks: Mapping[str, Any], *, release_folder: Path | None = None,
                     files: Mapping[str, Path] | None = None) -> Path:
    """Write a submission folder: the given notebooks, the release's other files and ``files`` (name -> source).

    ``files`` are what a learner hands in besides the notebooks, such as a trained ``model.pt``
    (see :func:`course_tools.authoring.examples.handed_in_files`).
    """
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    if release_folder is not None:
        shutil.copytree(release_folder, folder, ignore=shutil.ignore_patterns("*.ipynb"))
    folder.mkdir(parents=True, exist_ok=True)
    for name, nb in notebooks.items():
        nbformat.write(nb, folder / f"{name}.ipynb")
    for name, source in (files or {}).items():
        shutil.copy(source, folder / name)
    return folder
