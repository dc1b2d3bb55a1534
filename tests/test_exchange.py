"""nbgrader's exchange on a shared hub, with learners as separate Unix users.

Two learner accounts are created for the test (CI runs as root) and removed
afterwards. The instructor (root) releases the pen-and-paper assignment through
nbgrader's exchange; each learner fetches it, fills it in (one with the
reference answers, one with a bug) and submits it as themselves; the
instructor collects, grades with ``python -m course_tools grade``, generates
and releases feedback; each learner fetches their own feedback. File owners and
modes show that a learner cannot list the other's submission or feedback, nor
read the instructor's course folder.

Learners run the course's Python environment. Where it lies under a folder
others cannot enter (a clone in /root, mode 0700), each learner command runs in
a private mount namespace in which that folder is replaced by an empty one that
holds only the environment and the interpreter, mounted at their usual paths;
nothing else of the instructor's machine is shown or changed.
"""

from __future__ import annotations

import io
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Iterator

import nbformat
import pytest

from course_tools import __main__ as cli
from course_tools.course import Workspace
from course_tools.authoring.examples import EXAMPLES
from course_tools.authoring.submissions import learner_notebook

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creates Unix users for the learners: run as root (CI does)")

ASSIGNMENT = "01_pen_and_paper"
NOTEBOOK = "pen_and_paper"
COURSE_ID = "mytorch"


def _blocked(path: Path) -> Path | None:
    """The topmost folder on the way to ``path`` that other users cannot enter (None: all open)."""
    for parent in reversed(path.parents):
        if parent != Path("/") and not parent.stat().st_mode & stat.S_IXOTH:
            return parent
    return None


class Hub:
    """A course folder, an exchange and learner accounts on this machine."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.course = base / "course"
        self.exchange = base / "exchange"
        self.users: list[str] = []
        self.workspace = Workspace(self.course)
        self.python = Path(sys.prefix).resolve() / "bin" / "python"
        # what a learner's process must reach: the environment and the interpreter it points to
        self.needed = sorted({Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()})
        if _blocked(base):
            pytest.fail(f"{base} is not reachable by other users: set TMPDIR to a folder they can enter")

    def add_learner(self, name: str) -> Path:
        home = self.base / "home" / name
        home.parent.mkdir(exist_ok=True)
        made = subprocess.run(["useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/sh", name],
                              capture_output=True, text=True)
        assert made.returncode == 0, f"useradd {name} failed (package passwd, see install_system_packages.sh): " \
                                     f"{made.stderr}"
        self.users.append(name)
        os.chmod(home, 0o700)
        config = home / ".jupyter" / "nbgrader_config.py"
        config.parent.mkdir()
        # what a hub puts into /etc/jupyter/nbgrader_config.py for every learner
        config.write_text(f"c = get_config()\nc.CourseDirectory.course_id = {COURSE_ID!r}\n"
                          f"c.Exchange.root = {str(self.exchange)!r}\n", encoding="utf-8")
        entry = pwd.getpwnam(name)
        for path in (config.parent, config):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        return home

    def remove_learners(self) -> None:
        for name in self.users:
            subprocess.run(["userdel", name], capture_output=True)
            if subprocess.run(["getent", "group", name], capture_output=True).returncode == 0:
                subprocess.run(["groupdel", name], capture_output=True)

    def as_learners(self, *runs: tuple[str, ...]) -> list[str]:
        """Run the environment's Python as learners, all at once: each run is (user name, *arguments).

        Every process runs in its learner's home, with a learner's environment; returns their outputs.
        """
        started = []
        for name, *argv in runs:
            entry = pwd.getpwnam(name)
            env = {"HOME": entry.pw_dir, "USER": name, "LOGNAME": name, "LANG": "C.UTF-8",
                   "PATH": f"{self.python.parent}:/usr/bin:/bin"}
            command = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups", "--",
                       "env", "-i", *(f"{k}={v}" for k, v in env.items()), str(self.python), *argv]
            blocked = sorted({b for b in map(_blocked, self.needed) if b is not None})
            if blocked:
                command = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-ec",
                           self._mount_script(name, blocked) + " exec " + shlex.join(command)]
            started.append(subprocess.Popen(command, cwd=entry.pw_dir, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, text=True))
        outputs = []
        for (name, *argv), proc in zip(runs, started):
            out, _ = proc.communicate(timeout=300)
            assert proc.returncode == 0, f"{name}: {argv}:\n{out[-3000:]}"
            outputs.append(out)
        return outputs

    def _mount_script(self, name: str, blocked: list[Path]) -> str:
        stage = self.base / "stage" / name
        lines = []
        for k, path in enumerate(self.needed):
            lines += [["mkdir", "-p", stage / str(k)], ["mount", "--bind", path, stage / str(k)]]
        lines += [["mount", "-t", "tmpfs", "-o", "mode=0755", "learner-view", folder] for folder in blocked]
        for k, path in enumerate(self.needed):
            lines += [["mkdir", "-p", path], ["mount", "--bind", stage / str(k), path]]
        return "; ".join(shlex.join(map(str, line)) for line in lines) + ";"

    def instructor(self, step: str, assignment: str) -> None:
        """An nbgrader step (release_assignment, collect, ...) as the instructor, with the course's configuration."""
        api = self.workspace.api
        api.config.Exchange.root = str(self.exchange)
        result = getattr(api, step)(assignment)
        assert result.get("success"), f"{step}: {result.get('error')}\n{result.get('log')}"


