"""JupyterLab in a real browser: what a learner sees when they open the published bundle.

Starts ``jupyter lab`` on the learner bundle (kernels see only the bundle's own
mytorch_lib, as after ``pip install -r requirements.txt`` there, and nbgrader's
extensions are off as learners do not install them), opens release notebooks
in headless Chromium through Playwright, runs every cell with Shift+Enter and
checks what the page shows:

- the shared set-up cell runs and prints nothing;
- pen and paper: each visible check of a ``None`` placeholder fails with a
  message naming the answer and its shape, and nothing else fails;
- a notebook with code stubs: the stubs raise ``NotImplementedError`` naming
  the class and method to write; test cells fail only with messages that say
  what is wrong;
- locked cells (the set-up cell, test cells) cannot be edited or deleted,
  while an answer cell can be edited.

Screenshots and timings go to ``build/test-artifacts/browser/``. Every wait is
bounded, and the server and its kernels are always stopped.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Iterator

import nbformat
import pytest

from course_tools.course import REPO_ROOT
from jupyterlab_driver import Cell, JupyterLab, NotebookPage, open_browser
from learner_bundle import published

ARTIFACTS = REPO_ROOT / "build" / "test-artifacts" / "browser"
PEN_AND_PAPER = "01_pen_and_paper/pen_and_paper.ipynb"
_STUB = re.compile(r'raise NotImplementedError\("([\w.]+) is not written yet')
_TIMINGS: dict[str, float] = {}


def _stubs(path: Path) -> set[str]:
    """``Class.method`` names of the ``raise NotImplementedError`` stubs in a release notebook."""
    return {name for cell in nbformat.read(path, as_version=4).cells for name in _STUB.findall(cell.source)}


def _stub_notebook(bundle: Path) -> str | None:
    """The first release notebook whose answer cells hold ``raise NotImplementedError`` stubs."""
    return next((p.relative_to(bundle).as_posix() for p in sorted(bundle.glob("*/*.ipynb")) if _stubs(p)), None)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    published_bundle, seconds = published()
    _TIMINGS["publish_s"] = seconds
    # JupyterLab writes checkpoints next to the notebooks it opens: serve a copy of the bundle.
    state = tmp_path_factory.mktemp("jupyterlab")
    bundle = Path(shutil.copytree(published_bundle, state / "learners"))
    with JupyterLab(bundle, state, python_path=(bundle,)) as server:
        _TIMINGS["server_start_s"] = server.started_in or 0.0
        yield server
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "timings.json").write_text(json.dumps(_TIMINGS, indent=2) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def browser(lab: JupyterLab, tmp_path_factory: pytest.TempPathFactory):
    with open_browser(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


def _open_and_run(browser, lab: JupyterLab, relative: str) -> tuple[NotebookPage, list[Cell]]:
    page = NotebookPage(browser, lab, relative)
    name = Path(relative).stem
    page.screenshot(ARTIFACTS / f"{name}_opened.png")
    seconds = page.run_all_one_by_one()
    _TIMINGS[f"{name}_open_s"] = round(page.opened_in, 2)
    _TIMINGS[f"{name}_run_all_s"] = round(seconds, 2)
    return page, page.read()


def _last_line(text: str) -> str:
    return [line for line in text.strip().splitlines() if line.strip()][-1].strip()


def _assert_header_silent(cells: list[Cell], header_cells: int = 3) -> None:
    assert cells[0].kind == "markdown" and cells[0].source.lstrip().startswith("#"), "the title must come first"
    setup = cells[1]
    assert setup.kind == "code" and "_mytorch_setup" in setup.source, "the set-up cell must follow the title"
    assert setup.executed, "the set-up cell did not run"
    assert setup.outputs == [] and setup.errors == [], f"the set-up cell printed {setup.outputs + setup.errors}"
    assert cells[2].kind == "markdown" and "hidden tests grade more" in cells[2].source.lower()
    assert len(cells) > header_cells


def _assert_locked(page: NotebookPage, cells: list[Cell], locked: list[int], editable: int) -> None:
    for index in locked:
        after = page.try_to_type(index, "x = 1")
        assert after == cells[index].source, f"locked cell {index} could be edited"
    count = page.cells.count()
    for index in locked:
        assert page.try_to_delete(index) == count, f"locked cell {index} could be deleted"
    after = page.try_to_type(editable, "  # my note")
    assert after.endswith("# my note"), "an answer cell must stay editable (the check above would be void)"


def test_pen_and_paper_in_jupyterlab(lab: JupyterLab, browser):
    started = time.perf_counter()
    page, cells = _open_and_run(browser, lab, PEN_AND_PAPER)
    _assert_header_silent(cells)
    code = [c for c in cells if c.kind == "code"]
    assert all(c.executed for c in code), f"cells not run: {[c.index for c in code if not c.executed]}"

    tests = [c for c in code if c.source.startswith('"""')]
    assert len(tests) == 12, f"expected 12 test cells, the page shows {len(tests)}"
    for cell in tests:
        name = re.match(r'"""(\w+) =', cell.source).group(1)
        assert len(cell.errors) == 1, f"test cell {cell.index} ({name}) should fail once, shows {cell.errors}"
        message = _last_line(cell.errors[0])
        assert re.fullmatch(rf"CheckFailure: {name} is still None: replace None with your answer \(shape .*\)",
                            message), f"unclear check message for {name}: {message!r}"
    others = {c.index: c.errors for c in code if c not in tests and c.errors}
    assert not others, f"only the checks of unanswered placeholders may fail, also failing: {others}"

    first_test = tests[0].index
    page.screenshot(ARTIFACTS / "pen_and_paper_top.png", at=0)
    page.screenshot(ARTIFACTS / "pen_and_paper_first_check.png", at=first_test - 1)
    answer = next(c.index for c in code if "replace None with your answer" in c.source and c.index < first_test)
    _assert_locked(page, cells, locked=[1, first_test], editable=answer)
    _TIMINGS["pen_and_paper_test_s"] = round(time.perf_counter() - started, 2)


