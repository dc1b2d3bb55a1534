"""Grades of one assignment as a summary table and as a CSV file for an LMS import.

Scores come from the gradebook (so manual grades entered later in formgrader
are included); the flags come from the grading records of
:mod:`course_tools.grading.class_grading` (failed, repaired, problems). One row per
student: the total of the assignment's own notebooks (``score`` of ``max_score``), the
total of its bonus notebooks (``bonus`` of ``bonus_max``, see
:func:`course_tools.course.bonus_notebooks`), one column per notebook, one per graded
cell (``notebook:grade_id``), one per number the grader measured in a notebook
(``notebook/name``, such as ``torch_classification/test_accuracy``), and the flags.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from course_tools.course import Workspace
from course_tools.term.deadlines import late_columns, late_status
from course_tools.demo import format_table, total_text

#: when the submission came and what it cost (course_tools.term.deadlines)
LATE_COLUMNS = ("submitted_at", "seconds_late", "late_penalty", "score_after_penalty")
FLAG_COLUMNS = ("status", "failed", "repaired", "problems", "needs_manual_grade", "graded_at")


def _flags(record: dict[str, Any] | None) -> dict[str, str]:
    """The flag columns of one student's row."""
    if record is None:
        return {"status": "graded outside grade_class", "failed": "", "repaired": "", "problems": "",
                "needs_manual_grade": "", "graded_at": ""}
    failed = [f"{name}: {nb.get('reason', '')}" for name, nb in sorted(record.get("notebooks", {}).items())
              if nb.get("status") == "failed"]
    if record.get("reason"):
        failed.append(record["reason"])
    findings = record.get("preflight", {}).get("findings", [])
    manual = [f"{name}:{cell}" for name, nb in sorted(record.get("notebooks", {}).items())
              for cell in nb.get("needs_manual_grade", [])]
    return {
        "status": record.get("status", ""),
        "failed": "; ".join(failed),
        "repaired": "; ".join(f"{f['notebook']}: {f['kind']}" for f in findings if f["action"] == "repaired"),
        "problems": "; ".join(f"{f['notebook']}: {f['kind']}" for f in findings if f["action"] == "problem"),
        "needs_manual_grade": "; ".join(manual),
        "graded_at": record.get("graded_at", ""),
    }


def gradebook_rows(workspace: Workspace, assignment: str,
                   records: dict[str, dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows) for every student with a submission in the gradebook or a record."""
    from nbgrader.api import MissingEntry

    with workspace.gradebook() as gb:
        spec = gb.find_assignment(assignment)
        layout = [(nb.name, [g.name for g in sorted(nb.grade_cells, key=lambda c: c.name)])
                  for nb in sorted(spec.notebooks, key=lambda n: n.name)]
        students = sorted({s.student.id for s in spec.submissions} | set(records))
    numbers = {name: sorted({number for r in records.values()
                             for number in r.get("notebooks", {}).get(name, {}).get("numbers", {})})
               for name, _ in layout}
    columns = ["student", "score", "max_score", "bonus", "bonus_max"]
    for name, cells in layout:
        columns += [f"{name}"] + [f"{name}:{cell}" for cell in cells] + [f"{name}/{n}" for n in numbers[name]]
    columns += list(LATE_COLUMNS) + list(FLAG_COLUMNS)
    late = late_status(workspace, assignment)
    rows = []
    for student in students:
        row: dict[str, Any] = {"student": student}
        try:
            scores = workspace.scores(assignment, student)
        except MissingEntry:
            scores = None
        if scores is not None:
            row.update({key: f"{scores[key]:g}" for key in ("score", "max_score", "bonus", "bonus_max")})
            for name, nb in scores["notebooks"].items():
                row[name] = f"{nb['score']:g}"
                for cell, (score, _max) in nb["cells"].items():
                    row[f"{name}:{cell}"] = "" if score is None else f"{score:g}"
            row.update(late_columns(scores["score"] + scores["bonus"], late.get(student)))
        for name, measured in (records.get(student) or {}).get("notebooks", {}).items():
            if name in numbers:  # a notebook the gradebook knows: its numbers all have columns
                row.update({f"{name}/{number}": f"{value:.6g}" for number, value in measured.get("numbers", {}).items()})
        row.update(_flags(records.get(student)))
        rows.append(row)
    return columns, rows


def export_csv(workspace: Workspace, assignment: str, records: dict[str, dict[str, Any]], path: Path) -> Path:
    """Write the assignment's grades to ``path`` (CSV, one row per student); returns the path."""
    columns, rows = gradebook_rows(workspace, assignment, records)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _notebook_cell(nb: dict[str, Any] | None) -> str:
    if nb is None:
        return "-"
    if nb.get("status") == "failed":
        return "FAILED"
    if nb.get("status") == "not submitted":
        return "missing"
    return f"{nb.get('score', 0):g}/{nb.get('max_score', 0):g}"


def summary_table(records: list[dict[str, Any]]) -> str:
    """Plain-text table: student, one column per notebook, total (and bonus), status, what was repaired."""
    names = sorted({name for r in records for name in r.get("notebooks", {})})
    late = any(r.get("late") for r in records)
    rows = [["student", *names, "total", *(["late"] if late else []), "status", "notes"]]
    for r in records:
        findings = r.get("preflight", {}).get("findings", [])
        notes = sorted({f["kind"] for f in findings if f["action"] in ("repaired", "problem")})
        status = r.get("status", "?") + (" (kept)" if r.get("skipped") else "")
        rows.append([r["student"], *(_notebook_cell(r.get("notebooks", {}).get(n)) for n in names),
                     total_text(r), *([r.get("late", "")] if late else []), status, ", ".join(notes)])
    return format_table(rows)


def attention(records: list[dict[str, Any]]) -> list[str]:
    """One line per thing an instructor must look at: failures, and problems with what to do."""
    lines = []
    for r in records:
        who = r["student"]
        if r.get("reason"):
            lines.append(f"{who}: FAILED: {r['reason']}")
        for name, nb in sorted(r.get("notebooks", {}).items()):
            if nb.get("status") == "failed":
                lines.append(f"{who}/{name}: FAILED: {nb.get('reason', '')} (other notebooks were graded)")
        for f in r.get("preflight", {}).get("findings", []):
            if f["action"] == "problem":
                lines.append(f"{who}/{f['notebook']}: {f['message']}. {f['advice']}")
    return lines
