"""The grading round trip, for every notebook in source/ (issue: course kit foundation).

For each notebook: committed without outputs and with stable ids; the
solution runs top to bottom without error or warning; release/ equals a
fresh generation byte for byte and leaks no solution or hidden-test line;
the reference solution scores full marks and the untouched release zero;
grade ids are unique and points add up to the declared total.
"""

from __future__ import annotations

import filecmp
import shutil
from pathlib import Path

import nbformat
import pytest

from conftest import ASSIGNMENTS, NOTEBOOK_IDS, NOTEBOOKS
from course_tools.course import RELEASE_DIR, SOURCE_DIR, bonus_notebooks, notebooks
from course_tools.authoring.examples import handed_in_files
from course_tools.grading.execute import kernel_environment, run_notebook
from course_tools.authoring.submissions import learner_notebook

HIDDEN = ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
SOLUTION = ("BEGIN SOLUTION", "END SOLUTION")


def _nbgrader(cell):
    return cell.get("metadata", {}).get("nbgrader", {})


def _regions(source: str, markers: tuple[str, str]) -> tuple[list[str], list[str]]:
    """(lines inside marker regions, lines outside), stripped and non-empty."""
    inside, outside, depth = [], [], False
    for line in source.split("\n"):
        if markers[0] in line:
            depth = True
        elif markers[1] in line:
            depth = False
        elif line.strip():
            (inside if depth else outside).append(line.strip())
    return inside, outside


def test_course_has_assignments():
    assert ASSIGNMENTS, "source/ holds no assignment"
    assert [p.name for p in sorted(RELEASE_DIR.iterdir()) if p.is_dir()] == ASSIGNMENTS


