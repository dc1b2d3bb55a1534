"""A term with the kit: deadlines and late penalties, an LMS bulk download in, grades out to the LMS.

One small course (the pen-and-paper assignment) goes through what an
instructor does after the deadline when submissions come from Canvas: set the
due date, import Canvas's zip (renamed and late files, a learner the roster
knows only by name, a stranger and a stray file), grade with ``grade``, give
one learner an extension, write feedback and export the gradebook for Canvas
and Moodle. ``grade`` must store the same timestamps and penalties as plain
``nbgrader autograde`` of the same files. The exchange round trip between Unix
users is in ``test_exchange.py``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import shutil
import zipfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import nbformat
import pytest

from course_tools import __main__ as cli
from course_tools.term import lms
from course_tools.quality.benchmark_grading import gradebook_dump
from course_tools.course import Workspace, load_config
from course_tools.term.deadlines import LatePenaltyPerDay, late_penalty, late_status, parse_time, started_days, BadTime
from course_tools.authoring.examples import EXAMPLES
from course_tools.grading.engine import PREFLIGHTED
from course_tools.authoring.submissions import learner_notebook

ASSIGNMENT = "01_pen_and_paper"
NOTEBOOK = "pen_and_paper"
DUE = "2026-10-15 23:59 Europe/Berlin"  # 21:59 UTC
ROSTER = """id,first_name,last_name,email,lms_user_id,section
jdoe,Jane,Doe,jane@uni.example,1001,A
bsmith,Bob,Smith,bob@uni.example,1002,A
achen,Ann,Chen,ann@uni.example,,B
"""


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


def notebook_bytes(edits=None) -> bytes:
    return nbformat.writes(learner_notebook(ASSIGNMENT, NOTEBOOK, edits)).encode()


def canvas_zip(path: Path) -> Path:
    """What Canvas's "Download Submissions" gives, with the zip's times in UTC."""
    buggy = next(e for e in EXAMPLES if e.student == "transposed_gradient").edits[ASSIGNMENT][NOTEBOOK]
    entries = [
        # on time
        ("doejane_1001_5001_pen_and_paper.ipynb", (2026, 10, 15, 20, 0, 0), notebook_bytes()),
        # 26 h late, uploaded twice so Canvas renamed it
        ("smithbob_LATE_1002_5002_pen_and_paper-1.ipynb", (2026, 10, 17, 0, 0, 0), notebook_bytes()),
        # the roster has no Canvas id for Ann: matched by her name
        ("chenann_1003_5003_pen_and_paper.ipynb", (2026, 10, 15, 21, 0, 0), notebook_bytes(buggy)),
        # a learner missing from the roster, and a file no LMS named
        ("whoknows_9999_5004_pen_and_paper.ipynb", (2026, 10, 15, 12, 0, 0), notebook_bytes()),
        ("notes.txt", (2026, 10, 15, 12, 0, 0), b"stray file"),
    ]
    with zipfile.ZipFile(path, "w") as z:
        for name, when, data in entries:
            z.writestr(zipfile.ZipInfo(name, when), data)
    return path


# ----------------------------------------------------------------------------- the policy

def test_penalty_per_started_day_never_below_zero():
    assert started_days(0) == 0 and started_days(1) == 1 and started_days(86400) == 1 and started_days(86401) == 2
    assert started_days(600, grace_minutes=15) == 0 and started_days(901, grace_minutes=15) == 1
    assert late_penalty(6.0, 1, 10) == pytest.approx(0.6)
    assert late_penalty(6.0, 26 * 3600, 10) == pytest.approx(1.2)
    assert late_penalty(6.0, 30 * 86400, 10) == 6.0
    assert late_penalty(0.0, 5 * 86400, 10) == 0.0 and late_penalty(6.0, 0, 10) == 0.0
    # the course's configuration switches it on for nbgrader's AssignLatePenalties step
    config = load_config()
    assert config.AssignLatePenalties.plugin_class is LatePenaltyPerDay
    assert config.LatePenaltyPerDay.percent_per_day == 10.0


def test_times_need_a_zone():
    assert parse_time(DUE) == dt.datetime(2026, 10, 15, 21, 59)
    assert parse_time("2026-10-15T23:59:00+02:00") == dt.datetime(2026, 10, 15, 21, 59)
    with pytest.raises(BadTime, match="no time zone"):
        parse_time("2026-10-15 23:59")
    with pytest.raises(BadTime, match="unknown time zone"):
        parse_time("2026-10-15 23:59 Mars/Olympus")


def test_lms_file_names():
    canvas = lms.parse_entry("smithbob_LATE_1002_5002_1_layers-1.ipynb")
    assert (canvas.lms, canvas.name, canvas.lms_id, canvas.file, canvas.late) == (
        "canvas", "smithbob", "1002", "1_layers-1.ipynb", True)
    moodle = lms.parse_entry("Jane Doe_4711_assignsubmission_file_/2_mlp.ipynb")
    assert (moodle.lms, moodle.name, moodle.lms_id, moodle.file, moodle.late) == (
        "moodle", "Jane Doe", "4711", "2_mlp.ipynb", False)
    assert lms.parse_entry("Jane Doe_4711_assignsubmission_file_2_mlp.ipynb").file == "2_mlp.ipynb"
    assert lms.parse_entry("pen_and_paper.ipynb") is None
    assert lms.parse_entry("doejane_1001_5001_x.ipynb", "moodle") is None


def test_roster_errors_name_the_fix(tmp_path: Path):
    bad = tmp_path / "roster.csv"
    bad.write_text("user,name\njdoe,Jane\n", encoding="utf-8")
    with pytest.raises(lms.LmsError, match="no 'id' column"):
        lms.read_roster(bad)
    bad.write_text("id,lms_user_id\njdoe,1\nbsmith,1\n", encoding="utf-8")
    with pytest.raises(lms.LmsError, match="lms_user_id '1' appears twice"):
        lms.read_roster(bad)


# ----------------------------------------------------------------------------- one course through the term

@pytest.fixture(scope="module")
def term(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("term")
    root = base / "course"
    ws = Workspace(root)
    ws.generate(ASSIGNMENT)
    roster = base / "roster.csv"
    roster.write_text(ROSTER, encoding="utf-8")
    code, out, err = run("deadline", ASSIGNMENT, DUE, "--root", str(root))
    assert code == 0, err
    assert "due 2026-10-15 21:59:00 UTC" in out

    # a submission that an import must not lose
    old = ws.path("submitted", "jdoe", ASSIGNMENT)
    old.mkdir(parents=True)
    (old / "pen_and_paper.ipynb").write_text("an earlier upload", encoding="utf-8")
    code, imported, err = run("lms-import", ASSIGNMENT, str(canvas_zip(base / "canvas.zip")),
                              "--roster", str(roster), "--root", str(root))
    code_grade, graded, err_grade = run("grade", ASSIGNMENT, "--root", str(root), "--workers", "2", "--quiet")
    assert code_grade == 0, graded + err_grade
    return {"ws": ws, "root": root, "roster": roster, "base": base, "import": (code, imported, err),
            "graded": graded}


def test_canvas_download_lands_in_submitted_and_nothing_is_dropped(term):
    ws, (code, out, err) = term["ws"], term["import"]
    assert code == 1, out + err  # something is listed to look at
    for student in ("jdoe", "bsmith", "achen"):
        assert (ws.path("submitted", student, ASSIGNMENT) / "timestamp.txt").exists()
    late = ws.path("submitted", "bsmith", ASSIGNMENT)
    assert (late / "pen_and_paper-1.ipynb").exists()
    assert (late / "timestamp.txt").read_text() == "2026-10-17 00:00:00.000000 UTC"
    assert "matched by name" in out and "LATE" in out
    # the preflight maps Canvas's renamed notebook back to its release name
    assert "bsmith/pen_and_paper: repaired: pen_and_paper-1.ipynb is graded as pen_and_paper.ipynb" in out
    # the stranger and the stray file are listed and kept
    unmatched = ws.root / "downloaded" / ASSIGNMENT / "unmatched"
    assert "whoknows_9999_5004_pen_and_paper.ipynb: canvas id 9999 ('whoknows') is not in the roster" in out
    assert "notes.txt: the name fits no Canvas or Moodle file name pattern" in out
    assert sorted(p.name for p in unmatched.iterdir()) == ["notes.txt", "whoknows_9999_5004_pen_and_paper.ipynb"]
    # jdoe's earlier upload was replaced, and kept
    kept = list((ws.root / "downloaded" / ASSIGNMENT / "replaced").glob("jdoe-*/pen_and_paper.ipynb"))
    assert [p.read_text() for p in kept] == ["an earlier upload"]
    # importing the same zip again changes nothing
    again = run("lms-import", ASSIGNMENT, str(term["base"] / "canvas.zip"), "--roster", str(term["roster"]),
                "--root", str(ws.root))[1]
    assert again.count("unchanged") == 3


def test_grade_applies_the_late_penalty_like_plain_nbgrader(term, tmp_path: Path):
    ws, out = term["ws"], term["graded"]
    status = late_status(ws, ASSIGNMENT)
    assert status["bsmith"]["seconds_late"] == 26 * 3600 + 60
    assert status["bsmith"]["late_penalty"] == pytest.approx(1.2)  # 2 started days x 10 % of 6
    assert status["jdoe"]["late_penalty"] == 0 and status["achen"]["late_penalty"] == 0
    assert "-1.2 (1 d 2 h late)" in out
    rows = {r["student"]: r for r in csv.DictReader((ws.root / "grading_reports" / f"{ASSIGNMENT}.csv").open())}
    assert (rows["bsmith"]["score"], rows["bsmith"]["late_penalty"], rows["bsmith"]["score_after_penalty"]) == (
        "6", "1.2", "4.8")
    assert rows["bsmith"]["submitted_at"] == "2026-10-17 00:00:00 UTC"

    # plain nbgrader autograde of the files grade graded, with the same due date, stores the same
    plain = Workspace(tmp_path / "plain")
    plain.generate(ASSIGNMENT)
    assert run("deadline", ASSIGNMENT, DUE, "--root", str(plain.root))[0] == 0
    for student in ("jdoe", "bsmith", "achen"):
        shutil.copytree(ws.root / PREFLIGHTED / student / ASSIGNMENT, plain.path("submitted", student, ASSIGNMENT))
        plain.autograde(ASSIGNMENT, student)
    assert gradebook_dump(plain.db_url, ASSIGNMENT) == gradebook_dump(ws.db_url, ASSIGNMENT)


def test_extension_recomputes_the_penalty_and_feedback_shows_it(term):
    ws = term["ws"]
    code, out, err = run("extension", ASSIGNMENT, "bsmith", "--days", "1", "--root", str(ws.root))
    assert code == 0, err
    status = late_status(ws, ASSIGNMENT)["bsmith"]
    assert status["due"] == dt.datetime(2026, 10, 16, 21, 59)
    assert status["late_penalty"] == pytest.approx(0.6)  # 2 h past the extension: 1 started day
    assert "(extension)" in out
    ws.feedback(ASSIGNMENT, "bsmith")
    page = (ws.root / "feedback" / "bsmith" / ASSIGNMENT / f"{NOTEBOOK}.html").read_text(encoding="utf-8")
    assert "Late submission penalty (Score: -0.6)" in page
    # an extension for a learner with nothing graded yet is one command too, and bad input is refused
    assert run("extension", ASSIGNMENT, "latecomer", "--hours", "12", "--root", str(ws.root))[0] == 0
    assert late_status(ws, ASSIGNMENT)["latecomer"]["due"] == dt.datetime(2026, 10, 16, 9, 59)
    code, _, err = run("extension", ASSIGNMENT, "bsmith", "--until", "2026-10-15 12:00 UTC", "--root", str(ws.root))
    assert code == 2 and "not after the due date" in err
    code, _, err = run("deadline", ASSIGNMENT, "soon UTC", "--root", str(ws.root))
    assert code == 2 and "cannot read 'soon UTC'" in err
    code, _, err = run("deadline", ASSIGNMENT, "--remove", "--root", str(ws.root))
    assert code == 2 and "have an extension (bsmith, latecomer)" in err
    assert late_status(ws, ASSIGNMENT)["bsmith"]["late_penalty"] == pytest.approx(0.6)


def test_moodle_download_in_folders(tmp_path: Path):
    ws = Workspace(tmp_path / "course")
    ws.generate(ASSIGNMENT)
    roster = tmp_path / "roster.csv"
    roster.write_text(ROSTER, encoding="utf-8")
    with zipfile.ZipFile(tmp_path / "moodle.zip", "w") as z:
        # Moodle's participant ids are not the roster's: the names decide
        z.writestr(zipfile.ZipInfo("Jane Doe_88001_assignsubmission_file_/pen_and_paper.ipynb",
                                   (2026, 10, 15, 23, 0, 0)), notebook_bytes())
        # the same file twice (flat and in a folder): the newer is graded, the older kept aside
        z.writestr(zipfile.ZipInfo("Jane Doe_88001_assignsubmission_file_pen_and_paper.ipynb",
                                   (2026, 10, 14, 9, 0, 0)), b"an older upload")
        z.writestr(zipfile.ZipInfo("Bob Smith_88002_assignsubmission_file_/Copy of pen_and_paper.ipynb",
                                   (2026, 10, 15, 22, 0, 0)), notebook_bytes())
        z.writestr(zipfile.ZipInfo("Bob Smith_88002_assignsubmission_file_/sketch.png", (2026, 10, 16, 1, 30, 0)),
                   b"png")
    times = tmp_path / "times.csv"
    times.write_text("id,submitted_at\njdoe,2026-10-15 23:10 Europe/Berlin\n", encoding="utf-8")
    code, out, err = run("lms-import", ASSIGNMENT, str(tmp_path / "moodle.zip"), "--roster", str(roster),
                         "--times", str(times), "--zip-timezone", "Europe/Berlin", "--root", str(ws.root))
    assert code == 1, out + err
    assert ("Jane Doe_88001_assignsubmission_file_pen_and_paper.ipynb: jdoe has a newer pen_and_paper.ipynb "
            "(Jane Doe_88001_assignsubmission_file_/pen_and_paper.ipynb), which is imported") in out
    kept = ws.root / "downloaded" / ASSIGNMENT / "unmatched" / (
        "Jane Doe_88001_assignsubmission_file_pen_and_paper.ipynb")
    assert kept.read_bytes() == b"an older upload"
    jdoe, bsmith = (ws.path("submitted", s, ASSIGNMENT) for s in ("jdoe", "bsmith"))
    assert (jdoe / "pen_and_paper.ipynb").read_bytes() == notebook_bytes()
    assert (jdoe / "timestamp.txt").read_text() == "2026-10-15 21:10:00.000000 UTC"  # from --times
    assert (bsmith / "timestamp.txt").read_text() == "2026-10-15 23:30:00.000000 UTC"  # newest file, zip's zone
    assert sorted(p.name for p in bsmith.iterdir()) == ["Copy of pen_and_paper.ipynb", "sketch.png", "timestamp.txt"]
    assert "Copy of pen_and_paper.ipynb is graded as pen_and_paper.ipynb" in out
    code, _, err = run("lms-import", ASSIGNMENT, str(roster), "--roster", str(roster), "--root", str(ws.root))
    assert code == 2 and "is not a readable zip file" in err


def test_lms_export_canvas_and_moodle(term, monkeypatch):
    ws, roster = term["ws"], term["roster"]
    out_file = term["base"] / "canvas.csv"
    code, out, err = run("lms-export", "--roster", str(roster), "--lms", "canvas", "--out", str(out_file),
                         "--root", str(ws.root))
    assert code == 1 and "achen has neither lms_user_id nor sis_user_id" in out, out + err
    rows = list(csv.reader(out_file.open(encoding="utf-8")))
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", ASSIGNMENT]
    assert rows[1] == ["    Points Possible", "", "", "", "", "6"]
    by_login = {r[3]: r for r in rows[2:]}
    assert by_login["jdoe"] == ["Doe, Jane", "1001", "", "jdoe", "A", "6"]
    late = float(late_status(ws, ASSIGNMENT)["bsmith"]["late_penalty"])
    assert float(by_login["bsmith"][5]) == pytest.approx(6 - late)
    assert 0 < float(by_login["achen"][5]) < 6

    moodle_file = term["base"] / "moodle.csv"
    assert run("lms-export", "--roster", str(roster), "--lms", "moodle", "--out", str(moodle_file),
               "--root", str(ws.root), ASSIGNMENT)[0] == 0
    moodle = list(csv.DictReader(moodle_file.open(encoding="utf-8")))
    assert [(r["Username"], r["Email address"], r[ASSIGNMENT]) for r in moodle][0] == ("jdoe", "jane@uni.example", "6")

    # a bonus notebook's points count in the score, not in the points possible
    monkeypatch.setattr(lms, "bonus_notebooks", lambda assignment: {NOTEBOOK})
    rows, _ = lms.export_rows(ws, lms.read_roster(roster), "canvas", [ASSIGNMENT])
    assert rows[1][5] == "0" and rows[2][5] == "6"
