"""Where the course lives, and an nbgrader workspace to run it in.

A :class:`Workspace` is an nbgrader course directory (gradebook,
``submitted/``, ``autograded/``, ``feedback/``) that reads the assignments
from this repository's ``source/`` and writes releases where it is told. All
nbgrader work goes through ``nbgrader.apps.NbGraderAPI`` in this process,
with the settings of the repository's ``nbgrader_config.py``.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIR = REPO_ROOT / "source"
RELEASE_DIR = REPO_ROOT / "release"
CONFIG_FILE = REPO_ROOT / "nbgrader_config.py"


class NbgraderStepFailed(RuntimeError):
    """An nbgrader step reported failure; the message carries its log."""


def assignments() -> list[str]:
    """Names of the assignments in ``source/``, in course order."""
    return sorted(p.name for p in SOURCE_DIR.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def notebooks(assignment: str, root: Path = SOURCE_DIR) -> list[Path]:
    """The notebooks of an assignment under ``root`` (default ``source/``), sorted by name."""
    return sorted((root / assignment).glob("*.ipynb"))


def bonus_notebooks(assignment: str, root: Path = SOURCE_DIR) -> set[str]:
    """Names (without ``.ipynb``) of the assignment's bonus notebooks.

    A notebook is a bonus when its metadata says ``"mytorch": {"bonus": true}``. Its
    points are graded like any other, but reported apart from the assignment's own
    total (``score`` of ``max_score``, then ``bonus`` of ``bonus_max``): nbgrader's
    gradebook knows no bonus points and adds every notebook into one maximum.
    Grading asks once per submission, so the files are read again only when they change.
    """
    return set(_bonus_names(tuple((path, path.stat().st_mtime_ns) for path in notebooks(assignment, root))))


@functools.lru_cache(maxsize=64)
def _bonus_names(files: tuple[tuple[Path, int], ...]) -> frozenset[str]:
    """The stems of the notebooks among ``files`` (path, modification time) marked as a bonus."""
    names = set()
    for path, _ in files:
        metadata = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
        if metadata.get("mytorch", {}).get("bonus") is True:
            names.add(path.stem)
    return frozenset(names)


def load_config() -> Any:
    """The traitlets ``Config`` defined by the repository's ``nbgrader_config.py``."""
    from traitlets.config.loader import PyFileConfigLoader

    return PyFileConfigLoader(CONFIG_FILE.name, path=str(REPO_ROOT)).load_config()


@dataclass
class Workspace:
    """An nbgrader course directory at ``root`` that grades this repository's assignments.

    Args:
        root: folder for the gradebook and the submitted/autograded/feedback trees.
        release_dir: where ``generate_assignment`` writes (default: ``root/release``).
        db_url: SQLAlchemy URL of the gradebook (default: SQLite in ``root``).
    """

    root: Path
    release_dir: Path | None = None
    db_url: str | None = None
    _api: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.release_dir = Path(self.release_dir or self.root / "release").resolve()
        self.db_url = self.db_url or f"sqlite:///{self.root / 'gradebook.db'}"

    @property
    def api(self) -> Any:
        if self._api is None:
            from nbgrader.apps import NbGraderAPI
            from nbgrader.coursedir import CourseDirectory
            from sqlalchemy.exc import SAWarning

            # nbgrader 0.9.6 with SQLAlchemy 2.1 warns about its own session use; harmless.
            warnings.filterwarnings("ignore", category=SAWarning)

            config = load_config()
            config.CourseDirectory.root = str(self.root)
            config.CourseDirectory.source_directory = str(SOURCE_DIR)
            config.CourseDirectory.release_directory = str(self.release_dir)
            config.CourseDirectory.db_url = self.db_url
            # nbgrader runs `alembic` as a subprocess: make this interpreter's
            # scripts findable even when the virtual environment is not activated.
            bin_dir = str(Path(os.sys.executable).parent)
            if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
                os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
            coursedir = CourseDirectory(config=config)
            self._api = NbGraderAPI(coursedir=coursedir, config=config)
        return self._api

    def path(self, step: str, student: str, assignment: str) -> Path:
        """``root/<step>/<student>/<assignment>`` (step: submitted, autograded, feedback)."""
        return self.root / step / student / assignment

    def _check(self, what: str, result: dict[str, Any]) -> dict[str, Any]:
        if not result.get("success"):
            raise NbgraderStepFailed(f"{what} failed:\n{result.get('error', '')}\n{result.get('log', '')}")
        return result

    def generate(self, assignment: str) -> dict[str, Any]:
        """``nbgrader generate_assignment --force`` into ``release_dir``."""
        return self._check(f"generate_assignment {assignment}",
                           self.api.generate_assignment(assignment, force=True, create=True))

    def autograde(self, assignment: str, student: str, notebook: str | None = None) -> dict[str, Any]:
        """``nbgrader autograde --force`` of one submission (only ``notebook``, name without .ipynb, if given)."""
        coursedir = self.api.coursedir
        previous, coursedir.notebook_id = coursedir.notebook_id, notebook or "*"
        try:
            return self._check(f"autograde {assignment} for {student}",
                               self.api.autograde(assignment, student, force=True, create=True))
        finally:
            coursedir.notebook_id = previous

    def feedback(self, assignment: str, student: str) -> dict[str, Any]:
        """``nbgrader generate_feedback --force`` of one autograded submission."""
        return self._check(f"generate_feedback {assignment} for {student}",
                           self.api.generate_feedback(assignment, student, force=True))

    def gradebook(self) -> Any:
        """nbgrader's ``Gradebook`` of this course, to use as a context manager (``with ws.gradebook() as gb``)."""
        from nbgrader.api import Gradebook

        return Gradebook(self.db_url, self.api.coursedir.course_id)

    def scores(self, assignment: str, student: str) -> dict[str, Any]:
        """Scores of one submission from the gradebook.

        Returns ``{"score", "max_score", "bonus", "bonus_max", "notebooks": {name: {"score",
        "max_score", "cells": {grade_id: (score, max_score)}, "needs_manual_grade": [grade_id, ...]}}}``.
        ``score`` and ``max_score`` count the assignment's own notebooks, ``bonus`` and
        ``bonus_max`` its bonus notebooks (:func:`bonus_notebooks`; both 0 when it has none).
        """
        bonus = bonus_notebooks(assignment)
        result: dict[str, Any] = {"score": 0.0, "max_score": 0.0, "bonus": 0.0, "bonus_max": 0.0, "notebooks": {}}
        with self.gradebook() as gb:
            submission = gb.find_submission(assignment, student)
            for nb in submission.notebooks:
                result["notebooks"][nb.name] = {
                    "score": nb.score,
                    "max_score": nb.max_score,
                    "cells": {g.name: (g.score, g.max_score) for g in nb.grades},
                    "needs_manual_grade": sorted(g.name for g in nb.grades if g.needs_manual_grade),
                }
                kind = "bonus" if nb.name in bonus else "score"
                result[kind] += nb.score
                result["bonus_max" if nb.name in bonus else "max_score"] += nb.max_score
        return result