def test_stub_notebook_in_jupyterlab(lab: JupyterLab, browser):
    """The first notebook with code stubs: each stub fails loudly with the name of what to write."""
    relative = _stub_notebook(lab.root)
    assert relative is not None, "no release notebook has NotImplementedError stubs"
    stubs = _stubs(lab.root / relative)
    started = time.perf_counter()
    page, cells = _open_and_run(browser, lab, relative)
    _assert_header_silent(cells)
    code = [c for c in cells if c.kind == "code"]
    assert all(c.executed for c in code), f"cells not run: {[c.index for c in code if not c.executed]}"

    raised = set()
    unclear = {}
    for cell in code:
        for error in cell.errors:
            message = _last_line(error)
            stub = re.match(r"NotImplementedError: ([\w.]+) is not written yet: replace this line with your code",
                            message)
            if stub:
                assert stub.group(1) in stubs, f"cell {cell.index} names an unknown stub: {message}"
                raised.add(stub.group(1))
            elif not re.match(r"(CheckFailure|AssertionError|ImportError): \S.{15,}", message):
                unclear[cell.index] = message
    assert raised, "running the untouched notebook should meet at least one NotImplementedError stub"
    assert not unclear, f"failures that do not say what is wrong: {unclear}"

    stub_cells = [c.index for c in code if "NotImplementedError(" in c.source and "is not written yet" in c.source]
    tests = [c.index for c in code if c.source.startswith('"""')]
    page.screenshot(ARTIFACTS / f"{Path(relative).stem}_first_check.png", at=tests[0] - 1)
    _assert_locked(page, cells, locked=[1, tests[0]], editable=stub_cells[0])
    _TIMINGS[f"{Path(relative).stem}_test_s"] = round(time.perf_counter() - started, 2)


def test_release_notebooks_carry_the_lock_metadata_jupyterlab_reads(lab: JupyterLab):
    """What the page enforced above comes from the files: every nbgrader-locked cell is read-only there."""
    for path in sorted(lab.root.glob("*/*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            nbg = cell.metadata.get("nbgrader", {})
            if nbg.get("locked") and not nbg.get("solution"):
                assert cell.metadata.get("editable") is False and cell.metadata.get("deletable") is False, (
                    f"{path.name}: locked cell {cell.id} is editable in JupyterLab")
