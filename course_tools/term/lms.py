"""Canvas and Moodle: submissions in from a bulk download, grades out for a gradebook import.

``python -m course_tools lms-import ASSIGNMENT DOWNLOAD.zip --roster roster.csv``
turns the one zip an LMS gives for "download all submissions" into
``submitted/<student>/<assignment>/`` folders, as ``nbgrader collect`` would:

- the LMS renames every file: Canvas to ``<lastfirst>[_LATE]_<user id>_<file id>_<file>``
  (a file uploaded again gets ``-1``, ``-2`` before its extension), Moodle to
  ``<Full Name>_<participant id>_assignsubmission_file_[/]<file>``. The learner is
  found in the roster by the LMS id, else by the name when exactly one roster
  entry has it; the file keeps the name the learner gave it, and the preflight of
  ``grade`` maps a renamed notebook back to its release name (the import prints
  what it will do);
- ``timestamp.txt`` holds the submission time: from ``--times`` (a CSV of
  ``id`` or ``lms_user_id`` and ``submitted_at``) when given, else the time the
  zip stores for the learner's newest file. Canvas's LATE flag is compared with
  that time and the due date in the gradebook, and any disagreement is listed;
- whatever cannot be matched (an unknown learner, a name that fits no LMS pattern)
  is listed and kept under ``downloaded/<assignment>/unmatched/``; a submission
  that an import replaces is kept under ``downloaded/<assignment>/replaced/``.

The roster is the CSV that ``nbgrader db student import`` reads: ``id`` (the
learner's id in the gradebook, their hub user name), ``first_name``,
``last_name``, ``email``, ``lms_user_id`` (the id the LMS puts into file names),
and optionally ``sis_user_id``, ``sis_login_id`` and ``section`` for Canvas.

``python -m course_tools lms-export --roster roster.csv --lms canvas`` writes the
gradebook as a CSV that Canvas's (or Moodle's) gradebook import takes: one row per
learner, one column per assignment holding the gradebook score after the late
penalty, bonus notebooks included; Canvas's "Points Possible" row holds each
assignment's points without its bonus notebooks.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
import shutil
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from course_tools.course import Workspace, bonus_notebooks
from course_tools.term.deadlines import BadTime, parse_time, utc_text

LMS_NAMES = ("canvas", "moodle")
#: Canvas: lastfirst, optional LATE, user id, file id, then the learner's own file name
CANVAS = re.compile(r"^(?P<name>[a-z0-9]+?)(?P<late>_LATE)?_(?P<lms_id>\d+)_(?P<file_id>\d+)_(?P<file>.+)$")
#: Moodle: full name, participant id, the submission plugin, then the file (in a folder or flat)
MOODLE = re.compile(r"^(?P<name>[^/]+?)_(?P<lms_id>\d+)_assignsubmission_(?P<plugin>[a-z]+)_/?(?P<file>[^/].*)$")
#: files an archiver adds that nobody submitted
_NOISE = re.compile(r"(^|/)(__MACOSX/|\.DS_Store$|Thumbs\.db$)")


class LmsError(ValueError):
    """Bad input (roster, zip, times); the message names the problem and the fix."""


# ----------------------------------------------------------------------------- roster

@dataclass
class Learner:
    id: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    lms_user_id: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def name_keys(self) -> set[str]:
        """How an LMS spells this learner in a file name, folded: ``doejane`` and ``janedoe``."""
        return {_fold(self.last_name + self.first_name), _fold(self.first_name + self.last_name)} - {""}


def _fold(text: str) -> str:
    import unicodedata

    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text.lower() if ch.isascii() and ch.isalnum())


def read_roster(path: Path) -> list[Learner]:
    """The learners of a roster CSV (``id`` required; see the module's docstring)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in reader.fieldnames or []]
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    except OSError as exc:
        raise LmsError(f"cannot read the roster {path}: {exc}") from None
    if "id" not in columns:
        raise LmsError(f"the roster {path} has no 'id' column (its columns: {', '.join(columns) or 'none'}): "
                       "give it the columns id,first_name,last_name,email,lms_user_id, as for "
                       "`nbgrader db student import`")
    learners, seen_ids, seen_lms = [], set(), set()
    known = ("id", "first_name", "last_name", "email", "lms_user_id")
    for line, row in enumerate(rows, start=2):
        if not row.get("id"):
            raise LmsError(f"{path}, line {line}: the id is empty; every learner needs the id they have in the "
                           "gradebook (their hub user name)")
        if row["id"] in seen_ids:
            raise LmsError(f"{path}, line {line}: id {row['id']!r} appears twice; keep one line per learner")
        lms_id = row.get("lms_user_id", "")
        if lms_id and lms_id in seen_lms:
            raise LmsError(f"{path}, line {line}: lms_user_id {lms_id!r} appears twice; each LMS id "
                           "belongs to one learner")
        seen_ids.add(row["id"])
        seen_lms.add(lms_id)
        learners.append(Learner(**{k: row.get(k, "") for k in known},
                                extra={k: v for k, v in row.items() if k not in known}))
    return learners


# ----------------------------------------------------------------------------- parsing the download

@dataclass
class LmsFile:
    """One file of the download, as the LMS named it."""

    entry: str
    lms: str
    name: str
    lms_id: str
    file: str
    late: bool = False
    modified: dt.datetime | None = None


def parse_entry(entry: str, lms: str = "auto") -> LmsFile | None:
    """What an LMS file name says (None when it fits no pattern of ``lms``)."""
    if lms in ("auto", "canvas"):
        m = CANVAS.match(PurePosixPath(entry).name)
        if m:
            return LmsFile(entry, "canvas", m["name"], m["lms_id"], m["file"], late=bool(m["late"]))
    if lms in ("auto", "moodle"):
        m = MOODLE.match(entry)
        if m:
            return LmsFile(entry, "moodle", m["name"], m["lms_id"], m["file"])
    return None


def _safe_relative(name: str) -> str | None:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        return None
    return str(path)


def match_learner(item: LmsFile, roster: list[Learner]) -> tuple[Learner | None, str]:
    """(learner, how) by LMS id, else by a name only one learner has; (None, why) otherwise."""
    by_id = [r for r in roster if r.lms_user_id and r.lms_user_id == item.lms_id]
    if by_id:
        return by_id[0], "lms id"
    key = _fold(item.name)
    by_name = [r for r in roster if key in r.name_keys()]
    if len(by_name) == 1:
        return by_name[0], "name"
    if by_name:
        return None, (f"{item.lms} id {item.lms_id} is not in the roster and {len(by_name)} learners are called "
                      f"{item.name!r}: add lms_user_id {item.lms_id} to the right line of the roster")
    return None, (f"{item.lms} id {item.lms_id} ({item.name!r}) is not in the roster: add the learner "
                  f"(with lms_user_id {item.lms_id}) and import again")


# ----------------------------------------------------------------------------- import

@dataclass
class Imported:
    student: str
    files: list[str]
    submitted_at: dt.datetime
    time_source: str
    late_flag: bool
    status: str = "new"
    kept: str = ""
    how: set[str] = field(default_factory=set)


@dataclass
class ImportReport:
    imported: list[Imported] = field(default_factory=list)
    unmatched: list[tuple[str, str]] = field(default_factory=list)  # (zip entry, why)
    checks: list[str] = field(default_factory=list)
    unmatched_dir: Path | None = None


def read_times(path: Path) -> dict[str, dt.datetime]:
    """``{id or lms_user_id: submission time (naive UTC)}`` from a CSV with ``submitted_at``."""
    path = Path(path)
    try:
        rows = list(csv.DictReader(path.open(newline="", encoding="utf-8-sig")))
    except OSError as exc:
        raise LmsError(f"cannot read the times file {path}: {exc}") from None
    times = {}
    for line, row in enumerate(rows, start=2):
        key = (row.get("id") or row.get("lms_user_id") or "").strip()
        if not key or not (row.get("submitted_at") or "").strip():
            raise LmsError(f"{path}, line {line}: needs an id (or lms_user_id) and a submitted_at column, "
                           "e.g. jdoe,2026-10-15 23:40 Europe/Berlin")
        try:
            times[key] = parse_time(row["submitted_at"])
        except BadTime as exc:
            raise LmsError(f"{path}, line {line}: {exc}") from None
    return times


def _zip_time(info: zipfile.ZipInfo, zone: Any) -> dt.datetime:
    return dt.datetime(*info.date_time, tzinfo=zone).astimezone(dt.timezone.utc).replace(tzinfo=None)


def _due_dates(workspace: Workspace, assignment: str) -> tuple[dt.datetime | None, dict[str, dt.datetime]]:
    """(assignment due date, {student: own due date with extension}) from the gradebook."""
    from nbgrader.api import MissingEntry

    with workspace.gradebook() as gb:
        try:
            spec = gb.find_assignment(assignment)
        except MissingEntry:
            return None, {}
        return spec.duedate, {s.student.id: s.duedate for s in spec.submissions if s.extension is not None}


def _same_files(a: Path, b: Path) -> bool:
    from course_tools.grading.engine import fingerprint

    return fingerprint(a) == fingerprint(b)


def _unplaced(item: LmsFile | None, learner: Learner | None, how: str, lms: str) -> str:
    """Why a zip entry cannot go to a learner ("" when it can)."""
    if item is None:
        return f"the name fits no {lms if lms != 'auto' else 'Canvas or Moodle'} file name pattern"
    if _safe_relative(item.file) is None:
        return f"unsafe file name {item.file!r}"
    return how if learner is None else ""


class _Download:
    """The entries of one LMS zip, sorted to learners; what cannot be placed is kept in ``aside``."""

    def __init__(self, archive: zipfile.ZipFile, staging: Path, aside: Path, report: ImportReport) -> None:
        self.archive, self.staging, self.aside, self.report = archive, staging, aside, report
        self.files: dict[str, list[tuple[LmsFile, zipfile.ZipInfo, str]]] = {}

    def keep_aside(self, info: zipfile.ZipInfo, why: str) -> None:
        self.report.unmatched.append((info.filename, why))
        self.report.unmatched_dir = self.aside
        _extract(self.archive, info, self.aside / info.filename.replace("/", "__"))

    def add(self, student: str, item: LmsFile, info: zipfile.ZipInfo, how: str) -> None:
        files = self.files.setdefault(student, [])
        twin = next((k for k, (other, _, _) in enumerate(files) if other.file == item.file), None)
        if twin is not None:
            # one file name twice for one learner: grade the newer, keep the older aside
            older, newer = sorted([files[twin], (item, info, how)], key=lambda f: f[0].modified)
            self.keep_aside(older[1], f"{student} has a newer {item.file} ({newer[1].filename}), which is imported")
            files[twin] = newer
            item, info = newer[0], newer[1]
        else:
            files.append((item, info, how))
        _extract(self.archive, info, self.staging / student / _safe_relative(item.file))


def import_download(workspace: Workspace, assignment: str, download: Path, roster: list[Learner], *,
                    lms: str = "auto", times: dict[str, dt.datetime] | None = None,
                    zip_timezone: str = "UTC") -> ImportReport:
    """Write ``submitted/<student>/<assignment>/`` from an LMS bulk download; returns what was done."""
    from dateutil.tz import gettz

    zone = gettz(zip_timezone)
    if zone is None:
        raise LmsError(f"unknown time zone {zip_timezone!r} for --zip-timezone: use e.g. Europe/Berlin or UTC")
    try:
        archive = zipfile.ZipFile(download)
    except (OSError, zipfile.BadZipFile) as exc:
        raise LmsError(f"{download} is not a readable zip file ({exc}): download it again from the LMS") from None
    report = ImportReport()
    downloaded = workspace.root / "downloaded" / assignment
    learners = {r.id: r for r in roster}
    times = times or {}
    staging = Path(tempfile.mkdtemp(prefix="lms-import-", dir=workspace.root))
    try:
        with archive:
            placed = _Download(archive, staging, downloaded / "unmatched", report)
            for info in archive.infolist():
                if info.is_dir() or _NOISE.search(info.filename):
                    continue
                item = parse_entry(info.filename, lms)
                learner, how = match_learner(item, roster) if item else (None, "")
                why = _unplaced(item, learner, how, lms)
                if why:
                    placed.keep_aside(info, why)
                    continue
                item.modified = _zip_time(info, zone)
                placed.add(learner.id, item, info, how)
        due, own_due = _due_dates(workspace, assignment)
        for student, items in sorted(placed.files.items()):
            given = times.get(student) or times.get(learners[student].lms_user_id)
            when = given or max(i.modified for i, _, _ in items)
            done = Imported(student, sorted(i.file for i, _, _ in items), when, "--times" if given else "zip",
                            any(i.late for i, _, _ in items), how={h for _, _, h in items})
            (staging / student / "timestamp.txt").write_text(f"{when:%Y-%m-%d %H:%M:%S.%f} UTC", encoding="utf-8")
            _check_late(report, done, own_due.get(student, due), items[0][0].lms)
            _place(workspace, assignment, staging / student, done, downloaded)
            report.imported.append(done)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def _extract(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with archive.open(info) as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst)


def _check_late(report: ImportReport, done: Imported, due: dt.datetime | None, lms: str) -> None:
    if due is None:
        if done.late_flag:
            report.checks.append(f"{done.student}: {lms} marks the submission late, but {done.student}'s "
                                 "assignment has no due date in the gradebook: set it with "
                                 "`python -m course_tools deadline`")
        return
    late = done.submitted_at > due
    if done.late_flag and not late:
        report.checks.append(
            f"{done.student}: {lms} marks the submission late, but its time ({utc_text(done.submitted_at)}, from "
            f"{done.time_source}) is not after the due date ({utc_text(due)}), so it costs nothing: give its "
            "submission time with --times")
    elif lms == "canvas" and late and not done.late_flag:
        report.checks.append(
            f"{done.student}: its time ({utc_text(done.submitted_at)}, from {done.time_source}) is after the due "
            f"date ({utc_text(due)}) but Canvas does not mark it late (an extension in Canvas?): grant it with "
            "`python -m course_tools extension`, or give its time with --times")


def _place(workspace: Workspace, assignment: str, staged: Path, done: Imported, downloaded: Path) -> None:
    target = workspace.path("submitted", done.student, assignment)
    if target.exists():
        if _same_files(staged, target):
            done.status = "unchanged"
            return
        stamp = time.strftime("%Y%m%d-%H%M%S")
        kept = downloaded / "replaced" / f"{done.student}-{stamp}"
        for n in range(1, 1000):
            if not kept.exists():
                break
            kept = downloaded / "replaced" / f"{done.student}-{stamp}-{n}"
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(target), str(kept))
        done.status, done.kept = "replaced", str(kept)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(staged, target)


