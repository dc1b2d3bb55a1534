"""Preflight and repair of submissions (issue: grade a whole class fast and safely).

For every notebook in source/: a clean submission passes untouched (byte for
byte); stripped or altered nbgrader metadata, deleted, duplicated and
reordered cells, and renamed notebooks are repaired so that the graded cells
are exactly the release's, in the release's order; corrupt and missing files
are reported as problems with advice. No kernel runs here.
"""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat
import pytest

from conftest import NOTEBOOK_IDS, NOTEBOOKS
from course_tools.course import RELEASE_DIR, notebooks
from course_tools.grading.preflight import KEY_FIELDS, prepare_submission, repair_notebook
from course_tools.authoring.submissions import learner_notebook, write_submission


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def graded_layout(nb) -> list[tuple]:
    """(grade_id, grading fields) of every cell nbgrader grades or locks, in order."""
    return [tuple(_meta(c).get(k) for k in KEY_FIELDS) for c in nb.cells
            if _meta(c).get("grade") or _meta(c).get("solution") or _meta(c).get("locked")]


def _release(assignment: str, name: str):
    return nbformat.read(RELEASE_DIR / assignment / f"{name}.ipynb", as_version=4)


def _tests(nb) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if _meta(c).get("grade") and not _meta(c).get("solution")]


def _strip(nb, *, ids: bool = False):
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
        if ids:
            cell.pop("id", None)
    if ids:
        nb.nbformat_minor = 4
    return nb


def _submit(tmp_path: Path, assignment: str, files: dict[str, object]) -> Path:
    """Write a submission folder holding ``files`` (name -> notebook, or bytes)."""
    folder = tmp_path / "submitted" / "learner" / assignment
    folder.mkdir(parents=True)
    for file_name, content in files.items():
        if isinstance(content, bytes):
            (folder / file_name).write_bytes(content)
        else:
            nbformat.write(content, folder / file_name)
    return folder


def _repaired(assignment: str, name: str, nb):
    release = _release(assignment, name)
    out, findings = repair_notebook(name, release, nb)
    assert graded_layout(out) == graded_layout(release), f"{[f.message for f in findings]}"
    return out, findings


@pytest.mark.parametrize("assignment, name", NOTEBOOKS, ids=NOTEBOOK_IDS)
def test_clean_submission_is_copied_byte_for_byte(assignment: str, name: str, tmp_path: Path):
    nbs = {f"{nb.stem}.ipynb": learner_notebook(assignment, nb.stem) for nb in notebooks(assignment)}
    folder = _submit(tmp_path, assignment, nbs)
    report = prepare_submission(RELEASE_DIR / assignment, folder, tmp_path / "out")
    assert report.findings == []
    assert report.gradable == report.expected == sorted(nb.stem for nb in notebooks(assignment))
    for file_name in nbs:
        assert (tmp_path / "out" / file_name).read_bytes() == (folder / file_name).read_bytes()


@pytest.mark.parametrize("ids", [True, False], ids=["cell-ids-kept", "colab-no-ids"])
@pytest.mark.parametrize("assignment, name", NOTEBOOKS, ids=NOTEBOOK_IDS)
def test_stripped_metadata_is_restored(assignment: str, name: str, ids: bool):
    nb = _strip(learner_notebook(assignment, name), ids=not ids)
    out, findings = _repaired(assignment, name, nb)
    assert [f.kind for f in findings] == ["metadata_stripped"] and findings[0].action == "repaired"
    assert [c.source for c in out.cells] == [c.source for c in nb.cells], "repair must not change any source"


@pytest.mark.parametrize("assignment, name", NOTEBOOKS, ids=NOTEBOOK_IDS)
def test_altered_metadata_is_restored(assignment: str, name: str):
    nb = learner_notebook(assignment, name)
    first, last = _tests(nb)[0], _tests(nb)[-1]
    _meta(nb.cells[first])["points"] = 100
    _meta(nb.cells[first])["grade"] = False
    _meta(nb.cells[last])["grade_id"] = "renamed_by_learner"
    out, findings = _repaired(assignment, name, nb)
    assert {f.kind for f in findings} == {"metadata_altered"}


@pytest.mark.parametrize("assignment, name", NOTEBOOKS, ids=NOTEBOOK_IDS)
def test_deleted_test_cells_are_put_back(assignment: str, name: str):
    for strip in (False, True):
        nb = learner_notebook(assignment, name)
        tests = _tests(nb)
        deleted = {tests[0], tests[-1]}
        nb.cells = [c for i, c in enumerate(nb.cells) if i not in deleted]
        nb = _strip(nb, ids=True) if strip else nb
        out, findings = _repaired(assignment, name, nb)
        assert "cell_deleted" in {f.kind for f in findings}


