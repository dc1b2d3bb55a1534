"""Write what learners get: ``python -m course_tools publish [--out DIR]``.

The learner bundle (default ``build/learners/``) holds exactly:

- one folder per assignment: the release notebooks (freshly generated from
  ``source/``, so they start with the shared header) and the files they read;
- ``mytorch_lib/``, with a ``pyproject.toml`` that makes the bundle
  pip-installable (on Colab the set-up cell clones the published bundle,
  installs the library from it and copies the data files next to the notebook);
- ``README.md`` (from ``course_tools/templates/LEARNER_README.md``): set-up
  with pip or conda, a Colab link per notebook, how to check and how to submit;
- ``requirements.txt`` and ``environment.yml`` for learners (the tested pins
  of the course's own requirements, instructor-only packages left out) and
  ``LICENSE``.

Nothing else. Before anything is written, :func:`scan_bundle` looks for
leaks: a solution or hidden-test line of any source notebook, an nbgrader
marker, a byte-identical copy of instructor code or grader-only data, any data
array or single sample (row) of the arrays kept in ``course_tools/hidden/``,
and any mention of the instructor package. Publishing refuses a bundle with a leak.

Where the bundle is published is ONE setting, ``course.toml`` (section
``[learners]``). The Colab set-up cell of ``source/header.ipynb`` must name
the same place; ``--sync-header`` rewrites it from ``course.toml``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import string
import tempfile
import time
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import nbformat

from course_tools.course import RELEASE_DIR, REPO_ROOT, SOURCE_DIR, assignments

SETTINGS_FILE = REPO_ROOT / "course.toml"
HEADER_FILE = SOURCE_DIR / "header.ipynb"
TEMPLATE_FILE = Path(__file__).resolve().parent / "templates" / "LEARNER_README.md"
DEFAULT_OUT = REPO_ROOT / "build" / "learners"
INSTRUCTOR_PACKAGE = "course_tools"
GRADER_DIR = REPO_ROOT / INSTRUCTOR_PACKAGE / "hidden"

#: Packages of requirements.txt that learners need (the rest serve grading and tests).
LEARNER_PACKAGES = ("jupyterlab", "notebook", "ipykernel", "numpy", "scipy", "matplotlib",
                    "scikit-learn", "tqdm", "torch")
#: Files at the top of the bundle besides the assignment folders.
BUNDLE_FILES = ("README.md", "LICENSE", "pyproject.toml", "requirements.txt", "environment.yml")
LIBRARY = "mytorch_lib"
#: Tables of the repository's pyproject.toml that the bundle keeps (packaging of mytorch_lib only).
PYPROJECT_TABLES = ("build-system", "project", "tool.setuptools")
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS",
           "BEGIN MARK SCHEME", "END MARK SCHEME")
#: Secret lines shorter than this are too generic to flag outside notebooks (``else:``, ``return A``).
MIN_SECRET_LINE = 16
TEXT_SUFFIXES = {".ipynb", ".py", ".md", ".txt", ".toml", ".yml", ".yaml", ".json", ".csv", ".cfg", ".svg", ".html"}
HEADER_SETUP_ID = "mytorch_setup"
_HEADER_SOURCE = re.compile(r'(def _mytorch_setup\(published=)"([^"]*)"')


class PublishError(RuntimeError):
    """The bundle cannot be published as it is (out-of-sync header, stale release, leak, ...)."""


@dataclass(frozen=True)
class LearnerSite:
    """Where learners get the course: a public GitHub repository and branch holding the bundle."""

    repository: str  # "owner/name"
    branch: str

    @property
    def url(self) -> str:
        return f"https://github.com/{self.repository}"

    @property
    def published(self) -> str:
        """``<url>@<branch>``: what the Colab set-up cell clones (and installs mytorch_lib from)."""
        return f"{self.url}@{self.branch}"

    def colab_url(self, path: str) -> str:
        """Colab link of the bundle file ``path`` (e.g. ``01_pen_and_paper/pen_and_paper.ipynb``)."""
        return f"https://colab.research.google.com/github/{self.repository}/blob/{self.branch}/{path}"


def learner_site(settings: Path = SETTINGS_FILE) -> LearnerSite:
    """The ``[learners]`` section of ``course.toml``."""
    data = tomllib.loads(Path(settings).read_text(encoding="utf-8"))
    section = data.get("learners", {})
    repository, branch = section.get("repository", ""), section.get("branch", "")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repository) or not branch:
        raise PublishError(f"{settings}: [learners] needs repository = \"owner/name\" and branch = \"...\"")
    return LearnerSite(repository, branch)


# --- the shared header ------------------------------------------------------

def _setup_cell(header: Any) -> Any:
    cells = [c for c in header.cells if c.get("id") == HEADER_SETUP_ID]
    if len(cells) != 1 or cells[0].cell_type != "code":
        raise PublishError(f"{HEADER_FILE}: expected one code cell with id {HEADER_SETUP_ID!r}")
    return cells[0]


def header_published(header_file: Path = HEADER_FILE) -> str:
    """The ``<url>@<branch>`` the header's set-up cell fetches the course from on Colab."""
    cell = _setup_cell(nbformat.read(header_file, as_version=4))
    found = _HEADER_SOURCE.findall(cell.source)
    if len(found) != 1:
        raise PublishError(f"{header_file}: the set-up cell must define _mytorch_setup(published=\"...\") once")
    return found[0][1]


