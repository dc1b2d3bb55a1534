"""The learner bundle (``python -m course_tools publish``): what is in it, and what never is.

The bundle is published once by the real command; then: it holds exactly the
release notebooks (with the shared header), mytorch_lib, the learner README
and the install files; the leak scan is clean on it and does find leaks
planted in a copy; the Colab set-up cell is silent outside Colab and installs
from the one published location inside it; the bundle installs with pip.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import io
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest

from course_tools.authoring import publish as pub
from course_tools.course import REPO_ROOT, assignments, notebooks
from learner_bundle import published

#: Modules the learner requirements provide, by import name (besides the standard library).
LEARNER_IMPORTS = {"numpy", "scipy", "matplotlib", "sklearn", "tqdm", "torch", "mytorch_lib", "IPython"}


@pytest.fixture(scope="module")
def bundle() -> Path:
    return published()[0]


def _release_notebooks(bundle: Path) -> list[Path]:
    return sorted(bundle.glob("*/*.ipynb"))


def _setup_source(bundle: Path) -> str:
    cells = nbformat.read(_release_notebooks(bundle)[0], as_version=4).cells
    return next(c.source for c in cells if c.get("id") == pub.HEADER_SETUP_ID)


def test_bundle_holds_exactly_what_learners_get(bundle: Path):
    top = sorted(p.name for p in bundle.iterdir())
    assert top == sorted([*pub.BUNDLE_FILES, pub.LIBRARY, *assignments()])
    for assignment in assignments():
        shipped = sorted(p.name for p in (bundle / assignment).glob("*.ipynb"))
        assert shipped == [p.name for p in notebooks(assignment)], f"{assignment}: notebooks differ from source/"
    library = sorted(p.name for p in (REPO_ROOT / pub.LIBRARY).rglob("*") if p.is_file() and p.suffix != ".pyc")
    assert sorted(p.name for p in (bundle / pub.LIBRARY).rglob("*") if p.is_file()) == library


def test_colab_set_up_finds_every_data_file(bundle: Path):
    """On Colab the set-up cell copies the files of every ``NN_...`` folder next to the notebook: names must not clash."""
    assert all(re.match(r"\d\d", a) for a in assignments()), "assignment folders must start with two digits"
    names = [p.name for p in bundle.glob("[0-9][0-9]*/*") if p.is_file() and p.suffix != ".ipynb"]
    clashes = sorted({n for n in names if names.count(n) > 1})
    assert not clashes, f"files of the same name in several assignments (Colab would get only one): {clashes}"


def test_leak_scan_of_the_bundle_is_clean(bundle: Path):
    assert pub.scan_bundle(bundle) == []


def test_leak_scan_finds_planted_leaks(bundle: Path, tmp_path: Path):
    """Each kind of leak, planted in a copy of the bundle, is reported (the scan can fail)."""
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    grader = tmp_path / "hidden"
    shutil.copytree(pub.GRADER_DIR, grader, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # grader-only data, here a small array written as the grader would keep it
    secret_images = np.arange(4 * 28 * 28, dtype=np.uint8).reshape(4, 28, 28)
    (grader / "data").mkdir(exist_ok=True)
    np.savez(grader / "data" / "planted_test.npz", images=secret_images)

    assert pub.scan_bundle(copy, grader_dir=grader) == [], "the copy must start clean"
    secret = max(pub.secret_lines(), key=len)
    nb_path = _release_notebooks(copy)[0]
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells[-1].source += "\n" + secret
    nbformat.write(nb, nb_path)
    (copy / pub.LIBRARY / "extra.py").write_text("### BEGIN HIDDEN TESTS\n", encoding="utf-8")
    shutil.copyfile(REPO_ROOT / "course_tools" / "hidden" / "verdicts" / "reference.py", copy / pub.LIBRARY / "ref.py")
    np.savez_compressed(copy / pub.LIBRARY / "digits.npz", x=secret_images)  # re-packed, other name
    mixed = np.concatenate([np.full((3, 28, 28), 7, np.uint8), secret_images[2:3]])  # one test sample hidden
    np.save(copy / "01_pen_and_paper" / "extra_train.npy", mixed)
    (copy / "nbgrader_config.py").write_text("c = get_config()\n", encoding="utf-8")
    (copy / pub.LIBRARY / "notes.md").write_text("see course_tools.hidden for the answers\n", encoding="utf-8")

    problems = "\n".join(pub.scan_bundle(copy, grader_dir=grader))
    expected = {
        "solution line": f"{nb_path.relative_to(copy).as_posix()}: solution or hidden-test line",
        "marker": "mytorch_lib/extra.py: nbgrader marker 'BEGIN HIDDEN TESTS'",
        "instructor code": "mytorch_lib/ref.py: a copy of instructor file reference.py",
        "grader data": "mytorch_lib/digits.npz: holds grader-only data (planted_test.npz:images)",
        "grader sample": "01_pen_and_paper/extra_train.npy: holds 1 sample(s) of grader-only data",
        "stray file": "nbgrader_config.py: not part of the learner bundle",
        "instructor package": "mytorch_lib/notes.md: mentions the instructor package",
    }
    missed = {kind: text for kind, text in expected.items() if text not in problems}
    assert not missed, f"the scan missed {missed}; it reported:\n{problems}"


def test_every_release_notebook_opens_with_its_title_then_the_read_only_header(bundle: Path):
    """The learner sees the title and goals first; the set-up cell and how-to notes follow, locked."""
    header = nbformat.read(pub.HEADER_FILE, as_version=4)
    for path in _release_notebooks(bundle):
        cells = nbformat.read(path, as_version=4).cells
        assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# "), f"{path}: title first"
        assert "Learning goals" in cells[0].source, f"{path}: the goals belong in the title cell"
        for cell, expected in zip(cells[1:], header.cells, strict=False):
            meta = cell.metadata
            assert (cell.id, cell.cell_type, cell.source) == (expected.id, expected.cell_type, expected.source), path
            assert meta.get("editable") is False and meta.get("deletable") is False, f"{path}: header not locked"
            nbg = meta["nbgrader"]
            assert nbg["locked"] and not nbg["grade"] and not nbg["solution"], f"{path}: header must be read-only"
        setup = cells[1].source
        assert len(setup.splitlines()) <= 16, f"{path}: the set-up cell should stay short"


def _run_setup(source: str) -> tuple[str, dict, float]:
    namespace: dict = {}
    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        exec(compile(source, "<set-up cell>", "exec"), namespace)
    return out.getvalue(), namespace, time.perf_counter() - started


def test_setup_cell_is_silent_and_cheap_outside_colab(bundle: Path, monkeypatch: pytest.MonkeyPatch):
    for name in [n for n in __import__("os").environ if n.startswith("COLAB_")]:
        monkeypatch.delenv(name)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    calls: list = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a))
    printed, namespace, seconds = _run_setup(_setup_source(bundle))
    assert printed == "" and calls == [], "outside Colab the set-up cell must do nothing"
    assert set(namespace) == {"__builtins__"}, f"the set-up cell leaves names behind: {set(namespace)}"
    assert seconds < 0.05, f"the set-up cell took {seconds:.3f} s outside Colab"


def test_setup_cell_on_colab_installs_mytorch_lib_from_the_published_bundle(bundle: Path, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch):
    """On Colab (simulated: a COLAB_ variable, pip recorded): one pip install from the published repository,
    once per session; a location where nothing is published gets one sentence, not a pip traceback."""
    site = pub.learner_site()
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab-test")
    monkeypatch.chdir(tmp_path)
    calls: list = []
    returncode = 0

    def fake_run(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, returncode)

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)  # mytorch_lib not installed yet
    printed, namespace, _ = _run_setup(_setup_source(bundle))
    assert calls == [[sys.executable, "-m", "pip", "install", "--quiet", f"git+{site.published}"]]
    assert "Installing mytorch_lib" in printed and set(namespace) == {"__builtins__"}
    assert list(tmp_path.iterdir()) == [], "nothing is copied next to the notebook"

    returncode = 1  # nothing published there (a course that never set course.toml)
    with pytest.raises(RuntimeError, match=r"could not be installed from .*: the course is not published there"):
        _run_setup(_setup_source(bundle))

    calls.clear()  # run again in the same session: nothing is installed twice
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    _run_setup(_setup_source(bundle))
    assert calls == []


def test_header_readme_and_links_follow_course_toml(bundle: Path, tmp_path: Path):
    site = pub.learner_site()
    assert pub.header_published() == site.published, "run `python -m course_tools publish --sync-header`"
    assert site.published == f"https://github.com/{site.repository}@{site.branch}"
    # --sync-header rewrites the one place the header names and nothing else, and is idempotent
    header = tmp_path / "header.ipynb"
    shutil.copyfile(pub.HEADER_FILE, header)
    other = pub.LearnerSite("someone/elsewhere", "spring-term")
    assert pub.sync_header(other, header) is True
    assert pub.header_published(header) == other.published
    assert pub.sync_header(other, header) is False
    before = pub.HEADER_FILE.read_text(encoding="utf-8").replace(site.published, other.published)
    assert header.read_text(encoding="utf-8") == before


def test_learner_readme(bundle: Path):
    readme = (bundle / "README.md").read_text(encoding="utf-8")
    site = pub.learner_site()
    assert not re.search(r"\$\{?[a-z_]+", readme), "a template placeholder was left unfilled"
    for path in _release_notebooks(bundle):
        rel = path.relative_to(bundle).as_posix()
        assert f"[Open in Colab]({site.colab_url(rel)})" in readme, f"no Colab link for {rel}"
    for needed in ("pip install -r requirements.txt", "conda env create -f environment.yml", "jupyter lab",
                   "Hidden tests grade more cases", "Restart Kernel and Run All Cells", "Download .ipynb",
                   site.url):
        assert needed in readme, f"the learner README should say {needed!r}"


def test_bundle_installs_with_pip(bundle: Path, tmp_path: Path):
    """Colab installs mytorch_lib from the published bundle: the bundle must be a pip-installable project."""
    target = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(bundle)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in target.iterdir() if not p.name.endswith(".dist-info")) == [pub.LIBRARY]


def test_learner_requirements_cover_every_import_of_the_notebooks(bundle: Path):
    requirements = (bundle / "requirements.txt").read_text(encoding="utf-8")
    for package in pub.LEARNER_PACKAGES:
        assert re.search(rf"^{re.escape(package)}==", requirements, re.M), f"{package} is not pinned for learners"
    missing: dict[str, set[str]] = {}
    for path in _release_notebooks(bundle):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code":
                continue
            try:
                tree = ast.parse(cell.source)
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level
                         else [])
                for top in {n.split(".")[0] for n in names}:
                    if top not in sys.stdlib_module_names and top not in LEARNER_IMPORTS and top != "google":
                        missing.setdefault(path.name, set()).add(top)
    assert not missing, f"release notebooks import packages learners are not told to install: {missing}"


def test_publish_refuses_a_stale_release_and_a_foreign_folder(tmp_path: Path):
    fresh, committed = tmp_path / "fresh", tmp_path / "committed"
    for root in (fresh, committed):
        (root / "a").mkdir(parents=True)
        (root / "a" / "n.ipynb").write_text("{}", encoding="utf-8")
    assert pub._stale_release(fresh, committed) == []
    (committed / "a" / "n.ipynb").write_text("{ }", encoding="utf-8")
    (fresh / "a" / "new.svg").write_text("<svg/>", encoding="utf-8")
    assert pub._stale_release(fresh, committed) == ["a/n.ipynb", "a/new.svg"]

    foreign = tmp_path / "home"
    (foreign / "thesis").mkdir(parents=True)
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(pub.PublishError, match="does not hold a learner bundle"):
        pub._replace_contents(foreign, staging)
    assert (foreign / "thesis").is_dir(), "publishing must never delete a folder that is not a bundle"
    with pytest.raises(pub.PublishError, match="holds the course repository"):
        pub._replace_contents(REPO_ROOT, staging)
    (foreign / "README.md").write_text(pub.GENERATED_MARK + " -->\n", encoding="utf-8")
    (foreign / "course_tools").mkdir()
    with pytest.raises(pub.PublishError, match="does not hold a learner bundle"):
        pub._replace_contents(foreign, staging)



def test_plots_use_a_backend_that_renders_in_jupyterlab_and_colab(bundle: Path):
    """Plots must render inline: interactive backends need extensions learners lack, and Colab has none."""
    other_backend = re.compile(r"^\s*%matplotlib\s+(?!inline\b)\w+|matplotlib\.use\(|\.switch_backend\(", re.M)
    found = [f"{path.relative_to(bundle)}: cell {cell.id}" for path in _release_notebooks(bundle)
             for cell in nbformat.read(path, as_version=4).cells
             if cell.cell_type == "code" and other_backend.search(cell.source)]
    found += [str(path.relative_to(bundle)) for path in (bundle / pub.LIBRARY).rglob("*.py")
              if other_backend.search(path.read_text(encoding="utf-8"))]
    assert not found, f"non-inline matplotlib backends: {found}"


def test_every_notebook_states_goals_and_the_points_it_grades(bundle: Path):
    """Item 4 of the learner experience: goals and points per part up front, the total equal to what is graded.

    How to check and that hidden tests grade more are in the shared header (see above).
    """
    header_ids = {c.get("id") for c in nbformat.read(pub.HEADER_FILE, as_version=4).cells}
    for path in _release_notebooks(bundle):
        nb = nbformat.read(path, as_version=4)
        intro = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown" and c.get("id") not in header_ids)
        intro = intro[:6000]
        assert re.search(r"learning goals", intro, re.I), f"{path.name}: state the learning goals at the top"
        graded = sum(c.metadata.get("nbgrader", {}).get("points", 0) for c in nb.cells
                     if c.metadata.get("nbgrader", {}).get("grade"))
        totals = re.findall(r"^\|.*\*\*total\*\*.*\|\s*\*\*([\d.]+)\*\*\s*\|\s*$", intro, re.M | re.I)
        assert totals, f"{path.name}: the intro needs a points table per part ending in a **total** row"
        assert float(totals[0]) == pytest.approx(graded), f"{path.name}: the table says {totals[0]}, cells grade {graded}"


def test_formula_sheet_ships_with_the_bundle_and_covers_the_course(bundle: Path):
    """One page with every forward and backward equation, linked from the learner README."""
    text = (bundle / "FORMULAS.md").read_text(encoding="utf-8")
    assert text == pub.FORMULAS_FILE.read_text(encoding="utf-8")
    for topic in ("Linear", "Sigmoid", "Tanh", "ReLU", "GELU", "Swish", "Softmax", "squared error", "Cross-entropy",
                  "SGD", "Adam", "Dropout", "BatchNorm1d", "dLdW = dLdZ^T A", "shape"):
        assert topic.lower() in text.lower(), f"the formula sheet does not cover {topic}"
    assert "`FORMULAS.md`" in (bundle / "README.md").read_text(encoding="utf-8")
