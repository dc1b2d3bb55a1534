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
