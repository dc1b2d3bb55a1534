"""Due dates, extensions and late penalties, all kept in nbgrader's gradebook.

nbgrader 0.9.6 already knows most of this (``docs/nbgrader_facts.md``, *Deadlines*):
an assignment has a ``duedate``, a learner's submission an ``extension``, and
``autograde`` reads ``timestamp.txt`` from the submission and asks the plugin of
its ``AssignLatePenalties`` step for each notebook's penalty. This module adds

- :class:`LatePenaltyPerDay`, the course's late policy as such a plugin (a share of
  the notebook's points per started day, never more than the points), switched on
  in ``nbgrader_config.py``;
- ``python -m course_tools deadline ASSIGNMENT WHEN`` and
  ``python -m course_tools extension ASSIGNMENT STUDENT --days N``, which write the
  gradebook and then recompute the penalties of submissions already graded with
  nbgrader's own ``AssignLatePenalties`` step, so that no notebook has to run again;
- :func:`late_status`, what the summary table, the CSV and the LMS export show.
"""

from __future__ import annotations

import datetime as dt
import math
import sys
from typing import Any

from nbgrader.plugins import LateSubmissionPlugin
from traitlets import Float

from course_tools.course import Workspace

DAY = 86400.0


class LatePenaltyPerDay(LateSubmissionPlugin):
    """Late policy: ``percent_per_day`` of the notebook's points for every started day late.

    A notebook that earned 8 points, handed in 26 hours late with the default 10 %,
    loses 2 x 0.8 = 1.6 points; ten started days or more cost all its points (a score is
    never pushed below 0). ``grace_minutes`` after the due date count as on time.
    """

    percent_per_day = Float(10.0, help="Share of the notebook's points lost per started day late, in percent"
                            ).tag(config=True)
    grace_minutes = Float(0.0, help="Minutes after the due date that still count as on time").tag(config=True)

    def late_submission_penalty(self, student_id: str, score: float, total_seconds_late: float) -> float:
        return late_penalty(score or 0.0, total_seconds_late, self.percent_per_day, self.grace_minutes)


def started_days(seconds_late: float, grace_minutes: float = 0.0) -> int:
    """Started days late: 1 s late is 1 day, exactly 24 h late is 1 day, 24 h + 1 s is 2 days."""
    seconds = seconds_late - 60.0 * grace_minutes
    return 0 if seconds <= 0 else math.ceil(seconds / DAY)


def late_penalty(score: float, seconds_late: float, percent_per_day: float, grace_minutes: float = 0.0) -> float:
    """Points taken off a notebook that earned ``score`` points, ``seconds_late`` after its due date."""
    days = started_days(seconds_late, grace_minutes)
    return round(min(score, score * percent_per_day / 100.0 * days), 6) if score > 0 else 0.0


# ----------------------------------------------------------------------------- times

class BadTime(ValueError):
    """A date and time that cannot be read without guessing."""


def parse_time(text: str) -> dt.datetime:
    """A date and time with its time zone, as naive UTC (how nbgrader stores times).

    Accepts ``2026-10-15 23:59 Europe/Berlin``, ``2026-10-15 23:59 UTC`` and ISO 8601
    with an offset (``2026-10-15T23:59:00+02:00``). A time without a zone is refused:
    the gradebook, the hub and the LMS may all sit in different zones.
    """
    from dateutil import parser
    from dateutil.tz import UTC, gettz

    words = text.strip().split()
    zone = None
    if len(words) >= 2 and not any(ch.isdigit() for ch in words[-1]):
        zone = UTC if words[-1].upper() in ("UTC", "Z", "GMT") else gettz(words[-1])
        if zone is None:
            raise BadTime(f"unknown time zone {words[-1]!r} in {text!r}: use a name such as Europe/Berlin, "
                          "America/New_York or UTC")
        words = words[:-1]
    try:
        when = parser.parse(" ".join(words))
    except (ValueError, OverflowError) as exc:
        raise BadTime(f"cannot read {text!r} as a date and time ({exc}): write e.g. "
                      "'2026-10-15 23:59 Europe/Berlin'") from None
    if zone is not None:
        if when.tzinfo is not None:
            raise BadTime(f"{text!r} has both an offset and a time zone name: give only one")
        when = when.replace(tzinfo=zone)
    if when.tzinfo is None:
        raise BadTime(f"{text!r} has no time zone: write e.g. '{text.strip()} UTC' or "
                      f"'{text.strip()} Europe/Berlin'")
    return when.astimezone(dt.timezone.utc).replace(tzinfo=None)


def utc_text(when: dt.datetime | None) -> str:
    return "none" if when is None else f"{when:%Y-%m-%d %H:%M:%S} UTC"


