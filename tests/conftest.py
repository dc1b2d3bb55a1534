"""Shared fixtures: one nbgrader workspace per test session, graded submissions cached."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from course_tools.course import Workspace, assignments, notebooks
from course_tools.grading.execute import kernel_environment

os.environ.update({k: v for k, v in kernel_environment().items() if k.endswith("_THREADS")})

ASSIGNMENTS = assignments()
NOTEBOOKS = [(a, nb.stem) for a in ASSIGNMENTS for nb in notebooks(a)]
NOTEBOOK_IDS = [f"{a}/{n}" for a, n in NOTEBOOKS]


class GradingSession:
    """A workspace whose release is a fresh generation of every assignment."""

    def __init__(self, root: Path) -> None:
        self.workspace = Workspace(root)
        for name in ASSIGNMENTS:
            self.workspace.generate(name)
        self._graded: dict[tuple[str, str], dict[str, Any]] = {}

    @property
    def release_dir(self) -> Path:
        return self.workspace.release_dir

    def grade(self, student: str, assignment: str, nbs: dict[str, Any],
              files: dict[str, Path] | None = None) -> dict[str, Any]:
        """Submit ``nbs`` (name -> notebook) and ``files`` (name -> path; default: the reference's handed-in
        files, such as its trained model.pt) as ``student`` and return the gradebook scores."""
        from course_tools.authoring.examples import handed_in_files
        from course_tools.authoring.submissions import write_submission

        key = (student, assignment)
        if key not in self._graded:
            write_submission(self.workspace.path("submitted", student, assignment), nbs,
                             release_folder=self.release_dir / assignment,
                             files=handed_in_files(assignment) if files is None else files)
            self.workspace.autograde(assignment, student)
            self._graded[key] = self.workspace.scores(assignment, student)
        return self._graded[key]


@pytest.fixture(scope="session")
def grading(tmp_path_factory: pytest.TempPathFactory) -> GradingSession:
    return GradingSession(tmp_path_factory.mktemp("course"))


#: learners per assignment in the synthetic classes the class-grading tests grade
CLASS_SIZE = 4


class SerialGrades:
    """The synthetic class of each assignment graded by a plain serial loop of nbgrader's
    own autograde (one SQLite gradebook per assignment), computed once per test session:
    what every scheduler of the grading engine must reproduce exactly."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._dumps: dict[str, dict] = {}

    def dump(self, assignment: str) -> dict:
        from course_tools.quality.benchmark_grading import gradebook_dump, submit_class, synthetic_class

        if assignment not in self._dumps:
            serial = Workspace(self.root / assignment)
            serial.generate(assignment)
            klass = synthetic_class(assignment, serial.release_dir, CLASS_SIZE)
            submit_class(serial, assignment, klass)
            for student in sorted(klass):
                serial.autograde(assignment, student)
            self._dumps[assignment] = gradebook_dump(serial.db_url, assignment)
        return self._dumps[assignment]


@pytest.fixture(scope="session")
def serial_grades(tmp_path_factory: pytest.TempPathFactory) -> SerialGrades:
    return SerialGrades(tmp_path_factory.mktemp("serial"))
