"""A notebook worked on in Google Colab and downloaded is graded like one from JupyterLab.

Colab saves a notebook differently from Jupyter: nbformat 4.0 (no cell ids),
its own ``colab`` metadata on the notebook and on cells (a Colab cell id,
output ids), source as a list of lines, and the outputs of the learner's last
run. The tests below build exactly that from the reference solution of every
assignment and grade it:

- Colab-saved, nbgrader metadata kept: full marks, the same score in every
  graded cell as the same solution saved by Jupyter;
- Colab-saved with the nbgrader metadata lost (as some editors and
  copy-and-paste do): after the submission preflight (``course_tools.grading.preflight``)
  the same full marks; without it, the notebook is not graded correctly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pytest

from conftest import ASSIGNMENTS
from course_tools.course import notebooks
from course_tools.authoring.examples import handed_in_files
from course_tools.authoring.submissions import learner_notebook, write_submission

# A 1 x 1 PNG: what a plot output looks like in the saved file, minus the size.
_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def colab_saved(nb: Any, name: str, *, keep_nbgrader: bool = True) -> dict[str, Any]:
    """The JSON Colab writes on *File → Download .ipynb* for the notebook ``nb`` after a run.

    Args:
        nb: the notebook as the learner last had it (cells with sources and nbgrader metadata).
        name: the notebook's file name without ``.ipynb``.
        keep_nbgrader: False drops every cell's ``nbgrader``, ``editable`` and ``deletable`` metadata.
    """
    cells = []
    count = 0
    for index, cell in enumerate(nb.cells):
        meta: dict[str, Any] = {"id": f"c{index:03d}Xq9"}
        if keep_nbgrader:
            meta.update({k: v for k, v in cell.metadata.items() if k in ("nbgrader", "editable", "deletable")})
        out: dict[str, Any] = {"cell_type": cell.cell_type, "metadata": meta,
                               "source": cell.source.splitlines(keepends=True)}
        if cell.cell_type == "code":
            count += 1
            meta["colab"] = {"base_uri": "https://localhost:8080/"}
            meta["outputId"] = f"{index:08x}-0000-4000-8000-00000000c01a"
            outputs: list[dict[str, Any]] = [
                {"output_type": "stream", "name": "stdout", "text": [f"output of cell {index} on Colab\n"]}]
            if count % 3 == 0:
                outputs.append({"output_type": "display_data", "metadata": {},
                                "data": {"image/png": _PNG, "text/plain": ["<Figure size 640x480 with 1 Axes>"]}})
            if count % 5 == 0:
                outputs.append({"output_type": "execute_result", "execution_count": count, "metadata": {},
                                "data": {"text/plain": ["0.25"]}})
            out.update(execution_count=count, outputs=outputs)
        cells.append(out)
    return {
        "nbformat": 4,
        "nbformat_minor": 0,
        "metadata": {
            "colab": {"provenance": [], "collapsed_sections": [], "name": f"{name}.ipynb"},
            "kernelspec": {"name": "python3", "display_name": "Python 3"},
            "language_info": {"name": "python"},
        },
        "cells": cells,
    }


def _write_colab_submission(folder: Path, assignment: str, release_dir: Path, *, keep_nbgrader: bool) -> Path:
    """A submission folder whose notebooks are the reference solutions as Colab saves them."""
    write_submission(folder, {}, release_folder=release_dir / assignment, files=handed_in_files(assignment))
    for path in notebooks(assignment):
        nb = learner_notebook(assignment, path.stem, release_dir=release_dir)
        text = json.dumps(colab_saved(nb, path.stem, keep_nbgrader=keep_nbgrader), indent=2, ensure_ascii=False)
        (folder / path.name).write_text(text + "\n", encoding="utf-8")
    return folder


def _graded(grading, student: str, assignment: str) -> dict[str, Any]:
    grading.workspace.autograde(assignment, student)
    return grading.workspace.scores(assignment, student)


def _reference_scores(grading, assignment: str) -> dict[str, Any]:
    nbs = {p.stem: learner_notebook(assignment, p.stem, release_dir=grading.release_dir) for p in notebooks(assignment)}
    return grading.grade("reference", assignment, nbs)


def _assert_same_scores(got: dict[str, Any], reference: dict[str, Any], what: str) -> None:
    assert set(got["notebooks"]) == set(reference["notebooks"]), what
    for name, ref in reference["notebooks"].items():
        nb = got["notebooks"][name]
        differ = {cell: (nb["cells"].get(cell), score) for cell, score in ref["cells"].items()
                  if nb["cells"].get(cell) != score}
        assert not differ, f"{what}, {name}: cells scored differently (got, reference): {differ}"
        assert nb["score"] == nb["max_score"] == ref["max_score"] > 0, f"{what}, {name}: {nb['score']}/{nb['max_score']}"
        assert not nb["needs_manual_grade"], f"{what}, {name}: flagged for manual grading"


def test_colab_saved_file_looks_like_colab(grading):
    """The simulated file has what a real Colab download has (so the tests below test the right thing)."""
    assignment = ASSIGNMENTS[0]
    name = notebooks(assignment)[0].stem
    data = colab_saved(learner_notebook(assignment, name, release_dir=grading.release_dir), name)
    assert (data["nbformat"], data["nbformat_minor"]) == (4, 0)
    assert all("id" not in cell for cell in data["cells"]), "nbformat 4.0 cells have no id field"
    assert "colab" in data["metadata"] and all("id" in cell["metadata"] for cell in data["cells"])
    code = [cell for cell in data["cells"] if cell["cell_type"] == "code"]
    assert all(cell["outputs"] and cell["execution_count"] for cell in code), "a saved Colab run keeps its outputs"
    nb = nbformat.reads(json.dumps(data), as_version=4)  # a valid notebook for Jupyter tools
    assert len(nb.cells) == len(data["cells"])


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_colab_saved_reference_scores_like_jupyter(assignment: str, grading):
    reference = _reference_scores(grading, assignment)
    student = "colab_reference"
    _write_colab_submission(grading.workspace.path("submitted", student, assignment), assignment,
                            grading.release_dir, keep_nbgrader=True)
    _assert_same_scores(_graded(grading, student, assignment), reference, f"{assignment} saved by Colab")


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_colab_saved_without_nbgrader_metadata_scores_full_after_preflight(assignment: str, grading, tmp_path: Path):
    from course_tools.grading.preflight import prepare_submission

    reference = _reference_scores(grading, assignment)
    student = "colab_stripped"
    downloaded = _write_colab_submission(tmp_path / "downloaded", assignment, grading.release_dir, keep_nbgrader=False)
    report = prepare_submission(grading.release_dir / assignment, downloaded,
                                grading.workspace.path("submitted", student, assignment),
                                student=student, assignment=assignment)
    assert not report.problems, f"preflight could not repair the Colab file: {report.problems}"
    assert report.repaired, "the nbgrader metadata was missing: preflight should report a repair"
    _assert_same_scores(_graded(grading, student, assignment), reference,
                        f"{assignment} saved by Colab without nbgrader metadata, after preflight")


def test_set_up_cell_edited_on_colab_is_restored_when_graded(grading):
    """Colab ignores the read-only flag: a learner may change the set-up cell; grading puts it back."""
    assignment = ASSIGNMENTS[0]
    reference = _reference_scores(grading, assignment)
    student = "colab_edited_setup"
    folder = _write_colab_submission(grading.workspace.path("submitted", student, assignment), assignment,
                                     grading.release_dir, keep_nbgrader=True)
    for path in sorted(folder.glob("*.ipynb")):
        data = json.loads(path.read_text(encoding="utf-8"))
        setup = data["cells"][1]
        assert setup["metadata"]["nbgrader"]["grade_id"] == "mytorch_setup"
        # an edit that would break every later cell if it were run as submitted
        setup["source"] = ["import sys\n", "sys.modules['mytorch_lib'] = None\n"]
        path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    _assert_same_scores(_graded(grading, student, assignment), reference, f"{assignment} with an edited set-up cell")
    header = nbformat.read(grading.release_dir / assignment / f"{notebooks(assignment)[0].stem}.ipynb", as_version=4)
    graded = nbformat.read(grading.workspace.path("autograded", student, assignment) / notebooks(assignment)[0].name,
                           as_version=4)
    assert graded.cells[1].source == header.cells[1].source, "autograde should restore the set-up cell"


def test_colab_saved_without_nbgrader_metadata_is_not_graded_without_preflight(grading):
    """The control: the same file straight into nbgrader loses the marks (or stops autograde)."""
    from course_tools.course import NbgraderStepFailed

    assignment = ASSIGNMENTS[0]
    student = "colab_stripped_raw"
    _write_colab_submission(grading.workspace.path("submitted", student, assignment), assignment,
                            grading.release_dir, keep_nbgrader=False)
    try:
        scores = _graded(grading, student, assignment)
    except NbgraderStepFailed:
        return
    assert scores["score"] < scores["max_score"], "without preflight the stripped notebook should not score full"
