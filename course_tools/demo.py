"""``make demo``: release every assignment, grade the bundled examples, print the table.

Runs in its own course folder (default ``build/demo``) with its own SQLite
gradebook, so it never touches a real course's gradebook.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from course_tools.course import REPO_ROOT, Workspace, notebooks
from course_tools.authoring.examples import EXAMPLES, Example, handed_in_files
from course_tools.authoring.release import generate_release
from course_tools.authoring.submissions import learner_notebook, write_submission


def submit_example(workspace: Workspace, example: Example, assignment: str) -> Path:
    """Write ``example``'s submission of ``assignment`` into the workspace's submitted/ folder."""
    edits = example.edits.get(assignment, {})
    nbs = {
        nb.stem: learner_notebook(assignment, nb.stem, edits.get(nb.stem), filled=example.filled,
                                  release_dir=workspace.release_dir)
        for nb in notebooks(assignment)
    }
    return write_submission(workspace.path("submitted", example.student, assignment), nbs,
                            release_folder=workspace.release_dir / assignment,
                            files=handed_in_files(assignment, filled=example.filled))


def total_text(record: dict[str, Any]) -> str:
    """``"93/100"``, or ``"93/100 + 8/10 bonus"`` for an assignment with bonus notebooks."""
    text = f"{record.get('score', 0):g}/{record.get('max_score', 0):g}"
    if record.get("bonus_max"):
        text += f" + {record.get('bonus', 0):g}/{record['bonus_max']:g} bonus"
    return text


def format_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run_demo(workdir: str | Path = "build/demo") -> int:
    from course_tools.grading.class_grading import grade_class
    from course_tools.grading.engine import CourseSpec, GradeOptions
    from course_tools.grading.sandbox import sandbox_for_trusted_code

    started = time.perf_counter()
    workdir = (REPO_ROOT / workdir).resolve()
    names = generate_release()
    print(f"[1/3] release/ regenerated for {len(names)} assignment(s): {', '.join(names)}")

    if workdir.exists():
        shutil.rmtree(workdir)
    workspace = Workspace(workdir)
    sandbox = sandbox_for_trusted_code("the demo's examples")
    for name in names:
        workspace.generate(name)
    print(f"[2/3] demo course created in {workdir} (gradebook {workspace.db_url})")

    # Every example is graded by the grading engine, as `python -m course_tools grade` would.
    options = GradeOptions(feedback=True, progress=False, sandbox=sandbox)
    totals = {ex.student: dict.fromkeys(("score", "max_score", "bonus", "bonus_max"), 0.0) for ex in EXAMPLES}
    cells: dict[str, list[str]] = {ex.student: [] for ex in EXAMPLES}
    problems = 0
    for name in names:
        for example in EXAMPLES:
            submit_example(workspace, example, name)
        records = grade_class(CourseSpec(str(workdir)), name, [ex.student for ex in EXAMPLES], options)
        failed = [f"{r['student']}: {r.get('reason') or r['status']}" for r in records if r["status"] != "graded"]
        problems += len(failed)
        if failed:
            print(f"      {name}: not graded as expected: " + "; ".join(failed))
        for record in records:
            cells[record["student"]].append(total_text(record))
            for key, total in totals[record["student"]].items():
                totals[record["student"]][key] = total + record.get(key, 0.0)
        print(f"      graded {name} for {len(records)} examples")
    print("[3/3] grades\n")
    rows = [["student", *names, "total"]]
    rows += [[ex.student, *cells[ex.student], total_text(totals[ex.student])] for ex in EXAMPLES]
    print(format_table(rows))
    print("\n" + "\n".join(f"  {ex.student}: {ex.description}" for ex in EXAMPLES))
    print(f"\nfeedback HTML: {workdir / 'feedback'}/<student>/<assignment>/<notebook>.html")
    print(f"done in {time.perf_counter() - started:.0f} s")
    return 1 if problems else 0