def sync_header(site: LearnerSite | None = None, header_file: Path = HEADER_FILE) -> bool:
    """Make the header fetch the course from where ``course.toml`` says; True if the file changed."""
    from course_tools.authoring import canonical_json

    site = site or learner_site()
    nb = nbformat.read(header_file, as_version=4)
    cell = _setup_cell(nb)
    cell.source = _HEADER_SOURCE.sub(lambda m: f'{m.group(1)}"{site.published}"', cell.source)
    before = Path(header_file).read_text(encoding="utf-8")
    after = canonical_json(nb)
    if after != before:
        Path(header_file).write_text(after, encoding="utf-8")
    return after != before


def check_header(site: LearnerSite) -> None:
    """Raise unless the header fetches the course from where ``course.toml`` says."""
    found = header_published()
    if found != site.published:
        raise PublishError(
            f"source/header.ipynb fetches {found!r} on Colab but course.toml names {site.published!r}: "
            "run `python -m course_tools publish --sync-header`, then `python -m course_tools release`")


# --- the bundle's files -----------------------------------------------------

def learner_requirements(requirements: Path = REPO_ROOT / "requirements.txt") -> str:
    """requirements.txt for learners: the course's tested pins of :data:`LEARNER_PACKAGES`, then mytorch_lib."""
    pins: dict[str, str] = {}
    for line in requirements.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        name = re.split(r"[=<>!~\[ ;]", line, maxsplit=1)[0].lower() if line else ""
        if name in LEARNER_PACKAGES:
            pins[name] = line
    missing = [p for p in LEARNER_PACKAGES if p not in pins]
    if missing:
        raise PublishError(f"requirements.txt has no pin for {missing}")
    lines = ["# What a learner installs to run the MyTorch notebooks in JupyterLab (Python 3.11 or newer).",
             "# The versions are the ones the course is tested with. Install from this folder with",
             "#   pip install -r requirements.txt",
             *(pins[p] for p in LEARNER_PACKAGES),
             "# the course's helper library, from this folder",
             "-e ."]
    return "\n".join(lines) + "\n"


LEARNER_ENVIRONMENT = """\
# Conda environment for the MyTorch notebooks. In this folder run
#   conda env create -f environment.yml && conda activate mytorch-learner && jupyter lab
name: mytorch-learner
channels:
  - conda-forge
dependencies:
  - python=3.11
  - pip
  - pip:
      - -r requirements.txt
"""


