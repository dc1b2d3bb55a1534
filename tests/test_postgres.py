"""PostgreSQL gradebook (issue: grade a whole class fast and safely).

The tests start their own PostgreSQL server (Debian's ``postgresql`` package,
``scripts/install_system_packages.sh``) in a temporary folder, listening on
127.0.0.1 only, and stop it at the end. Parallel workers, and two grading runs
at once (two staff members), write to it through nbgrader's ``db_url``; the
gradebook must hold every grade, equal to what serial nbgrader writes to SQLite.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from conftest import ASSIGNMENTS
from course_tools.quality.benchmark_grading import gradebook_dump, submit_class, synthetic_class
from course_tools.course import REPO_ROOT, Workspace
from course_tools.grading.class_grading import CourseSpec, GradeOptions, grade_class

pytest.importorskip("psycopg", reason="psycopg[binary] is in requirements.txt: run `make env`")
CLASS_SIZE = 8


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        pytest.fail("PostgreSQL is not installed: run scripts/install_system_packages.sh "
                    "(Debian package postgresql)")
    return Path(found[-1]).parent


def _server_user() -> list[str]:
    """Command prefix that runs PostgreSQL's tools as a non-root user (initdb refuses root)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
    return [shutil.which("runuser") or "/usr/sbin/runuser", "-u", "postgres", "--"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """URL of a fresh database on a PostgreSQL server of our own, stopped afterwards."""
    bin_dir, as_user = _pg_bin(), _server_user()
    base = Path(tempfile.mkdtemp(prefix="mytorch-postgres-"))
    os.chmod(base, 0o755)
    data, sockets, log = base / "data", base / "sockets", base / "server.log"
    for folder in (data, sockets):
        folder.mkdir()
    if as_user:
        for path in (data, sockets, base):
            shutil.chown(path, "postgres")
    port = _free_port()

    def run(*command: str) -> None:
        result = subprocess.run([*as_user, *command], capture_output=True, text=True, cwd=base)
        assert result.returncode == 0, f"{command[0]} failed:\n{result.stdout}\n{result.stderr}\n" + (
            log.read_text() if log.exists() else "")

    run(str(bin_dir / "initdb"), "-D", str(data), "--auth=trust", "--username=grader", "--encoding=UTF8")
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
        f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100", "start")
    try:
        run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "grader", "gradebook")
        yield f"postgresql://grader@127.0.0.1:{port}/gradebook"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, cwd=base)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def serial_sqlite(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The class graded by a plain serial loop of nbgrader's autograde, into SQLite."""
    assignment = ASSIGNMENTS[0]
    ws = Workspace(tmp_path_factory.mktemp("serial"))
    ws.generate(assignment)
    klass = synthetic_class(assignment, ws.release_dir, CLASS_SIZE)
    submit_class(ws, assignment, klass)
    for student in sorted(klass):
        ws.autograde(assignment, student)
    return gradebook_dump(ws.db_url, assignment)


def test_parallel_workers_write_every_grade_to_postgres(postgres_url: str, serial_sqlite: dict, tmp_path: Path):
    assignment = ASSIGNMENTS[0]
    ws = Workspace(tmp_path, db_url=postgres_url)
    ws.generate(assignment)
    submit_class(ws, assignment, synthetic_class(assignment, ws.release_dir, CLASS_SIZE))
    records = grade_class(CourseSpec(str(tmp_path), db_url=postgres_url), assignment, None,
                          GradeOptions(workers=4, progress=False))
    assert [r["status"] for r in records] == ["graded"] * CLASS_SIZE
    assert gradebook_dump(postgres_url, assignment) == serial_sqlite


def test_two_graders_at_once_share_one_postgres_gradebook(postgres_url: str, serial_sqlite: dict, tmp_path: Path):
    """Two staff members grade halves of the class at the same time, each with two workers."""
    assignment = ASSIGNMENTS[0]
    url = postgres_url.rsplit("/", 1)[0] + "/postgres"
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("CREATE DATABASE shared_gradebook")
    shared = postgres_url.rsplit("/", 1)[0] + "/shared_gradebook"
    ws = Workspace(tmp_path, db_url=shared)
    ws.generate(assignment)
    klass = synthetic_class(assignment, ws.release_dir, CLASS_SIZE)
    submit_class(ws, assignment, klass)
    students = sorted(klass)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    graders = [subprocess.Popen([sys.executable, "-m", "course_tools", "grade", assignment, *half, "--root",
                                 str(tmp_path), "--db-url", shared, "--workers", "2", "--quiet"],
                                cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for half in (students[::2], students[1::2])]
    for grader in graders:
        out, err = grader.communicate(timeout=900)
        assert grader.returncode == 0, out[-2000:] + err[-2000:]
    assert gradebook_dump(shared, assignment) == serial_sqlite
