"""PostgreSQL gradebook (issue: grade a whole class fast and safely).

The tests start their own PostgreSQL server (Debian's ``postgresql`` package,
``scripts/install_system_packages.sh``) in a temporary folder, listening on
127.0.0.1 only, and stop it at the end. Parallel workers, and two grading runs
at once (two staff members), write to it through nbgrader's ``db_url``; the
gradebook must hold every grade, equal to what serial nbgrader writes to SQLite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from conftest import ASSIGNMENTS
from course_tools.quality.benchmark_grading import gradebook_dump, submit_class, synthetic_class
from course_tools.course import REPO_ROOT, Workspace
from course_tools.grading.class_grading import grade_class
from course_tools.grading.engine import CourseSpec, GradeOptions
from postgres_server import running_postgres

pytest.importorskip("psycopg", reason="psycopg[binary] is in requirements.txt: run `make env`")
CLASS_SIZE = 8


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with running_postgres() as url:
        yield url


@pytest.fixture(scope="module")
def serial_sqlite(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The class graded by a plain serial loop of nbgrader's autograde, into SQLite."""
    assignment = ASSIGNMENTS[0]
    ws = Workspace(tmp_path_factory.mktemp("serial"))
    ws.generate(assignment)
    klass = synthetic_class(assignment, ws.release_dir, CLASS_SIZE)
    submit_class(ws, assignment, klass)
    for student in sorted(klass):
        ws.autograde(assignment, student)
    return gradebook_dump(ws.db_url, assignment)


def test_parallel_workers_write_every_grade_to_postgres(postgres_url: str, serial_sqlite: dict, tmp_path: Path):
    assignment = ASSIGNMENTS[0]
    ws = Workspace(tmp_path, db_url=postgres_url)
    ws.generate(assignment)
    submit_class(ws, assignment, synthetic_class(assignment, ws.release_dir, CLASS_SIZE))
    records = grade_class(CourseSpec(str(tmp_path), db_url=postgres_url), assignment, None,
                          GradeOptions(workers=4, progress=False))
    assert [r["status"] for r in records] == ["graded"] * CLASS_SIZE
    assert gradebook_dump(postgres_url, assignment) == serial_sqlite


def test_two_graders_at_once_share_one_postgres_gradebook(postgres_url: str, serial_sqlite: dict, tmp_path: Path):
    """Two staff members grade halves of the class at the same time, each with two workers."""
    assignment = ASSIGNMENTS[0]
    url = postgres_url.rsplit("/", 1)[0] + "/postgres"
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("CREATE DATABASE shared_gradebook")
    shared = postgres_url.rsplit("/", 1)[0] + "/shared_gradebook"
    ws = Workspace(tmp_path, db_url=shared)
    ws.generate(assignment)
    klass = synthetic_class(assignment, ws.release_dir, CLASS_SIZE)
    submit_class(ws, assignment, klass)
    students = sorted(klass)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    graders = [subprocess.Popen([sys.executable, "-m", "course_tools", "grade", assignment, *half, "--root",
                                 str(tmp_path), "--db-url", shared, "--workers", "2", "--quiet"],
                                cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for half in (students[::2], students[1::2])]
    for grader in graders:
        out, err = grader.communicate(timeout=900)
        assert grader.returncode == 0, out[-2000:] + err[-2000:]
    assert gradebook_dump(shared, assignment) == serial_sqlite
