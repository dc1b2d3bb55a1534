"""Grading on a Dask cluster (issue: one grading engine, from a laptop to a cluster).

A Dask scheduler and two ``dask worker`` processes run on loopback, as they would
on a cluster's machines, and the gradebook is a PostgreSQL server of the test's
own. The synthetic class of every assignment is graded through the same code as
``python -m course_tools grade A --scheduler tcp://...``; while the NumPy library
is being graded, one worker process is killed with SIGKILL in the middle of a
submission. Every grade must equal what serial nbgrader writes, every submission
must come back to the coordinator exactly once, and a second run grades nothing.
"""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from collections import Counter
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import ASSIGNMENTS, CLASS_SIZE
from course_tools import __main__ as cli
from course_tools.course import REPO_ROOT, Workspace
from course_tools.grading.class_grading import grade_class
from course_tools.grading.engine import CourseSpec, GradeOptions, GradingRefused, load_record
from course_tools.grading.export import gradebook_rows
from course_tools.grading.schedulers import DaskScheduler, is_loopback
from course_tools.quality.benchmark_grading import (gradebook_dump, loopback_dask_cluster, submit_class,
                                                   synthetic_class)
from postgres_server import free_port, running_postgres

pytest.importorskip("distributed", reason="distributed is in requirements.txt: run `make env`")
#: the assignment during whose grading a worker is killed: the one with the longest submissions
VICTIM = max(ASSIGNMENTS, key=lambda a: len(list((REPO_ROOT / "source" / a).glob("*.ipynb"))))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A Dask scheduler and two worker processes on loopback, and a PostgreSQL gradebook server."""
    with running_postgres() as db_url:
        with loopback_dask_cluster(2, tmp_path_factory.mktemp("dask"), dashboard=True) as dask:
            yield {"address": dask["address"], "db_url": db_url, "dashboard": dask["dashboard"]}


class Killer(threading.Thread):
    """Waits until a worker is a few seconds into a grading task, then kills that worker process (SIGKILL)."""

    def __init__(self, address: str, settle: float = 3.0) -> None:
        super().__init__(daemon=True)
        self.address, self.settle = address, settle
        self.killed: dict[str, Any] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        from distributed import Client

        with Client(self.address, set_as_default=False) as client:
            while not self.stop.is_set():
                busy = {w: keys for w, keys in client.processing().items() if keys}
                if busy:
                    worker, keys = sorted(busy.items())[0]
                    time.sleep(self.settle)  # well inside the task: nbgrader and a kernel are running
                    if keys[0] not in client.processing().get(worker, ()):
                        continue
                    pid = client.run(os.getpid, workers=[worker])[worker]
                    os.kill(pid, signal.SIGKILL)
                    self.killed = {"pid": pid, "key": keys[0], "worker": worker}
                    return
                time.sleep(0.2)


def test_dask_cluster_grades_every_assignment_like_serial_nbgrader_despite_a_killed_worker(
        cluster: dict[str, str], serial_grades, tmp_path: Path):
    address, db_url = cluster["address"], cluster["db_url"]
    ws = Workspace(tmp_path / "course", db_url=db_url)
    course = CourseSpec(str(ws.root), db_url=db_url)
    for assignment in ASSIGNMENTS:
        ws.generate(assignment)
        submit_class(ws, assignment, synthetic_class(assignment, ws.release_dir, CLASS_SIZE))
    returned: Counter = Counter()

    def count(record: dict[str, Any]) -> None:
        returned[(record["assignment"], record["student"])] += 1

    # The first assignment through the command line, as an instructor types it.
    first = ASSIGNMENTS[0]
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(["grade", first, "--root", str(ws.root), "--db-url", db_url, "--scheduler", address])
    assert code == 0, out.getvalue() + err.getvalue()
    assert f"Dask dashboard: http://{cluster['dashboard']}/status" in err.getvalue()
    assert f"{CLASS_SIZE} submission(s) graded" in out.getvalue()
    assert gradebook_dump(db_url, first) == serial_grades.dump(first)

    killer = Killer(address)
    for assignment in ASSIGNMENTS[1:]:
        if assignment == VICTIM:
            killer.start()
        records = grade_class(course, assignment, None, GradeOptions(progress=False),
                              scheduler=DaskScheduler(address), on_record=count)
        killer.stop.set()
        assert [r["status"] for r in records] == ["graded"] * CLASS_SIZE, [r.get("reason") for r in records]
        assert gradebook_dump(db_url, assignment) == serial_grades.dump(assignment), assignment

    # The grader's numbers come back in the records and reach the CSV (the example model's test accuracy).
    assert ASSIGNMENTS[-1] == "04_torch_classification"
    columns, rows = gradebook_rows(ws, ASSIGNMENTS[-1], {r["student"]: r for r in records})
    accuracy = {row["student"]: row.get("torch_classification/test_accuracy", "") for row in rows}
    assert "torch_classification/test_accuracy" in columns and float(accuracy["reference_000"]) >= 0.9
    assert float(accuracy["reference_000"]) == pytest.approx(
        next(r for r in records if r["student"] == "reference_000")["notebooks"]["torch_classification"]
        ["numbers"]["test_accuracy"], abs=1e-6)

    # The kill landed mid-task; that submission was graded again by a live worker, and returned once.
    assert killer.killed, "no worker was busy long enough to be killed"
    victim = next(s for s in {k[1] for k in returned if k[0] == VICTIM} if f"-{s}-" in killer.killed["key"])
    assert load_record(ws.root, VICTIM, victim)["worker"].split(":")[1] != str(killer.killed["pid"])
    assert sorted(returned.values()) == [1] * (CLASS_SIZE * (len(ASSIGNMENTS) - 1))

    # A second run of the command grades nothing: every record is up to date.
    again = grade_class(course, VICTIM, None, GradeOptions(progress=False), scheduler=DaskScheduler(address))
    assert all(r.get("skipped") for r in again) and len(again) == CLASS_SIZE


def test_sqlite_gradebook_is_refused_for_workers_on_other_machines(tmp_path: Path):
    ws = Workspace(tmp_path)
    ws.generate(ASSIGNMENTS[0])
    with pytest.raises(GradingRefused, match="PostgreSQL"):
        grade_class(CourseSpec(str(tmp_path)), ASSIGNMENTS[0], None, GradeOptions(progress=False),
                    scheduler=DaskScheduler("tcp://192.0.2.10:8786"))
    assert is_loopback("tcp://127.0.0.1:8786") and is_loopback("tcp://localhost:1") and is_loopback("[::1]:8786")
    assert not is_loopback("tcp://grading-head.example.org:8786")


def test_unreachable_scheduler_is_refused_with_how_to_start_one(tmp_path: Path):
    ws = Workspace(tmp_path)
    ws.generate(ASSIGNMENTS[0])
    submit_class(ws, ASSIGNMENTS[0], synthetic_class(ASSIGNMENTS[0], ws.release_dir, 1))
    with pytest.raises(GradingRefused, match="dask scheduler"):
        grade_class(CourseSpec(str(tmp_path)), ASSIGNMENTS[0], None, GradeOptions(progress=False),
                    scheduler=DaskScheduler(f"tcp://127.0.0.1:{free_port()}", connect_timeout=2))