# ----------------------------------------------------------------------------- export

def _number(x: float) -> str:
    return f"{round(x, 2):g}"


def assignment_points(workspace: Workspace, assignments: list[str]) -> tuple[dict[str, float], dict[str, dict]]:
    """(points possible without bonus notebooks, {assignment: {student: score after penalty}}) from the gradebook.

    A learner without a graded submission has no score (an empty cell in the export).
    """
    from nbgrader.api import MissingEntry

    possible, scores = {}, {}
    with workspace.gradebook() as gb:
        for name in assignments:
            try:
                spec = gb.find_assignment(name)
            except MissingEntry:
                raise LmsError(f"assignment {name!r} is not in the gradebook {workspace.db_url}") from None
            bonus = bonus_notebooks(name)
            possible[name] = sum(nb.max_score for nb in spec.notebooks if nb.name not in bonus)
            scores[name] = {}
            for s in spec.submissions:
                graded = any(g.auto_score is not None or g.manual_score is not None
                             for nb in s.notebooks for g in nb.grades)
                if graded:
                    scores[name][s.student.id] = max(0.0, s.score - (s.late_submission_penalty or 0.0))
    return possible, scores


def export_rows(workspace: Workspace, roster: list[Learner], lms: str, assignments: list[str],
                titles: dict[str, str] | None = None) -> tuple[list[list[str]], list[str]]:
    """(CSV rows, warnings): the gradebook in the layout of ``lms``'s gradebook import."""
    titles = titles or {}
    possible, scores = assignment_points(workspace, assignments)
    columns = [titles.get(a, a) for a in assignments]
    on_roster = {r.id for r in roster}
    warnings = [f"{student} has a graded submission of {a} but is not in the roster: add them to the roster "
                "(their grade is not in the file)"
                for a in assignments for student in sorted(scores[a]) if student not in on_roster]
    cells = [[_number(scores[a][r.id]) if r.id in scores[a] else "" for a in assignments] for r in roster]
    if lms == "canvas":
        rows = [["Student", "ID", "SIS User ID", "SIS Login ID", "Section", *columns],
                ["    Points Possible", "", "", "", "", *(_number(possible[a]) for a in assignments)]]
        for r, marks in zip(roster, cells):
            name = f"{r.last_name}, {r.first_name}" if r.last_name and r.first_name else (r.last_name or r.id)
            if not r.lms_user_id and not r.extra.get("sis_user_id"):
                warnings.append(f"{r.id} has neither lms_user_id nor sis_user_id in the roster; Canvas matches "
                                "the row by its SIS Login ID only (the id)")
            rows.append([name, r.lms_user_id, r.extra.get("sis_user_id", ""), r.extra.get("sis_login_id") or r.id,
                         r.extra.get("section", ""), *marks])
    elif lms == "moodle":
        rows = [["First name", "Last name", "Username", "Email address", *columns]]
        rows += [[r.first_name, r.last_name, r.id, r.email, *marks] for r, marks in zip(roster, cells)]
    else:
        raise LmsError(f"unknown LMS {lms!r}: use one of {', '.join(LMS_NAMES)}")
    return rows, warnings


