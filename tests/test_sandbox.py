"""The grading sandbox (issue: grade a whole class fast and safely).

Student code runs in a bubblewrap sandbox: it sees and writes only its own
working copy (plus a private /tmp), reads the Python installation,
``mytorch_lib`` and ``course_tools.hidden`` read-only, reaches no network and
no grader secret, and is bounded in memory, processes, file size and time.
The memory and process checks also run under limits the test sets on its own
process tree (``prlimit``), so a broken sandbox cannot take the machine down.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest

from course_tools.course import REPO_ROOT
from course_tools.grading.sandbox import SandboxSettings, probe, run_sandboxed

SMALL = SandboxSettings(memory_mb=1024, max_processes=64, file_size_mb=1, wall_clock_cap=60)


@pytest.fixture(scope="module", autouse=True)
def sandbox_available():
    probe()  # fails with what to install: CI installs bubblewrap (scripts/install_system_packages.sh)


@pytest.fixture
def course(tmp_path: Path) -> dict[str, Path]:
    """A course folder with a gradebook, a source folder, two students' work, and one working copy."""
    root = tmp_path / "course"
    (root / "source" / "a").mkdir(parents=True)
    (root / "source" / "a" / "secret.ipynb").write_text("hidden tests", encoding="utf-8")
    (root / "gradebook.db").write_text("hidden tests", encoding="utf-8")
    (root / "submitted" / "other" / "a").mkdir(parents=True)
    (root / "submitted" / "other" / "a" / "work.ipynb").write_text("their answers", encoding="utf-8")
    work = root / "autograded" / "me" / "a"
    work.mkdir(parents=True)
    return {"root": root, "work": work}


def run_cells(work: Path, *sources: str, settings: SandboxSettings = SMALL) -> tuple[list[str], dict]:
    """Run code cells in the sandbox; returns each cell's last line of output, and the kernel status."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb, status = run_sandboxed(nb, work, settings, cell_timeout=30)
    results = []
    for cell in nb.cells:
        texts = [o.get("text", "") if o.output_type == "stream" else f"{o.get('ename')}: {o.get('evalue')}"
                 for o in cell.get("outputs", []) if o.output_type in ("stream", "error")]
        results.append("".join(texts).strip().split("\n")[-1] if texts else "")
    return results, status


TRY_READ = """
import os
def attempt(path):
    try:
        if os.path.isdir(path):
            return "LISTED " + ",".join(os.listdir(path))
        with open(path) as f:
            return "READ " + f.read(20)
    except OSError as exc:
        return type(exc).__name__
