"""Grade one submission: the grading engine every tool goes through.

:class:`SubmissionGrader` turns one ``submitted/<student>/<assignment>`` folder into
a grading record:

1. **preflight** (:mod:`course_tools.grading.preflight`): the submission is checked
   against the release and the folder nbgrader grades is written to
   ``preflighted/`` with unambiguous repairs applied;
2. **one nbgrader call per notebook** (nbgrader's own ``Autograde`` converter, as
   the CLI's ``--notebook``): a kernel that dies or hangs loses that notebook only,
   and the record says why (:func:`notebook_failure`);
3. **sandbox** (:mod:`course_tools.grading.sandbox`): kernels start through the
   sandbox kernelspec; its launcher enforces a wall-clock cap per notebook on top
   of nbgrader's per-cell timeout and reports why a kernel ended;
4. **the record**: scores from the gradebook, the grader's numbers of each
   notebook (what the verdicts measured, such as test accuracy), the preflight
   findings, a fingerprint of the submitted files and how long each step took; a record per
   submission is kept in ``grading_reports/<assignment>/`` so that a later run
   skips what is already graded.

A grader is long-lived: it holds one ``NbGraderAPI``, so nbgrader's start-up cost
is paid once per process. :mod:`course_tools.grading.schedulers` runs many of them,
on this machine or on a Dask cluster.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from course_tools.course import Workspace
from course_tools.grading.preflight import PreflightReport, prepare_submission
from course_tools.grading.sandbox import KERNEL_NAME, SandboxSettings, prepare_kernel

#: folder (under the course root) that nbgrader grades from: the preflighted copies
PREFLIGHTED = "preflighted"
#: folder (under the course root) for per-submission records and CSV exports
REPORTS = "grading_reports"


class NotebookOutcome(TypedDict, total=False):
    """What grading one notebook of a submission gave (a record's ``notebooks[name]``)."""

    status: str  # graded | failed | not submitted (a notebook left out by ``notebooks`` has none)
    reason: str  # why it failed or was not submitted, in one line
    failure: str  # timeout | crashed (failed notebooks only)
    seconds: float
    log_tail: str  # the end of nbgrader's log (failed notebooks only)
    score: float
    max_score: float
    cells: dict[str, list[float]]  # grade_id -> [score, max_score]
    needs_manual_grade: list[str]
    numbers: dict[str, float]  # what the verdicts measured (test accuracy, held-out MSE, ...), if anything


class GradingRecord(TypedDict, total=False):
    """The record of one graded submission, kept as JSON in ``grading_reports/<assignment>/<student>.json``."""

    assignment: str
    student: str
    status: str  # graded | problems (preflight could not repair) | failed (a kernel or the grader)
    reason: str  # why the grading itself failed (status failed, no notebooks)
    fingerprint: str  # of the submitted files: a later run skips the submission while it matches
    worker: str  # host:pid of the process that graded it
    sandbox: bool
    graded_at: str
    preflight: dict[str, Any]  # PreflightReport.to_dict()
    notebooks: dict[str, NotebookOutcome]
    score: float  # the assignment's own notebooks
    max_score: float
    bonus: float  # its bonus notebooks (course.bonus_notebooks)
    bonus_max: float
    feedback: str
    seconds: float
    traceback: str
    skipped: bool  # set by grade_class for a record kept from an earlier run


class GradingRefused(RuntimeError):
    """Grading cannot start (sandbox unavailable, assignment unknown to the gradebook, ...)."""


@dataclass
class GradeOptions:
    """How to grade.

    Attributes:
        workers: parallel worker processes (default: the number of cores).
        force: grade again submissions that already have an up-to-date record.
        retry_failed: grade again submissions whose last grading failed (dead or hung kernel).
        sandbox: limits of the sandbox, or None to grade WITHOUT a sandbox (explicit opt-out).
        notebook_timeout: wall-clock cap per notebook in seconds, on top of the per-cell timeout.
        cell_timeout: nbgrader's per-cell timeout (None: the course's nbgrader_config.py).
        feedback: also run nbgrader's generate_feedback for every graded submission.
        progress: show a progress bar on stderr.
        notebooks: grade only these notebooks (names without .ipynb) of each submission; the
            others are put next to them ungraded, for the graded ones to import (None: all).
    """

    workers: int = 0
    force: bool = False
    retry_failed: bool = False
    sandbox: SandboxSettings | None = field(default_factory=SandboxSettings)
    notebook_timeout: float = 900.0
    cell_timeout: int | None = None
    feedback: bool = False
    progress: bool = True
    notebooks: tuple[str, ...] | None = None


@dataclass
class CourseSpec:
    """Where the course lives: what every worker needs to open the same gradebook (picklable)."""

    root: str
    release_dir: str | None = None
    db_url: str | None = None

    def workspace(self) -> Workspace:
        return Workspace(Path(self.root), release_dir=Path(self.release_dir) if self.release_dir else None,
                         db_url=self.db_url)


def fingerprint(folder: Path) -> str:
    """SHA-256 over the names and bytes of the files of a submission (checkpoints ignored)."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and ".ipynb_checkpoints" not in rel.parts:
            digest.update(str(rel).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def record_path(root: Path, assignment: str, student: str) -> Path:
    return Path(root) / REPORTS / assignment / f"{student}.json"


def load_record(root: Path, assignment: str, student: str) -> GradingRecord | None:
    path = record_path(root, assignment, student)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def save_record(root: Path, record: GradingRecord) -> None:
    path = record_path(root, record["assignment"], record["student"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def speed_up_nbgrader() -> None:
    """Two caches around nbgrader 0.9.6 for long-lived grading processes (same results, less work).

    - ``Gradebook`` creates a new SQLAlchemy engine every time it is opened (about ten
      times per notebook), which also throws away SQLAlchemy's compiled-query cache:
      reuse one engine per URL (``Gradebook.close`` still disposes its connections).
    - ``CheckCellMetadata`` validates every cell with ``jsonschema.validate``, which
      re-checks the schema itself on each call (80 ms per notebook): build each
      schema's validator once.

    Together they save about 0.2 s per notebook; the parallel-equals-serial test
    shows that the gradebook ends up the same.
    """
    import functools

    import jsonschema
    import nbgrader.api as nbgrader_api
    import nbgrader.nbgraderformat.common as nbgrader_format

    if getattr(nbgrader_api, "_mytorch_engines", None) is not None:
        return
    engines: dict[tuple, Any] = {}
    create_engine = nbgrader_api.create_engine

    def cached_engine(url: str, **kwargs: Any) -> Any:
        key = (url, tuple(sorted(kwargs.items())))
        if key not in engines:
            engines[key] = create_engine(url, **kwargs)
        return engines[key]

    @functools.lru_cache(maxsize=None)
    def validator(schema_json: str) -> Any:
        schema = json.loads(schema_json)
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        return cls(schema)

    class CachedJsonschema:
        ValidationError = jsonschema.ValidationError

        @staticmethod
        def validate(instance: Any, schema: dict[str, Any]) -> None:
            validator(json.dumps(schema, sort_keys=True)).validate(instance)

    nbgrader_api.create_engine = cached_engine
    nbgrader_api._mytorch_engines = engines
    nbgrader_format.jsonschema = CachedJsonschema


def sqlite_waits(db_url: str, seconds: int = 60) -> str:
    """An SQLite URL whose connections wait up to ``seconds`` for a lock held by another worker."""
    if db_url.startswith("sqlite:") and "?" not in db_url:
        return f"{db_url}?timeout={seconds}"
    return db_url


SLOT_LOCKS = Path(tempfile.gettempdir()) / f"mytorch-grading-slots-{os.getuid()}"


def claim_slot(limit: int = 1000) -> tuple[int, Any]:
    """A slot number no other grading process on this machine holds, and the open lock that holds it.

    The slot picks the unprivileged user the sandboxed kernels run as, so two graders
    on one machine (local workers, Dask workers, two courses) never share one. The
    lock is an ``flock`` on a file in the temporary folder: the system releases it
    when the process ends, however it ends (``kill -9`` included).
    """
    SLOT_LOCKS.mkdir(mode=0o755, exist_ok=True)
    for slot in range(limit):
        handle = open(SLOT_LOCKS / f"slot-{slot}.lock", "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        return slot, handle
    raise RuntimeError(f"all {limit} grading slots of this machine are taken (see {SLOT_LOCKS})")


class SubmissionGrader:
    """One grading process's engine: an NbGraderAPI whose kernels start through the sandbox launcher.

    Args:
        course: where the course lives (the same path on every machine that grades it).
        options: how to grade (sandbox limits, timeouts, feedback, which notebooks).
        scratch: a private folder of this process (kernel connection files, launcher config).
        matplotlib_cache: a prepared font cache every kernel gets a fresh copy of (None: none).
    """

    def __init__(self, course: CourseSpec, options: GradeOptions, scratch: Path,
                 matplotlib_cache: Path | None = None) -> None:
        self.slot, self._slot_lock = claim_slot()
        self.options = options
        speed_up_nbgrader()
        self.workspace = course.workspace()
        if not self.workspace.release_dir.is_dir():
            raise GradingRefused(f"{self.workspace.release_dir} is not visible on this machine: every machine that "
                                 "grades needs the course folder at the same path (a shared file system)")
        self.workspace.db_url = sqlite_waits(self.workspace.db_url)
        self.scratch = Path(scratch) / f"grader-{self.slot}"
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch.mkdir(parents=True)
        os.chmod(self.scratch, 0o755)
        self.runtime = self.scratch / "runtime"
        self.status_file = self.scratch / "kernel-status.json"
        settings = dataclasses.replace(options.sandbox or SandboxSettings(), wall_clock_cap=options.notebook_timeout)
        connection_file = prepare_kernel(self.scratch, settings, slot=self.slot, sandboxed=options.sandbox is not None,
                                         status_file=self.status_file, matplotlib_cache=matplotlib_cache)
        os.environ["JUPYTER_PATH"] = os.pathsep.join(
            p for p in (str(self.scratch / "jupyter"), os.environ.get("JUPYTER_PATH", "")) if p)
        api = self.workspace.api
        api.config.Execute.kernel_name = KERNEL_NAME
        api.config.KernelManager.transport = "ipc" if options.sandbox is not None else "tcp"
        api.config.KernelManager.connection_file = str(connection_file)
        if options.cell_timeout:
            api.config.Execute.timeout = options.cell_timeout
        api.coursedir.submitted_directory = PREFLIGHTED

    def _fresh_runtime(self) -> None:
        # The kernel could write into its connection folder: never reuse anything it left.
        shutil.rmtree(self.runtime, ignore_errors=True)
        self.runtime.mkdir(mode=0o700)

    def _autograde_notebook(self, assignment: str, student: str, notebook: str) -> NotebookOutcome:
        """nbgrader's own Autograde converter on one notebook (the CLI's ``--notebook``)."""
        from nbgrader.converters import Autograde
        from nbgrader.utils import capture_log, temp_attrs

        api = self.workspace.api
        self._fresh_runtime()
        self.status_file.unlink(missing_ok=True)
        started = time.perf_counter()
        with temp_attrs(api.coursedir, assignment_id=assignment, student_id=student, notebook_id=notebook):
            app = Autograde(coursedir=api.coursedir, parent=api)
            app.force = True
            app.create_student = True
            result = capture_log(app)
        seconds = time.perf_counter() - started
        kernel = None
        if self.status_file.exists():
            kernel = json.loads(self.status_file.read_text(encoding="utf-8"))
        outcome: NotebookOutcome = {"status": "graded", "reason": "", "seconds": round(seconds, 3)}
        if not result.get("success") or kernel and kernel.get("capped"):
            outcome["status"] = "failed"
            outcome["failure"], outcome["reason"] = notebook_failure(result, kernel)
            outcome["log_tail"] = ((result.get("log") or "") + (result.get("error") or ""))[-2000:]
            return outcome
        numbers = _grader_numbers(self.workspace.path("autograded", student, assignment) / f"{notebook}.ipynb")
        if numbers:
            outcome["numbers"] = numbers
        return outcome

    def grade(self, assignment: str, student: str) -> GradingRecord:
        """Grade ``submitted/<student>/<assignment>``; returns its record (never raises for a bad submission)."""
        started = time.perf_counter()
        ws = self.workspace
        submitted = ws.path("submitted", student, assignment)
        record: GradingRecord = {"assignment": assignment, "student": student, "fingerprint": fingerprint(submitted),
                                  "worker": f"{os.uname().nodename}:{os.getpid()}",
                                  "sandbox": self.options.sandbox is not None,
                                  "graded_at": time.strftime("%Y-%m-%d %H:%M:%S")}
        report = prepare_submission(ws.release_dir / assignment, submitted,
                                    ws.root / PREFLIGHTED / student / assignment,
                                    student=student, assignment=assignment)
        record["preflight"] = report.to_dict()
        graded_dir = ws.path("autograded", student, assignment)
        shutil.rmtree(graded_dir, ignore_errors=True)
        only = set(self.options.notebooks or report.expected)
        notebooks: dict[str, NotebookOutcome] = {}
        for name in report.expected:
            if name not in report.gradable:
                notebooks[name] = {"status": "not submitted", "reason": "missing or unreadable (see preflight)",
                                   "seconds": 0.0}
            elif name in only:
                notebooks[name] = self._autograde_notebook(assignment, student, name)
            else:
                # Not graded this time, but next to the graded ones as a whole-assignment
                # autograde would have put it: a later notebook may import its classes.
                graded_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(ws.root / PREFLIGHTED / student / assignment / f"{name}.ipynb",
                                graded_dir / f"{name}.ipynb")
        totals = dict.fromkeys(("score", "max_score", "bonus", "bonus_max"), 0.0)
        if report.gradable:
            scores = ws.scores(assignment, student)
            _merge_scores(notebooks, scores)
            totals = {key: scores[key] for key in totals}
        if self.options.feedback and any(nb["status"] == "graded" for nb in notebooks.values()):
            result = ws.api.generate_feedback(assignment, student, force=True)
            record["feedback"] = "written" if result.get("success") else _last_error_line(result)
        record["notebooks"] = notebooks
        record.update(totals)  # the assignment's own notebooks, and its bonus notebooks apart
        record["status"] = submission_status(notebooks, report)
        record["seconds"] = round(time.perf_counter() - started, 3)
        return record

    def grade_safely(self, assignment: str, student: str) -> GradingRecord:
        """:meth:`grade`, with a grader bug or an nbgrader crash turned into a failed record."""
        try:
            return self.grade(assignment, student)
        except Exception as exc:  # one submission must not stop the class
            return crash_record(assignment, student, f"grader error: {exc.__class__.__name__}: {exc}",
                                traceback=traceback.format_exc()[-3000:])


def crash_record(assignment: str, student: str, why: str, **extra: Any) -> GradingRecord:
    """The record of a submission whose grading itself failed (its process died, hung or raised)."""
    return {"assignment": assignment, "student": student, "status": "failed", "notebooks": {}, "reason": why,
            "graded_at": time.strftime("%Y-%m-%d %H:%M:%S"), **extra}


def _merge_scores(notebooks: dict[str, NotebookOutcome], scores: dict[str, Any]) -> None:
    for name, nb in scores["notebooks"].items():
        entry = notebooks.setdefault(name, {"status": "not submitted", "reason": "", "seconds": 0.0})
        entry.update({"score": nb["score"], "max_score": nb["max_score"],
                      "cells": {cell: list(pair) for cell, pair in nb["cells"].items()},
                      "needs_manual_grade": nb["needs_manual_grade"]})


def _grader_numbers(autograded: Path) -> dict[str, float]:
    """The numbers the verdicts measured in an autograded notebook (see ``DecideHiddenTests``)."""
    from course_tools.hidden.verdicts.engine import NUMBERS_METADATA

    try:
        metadata = json.loads(autograded.read_text(encoding="utf-8")).get("metadata", {})
    except (OSError, ValueError):
        return {}
    numbers = metadata.get(NUMBERS_METADATA)
    return dict(numbers) if isinstance(numbers, dict) else {}


def _last_error_line(result: dict[str, Any]) -> str:
    text = (result.get("error") or "") + "\n" + (result.get("log") or "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "error" in line:
            return line[:300]
    return lines[-1][:300] if lines else "nbgrader reported a failure without a message"


def notebook_failure(result: dict[str, Any], kernel: dict[str, Any] | None) -> tuple[str, str]:
    """Why nbgrader could not grade a notebook: (``"timeout"`` or ``"crashed"``, one line; the kernel's own end first)."""
    text = (result.get("error") or "") + (result.get("log") or "")
    kernel = kernel or {}
    if kernel.get("capped"):
        return "timeout", kernel["reason"]
    if "CellTimeoutError" in text:
        return "timeout", ("a cell kept running after the per-cell timeout and did not stop when interrupted "
                           "(an endless loop, or code that broke the kernel's messaging)")
    if "DeadKernelError" in text or "Kernel died" in text:
        code = kernel.get("returncode")
        return "crashed", kernel["reason"] if code not in (None, 0, -15, 143) else "kernel died"
    if "UnresponsiveKernelError" in text:
        return "timeout", "kernel stopped responding and could not be interrupted"
    if "Kernel didn't respond" in text or "kernel_info" in text:
        tail = kernel.get("log_tail", "").strip().splitlines()
        return "crashed", "kernel did not start" + (f": {tail[-1][:200]}" if tail else "")
    return "crashed", _last_error_line(result)


def submission_status(notebooks: dict[str, NotebookOutcome], report: PreflightReport) -> str:
    """``failed`` (a kernel died or hung), ``problems`` (preflight could not repair), or ``graded``."""
    if any(nb["status"] == "failed" for nb in notebooks.values()):
        return "failed"
    if report.problems:
        return "problems"
    return "graded"