def default_assignments(workspace: Workspace) -> list[str]:
    """The gradebook's assignments, by due date then name (nbgrader's order)."""
    with workspace.gradebook() as gb:
        return [a.name for a in gb.assignments]


# ----------------------------------------------------------------------------- command line

def _course_arguments(parser: Any) -> None:
    parser.add_argument("--roster", required=True,
                        help="CSV with id,first_name,last_name,email,lms_user_id (as for nbgrader db student import)")
    parser.add_argument("--root", default=None, help="nbgrader course folder (default: nbgrader_config.py's)")
    parser.add_argument("--db-url", default=None, help="gradebook URL (default: sqlite in the course folder)")


def add_import_arguments(parser: Any) -> None:
    """Options of ``python -m course_tools lms-import``."""
    parser.add_argument("assignment")
    parser.add_argument("download", help="the zip of all submissions downloaded from Canvas or Moodle")
    parser.add_argument("--lms", choices=("auto", *LMS_NAMES), default="auto",
                        help="which LMS named the files (default: recognise each file)")
    parser.add_argument("--times", default=None,
                        help="CSV of id (or lms_user_id) and submitted_at with time zone; default: the zip's times")
    parser.add_argument("--zip-timezone", default="UTC",
                        help="time zone of the times stored in the zip (default UTC)")
    parser.add_argument("--release-dir", default=None, help="release folder (default: <root>/release)")
    _course_arguments(parser)