def learner_pyproject(pyproject: Path = REPO_ROOT / "pyproject.toml") -> str:
    """The repository's pyproject.toml reduced to the packaging of mytorch_lib (tables in PYPROJECT_TABLES)."""
    kept: list[str] = []
    keep = True
    for line in pyproject.read_text(encoding="utf-8").splitlines():
        table = re.match(r"\s*\[+([^\]]+)\]+\s*$", line)
        if table:
            name = table.group(1).strip()
            keep = any(name == t or name.startswith(t + ".") for t in PYPROJECT_TABLES)
        if keep and not line.lstrip().startswith("#"):
            kept.append(line)
    text = "# Packaging of the course's helper library, mytorch_lib (pip install -e .).\n\n"
    text += "\n".join(kept).strip() + "\n"
    data = tomllib.loads(text)
    if data.get("tool", {}).get("setuptools", {}).get("packages") != [LIBRARY]:
        raise PublishError(f"pyproject.toml must package {LIBRARY} only")
    return text


def _points(nb: Any) -> str:
    total = nb.metadata.get("mytorch", {}).get("total_points")
    if total is None:
        return "?"
    return f"{total:g}"


def notebook_table(release_dir: Path, site: LearnerSite) -> str:
    """Markdown table: assignment, notebook, points, Colab link, one row per release notebook."""
    rows = ["| assignment | notebook | points | on Colab |", "|---|---|---|---|"]
    for folder in sorted(p for p in release_dir.iterdir() if p.is_dir()):
        for path in sorted(folder.glob("*.ipynb")):
            rel = f"{folder.name}/{path.name}"
            nb = nbformat.read(path, as_version=4)
            rows.append(f"| `{folder.name}` | `{path.name}` | {_points(nb)} | [Open in Colab]({site.colab_url(rel)}) |")
    return "\n".join(rows)


def learner_readme(release_dir: Path, site: LearnerSite, template: Path = TEMPLATE_FILE) -> str:
    """The learner README: the template with the notebook table and the published location filled in."""
    text = string.Template(template.read_text(encoding="utf-8"))
    return text.substitute(notebook_table=notebook_table(release_dir, site), repository_url=site.url)


# --- leak scan --------------------------------------------------------------

def _regions(source: str, begin: str, end: str) -> tuple[list[str], list[str]]:
    """(stripped lines inside ``begin``/``end`` regions, stripped lines outside), blank lines dropped."""
    inside, outside, within = [], [], False
    for line in source.split("\n"):
        if begin in line:
            within = True
        elif end in line:
            within = False
        elif line.strip():
            (inside if within else outside).append(line.strip())
    return inside, outside


