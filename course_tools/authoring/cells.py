"""Build and tidy nbgrader notebooks from Python, for course authors.

The ``.ipynb`` files in ``source/`` are the source of truth; these helpers
write cells with the right nbgrader metadata (schema 3) and stable ids, and
:func:`write_notebook` saves in the canonical form the tests expect (no
outputs, no execution counts, nbformat 4.5, written by ``nbformat.writes`` like Jupyter does).

Cell kinds (``cell_id`` doubles as the nbgrader ``grade_id`` where one is needed):

- :func:`markdown`: explanation (no nbgrader metadata);
- :func:`code`: demo or set-up code the learner may run and change;
- :func:`solution`: an answer cell with ``### BEGIN SOLUTION`` / ``### END SOLUTION``;
- :func:`tests`: a locked, graded test cell (visible checks, then
  ``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS``);
- :func:`readonly`: a locked code cell the learner cannot change.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import nbformat

#: Figures the notebooks show, embedded into their markdown cells as attachments (a relative link to an
#: image file shows in JupyterLab but not on Colab, which opens a notebook without its folder).
FIGURES_DIR = Path(__file__).resolve().parents[2] / "docs" / "figures"
FIGURE_TYPES = {".svg": "image/svg+xml", ".png": "image/png"}
_ATTACHMENT_LINK = re.compile(r"\]\(attachment:([^)\s]+)\)")

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
LANGUAGE_INFO = {"name": "python", "pygments_lexer": "ipython3"}


def _nbgrader(grade_id: str, *, grade: bool, solution: bool, locked: bool, points: float | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"grade": grade, "grade_id": grade_id, "locked": locked,
                            "schema_version": 3, "solution": solution}
    if grade:
        meta["points"] = points
    return meta


def markdown(cell_id: str, text: str) -> Any:
    return nbformat.v4.new_markdown_cell(text.strip("\n"), id=cell_id)


def code(cell_id: str, text: str) -> Any:
    return nbformat.v4.new_code_cell(text.strip("\n"), id=cell_id)


def solution(cell_id: str, text: str) -> Any:
    cell = code(cell_id, text)
    cell.metadata["nbgrader"] = _nbgrader(cell_id, grade=False, solution=True, locked=False)
    return cell


def tests(cell_id: str, text: str, points: float) -> Any:
    cell = code(cell_id, text)
    cell.metadata["nbgrader"] = _nbgrader(cell_id, grade=True, solution=False, locked=True, points=points)
    return cell


def readonly(cell_id: str, text: str) -> Any:
    cell = code(cell_id, text)
    cell.metadata["nbgrader"] = _nbgrader(cell_id, grade=False, solution=False, locked=True)
    return cell


def canonical_json(nb: Any) -> str:
    """The exact text a committed notebook must have."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def write_notebook(path: str | Path, cells: list[Any], *, total_points: float) -> Path:
    """Validate and save a notebook of ``cells`` in canonical form; returns the path.

    ``total_points`` is the notebook's declared total (notebook metadata
    ``mytorch.total_points``); the tests check that the graded cells add up to it.
    """
    metadata = {"kernelspec": KERNELSPEC, "language_info": LANGUAGE_INFO, "mytorch": {"total_points": total_points}}
    nb = nbformat.v4.new_notebook(cells=cells, metadata=metadata)
    nb.nbformat, nb.nbformat_minor = 4, 5
    ids = [c.id for c in cells]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate cell ids in {path}: {sorted({i for i in ids if ids.count(i) > 1})}")
    nbformat.validate(nb)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(canonical_json(nb), encoding="utf-8")
    return path


def tidy(path: str | Path) -> bool:
    """Rewrite a notebook in canonical form (outputs cleared); True if it changed."""
    path = Path(path)
    before = path.read_text(encoding="utf-8")
    after = canonical_json(nbformat.reads(before, as_version=4))
    if after != before:
        path.write_text(after, encoding="utf-8")
    return after != before


def hidden_probe(module: str, check: str) -> str:
    """The hidden region every test cell ends with: call one probe of ``course_tools.hidden.probes``."""
    return ("### BEGIN HIDDEN TESTS\n"
            f"from course_tools.hidden.probes import {module} as _probes\n"
            f"_probes.{check}(globals())\n"
            "### END HIDDEN TESTS")


def set_hidden_probes(path: str | Path, calls: dict[str, tuple[str, str]]) -> None:
    """Point the hidden regions of a notebook's test cells at probes: ``{grade_id: (module, check)}``."""
    path = Path(path)
    nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
    left = dict(calls)
    for cell in nb.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in left:
            start, end = cell.source.find("### BEGIN HIDDEN TESTS"), cell.source.find("### END HIDDEN TESTS")
            if start < 0 or end < start:
                raise ValueError(f"{path}: cell {grade_id} has no hidden region")
            end += len("### END HIDDEN TESTS")
            cell.source = cell.source[:start] + hidden_probe(*left.pop(grade_id)) + cell.source[end:]
    if left:
        raise KeyError(f"{path}: no test cells {sorted(left)}")
    path.write_text(canonical_json(nb), encoding="utf-8")


def embed_figures(path: str | Path, figures: Path = FIGURES_DIR) -> bool:
    """Embed every figure a markdown cell links as ``![...](attachment:NAME)`` from ``figures/NAME``.

    Attachments no link uses are removed. Rewrites the notebook in canonical form when
    something changed; returns whether it did. A link to a figure that is not in
    ``figures`` raises ``FileNotFoundError`` naming both.
    """
    path = Path(path)
    before = path.read_text(encoding="utf-8")
    nb = nbformat.reads(before, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        names = _ATTACHMENT_LINK.findall(cell.source)
        attachments = {}
        for name in names:
            figure = figures / name
            if not figure.is_file() or figure.suffix not in FIGURE_TYPES:
                raise FileNotFoundError(f"{path.name}, cell {cell.get('id')}: links attachment:{name}, but "
                                        f"{figure} is not an .svg or .png figure; add it there")
            attachments[name] = {FIGURE_TYPES[figure.suffix]: base64.b64encode(figure.read_bytes()).decode("ascii")}
        if attachments:
            cell["attachments"] = attachments
        else:
            cell.pop("attachments", None)
    after = canonical_json(nb)
    if after != before:
        path.write_text(after, encoding="utf-8")
    return after != before