@pytest.mark.parametrize("folder", [SOURCE_DIR, RELEASE_DIR], ids=["source", "release"])
def test_notebooks_committed_clean(folder: Path):
    for path in sorted(folder.rglob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        ids = [cell.get("id") for cell in nb.cells]
        assert all(ids), f"{path}: a cell has no id"
        assert len(set(ids)) == len(ids), f"{path}: duplicate cell ids"
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs, f"{path}: cell {cell.id} has committed outputs"
                assert cell.execution_count is None, f"{path}: cell {cell.id} has an execution count"


@pytest.mark.parametrize("assignment, name", NOTEBOOKS, ids=NOTEBOOK_IDS)
def test_grade_ids_unique_and_points_add_up(assignment: str, name: str):
    nb = nbformat.read(SOURCE_DIR / assignment / f"{name}.ipynb", as_version=4)
    grade_ids = [_nbgrader(c)["grade_id"] for c in nb.cells if _nbgrader(c).get("grade_id")]
    assert len(grade_ids) == len(set(grade_ids)), f"duplicate grade ids: {grade_ids}"
    points = sum(_nbgrader(c).get("points", 0) for c in nb.cells if _nbgrader(c).get("grade"))
    declared = nb.metadata.get("mytorch", {}).get("total_points")
    assert declared is not None, "declare the notebook's total in metadata mytorch.total_points"
    assert points == pytest.approx(declared), f"graded cells add up to {points}, declared {declared}"
    graded_tests = [c for c in nb.cells if _nbgrader(c).get("grade") and c.cell_type == "code"]
    assert graded_tests, "a graded notebook needs at least one test cell"
    for cell in graded_tests:
        assert _nbgrader(cell).get("locked"), f"test cell {cell.id} must be locked"
        first = cell.source.lstrip().split("\n", 1)[0]
        assert first.startswith('"""'), f"test cell {cell.id} must start with a one-line docstring"


@pytest.mark.parametrize("assignment, name", NOTEBOOKS, ids=NOTEBOOK_IDS)
def test_solution_runs_clean(assignment: str, name: str, tmp_path: Path):
    """Every solution notebook runs clean. One graded from the files a learner's run saves (the trained model of
    the classification notebook) runs as grading runs it, with the example's files; its learner run, which
    trains for minutes, is covered by the baselines (tests/test_torch_classification.py)."""
    folder = tmp_path / assignment
    shutil.copytree(SOURCE_DIR / assignment, folder)
    handed_in = handed_in_files(assignment)
    for file_name, path in handed_in.items():
        shutil.copy(path, folder / file_name)
    env = kernel_environment(NBGRADER_EXECUTION="autograde") if handed_in else None
    execution = run_notebook(folder / f"{name}.ipynb", env=env)
    assert execution.problems() == [], "the solution notebook must run without error or warning"


@pytest.mark.parametrize("assignment, name", NOTEBOOKS, ids=NOTEBOOK_IDS)
def test_figures_are_embedded_so_they_show_on_colab(assignment: str, name: str, tmp_path: Path):
    """Colab opens a notebook without its folder: images are attachments, embedded from docs/figures."""
    import base64
    import re

    from course_tools.authoring.cells import FIGURES_DIR, embed_figures

    nb = nbformat.read(SOURCE_DIR / assignment / f"{name}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        links = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", cell.source)
        assert all(link.startswith(("attachment:", "https://")) for link in links), (cell.id, links)
        for link in links:
            if link.startswith("attachment:"):
                figure = link.removeprefix("attachment:")
                (data,) = cell.attachments[figure].values()
                assert base64.b64decode(data) == (FIGURES_DIR / figure).read_bytes(), f"{figure} is stale: make release"
    release = nbformat.read(RELEASE_DIR / assignment / f"{name}.ipynb", as_version=4)
    assert [c.get("attachments") for c in release.cells if c.cell_type == "markdown" and c.get("attachments")] == \
        [c.get("attachments") for c in nb.cells if c.cell_type == "markdown" and c.get("attachments")]
    copy = tmp_path / "copy.ipynb"
    shutil.copy(SOURCE_DIR / assignment / f"{name}.ipynb", copy)
    assert not embed_figures(copy), "embedding again changes nothing"


def test_release_is_a_fresh_generation(grading):
    fresh, committed = grading.release_dir, RELEASE_DIR
    for assignment in ASSIGNMENTS:
        comparison = filecmp.dircmp(fresh / assignment, committed / assignment, ignore=["__pycache__"])
        stack = [comparison]
        while stack:
            c = stack.pop()
            assert not c.left_only and not c.right_only, (
                f"release/{assignment} differs in files: only fresh {c.left_only}, only committed {c.right_only}; "
                "run `make release`")
            stack.extend(c.subdirs.values())
        for path in sorted((fresh / assignment).rglob("*")):
            if path.is_file():
                other = committed / assignment / path.relative_to(fresh / assignment)
                assert path.read_bytes() == other.read_bytes(), f"{other} is stale: run `make release`"


@pytest.mark.parametrize("assignment, name", NOTEBOOKS, ids=NOTEBOOK_IDS)
def test_release_leaks_no_solution_or_hidden_test(assignment: str, name: str):
    source = nbformat.read(SOURCE_DIR / assignment / f"{name}.ipynb", as_version=4)
    release_text = (RELEASE_DIR / assignment / f"{name}.ipynb").read_text(encoding="utf-8")
    release = nbformat.reads(release_text, as_version=4)
    secret, public = set(), set()
    for cell in source.cells:
        hidden_in, hidden_out = _regions(cell.source, HIDDEN)
        solution_in, solution_out = _regions("\n".join(hidden_out), SOLUTION)
        secret.update(hidden_in + solution_in)
        public.update(solution_out)
    secret -= public  # a line that is also part of the learner's version is no secret
    assert secret, "the source notebook has no solution or hidden-test lines to protect"
    release_lines = {line.strip() for cell in release.cells for line in cell.source.split("\n")}
    leaked = sorted(secret & release_lines)
    assert not leaked, f"release/{assignment}/{name}.ipynb contains solution or hidden-test lines: {leaked[:5]}"
    for marker in HIDDEN + SOLUTION:
        assert marker not in release_text, f"marker {marker!r} left in the release"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_reference_solution_scores_full_marks(assignment: str, grading):
    nbs = {nb.stem: learner_notebook(assignment, nb.stem, release_dir=grading.release_dir) for nb in notebooks(assignment)}
    scores = grading.grade("reference", assignment, nbs)
    for name, nb in scores["notebooks"].items():
        lost = {cell: s for cell, s in nb["cells"].items() if s[0] != s[1]}
        assert not lost, f"{assignment}/{name}: the reference solution lost points in {lost}"
        assert nb["score"] == nb["max_score"] > 0
        assert not nb["needs_manual_grade"], f"{assignment}/{name}: flagged for manual grading"
    declared = {path.stem: nbformat.read(path, as_version=4).metadata["mytorch"]["total_points"]
                for path in notebooks(assignment)}
    bonus = bonus_notebooks(assignment)
    assert scores["score"] == scores["max_score"] == sum(v for k, v in declared.items() if k not in bonus)
    assert scores["bonus"] == scores["bonus_max"] == sum(v for k, v in declared.items() if k in bonus)


def test_bonus_notebooks_are_reported_apart_from_the_assignments_points():
    """The NumPy library keeps its 100 points (course spec); the Adam and Dropout notebook is a 10-point bonus."""
    assert bonus_notebooks("02_numpy_library") == {"6_bonus_adam_dropout"}
    assert all(not bonus_notebooks(a) for a in ("01_pen_and_paper", "03_torch_regression", "04_torch_classification"))
    declared = {path.stem: nbformat.read(path, as_version=4).metadata["mytorch"]["total_points"]
                for path in notebooks("02_numpy_library")}
    assert declared.pop("6_bonus_adam_dropout") == 10
    assert sum(declared.values()) == 100


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_untouched_release_scores_zero(assignment: str, grading):
    nbs = {nb.stem: learner_notebook(assignment, nb.stem, filled=False, release_dir=grading.release_dir)
           for nb in notebooks(assignment)}
    scores = grading.grade("untouched", assignment, nbs, files={})
    assert scores["max_score"] > 0
    assert scores["score"] == 0, f"{assignment}: the untouched release scored {scores['score']}"