def secret_lines(source_dir: Path = SOURCE_DIR) -> set[str]:
    """Lines of solutions and hidden tests in every source notebook that learners never see."""
    secret, public = set(), set()
    for path in sorted(source_dir.rglob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            hidden, rest = _regions(cell.source, "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
            solution, visible = _regions("\n".join(rest), "BEGIN SOLUTION", "END SOLUTION")
            secret.update(hidden + solution)
            public.update(visible)
    return secret - public


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _array_digests(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Digests of the data in a ``.npy``/``.npz`` file, each mapped to ``file:array``.

    Returns (whole arrays: dtype, shape and bytes hashed; samples: each row of
    every array with 2 or more axes, dtype and bytes hashed). Constant rows
    (an all-zero image) and rows under 16 bytes are left out: they can occur
    in unrelated data by chance.
    """
    import numpy as np

    whole: dict[str, str] = {}
    rows: dict[str, str] = {}
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                arrays = {f"{path.name}:{k}": data[k] for k in data.files}
        else:
            arrays = {path.name: np.load(path, allow_pickle=False)}
    except (ValueError, OSError, zipfile.BadZipFile):
        return whole, rows
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        whole[_digest(f"{array.dtype.str}{array.shape}".encode() + array.tobytes())] = name
        if array.ndim >= 2 and array[0].nbytes >= 16:
            for row in array:
                if row.min() != row.max():
                    rows[_digest(array.dtype.str.encode() + row.tobytes())] = name
    return whole, rows


def _files(root: Path) -> Iterable[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and ".git" not in p.relative_to(root).parts)


def _text_lines(path: Path) -> list[str]:
    """Stripped lines of a text file; for a notebook, of every cell source and text output."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix != ".ipynb":
        return [line.strip() for line in text.splitlines()]
    nb = json.loads(text)
    lines: list[str] = []
    for cell in nb.get("cells", []):
        chunks = [cell.get("source", "")]
        for out in cell.get("outputs", []):
            chunks += [out.get("text", ""), *out.get("data", {}).values()]
        for chunk in chunks:
            chunk = "".join(chunk) if isinstance(chunk, list) else str(chunk)
            lines += [line.strip() for line in chunk.splitlines()]
    return lines


def scan_bundle(bundle: Path, source_dir: Path = SOURCE_DIR, grader_dir: Path = GRADER_DIR) -> list[str]:
    """Everything in ``bundle`` that learners must not get, one line per finding (empty: clean).

    Looks for: files other than the assignment folders, ``mytorch_lib`` and
    :data:`BUNDLE_FILES`; compiled files and databases; nbgrader markers; solution
    and hidden-test lines of the source notebooks; byte copies of instructor code
    or grader-only files; data arrays of the grader's data files; any mention of
    the instructor package.
    """
    bundle = Path(bundle)
    problems: list[str] = []
    allowed = set(BUNDLE_FILES) | {LIBRARY, ".git"} | set(assignments())
    for entry in sorted(bundle.iterdir()):
        if entry.name not in allowed:
            problems.append(f"{entry.name}: not part of the learner bundle")

    instructor = {_digest(p.read_bytes()): p.name
                  for p in [*_files(REPO_ROOT / INSTRUCTOR_PACKAGE), *_files(grader_dir),
                            REPO_ROOT / "nbgrader_config.py", *source_dir.rglob("*.ipynb")]
                  if "__pycache__" not in p.parts and p.stat().st_size > 0}
    grader_arrays: dict[str, str] = {}
    grader_rows: dict[str, str] = {}
    for p in _files(grader_dir):
        if p.suffix in (".npy", ".npz"):
            whole, rows = _array_digests(p)
            grader_arrays.update(whole)
            grader_rows.update(rows)
    secrets = secret_lines(source_dir)

    for path in _files(bundle):
        rel = path.relative_to(bundle).as_posix()
        if path.suffix in (".pyc", ".db", ".sqlite", ".sqlite3") or "__pycache__" in path.parts:
            problems.append(f"{rel}: compiled file or database")
        copy_of = instructor.get(_digest(path.read_bytes())) if path.stat().st_size else None
        if copy_of is not None:
            problems.append(f"{rel}: a copy of instructor file {copy_of}")
        if path.suffix in (".npy", ".npz"):
            whole, rows = _array_digests(path)
            for digest in whole.keys() & grader_arrays.keys():
                problems.append(f"{rel}: holds grader-only data ({grader_arrays[digest]})")
            shared = rows.keys() & grader_rows.keys()
            if shared:
                sources = sorted({grader_rows[d] for d in shared})
                problems.append(f"{rel}: holds {len(shared)} sample(s) of grader-only data ({', '.join(sources)})")
        if path.suffix not in TEXT_SUFFIXES:
            continue
        is_notebook = path.suffix == ".ipynb"
        for line in _text_lines(path):
            marker = next((m for m in MARKERS if m in line), None)
            if marker:
                problems.append(f"{rel}: nbgrader marker {marker!r}")
            elif INSTRUCTOR_PACKAGE in line:
                problems.append(f"{rel}: mentions the instructor package: {line[:100]}")
            elif line in secrets and (is_notebook or len(line) >= MIN_SECRET_LINE):
                problems.append(f"{rel}: solution or hidden-test line: {line[:100]}")
    return problems


# --- publishing ---------------------------------------------------------------

@dataclass
class Bundle:
    """A published learner bundle."""

    root: Path
    notebooks: list[str]
    seconds: float


def _stale_release(fresh: Path, committed: Path) -> list[str]:
    """Files that differ between a fresh generation and the committed release/ (relative paths)."""
    def listing(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in _files(root) if "__pycache__" not in p.parts}

    a, b = listing(fresh), listing(committed)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def build_bundle(staging: Path, release_dir: Path, site: LearnerSite) -> None:
    """Write the bundle's files into the empty folder ``staging``."""
    for folder in sorted(p for p in release_dir.iterdir() if p.is_dir()):
        shutil.copytree(folder, staging / folder.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc",
                                                                                    ".ipynb_checkpoints"))
    shutil.copytree(REPO_ROOT / LIBRARY, staging / LIBRARY, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (staging / "README.md").write_text(learner_readme(release_dir, site), encoding="utf-8")
    (staging / "requirements.txt").write_text(learner_requirements(), encoding="utf-8")
    (staging / "environment.yml").write_text(LEARNER_ENVIRONMENT, encoding="utf-8")
    (staging / "pyproject.toml").write_text(learner_pyproject(), encoding="utf-8")
    shutil.copyfile(REPO_ROOT / "LICENSE", staging / "LICENSE")


def _replace_contents(out: Path, staging: Path) -> None:
    """Make ``out`` hold exactly what ``staging`` holds, keeping a ``.git`` folder (a clone of the site)."""
    if out.exists():
        entries = [p for p in out.iterdir() if p.name != ".git"]
        previous = out / "README.md"
        ours = previous.exists() and previous.read_text(encoding="utf-8", errors="replace").startswith(
            TEMPLATE_FILE.read_text(encoding="utf-8").split("\n", 1)[0])
        if entries and not ours:
            raise PublishError(f"{out} is not empty and does not hold a learner bundle: choose another --out")
        for entry in entries:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    out.mkdir(parents=True, exist_ok=True)
    for entry in staging.iterdir():
        shutil.move(str(entry), out / entry.name)


def publish(out: Path = DEFAULT_OUT, *, check_release: bool = True) -> Bundle:
    """Generate the release afresh, build the learner bundle, scan it, and write it to ``out``.

    Args:
        out: the bundle folder; replaced if it holds an earlier bundle (a ``.git`` folder is kept,
            so ``out`` may be a clone of the learners' repository).
        check_release: refuse when the committed ``release/`` differs from the fresh generation
            (what is published is then exactly what the tests checked).

    Raises:
        PublishError: header out of sync with course.toml, stale release/, or a leak (listed).
    """
    from course_tools.release import generate_release

    started = time.perf_counter()
    out = Path(out).resolve()
    site = learner_site()
    check_header(site)
    with tempfile.TemporaryDirectory(prefix="mytorch-publish-") as tmp:
        fresh = Path(tmp) / "release"
        generate_release(fresh)
        (fresh / "README.md").unlink()
        if check_release:
            stale = [p for p in _stale_release(fresh, RELEASE_DIR) if p != "README.md"]
            if stale:
                raise PublishError(f"release/ is stale ({', '.join(stale[:5])}): run `python -m course_tools "
                                   "release` and commit it, or pass --no-release-check")
        staging = Path(tmp) / "bundle"
        staging.mkdir()
        build_bundle(staging, fresh, site)
        problems = scan_bundle(staging)
        if problems:
            raise PublishError("the learner bundle leaks:\n  " + "\n  ".join(problems[:50]))
        notebooks = sorted(p.relative_to(staging).as_posix() for p in staging.glob("*/*.ipynb"))
        _replace_contents(out, staging)
    return Bundle(out, notebooks, time.perf_counter() - started)


def main(out: str | None, *, sync: bool = False, check_release: bool = True) -> int:
    """The ``publish`` subcommand."""
    if sync:
        changed = sync_header()
        print(f"source/header.ipynb {'updated: now' if changed else 'already'} fetches {learner_site().published!r}"
              + ("; now run `python -m course_tools release` and commit" if changed else ""))
        return 0
    try:
        bundle = publish(Path(out) if out else DEFAULT_OUT, check_release=check_release)
    except PublishError as exc:
        print(f"publish: {exc}")
        return 1
    site = learner_site()
    print(f"learner bundle written to {bundle.root} in {bundle.seconds:.1f} s: {len(bundle.notebooks)} notebook(s), "
          f"mytorch_lib, README.md; leak scan clean.\nPush its contents to {site.url} (branch {site.branch}).")
    return 0


__all__ = ["Bundle", "LearnerSite", "PublishError", "build_bundle", "header_published", "learner_readme",
           "learner_requirements", "learner_site", "publish", "scan_bundle", "secret_lines", "sync_header"]
