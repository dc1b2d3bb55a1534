"""Class grading: parallel, sandboxed, resumable, with summary and CSV (issue: grade a whole class).

A small synthetic class (reference, blank, half-done and the bundled buggy
examples) is graded twice: by a plain serial loop of nbgrader's own autograde,
and by ``grade_class`` with two sandboxed local workers. Both gradebooks must
hold exactly the same grades and comments. ``test_dask_grading.py`` does the
same for every assignment on a Dask cluster, with a worker killed mid-run.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from contextlib import redirect_stdout, redirect_stderr
from pathlib import Path

import nbformat
import pytest

from conftest import ASSIGNMENTS, CLASS_SIZE
from course_tools import __main__ as cli
from course_tools.grading import sandbox
from course_tools.quality.benchmark_grading import gradebook_dump, submit_class, synthetic_class
from course_tools.course import Workspace, notebooks
from course_tools.grading.class_grading import grade_class
from course_tools.grading.engine import (PREFLIGHTED, CourseSpec, GradeOptions, GradingRefused, load_record,
                                         record_path)



def graded_course(root: Path, assignment: str, *, workers: int = 2, **options) -> tuple[Workspace, list[dict]]:
    """A course at ``root`` whose synthetic class of ``assignment`` was graded by grade_class."""
    ws = Workspace(root)
    ws.generate(assignment)
    submit_class(ws, assignment, synthetic_class(assignment, ws.release_dir, CLASS_SIZE))
    records = grade_class(CourseSpec(str(root)), assignment, None,
                          GradeOptions(workers=workers, progress=False, **options))
    return ws, records


@pytest.fixture(scope="module")
def first_course(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, list[dict]]:
    return graded_course(tmp_path_factory.mktemp("class"), ASSIGNMENTS[0])


def test_parallel_sandboxed_grading_equals_serial_nbgrader(first_course, serial_grades):
    """Local workers; every assignment is also graded on a Dask cluster in test_dask_grading.py."""
    assignment = ASSIGNMENTS[0]
    ours, records = first_course
    assert gradebook_dump(ours.db_url, assignment) == serial_grades.dump(assignment)
    assert [r["status"] for r in records] == ["graded"] * CLASS_SIZE
    assert all(r["sandbox"] for r in records)
    by_kind = {r["student"].split("_")[0]: r for r in records}
    assert by_kind["reference"]["score"] == by_kind["reference"]["max_score"] > 0
    assert by_kind["blank"]["score"] == 0
    # nbgrader graded the preflighted copies; submitted/ was left as the learner sent it
    for student in by_kind.values():
        for name in student["notebooks"]:
            assert (ours.root / PREFLIGHTED / student["student"] / assignment / f"{name}.ipynb").exists()


def test_resume_skips_graded_submissions_and_force_grades_again(first_course):
    ws, first = first_course
    assignment = ASSIGNMENTS[0]
    course = CourseSpec(str(ws.root))
    quiet = GradeOptions(workers=2, progress=False)
    again = grade_class(course, assignment, None, quiet)
    assert all(r.get("skipped") for r in again)
    assert [r["graded_at"] for r in again] == [r["graded_at"] for r in first]

    # a resubmission is graded again; so is everything with force
    changed = sorted(r["student"] for r in first)[0]
    folder = ws.path("submitted", changed, assignment)
    (folder / "timestamp.txt").write_text("2030-01-01 10:00:00.000000 UTC", encoding="utf-8")
    resumed = grade_class(course, assignment, None, quiet)
    assert sorted(r["student"] for r in resumed if not r.get("skipped")) == [changed]
    subset = grade_class(course, assignment, [changed], GradeOptions(workers=1, progress=False, force=True))
    assert [(r["student"], r.get("skipped", False)) for r in subset] == [(changed, False)]
    with pytest.raises(GradingRefused, match="no submission"):
        grade_class(course, assignment, ["nobody"], quiet)


def test_csv_export_has_notebook_and_cell_scores_and_flags(first_course, tmp_path: Path):
    ws, records = first_course
    assignment = ASSIGNMENTS[0]
    names = [nb.stem for nb in notebooks(assignment)]
    # one more learner whose notebooks lost their nbgrader metadata (repaired), one who sent nothing readable
    reference = next(r["student"] for r in records if r["student"].startswith("reference"))
    stripped = ws.path("submitted", "stripped_learner", assignment)
    shutil.copytree(ws.path("submitted", reference, assignment), stripped)
    for path in stripped.glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            cell.metadata.pop("nbgrader", None)
        nbformat.write(nb, path)
    broken = ws.path("submitted", "broken_learner", assignment)
    broken.mkdir(parents=True)
    for name in names:
        (broken / f"{name}.ipynb").write_text("{not json", encoding="utf-8")

    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(io.StringIO()):
        code = cli.main(["grade", assignment, "--root", str(ws.root), "--workers", "2", "--quiet",
                         "--csv", str(tmp_path / "grades.csv")])
    assert code == 0, out.getvalue()
    text = out.getvalue()
    assert "student" in text and "stripped_learner" in text and "Needs attention" in text
    assert "broken_learner" in text and "not valid JSON" in text

    rows = {row["student"]: row for row in csv.DictReader((tmp_path / "grades.csv").open(encoding="utf-8"))}
    assert set(rows) >= {r["student"] for r in records} | {"stripped_learner", "broken_learner"}
    ref = rows[reference]
    assert ref["score"] == ref["max_score"] and float(ref["max_score"]) > 0
    assert all(name in ref for name in names)
    assert sum(1 for column in ref if ":" in column) >= len(names)  # per-cell columns
    assert rows["stripped_learner"]["score"] == ref["score"]
    assert "metadata_stripped" in rows["stripped_learner"]["repaired"]
    assert "unreadable" in rows["broken_learner"]["problems"]
    record = load_record(ws.root, assignment, "broken_learner")
    assert record["status"] == "problems" and record["score"] == 0


def test_grading_refuses_without_sandbox_unless_opted_out(first_course, monkeypatch):
    ws, records = first_course
    assignment = ASSIGNMENTS[0]
    student = records[0]["student"]

    def missing(name: str) -> str:
        raise sandbox.SandboxUnavailable(f"`{name}` was not found (test)")

    monkeypatch.setattr(sandbox, "find_tool", missing)
    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        code = cli.main(["grade", assignment, student, "--root", str(ws.root), "--force", "--quiet"])
    assert code == 2
    assert "grading refused" in err.getvalue() and "--no-sandbox" in err.getvalue()
    assert json.loads(record_path(ws.root, assignment, student).read_text())["sandbox"] is True

    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        code = cli.main(["grade", assignment, student, "--root", str(ws.root), "--force", "--quiet", "--no-sandbox"])
    assert code == 0
    assert "WARNING" in err.getvalue()
    assert load_record(ws.root, assignment, student)["sandbox"] is False