@pytest.mark.parametrize("assignment, name", NOTEBOOKS, ids=NOTEBOOK_IDS)
def test_duplicated_and_reordered_cells_are_put_back_in_order(assignment: str, name: str):
    nb = learner_notebook(assignment, name)
    tests = _tests(nb)
    twin = copy.deepcopy(nb.cells[tests[0]])
    twin["id"] = "learner-copy"
    nb.cells.insert(tests[0] + 1, twin)
    moved = nb.cells.pop(_tests(nb)[-1])
    nb.cells.insert(0, moved)
    out, findings = _repaired(assignment, name, nb)
    assert {"cell_duplicated", "cells_reordered"} <= {f.kind for f in findings}
    assert all(f.action == "repaired" for f in findings)


@pytest.mark.parametrize("file_name", ["Copy of {}.ipynb", "{} (1).ipynb", "{}-Copy1.ipynb"])
@pytest.mark.parametrize("assignment, name", NOTEBOOKS, ids=NOTEBOOK_IDS)
def test_renamed_notebook_is_graded_under_its_release_name(assignment: str, name: str, file_name: str,
                                                           tmp_path: Path):
    nbs = {f"{nb.stem}.ipynb": learner_notebook(assignment, nb.stem) for nb in notebooks(assignment)}
    nbs[file_name.format(name)] = _strip(nbs.pop(f"{name}.ipynb"))
    report = prepare_submission(RELEASE_DIR / assignment, _submit(tmp_path, assignment, nbs), tmp_path / "out")
    assert name in report.gradable
    assert {(f.notebook, f.kind) for f in report.findings} == {(name, "renamed"), (name, "metadata_stripped")}
    graded = nbformat.read(tmp_path / "out" / f"{name}.ipynb", as_version=4)
    assert graded_layout(graded) == graded_layout(_release(assignment, name))


@pytest.mark.parametrize("assignment, name", NOTEBOOKS, ids=NOTEBOOK_IDS)
def test_corrupt_and_missing_notebooks_are_reported_with_advice(assignment: str, name: str, tmp_path: Path):
    others = {f"{nb.stem}.ipynb": learner_notebook(assignment, nb.stem) for nb in notebooks(assignment)
              if nb.stem != name}
    corrupt = {**others, f"{name}.ipynb": b'{"cells": [ {"cell_type": "code", "source": "x = '}
    report = prepare_submission(RELEASE_DIR / assignment, _submit(tmp_path / "a", assignment, corrupt),
                                tmp_path / "out_a")
    assert [(f.notebook, f.kind, f.action) for f in report.findings] == [(name, "unreadable", "problem")]
    assert "not valid JSON" in report.findings[0].message and report.findings[0].advice
    assert name not in report.gradable and not (tmp_path / "out_a" / f"{name}.ipynb").exists()

    report = prepare_submission(RELEASE_DIR / assignment, _submit(tmp_path / "b", assignment, others),
                                tmp_path / "out_b")
    assert [(f.notebook, f.kind, f.action) for f in report.findings] == [(name, "missing", "problem")]


def test_extra_files_are_kept_and_extra_notebooks_noted(tmp_path: Path):
    assignment, name = NOTEBOOKS[0]
    nbs = {nb.stem: learner_notebook(assignment, nb.stem) for nb in notebooks(assignment)}
    folder = write_submission(tmp_path / "submitted" / "learner" / assignment, nbs,
                              release_folder=RELEASE_DIR / assignment)
    (folder / "scratch.ipynb").write_text(nbformat.writes(nbformat.v4.new_notebook()), encoding="utf-8")
    (folder / "notes.txt").write_text("my notes", encoding="utf-8")
    (folder / ".ipynb_checkpoints").mkdir()
    (folder / ".ipynb_checkpoints" / f"{name}-checkpoint.ipynb").write_text("{}", encoding="utf-8")
    report = prepare_submission(RELEASE_DIR / assignment, folder, tmp_path / "out")
    assert [(f.notebook, f.kind, f.action) for f in report.findings] == [("scratch.ipynb", "extra_file", "note")]
    assert (tmp_path / "out" / "notes.txt").read_text(encoding="utf-8") == "my notes"
    assert not (tmp_path / "out" / "scratch.ipynb").exists()
    assert not (tmp_path / "out" / ".ipynb_checkpoints").exists()