def duration_text(seconds: float) -> str:
    """``2 d 3 h``, ``5 h 12 min``, ``40 s``."""
    seconds = int(round(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


# ----------------------------------------------------------------------------- gradebook

class DeadlineError(RuntimeError):
    """The gradebook has no such assignment or submission; the message says what to run."""


def _find_assignment(gb: Any, workspace: Workspace, assignment: str) -> Any:
    from nbgrader.api import MissingEntry

    try:
        return gb.find_assignment(assignment)
    except MissingEntry:
        raise DeadlineError(f"assignment {assignment!r} is not in the gradebook {workspace.db_url}: run "
                            f"`nbgrader generate_assignment {assignment}` first") from None


def reapply_penalties(workspace: Workspace, assignment: str, students: list[str] | None = None) -> None:
    """Recompute the late penalties of graded submissions with nbgrader's own ``AssignLatePenalties``.

    The step autograde runs last reads the submission's timestamp, due date and extension
    and the notebook's score from the gradebook and writes the penalty back; it ignores
    the notebook's cells, so running it on an empty notebook gives what a new autograde
    would give, without running any learner code.
    """
    import nbformat
    from nbgrader.preprocessors import AssignLatePenalties

    with workspace.gradebook() as gb:
        spec = _find_assignment(gb, workspace, assignment)
        todo = [(s.student.id, nb.name) for s in spec.submissions for nb in s.notebooks
                if s.timestamp is not None and (students is None or s.student.id in students)]
    step = AssignLatePenalties(config=workspace.api.config)
    for student, notebook in todo:
        resources = {"nbgrader": {"notebook": notebook, "assignment": assignment, "student": student,
                                  "db_url": workspace.db_url}}
        step.preprocess(nbformat.v4.new_notebook(), resources)


def set_due_date(workspace: Workspace, assignment: str, when: dt.datetime | None) -> None:
    """Set (or with None remove) the assignment's due date; graded submissions get new penalties."""
    with workspace.gradebook() as gb:
        spec = _find_assignment(gb, workspace, assignment)
        extended = sorted(s.student.id for s in spec.submissions if s.extension is not None)
        if when is None and extended:
            # nbgrader adds an extension to the due date: without one, it cannot compute lateness
            raise DeadlineError(f"{len(extended)} learner(s) of {assignment} have an extension "
                                f"({', '.join(extended)}); remove them first (`python -m course_tools extension "
                                f"{assignment} STUDENT --remove`) or set a new due date instead")
        gb.update_or_create_assignment(assignment, duedate=when)
    reapply_penalties(workspace, assignment)


def grant_extension(workspace: Workspace, assignment: str, student: str, extension: dt.timedelta | None) -> None:
    """Give ``student`` ``extension`` past the assignment's due date (None removes it).

    nbgrader keeps extensions on the submission, so a learner who has not submitted yet
    gets an empty submission row now; autograde fills it in later.
    """
    from nbgrader.api import MissingEntry

    with workspace.gradebook() as gb:
        spec = _find_assignment(gb, workspace, assignment)
        if spec.duedate is None:
            raise DeadlineError(f"{assignment} has no due date, so an extension means nothing: set one with "
                                f"`python -m course_tools deadline {assignment} '2026-10-15 23:59 Europe/Berlin'`")
        try:
            submission = gb.find_submission(assignment, student)
        except MissingEntry:
            gb.update_or_create_student(student)
            submission = gb.add_submission(assignment, student)
        submission.extension = extension
        gb.db.commit()
    reapply_penalties(workspace, assignment, [student])


def late_status(workspace: Workspace, assignment: str) -> dict[str, dict[str, Any]]:
    """Per student with a submission row: due date (with extension), submission time, lateness, penalty."""
    with workspace.gradebook() as gb:
        spec = _find_assignment(gb, workspace, assignment)
        result = {}
        for s in spec.submissions:
            result[s.student.id] = {
                "due": s.duedate, "extension": s.extension, "submitted_at": s.timestamp,
                "seconds_late": float(s.total_seconds_late), "late_penalty": float(s.late_submission_penalty or 0.0),
                "notebook_penalties": {nb.name: float(nb.late_submission_penalty or 0.0) for nb in s.notebooks},
            }
    return result


def late_note(status: dict[str, Any] | None) -> str:
    """``-1.2 (2 d 3 h late)``, ``late 5 min, no points to lose``, or ``""`` for an on-time submission."""
    if not status or status["seconds_late"] <= 0:
        return ""
    late = duration_text(status["seconds_late"])
    if status["late_penalty"] > 0:
        return f"-{status['late_penalty']:g} ({late} late)"
    return f"{late} late, no penalty"


def late_columns(score: float, status: dict[str, Any] | None) -> dict[str, str]:
    """The CSV columns of :data:`course_tools.grading.export.LATE_COLUMNS` for one student."""
    status = status or {"submitted_at": None, "seconds_late": 0.0, "late_penalty": 0.0}
    return {"submitted_at": "" if status["submitted_at"] is None else utc_text(status["submitted_at"]),
            "seconds_late": f"{status['seconds_late']:g}", "late_penalty": f"{status['late_penalty']:g}",
            "score_after_penalty": f"{max(0.0, score - status['late_penalty']):g}"}


# ----------------------------------------------------------------------------- command line

def add_deadline_arguments(parser: Any) -> None:
    """Options of ``python -m course_tools deadline``."""
    parser.add_argument("assignment")
    parser.add_argument("when", nargs="?", default=None,
                        help="due date with its time zone, e.g. '2026-10-15 23:59 Europe/Berlin' "
                             "(omit to show the due date and extensions)")
    parser.add_argument("--remove", action="store_true", help="remove the due date (nothing is late any more)")
    _course_arguments(parser)


def add_extension_arguments(parser: Any) -> None:
    """Options of ``python -m course_tools extension``."""
    parser.add_argument("assignment")
    parser.add_argument("student", help="the learner's id in the gradebook (their hub user name)")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--days", type=float, help="extension in days after the assignment's due date")
    group.add_argument("--hours", type=float, help="extension in hours after the assignment's due date")
    group.add_argument("--until", help="the learner's own due date, e.g. '2026-10-18 12:00 Europe/Berlin'")
    group.add_argument("--remove", action="store_true", help="remove the learner's extension")
    _course_arguments(parser)


def _course_arguments(parser: Any) -> None:
    parser.add_argument("--root", default=None, help="nbgrader course folder (default: nbgrader_config.py's)")
    parser.add_argument("--db-url", default=None, help="gradebook URL (default: sqlite in the course folder)")


def _workspace(args: Any) -> Workspace:
    from course_tools.grading.class_grading import course_from_args

    args.release_dir = None
    return course_from_args(args).workspace()


def _print_status(workspace: Workspace, assignment: str) -> None:
    from course_tools.demo import format_table

    with workspace.gradebook() as gb:
        due = _find_assignment(gb, workspace, assignment).duedate
    print(f"{assignment}: due {utc_text(due)}")
    rows = [["student", "own due date", "submitted", "late", "penalty"]]
    for student, s in sorted(late_status(workspace, assignment).items()):
        if s["extension"] is None and s["submitted_at"] is None:
            continue
        own = utc_text(s["due"]) + (" (extension)" if s["extension"] else "")
        submitted = "not graded yet" if s["submitted_at"] is None else utc_text(s["submitted_at"])
        rows.append([student, own, submitted,
                     duration_text(s["seconds_late"]) if s["seconds_late"] > 0 else "",
                     f"{s['late_penalty']:g}" if s["late_penalty"] else ""])
    if len(rows) > 1:
        print(format_table(rows))


def deadline_main(args: Any) -> int:
    """Show or set an assignment's due date; 2 on bad input."""
    workspace = _workspace(args)
    try:
        if args.remove or args.when:
            set_due_date(workspace, args.assignment, None if args.remove else parse_time(args.when))
        _print_status(workspace, args.assignment)
    except (BadTime, DeadlineError) as exc:
        print(f"deadline: {exc}", file=sys.stderr)
        return 2
    if args.remove or args.when:
        print("Penalties of graded submissions were recomputed; run `nbgrader generate_feedback "
              f"{args.assignment} --force` (and release_feedback) so that the feedback shows them.")
    return 0


def extension_main(args: Any) -> int:
    """Give one learner an extension; 2 on bad input."""
    workspace = _workspace(args)
    try:
        if args.remove:
            extension = None
        elif args.until:
            with workspace.gradebook() as gb:
                due = _find_assignment(gb, workspace, args.assignment).duedate
            if due is None:
                raise DeadlineError(f"{args.assignment} has no due date yet: set it with "
                                    f"`python -m course_tools deadline {args.assignment} WHEN`")
            extension = parse_time(args.until) - due
            if extension <= dt.timedelta(0):
                raise DeadlineError(f"{args.until!r} is not after the due date ({utc_text(due)})")
        else:
            amount = args.days if args.days is not None else args.hours / 24.0
            if amount <= 0:
                raise DeadlineError("an extension must be longer than 0: use --remove to take one back")
            extension = dt.timedelta(days=amount)
        grant_extension(workspace, args.assignment, args.student, extension)
        _print_status(workspace, args.assignment)
    except (BadTime, DeadlineError) as exc:
        print(f"extension: {exc}", file=sys.stderr)
        return 2
    return 0