def add_export_arguments(parser: Any) -> None:
    """Options of ``python -m course_tools lms-export``."""
    parser.add_argument("assignments", nargs="*", help="assignments to export (default: all in the gradebook)")
    parser.add_argument("--lms", choices=LMS_NAMES, default="canvas", help="column layout (default canvas)")
    parser.add_argument("--out", default=None, help="CSV path (default: <root>/grading_reports/<lms>_grades.csv)")
    parser.add_argument("--title", action="append", default=[], metavar="ASSIGNMENT=COLUMN",
                        help="column title for an assignment, e.g. 01_pen_and_paper='Pen and paper (4711)' to "
                             "fill Canvas's existing column of that name and id")
    _course_arguments(parser)


def _workspace(args: Any) -> Workspace:
    from course_tools.grading.class_grading import course_from_args

    args.release_dir = getattr(args, "release_dir", None)
    return course_from_args(args).workspace()


def import_main(args: Any) -> int:
    """0: everything imported; 1: something is listed to look at; 2: bad input."""
    from course_tools.demo import format_table
    from course_tools.grading.class_grading import preflight_main

    workspace = _workspace(args)
    if not (workspace.release_dir / args.assignment).is_dir():
        print(f"lms-import: no release of {args.assignment} in {workspace.release_dir}: run "
              f"`nbgrader generate_assignment {args.assignment}` first", file=sys.stderr)
        return 2
    try:
        roster = read_roster(Path(args.roster))
        times = read_times(Path(args.times)) if args.times else None
        report = import_download(workspace, args.assignment, Path(args.download), roster, lms=args.lms,
                                 times=times, zip_timezone=args.zip_timezone)
    except LmsError as exc:
        print(f"lms-import: {exc}", file=sys.stderr)
        return 2
    rows = [["student", "files", "submitted (from)", "LMS late flag", "status"]]
    for d in report.imported:
        rows.append([d.student, ", ".join(d.files), f"{utc_text(d.submitted_at)} ({d.time_source})",
                     "LATE" if d.late_flag else "", d.status + (" (matched by name)" if "name" in d.how else "")])
    print(f"{len(report.imported)} submission(s) of {args.assignment} in "
          f"{workspace.root / 'submitted'}/<student>/{args.assignment}:")
    if report.imported:
        print(format_table(rows))
    for d in report.imported:
        if d.kept:
            print(f"  {d.student}: the previous submission is kept in {d.kept}")
    if report.unmatched:
        print(f"\nNot imported, kept in {report.unmatched_dir}:")
        for entry, why in report.unmatched:
            print(f"  - {entry}: {why}")
    if report.checks:
        print("\nCheck:")
        for line in report.checks:
            print(f"  - {line}")
    if report.imported:
        print("\nPreflight (what grade will do with each file):")
        args.students = [d.student for d in report.imported]
        preflight_main(args)
    return 1 if report.unmatched or report.checks else 0


def export_main(args: Any) -> int:
    """0: written; 1: written, with learners or ids missing from the roster; 2: bad input."""
    workspace = _workspace(args)
    titles = {}
    for item in args.title:
        name, sep, title = item.partition("=")
        if not sep or not title:
            print(f"lms-export: --title {item!r} should read ASSIGNMENT=COLUMN", file=sys.stderr)
            return 2
        titles[name] = title
    try:
        roster = read_roster(Path(args.roster))
        assignments = args.assignments or default_assignments(workspace)
        rows, warnings = export_rows(workspace, roster, args.lms, assignments, titles)
    except LmsError as exc:
        print(f"lms-export: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else workspace.root / "grading_reports" / f"{args.lms}_grades.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    print(f"{len(roster)} learner(s), {len(assignments)} assignment(s) ({', '.join(assignments)}) written to {out}")
    for line in warnings:
        print(f"  - {line}")
    return 1 if warnings else 0