print(attempt({!r}))
"""


def test_kernel_sees_only_its_working_copy(course):
    root, work = course["root"], course["work"]
    targets = [root / "gradebook.db", root / "source" / "a" / "secret.ipynb", root / "submitted" / "other" / "a",
               REPO_ROOT / "source", REPO_ROOT / "nbgrader_config.py", REPO_ROOT / "course_tools" / "course.py",
               REPO_ROOT / "tests", Path.home() / ".bash_history", root]
    results, _ = run_cells(work, *(TRY_READ.format(str(t)) for t in targets))
    for target, result in zip(targets, results):
        if target == root:  # the course folder exists only as the path to the working copy
            assert result == "LISTED autograded", (target, result)
        else:
            assert result in ("FileNotFoundError", "PermissionError"), (target, result)


def test_the_kernel_sees_the_probes_read_only_and_nothing_else_of_the_grader(course):
    verdicts = REPO_ROOT / "course_tools" / "hidden" / "verdicts"
    results, _ = run_cells(
        course["work"],
        "import mytorch_lib, course_tools.hidden.probes.kit; print('imported')",
        f"open({str(REPO_ROOT / 'course_tools' / 'hidden' / 'probes' / 'planted.py')!r}, 'w')",
        f"open({str(REPO_ROOT / 'mytorch_lib' / '__init__.py')!r}, 'a')",
        "import os; print(sorted(os.listdir(os.path.dirname(course_tools.__file__))))",
        "import os; print(sorted(os.listdir(os.path.dirname(course_tools.hidden.__file__))))",
        "import course_tools.hidden.verdicts.reference",
        TRY_READ.format(str(verdicts / "reference.py")),
        TRY_READ.format(str(verdicts)),
    )
    assert results[0] == "imported"
    assert results[1].startswith("OSError") and "Read-only" in results[1]
    assert results[2].startswith(("OSError", "PermissionError")), results[2]
    assert results[3] == "['__init__.py', 'hidden']"
    assert results[4] == "['__init__.py', 'probes']"
    assert results[5].startswith("ModuleNotFoundError"), results[5]
    assert results[6] == results[7] == "FileNotFoundError", results[6:]


def test_writes_land_only_in_the_working_copy(course):
    root, work = course["root"], course["work"]
    results, _ = run_cells(
        work,
        "open('answer.txt', 'w').write('mine'); print('ok')",
        "open('/tmp/scratch.txt', 'w').write('x'); print('ok')",
        f"open({str(root / 'planted.txt')!r}, 'w')",
        f"open({str(work.parent / 'planted.txt')!r}, 'w')",
        "open('/usr/planted.txt', 'w')",
        "import os; os.symlink('/etc/passwd', 'next_notebook.ipynb'); print('linked')",
        "import os; print(os.getuid())",
    )
    assert results[:2] == ["ok", "ok"]
    assert all(r.split(":")[0] in ("PermissionError", "FileNotFoundError", "OSError") for r in results[2:5]), results
    assert results[5] == "linked"
    if os.geteuid() == 0:
        assert int(results[6]) >= SandboxSettings.uid_base, "the kernel must not run as root"
    assert (work / "answer.txt").read_text(encoding="utf-8") == "mine"
    assert not (root / "planted.txt").exists() and not (work.parent / "planted.txt").exists()
    assert not os.path.lexists(work / "next_notebook.ipynb"), "links planted by student code are removed"


def test_no_network_and_no_grader_secrets(course, monkeypatch):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(20)
    port = server.getsockname()[1]
    accepted: list[object] = []

    def serve() -> None:
        try:
            accepted.append(server.accept())
        except OSError:
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    monkeypatch.setenv("PGPASSWORD", "instructor-secret")
    monkeypatch.setenv("MYTORCH_DB_URL", "postgresql://grader:instructor-secret@db/course")
    results, _ = run_cells(
        course["work"],
        f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5)",
        "import socket; socket.create_connection(('1.1.1.1', 80), timeout=5)",
        "import socket; socket.getaddrinfo('pypi.org', 443)",
        "import os; print(sorted(k for k, v in os.environ.items() if 'secret' in v or k.startswith(('PG', 'JPY'))))",
    )
    server.close()
    thread.join(timeout=5)
    assert not accepted, "the sandbox reached a server on the grader's loopback"
    assert results[0].startswith("ConnectionRefusedError"), results[0]
    assert results[1].startswith("OSError") and "unreachable" in results[1], results[1]
    assert results[2].startswith("gaierror"), results[2]
    assert results[3] == "[]"


BOUNDED = """
import os, time
children = 0
try:
    while children < 2000:  # finite even without any limit
        pid = os.fork()
        if pid == 0:
            time.sleep(20)
            os._exit(0)
        children += 1
except OSError as exc:
    print(f"fork refused after {children}: {exc.strerror}")
else:
    print(f"no limit: {children} children")
"""

HOG = """
blocks = []
try:
    for _ in range(64):  # at most 8 GiB, in 128 MiB steps
        blocks.append(bytearray(128 * 2**20))
    print("no limit")
except MemoryError:
    print(f"MemoryError after {len(blocks) * 128} MiB")
"""


def _bounded_run(tmp_path: Path, source: str) -> tuple[list[str], dict]:
    """Run one cell through ``python -m course_tools.grading.sandbox`` under the test's own limits."""
    path = tmp_path / "work" / "nb.ipynb"
    path.parent.mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)]), path)
    result = subprocess.run(
        ["prlimit", "--nproc=512", f"--as={12 * 2**30}", "--fsize=" + str(2**30), "--",
         sys.executable, "-m", "course_tools.grading.sandbox", str(path), "--memory-mb", "1024", "--max-processes", "64",
         "--cell-timeout", "60", "--json", str(tmp_path / "out.json")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    texts = ["".join(o.get("text", "") for o in cell) for cell in data["outputs"]]
    return texts, data["status"]


def test_process_limit_stops_a_fork_bomb(tmp_path: Path):
    texts, status = _bounded_run(tmp_path, BOUNDED)
    assert texts[0].startswith("fork refused after"), texts
    assert int(texts[0].split()[3].rstrip(":")) < 64
    assert not status["capped"]


def test_memory_limit_stops_a_memory_hog(tmp_path: Path):
    texts, status = _bounded_run(tmp_path, HOG)
    assert texts[0].startswith("MemoryError after"), texts
    assert int(texts[0].split()[2]) < 1024
    assert status["returncode"] == 0


def test_file_size_limit(course):
    results, _ = run_cells(course["work"], "open('big.bin', 'wb').write(b'x' * 3 * 2**20)")
    assert results[0].startswith("OSError") and "too large" in results[0].lower(), results


def test_time_cap_and_exit_codes_are_reported(course):
    quick = SandboxSettings(memory_mb=1024, wall_clock_cap=4)
    _, status = run_cells(course["work"], "import time; time.sleep(60)", settings=quick)
    assert status["capped"] and "time limit of 4 s" in status["reason"]
    _, status = run_cells(course["work"], "import os; os._exit(3)")
    assert status["returncode"] == 3 and "code 3" in status["reason"]
    _, status = run_cells(course["work"], "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert "SIGKILL" in status["reason"] and "out of memory" in status["reason"]