@pytest.fixture(scope="module")
def hub() -> Iterator[Hub]:
    base = Path(tempfile.mkdtemp(prefix="mytorch-hub-"))
    os.chmod(base, 0o755)
    hub = Hub(base)
    try:
        yield hub
    finally:
        hub.remove_learners()
        shutil.rmtree(base, ignore_errors=True)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_exchange_round_trip_between_unix_users(hub: Hub):
    suffix = f"{os.getpid() % 100000}"
    ada, ben = f"mtada{suffix}", f"mtben{suffix}"
    homes = {ada: hub.add_learner(ada), ben: hub.add_learner(ben)}

    # instructor: the course folder is theirs alone; release through the exchange
    hub.workspace.generate(ASSIGNMENT)
    os.chmod(hub.course, 0o700)
    hub.instructor("release_assignment", ASSIGNMENT)

    # learners: fetch, fill in, submit, each as themselves
    hub.as_learners(*((name, "-m", "nbgrader", "fetch_assignment", ASSIGNMENT) for name in homes))
    buggy = next(e for e in EXAMPLES if e.student == "transposed_gradient").edits[ASSIGNMENT][NOTEBOOK]
    for name, edits in ((ada, None), (ben, buggy)):
        fetched = homes[name] / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
        assert fetched.stat().st_uid == pwd.getpwnam(name).pw_uid
        nbformat.write(learner_notebook(ASSIGNMENT, NOTEBOOK, edits, release_dir=homes[name]), fetched)
    hub.as_learners(*((name, "-m", "nbgrader", "submit", ASSIGNMENT) for name in homes))

    course_exchange = hub.exchange / COURSE_ID
    inbound, outbound, feedback = (course_exchange / p for p in ("inbound", "outbound", "feedback"))
    submissions = sorted(inbound.iterdir())
    assert sorted(p.name.split("+")[0] for p in submissions) == sorted([ada, ben])
    for folder in submissions:
        owner = pwd.getpwuid(folder.stat().st_uid).pw_name
        assert folder.name.startswith(owner + "+"), "a learner submitted under another's name"
        assert len(folder.name.split("+")) == 4, "nbgrader adds a random part to each submission's name"
    # inbound: everyone may drop a submission in, nobody but the instructor may list it
    assert mode(inbound) == 0o2733
    assert mode(outbound / ASSIGNMENT) == 0o755 and mode(outbound / ASSIGNMENT / f"{NOTEBOOK}.ipynb") == 0o644

    # instructor: collect, grade with the course's command, feedback back through the exchange
    hub.instructor("collect", ASSIGNMENT)
    assert all((hub.course / "submitted" / n / ASSIGNMENT / "timestamp.txt").exists() for n in (ada, ben))
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(["grade", ASSIGNMENT, "--root", str(hub.course), "--workers", "2", "--quiet"])
    assert code == 0 and "2 submission(s) graded" in out.getvalue(), out.getvalue() + err.getvalue()
    hub.instructor("generate_feedback", ASSIGNMENT)
    hub.instructor("release_feedback", ASSIGNMENT)
    assert mode(feedback) == 0o711  # learners find their own file by its secret hash; no listing

    # learners: each fetches only their own feedback
    hub.as_learners(*((name, "-m", "nbgrader", "fetch_feedback", ASSIGNMENT) for name in homes))
    pages = {}
    for name in homes:
        found = sorted((homes[name] / ASSIGNMENT / "feedback").glob("*/*.html"))
        assert [p.name for p in found] == [f"{NOTEBOOK}.html"], found
        pages[name] = found[0].read_text(encoding="utf-8")
    assert f"{NOTEBOOK} (Score: 6.0 / 6.0)" in pages[ada]
    assert f"{NOTEBOOK} (Score: 6.0 / 6.0)" not in pages[ben] and f"{NOTEBOOK} (Score: " in pages[ben]

    # what ben can see of the others: nothing but his own work
    probe = ("import os, sys\n"
             "for path in sys.argv[1:]:\n"
             "    try:\n"
             "        os.listdir(path) if os.path.isdir(path) else open(path, 'rb').read(1)\n"
             "        print('READABLE', path)\n"
             "    except PermissionError:\n"
             "        print('DENIED', path)\n")
    own = [p for p in submissions if p.name.startswith(ben + "+")][0]
    targets = [inbound, feedback, hub.course / "gradebook.db", hub.course / "submitted", homes[ada], own]
    seen = hub.as_learners((ben, "-c", probe, *map(str, targets)))[0]
    assert seen.splitlines() == [f"DENIED {t}" for t in targets[:-1]] + [f"READABLE {own}"], seen
