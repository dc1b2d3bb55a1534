"""Grade a whole class: ``python -m course_tools grade ASSIGNMENT [STUDENT ...]``.

Every submission goes through nbgrader itself (its gradebook, its ``Autograde``
converter and preprocessors) inside :mod:`course_tools.grading.engine`; this
module organises the work around it:

- **plan**: which submissions need grading. A record per submission in
  ``grading_reports/<assignment>/`` holds the result and a fingerprint of the
  submitted files; a submission whose record matches is skipped unless ``force``
  (or ``retry_failed`` for failures), so an interrupted run resumes where it stopped;
- **schedule** (:mod:`course_tools.grading.schedulers`): local worker processes,
  or one task per submission on a Dask cluster (``--scheduler tcp://HOST:8786``);
- **progress**: a bar with rate and time left, the Dask dashboard's address;
- **summary table and CSV** (:mod:`course_tools.grading.export`).

Students are created in the gradebook before any submission is graded, so
workers never race to create the same row; everything else is written by nbgrader.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

from course_tools.course import Workspace
from course_tools.grading.engine import (REPORTS, CourseSpec, GradeOptions, GradingRefused, fingerprint,
                                         load_record, save_record)
from course_tools.grading.preflight import prepare_submission
from course_tools.grading.sandbox import SandboxSettings, prepare_matplotlib_cache, probe
from course_tools.grading.schedulers import DaskScheduler, LocalScheduler, OnRecord, scheduler_for


def submitted_students(workspace: Workspace, assignment: str) -> list[str]:
    """Students with a ``submitted/<student>/<assignment>`` folder, sorted."""
    base = workspace.root / "submitted"
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / assignment).is_dir())


def _prepare_gradebook(workspace: Workspace, assignment: str, students: Iterable[str]) -> None:
    from nbgrader.api import MissingEntry

    with workspace.gradebook() as gb:
        try:
            gb.find_assignment(assignment)
        except MissingEntry:
            raise GradingRefused(
                f"assignment {assignment!r} is not in the gradebook {workspace.db_url}: run "
                f"`nbgrader generate_assignment {assignment}` against this gradebook first") from None
        for student in students:
            gb.update_or_create_student(student)


def plan(workspace: Workspace, assignment: str, students: list[str] | None,
         options: GradeOptions) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """(students to grade now, {student: up-to-date record} of those skipped)."""
    available = submitted_students(workspace, assignment)
    if students:
        unknown = sorted(set(students) - set(available))
        if unknown:
            raise GradingRefused(f"no submission of {assignment} for: {', '.join(unknown)} "
                                 f"(looked in {workspace.root / 'submitted'}/<student>/{assignment})")
        available = [s for s in available if s in set(students)]
    todo, skipped = [], {}
    for student in available:
        record = None if options.force else load_record(workspace.root, assignment, student)
        current = record is not None and record.get("fingerprint") == fingerprint(
            workspace.path("submitted", student, assignment))
        if current and not (options.retry_failed and record.get("status") == "failed"):
            skipped[student] = record
        else:
            todo.append(student)
    return todo, skipped


def grade_class(course: CourseSpec, assignment: str, students: list[str] | None = None,
                options: GradeOptions | None = None, *, scheduler: LocalScheduler | DaskScheduler | None = None,
                on_record: OnRecord | None = None, log: Any = None) -> list[dict[str, Any]]:
    """Grade the submissions of ``assignment`` (all, or ``students``); returns one record per submission.

    ``scheduler`` runs the engine (default: ``options.workers`` local processes);
    ``on_record`` is called with each record as it is saved. Records of skipped
    (already graded) submissions are included, marked ``skipped``.
    Raises :class:`GradingRefused` when grading cannot start.
    """
    options = options or GradeOptions()
    scheduler = scheduler or LocalScheduler(options.workers)
    log = log or sys.stderr
    workspace = course.workspace()
    if isinstance(scheduler, DaskScheduler) and not scheduler.local_only and workspace.db_url.startswith("sqlite"):
        raise GradingRefused(
            f"the gradebook is SQLite ({workspace.db_url}), which workers on other machines cannot share: SQLite "
            "locks through the file system, and network file systems do not honour those locks, so grades "
            "would be lost or the gradebook corrupted. Use PostgreSQL: pass --db-url "
            "postgresql://USER@HOST/DB (every worker must reach it), or run the Dask scheduler on loopback "
            "(tcp://127.0.0.1:PORT) to grade on this machine only.")
    if options.sandbox is not None:
        try:
            probe(options.sandbox)
        except Exception as exc:
            raise GradingRefused(
                f"the grading sandbox cannot start: {exc}\nTo grade without a sandbox anyway (student code then "
                "runs with your rights, next to the gradebook and the hidden tests), pass --no-sandbox.") from exc
    todo, skipped = plan(workspace, assignment, students, options)
    records = [dict(r, skipped=True) for r in skipped.values()]
    if not todo:
        return sorted(records, key=lambda r: r["student"])
    # Cost of the longest legitimate job: every notebook at its cap plus kernel start and nbgrader work.
    n_notebooks = max(1, len(list((workspace.release_dir / assignment).glob("*.ipynb"))))
    job_limit = n_notebooks * (options.notebook_timeout + 120) + 120
    logs = workspace.root / REPORTS / assignment / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    mpl_cache = None
    if options.sandbox is not None:
        # Built once per course folder and reused: every kernel gets a fresh copy.
        mpl_cache = workspace.root / REPORTS / ".cache" / "matplotlib"
        if not any(mpl_cache.glob("fontlist-*.json")):
            mpl_cache = prepare_matplotlib_cache(mpl_cache)

    from tqdm import tqdm

    bar = tqdm(total=len(todo), unit="submission", disable=not options.progress, file=log,
               desc=f"grading {assignment} ({scheduler.describe(len(todo))})")
    finished: list[dict[str, Any]] = []

    def record_done(record: dict[str, Any]) -> None:
        save_record(workspace.root, record)
        finished.append(record)
        bar.set_postfix_str(f"{record['student']}: {record['status']}")
        bar.update(1)
        if on_record is not None:
            on_record(record)

    def announce() -> None:
        _prepare_gradebook(workspace, assignment, todo)
        dashboard = getattr(scheduler, "dashboard", None)
        if dashboard:
            bar.write(f"Dask dashboard: {dashboard}", file=log)

    try:
        scheduler.run(course, options, assignment, todo, record_done, logs=logs, matplotlib_cache=mpl_cache,
                      job_limit=job_limit, before_start=announce)
    finally:
        bar.close()
    return sorted(records + finished, key=lambda r: r["student"])


# ----------------------------------------------------------------------------- command line

def add_arguments(parser: Any) -> None:
    """Options of ``python -m course_tools grade``."""
    parser.add_argument("assignment", help="assignment name, e.g. 01_pen_and_paper")
    parser.add_argument("students", nargs="*", help="grade only these students (default: every submission)")
    parser.add_argument("--root", default=None,
                        help="nbgrader course folder with submitted/ and the gradebook (default: nbgrader_config.py's)")
    parser.add_argument("--db-url", default=None,
                        help="gradebook URL, e.g. postgresql://user@host/db (default: sqlite in the course folder)")
    parser.add_argument("--release-dir", default=None, help="release folder (default: <root>/release)")
    parser.add_argument("-j", "--workers", type=int, default=0, help="parallel workers (default: number of cores)")
    parser.add_argument("--scheduler", default=None, metavar="tcp://HOST:8786",
                        help="grade on this Dask cluster instead of local workers; every worker must see the course "
                             "folder at the same path, and the gradebook must be PostgreSQL (--db-url) unless the "
                             "scheduler is on loopback")
    parser.add_argument("--force", action="store_true", help="grade again submissions that were already graded")
    parser.add_argument("--retry-failed", action="store_true", help="grade again submissions whose grading failed")
    parser.add_argument("--notebook-timeout", type=float, default=900.0,
                        help="wall-clock cap per notebook in seconds (default 900)")
    parser.add_argument("--cell-timeout", type=int, default=None,
                        help="per-cell timeout in seconds (default: nbgrader_config.py's)")
    parser.add_argument("--memory-mb", type=int, default=SandboxSettings.memory_mb,
                        help=f"memory limit per kernel in MB (default {SandboxSettings.memory_mb})")
    parser.add_argument("--max-processes", type=int, default=SandboxSettings.max_processes,
                        help=f"processes and threads per kernel (default {SandboxSettings.max_processes})")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="run student code WITHOUT the bubblewrap sandbox (it can then read the gradebook "
                             "and hidden tests, and use the network); only the time cap remains")
    parser.add_argument("--feedback", action="store_true", help="also write feedback HTML for each submission")
    parser.add_argument("--csv", default=None, help="CSV export path (default: <root>/grading_reports/<assignment>.csv)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def course_from_args(args: Any) -> CourseSpec:
    from course_tools.course import load_config

    root = args.root or load_config().CourseDirectory.root
    return CourseSpec(root=str(Path(root).resolve()), release_dir=args.release_dir, db_url=args.db_url)


def main(args: Any) -> int:
    """Run ``grade``: 0 when every submission was graded, 1 when some failed, 2 when grading was refused."""
    from course_tools.term.deadlines import late_note, late_status
    from course_tools.grading.export import attention, export_csv, summary_table

    course = course_from_args(args)
    sandbox = None if args.no_sandbox else SandboxSettings(memory_mb=args.memory_mb, max_processes=args.max_processes)
    options = GradeOptions(workers=args.workers, force=args.force, retry_failed=args.retry_failed, sandbox=sandbox,
                           notebook_timeout=args.notebook_timeout, cell_timeout=args.cell_timeout,
                           feedback=args.feedback, progress=not args.quiet)
    if args.no_sandbox:
        print("WARNING: grading without a sandbox (--no-sandbox): student code runs with your rights.",
              file=sys.stderr)
    started = time.perf_counter()
    try:
        records = grade_class(course, args.assignment, args.students or None, options,
                              scheduler=scheduler_for(args.scheduler, args.workers))
    except GradingRefused as exc:
        print(f"grading refused: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - started
    graded_now = [r for r in records if not r.get("skipped")]
    workspace = course.workspace()
    csv_path = Path(args.csv) if args.csv else workspace.root / REPORTS / f"{args.assignment}.csv"
    if records:
        late = late_status(workspace, args.assignment)
        records = [dict(r, late=late_note(late.get(r["student"]))) for r in records]
        export_csv(workspace, args.assignment, {r["student"]: r for r in records}, csv_path)
        print(summary_table(records))
    print(f"\n{len(graded_now)} submission(s) graded in {elapsed:.0f} s, {len(records) - len(graded_now)} kept "
          f"from earlier runs (use --force to grade them again); CSV: {csv_path}")
    todo = attention(records)
    if todo:
        print("\nNeeds attention:")
        for line in todo:
            print(f"  - {line}")
    return 1 if any(r.get("status") == "failed" for r in records) else 0


def add_preflight_arguments(parser: Any) -> None:
    """Options of ``python -m course_tools preflight``."""
    parser.add_argument("assignment")
    parser.add_argument("students", nargs="*")
    parser.add_argument("--root", default=None, help="nbgrader course folder (default: nbgrader_config.py's)")
    parser.add_argument("--release-dir", default=None, help="release folder (default: <root>/release)")


def preflight_main(args: Any) -> int:
    """Check submissions without grading; prints one line per finding. 1 if any problem."""
    args.db_url = None
    workspace = course_from_args(args).workspace()
    students = args.students or submitted_students(workspace, args.assignment)
    problems = 0
    with tempfile.TemporaryDirectory() as tmp:
        for student in students:
            report = prepare_submission(workspace.release_dir / args.assignment,
                                        workspace.path("submitted", student, args.assignment),
                                        Path(tmp) / student, student=student, assignment=args.assignment)
            for f in report.findings:
                print(f"{student}/{f.notebook}: {f.action}: {f.message}" + (f" -> {f.advice}" if f.advice else ""))
            problems += len(report.problems)
            if not report.findings:
                print(f"{student}: ok")
    return 1 if problems else 0
