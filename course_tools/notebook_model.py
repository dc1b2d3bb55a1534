"""How every tool reads a course notebook: cell kinds, answer cells, marker regions.

nbgrader marks its cells in ``cell.metadata["nbgrader"]`` (schema 3); every
tool that reads notebooks (preflight, submissions, mutation testing, similarity,
publishing, benchmarks) asks this module what a cell is, so that all of them
agree on it:

- an **answer cell** has ``solution: true``: the learner writes there. A *code
  answer* (code cell, ``solution`` without ``grade``) is graded by test cells;
  a cell with both ``solution`` and ``grade`` is graded by hand.
- a **test cell** has ``grade: true`` without ``solution``; it is locked and holds
  the visible checks and, between markers, the hidden tests.
- an **nbgrader cell** is any of those, or a locked (read-only) or task cell.
- **marker regions**: ``### BEGIN SOLUTION`` / ``### END SOLUTION`` enclose the
  instructors' solution in an answer cell, ``### BEGIN HIDDEN TESTS`` /
  ``### END HIDDEN TESTS`` the hidden part of a test cell (and ``BEGIN/END MARK
  SCHEME`` a mark scheme); ``nbgrader generate_assignment`` removes what lies between.

The learners' library (``mytorch_lib.notebooks``) reads answer cells on its own,
since learners never have ``course_tools``.
"""

from __future__ import annotations

from typing import Any

SOLUTION_MARKERS = ("BEGIN SOLUTION", "END SOLUTION")
HIDDEN_TEST_MARKERS = ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
MARK_SCHEME_MARKERS = ("BEGIN MARK SCHEME", "END MARK SCHEME")
#: every marker line nbgrader acts on
MARKERS = SOLUTION_MARKERS + HIDDEN_TEST_MARKERS + MARK_SCHEME_MARKERS


def nbgrader_metadata(cell: Any) -> dict[str, Any]:
    """The cell's nbgrader metadata (empty when it has none or it is not a mapping)."""
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta if isinstance(meta, dict) else {}


def grade_id(cell: Any) -> str | None:
    return nbgrader_metadata(cell).get("grade_id")


def is_nbgrader_cell(cell: Any) -> bool:
    """A cell nbgrader tracks: graded, answer, locked or task."""
    meta = nbgrader_metadata(cell)
    return bool(meta.get("grade") or meta.get("solution") or meta.get("locked") or meta.get("task"))


def is_answer(cell: Any) -> bool:
    """A cell the learner writes in (``solution: true``), graded by tests or by hand."""
    return bool(nbgrader_metadata(cell).get("solution"))


def is_code_answer(cell: Any) -> bool:
    """A code cell the learner writes in and test cells grade (``solution`` without ``grade``)."""
    meta = nbgrader_metadata(cell)
    return cell.get("cell_type") == "code" and bool(meta.get("solution")) and not meta.get("grade")


def is_test(cell: Any) -> bool:
    """A test cell: graded (``grade: true``), not written by the learner."""
    meta = nbgrader_metadata(cell)
    return bool(meta.get("grade")) and not meta.get("solution")


def marker_regions(source: str, begin: str, end: str) -> tuple[list[str], list[tuple[int, int]]]:
    """The source's lines without the marker lines, and the ``[start, end)`` ranges of the regions between them."""
    lines: list[str] = []
    regions: list[tuple[int, int]] = []
    start = None
    for line in source.split("\n"):
        if begin in line:
            start = len(lines)
        elif end in line:
            if start is not None:
                regions.append((start, len(lines)))
            start = None
        else:
            lines.append(line)
    if start is not None:  # a region left open runs to the end (nbgrader itself refuses such a cell)
        regions.append((start, len(lines)))
    return lines, regions


def solution_text(source: str) -> str:
    """An answer cell's text as a learner who got it right would write it (solution marker lines removed)."""
    return "\n".join(marker_regions(source, *SOLUTION_MARKERS)[0])
