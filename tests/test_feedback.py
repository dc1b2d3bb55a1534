"""Feedback HTML never leaks hidden tests (issue: grade a whole class fast and safely).

For every assignment a small class (reference, blank, half-done, the bundled
buggy examples, and a learner who patches NumPy) is graded with feedback by
``grade_class``. In every learner's feedback HTML: no line of any hidden test
region appears (neither as source nor inside a traceback), no hidden-test
marker appears, and every failed test cell is explained by its error message.
"""

from __future__ import annotations

import copy
import html
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from conftest import ASSIGNMENTS
from course_tools.quality.benchmark_grading import submit_class, synthetic_class
from course_tools.course import RELEASE_DIR, SOURCE_DIR, Workspace, notebooks
from course_tools.grading.class_grading import CourseSpec, GradeOptions, grade_class

HIDDEN = ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
#: hidden lines shorter than this are too generic to search for (``pass``, ``)``)
MIN_LINE = 12

TAMPER = """import numpy as np
np.allclose = lambda *args, **kwargs: True
"""


class _Text(HTMLParser):
    """Visible text of an HTML page (scripts and styles dropped), entities decoded."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self._skip += tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        self._skip -= tag in ("script", "style") and self._skip > 0

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def page_text(path: Path) -> str:
    parser = _Text()
    parser.feed(path.read_text(encoding="utf-8"))
    return html.unescape("".join(parser.parts))


def hidden_lines(assignment: str, name: str) -> set[str]:
    """Stripped lines inside hidden-test regions that the learner's release does not show anyway."""
    source = nbformat.read(SOURCE_DIR / assignment / f"{name}.ipynb", as_version=4)
    release = nbformat.read(RELEASE_DIR / assignment / f"{name}.ipynb", as_version=4)
    public = {line.strip() for cell in release.cells for line in cell.source.split("\n")}
    secret: set[str] = set()
    for cell in source.cells:
        inside = False
        for line in cell.source.split("\n"):
            if HIDDEN[0] in line:
                inside = True
            elif HIDDEN[1] in line:
                inside = False
            elif inside and len(line.strip()) >= MIN_LINE:
                secret.add(line.strip())
    return secret - public


@pytest.fixture(scope="module", params=ASSIGNMENTS)
def feedback_course(request, tmp_path_factory: pytest.TempPathFactory):
    assignment = request.param
    ws = Workspace(tmp_path_factory.mktemp("feedback"))
    ws.generate(assignment)
    klass = synthetic_class(assignment, ws.release_dir, 4)
    reference = next(nbs for student, nbs in klass.items() if student.startswith("reference"))
    tampered = {}
    for name, nb in reference.items():
        nb = copy.deepcopy(nb)
        first = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
        nb.cells.insert(first + 1, nbformat.v4.new_code_cell(TAMPER))
        tampered[name] = nb
    klass["tampered"] = tampered
    submit_class(ws, assignment, klass)
    records = grade_class(CourseSpec(str(ws.root)), assignment, None,
                          GradeOptions(workers=2, feedback=True, progress=False))
    return ws, assignment, records


def test_feedback_was_written_for_everyone(feedback_course):
    ws, assignment, records = feedback_course
    for record in records:
        assert record.get("feedback") == "written", record
        for nb in notebooks(assignment):
            assert (ws.root / "feedback" / record["student"] / assignment / f"{nb.stem}.html").exists()


def test_feedback_shows_no_hidden_test_source_or_traceback_line(feedback_course):
    ws, assignment, records = feedback_course
    failed_cells = 0
    for nb_path in notebooks(assignment):
        name = nb_path.stem
        secret = hidden_lines(assignment, name)
        assert secret, f"{assignment}/{name} has no hidden tests to protect"
        for record in records:
            page = ws.root / "feedback" / record["student"] / assignment / f"{name}.html"
            text = page_text(page)
            for marker in HIDDEN:
                assert marker not in text, f"{page}: hidden-test marker"
            leaked = sorted(line for line in secret if line in text)
            assert not leaked, f"{page} shows hidden test lines: {leaked[:3]}"
            assert "course_tools/hidden/" not in text, f"{page}: a traceback shows grader source files"
            autograded = nbformat.read(ws.path("autograded", record["student"], assignment) / f"{name}.ipynb",
                                       as_version=4)
            for cell in autograded.cells:
                if not cell.get("metadata", {}).get("nbgrader", {}).get("grade") or cell.cell_type != "code":
                    continue
                for out in cell.get("outputs", []):
                    if out.get("output_type") == "error":
                        failed_cells += 1
                        message = f"{out['ename']}: {out['evalue']}".strip()
                        assert message.split("\n")[0] in text, f"{page}: failure not explained: {message[:200]}"
    assert failed_cells > 0, "the class should fail some test cells"
