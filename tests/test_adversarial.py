"""Adversarial submissions, graded as they deserve (issue: grade a whole class fast and safely).

One class of hostile or broken submissions is graded in one run of
``python -m course_tools grade`` (sandboxed, two workers), under limits this
test sets on its own process tree with ``prlimit`` (address space, processes,
file size) and a wall-clock timeout, so that a failing sandbox cannot take the
machine down. The fork bomb and the memory hog are also finite by
construction. Each submission starts from the reference solution (or the
bundled buggy example) of the assignment's first notebook.

Set ``MYTORCH_ADVERSARIAL_ALL=1`` to run the suite on every assignment
(default: the first one, which grades in seconds).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import nbformat
import pytest

from conftest import ASSIGNMENTS
from course_tools.quality.benchmark_grading import half_done
from course_tools.course import REPO_ROOT, Workspace, notebooks
from course_tools.authoring.examples import EXAMPLES
from course_tools.grading.engine import load_record
from course_tools.grading.sandbox import probe
from course_tools.authoring.submissions import learner_notebook, write_submission

SUITE_ASSIGNMENTS = ASSIGNMENTS if os.environ.get("MYTORCH_ADVERSARIAL_ALL") else ASSIGNMENTS[:1]
MARK = "# adversarial cell"
NOTEBOOK_TIMEOUT = 40

READ_ATTEMPTS = MARK + """
import json, os
def attempt(path):
    try:
        if os.path.isdir(path):
            return "LISTED " + ",".join(sorted(os.listdir(path))[:5])
        with open(path, "rb") as f:
            return "READ %d bytes" % len(f.read())
    except OSError as exc:
        return type(exc).__name__
course = os.path.abspath(os.path.join(os.getcwd(), "..", "..", ".."))
print(json.dumps({p: attempt(p) for p in TARGETS}))
"""

GRADER_DETECTOR = MARK + """
import os, json
found = []
if os.environ.get("NBGRADER_EXECUTION"):
    for top in ("/", "/tmp", "/root", "/home", "/work", os.path.dirname(os.getcwd())):
        for folder, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if d not in ("usr", "proc", "sys", "dev", ".venv", "site-packages")]
            if folder.count("/") > 8:
                dirs[:] = []
            for name in files:
                if name.endswith((".db", ".ipynb")) and not folder.startswith(os.getcwd()):
                    try:
                        with open(os.path.join(folder, name), "rb") as f:
                            found.append(os.path.join(folder, name) + ": " + f.read(200).decode("latin-1"))
                    except OSError:
                        pass
print(json.dumps({"grading": bool(os.environ.get("NBGRADER_EXECUTION")), "found": found}))
"""

SOCKETS = MARK + """
import json, socket
result = {}
for host, port in (("127.0.0.1", PORT), ("1.1.1.1", 80)):
    try:
        socket.create_connection((host, port), timeout=5).close()
        result[host] = "connected"
    except OSError as exc:
        result[host] = type(exc).__name__
print(json.dumps(result))
"""

ENDLESS_LOOP = MARK + """
import signal
signal.signal(signal.SIGINT, signal.SIG_IGN)  # deaf to nbgrader's interrupt
while True:
    pass
"""

FORK_BOMB = MARK + """
import os, time
children = 0
try:
    while children < 2000:  # finite even without any limit
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        children += 1
    print("no limit")
except OSError as exc:
    print(f"fork refused after {children} children")
"""

MEMORY_HOG = MARK + """
blocks = []
try:
    for _ in range(64):  # at most 8 GiB, in 128 MiB steps
        blocks.append(bytearray(128 * 2**20))
    print("no limit")
except MemoryError:
    print(f"MemoryError after {len(blocks) * 128} MiB")
blocks = None
"""

PATCH_NUMPY = MARK + """
import numpy as np
np.allclose = lambda *args, **kwargs: True
np.isclose = lambda *args, **kwargs: True
np.testing.assert_allclose = lambda *args, **kwargs: None
"""

PATCH_BUILTINS = MARK + """
import builtins
builtins.abs = lambda value: 0
builtins.round = lambda value, digits=None: value
"""


def _with_cell(nb: Any, source: str) -> Any:
    """``nb`` with ``source`` as a new code cell right after its first code cell."""
    nb = copy.deepcopy(nb)
    first = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    cell = nbformat.v4.new_code_cell(source)
    cell["id"] = "adversarial"
    nb.cells.insert(first + 1, cell)
    return nb


def _slow(nb: Any, cells: int, seconds: int) -> Any:
    for _ in range(cells):
        nb = _with_cell(nb, f"{MARK}\nimport time\ntime.sleep({seconds})")
    for k, cell in enumerate(c for c in nb.cells if c.get("id") == "adversarial"):
        cell["id"] = f"adversarial{k}"
    return nb


def _strip(nb: Any) -> Any:
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
    return nb


def _delete_first_test(nb: Any) -> Any:
    nb = copy.deepcopy(nb)
    first = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade"))
    del nb.cells[first]
    return nb


def buggy(assignment: str, notebook: str, release_dir: Path) -> Any:
    """The bundled buggy example of this notebook if there is one, else the half-done submission."""
    for example in EXAMPLES:
        if notebook in example.edits.get(assignment, {}):
            return learner_notebook(assignment, notebook, example.edits[assignment][notebook],
                                    release_dir=release_dir)
    return half_done(assignment, notebook, release_dir)


def build_class(ws: Workspace, assignment: str, port: int) -> dict[str, str]:
    """Write the adversarial class into submitted/; returns {student: what it does}."""
    names = [nb.stem for nb in notebooks(assignment)]
    first = names[0]
    reference = {n: learner_notebook(assignment, n, release_dir=ws.release_dir) for n in names}
    wrong = {**reference, first: buggy(assignment, first, ws.release_dir)}
    targets = [str(ws.root / "gradebook.db"), str(REPO_ROOT / "source"), str(ws.root / "submitted" / "reference"),
               str(ws.root / "autograded" / "reference"), str(REPO_ROOT / "nbgrader_config.py"),
               str(REPO_ROOT / "course_tools" / "course.py"), str(ws.root / "instructor_notes.txt")]
    (ws.root / "instructor_notes.txt").write_text("private", encoding="utf-8")
    read = READ_ATTEMPTS.replace("TARGETS", repr(targets))
    plan: dict[str, tuple[str, dict[str, Any], Callable[[Any], Any] | None]] = {
        "reference": ("the reference solution", reference, None),
        "buggy": ("the buggy example, no tricks", wrong, None),
        "patched_numpy": ("buggy, np.allclose & co. always agree", wrong, lambda nb: _with_cell(nb, PATCH_NUMPY)),
        "patched_builtins": ("buggy, abs and round patched", wrong,
                             lambda nb: _with_cell(nb, PATCH_BUILTINS)),
        "grader_detector": ("buggy; when NBGRADER_EXECUTION is set, hunts for gradebooks and notebooks", wrong,
                            lambda nb: _with_cell(nb, GRADER_DETECTOR)),
        "file_reader": ("reads the gradebook, source/, another student, the course code", reference,
                        lambda nb: _with_cell(nb, read)),
        "socket": ("connects to the grader's loopback and to the internet", reference,
                   lambda nb: _with_cell(nb, SOCKETS.replace("PORT", str(port)))),
        "endless_loop": ("an endless loop that ignores interrupts", reference,
                         lambda nb: _with_cell(nb, ENDLESS_LOOP)),
        "slow_cells": ("five cells of 9 s each: every cell within its timeout, the notebook over its cap",
                       reference, lambda nb: _slow(nb, 5, 9)),
        "fork_bomb": ("forks until refused (at most 2000)", reference, lambda nb: _with_cell(nb, FORK_BOMB)),
        "memory_hog": ("allocates until refused (at most 8 GiB)", reference, lambda nb: _with_cell(nb, MEMORY_HOG)),
        "os_exit": ("calls os._exit(1)", reference, lambda nb: _with_cell(nb, "import os\nos._exit(1)")),
        "stripped": ("nbgrader metadata stripped (Colab-style)", reference, _strip),
        "deleted_test": ("first test cell deleted", reference, _delete_first_test),
        "renamed": ("notebook saved as 'Copy of ...'", reference, None),
        "corrupt": ("notebook is not valid JSON", reference, None),
    }
    for student, (_, nbs, change) in plan.items():
        nbs = dict(nbs)
        if change is not None:
            nbs[first] = change(nbs[first])
        folder = write_submission(ws.path("submitted", student, assignment), nbs,
                                  release_folder=ws.release_dir / assignment)
        if student == "renamed":
            (folder / f"{first}.ipynb").rename(folder / f"Copy of {first}.ipynb")
        if student == "corrupt":
            (folder / f"{first}.ipynb").write_text('{"cells": [{"cell_type": "code", "sou', encoding="utf-8")
    return {student: what for student, (what, _, _) in plan.items()}


def adversarial_output(ws: Workspace, student: str, assignment: str, notebook: str) -> str:
    """Text output of the adversarial cell in the autograded notebook."""
    nb = nbformat.read(ws.path("autograded", student, assignment) / f"{notebook}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith(MARK))
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream").strip()


def all_outputs(ws: Workspace, student: str, assignment: str, notebook: str) -> str:
    nb = nbformat.read(ws.path("autograded", student, assignment) / f"{notebook}.ipynb", as_version=4)
    return json.dumps([c.get("outputs", []) for c in nb.cells if c.cell_type == "code"])


@pytest.fixture(scope="module", params=SUITE_ASSIGNMENTS)
def graded(request, tmp_path_factory: pytest.TempPathFactory):
    probe()
    assignment = request.param
    ws = Workspace(tmp_path_factory.mktemp("adversarial"))
    ws.generate(assignment)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(1)
    accepted: list[Any] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept())
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    plan = build_class(ws, assignment, server.getsockname()[1])
    # The test's own bounds on everything grading starts: 12 GiB of address space per
    # process, 1024 processes for the sandbox users, 1 GiB files, and a wall clock.
    command = ["prlimit", "--nproc=1024", f"--as={12 * 2**30}", f"--fsize={2**30}", "--",
               sys.executable, "-m", "course_tools", "grade", assignment, "--root", str(ws.root), "--workers", "2",
               "--notebook-timeout", str(NOTEBOOK_TIMEOUT), "--cell-timeout", "10", "--memory-mb", "1536",
               "--max-processes", "128", "--quiet"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    stop.set()
    thread.join(timeout=5)
    server.close()
    records = {s: load_record(ws.root, assignment, s) for s in plan}
    return {"ws": ws, "assignment": assignment, "records": records, "plan": plan, "result": result,
            "accepted": accepted, "first": notebooks(assignment)[0].stem}


def _score(g: dict, student: str) -> float:
    return g["records"][student]["score"]


def test_every_submission_has_a_record_and_the_run_reports_failures(graded):
    result = graded["result"]
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]  # failures exist: exit code 1
    assert all(graded["records"].values()), "every submission is recorded"
    for student in graded["plan"]:
        assert student in result.stdout, f"{student} missing from the summary table"
    assert "Needs attention" in result.stdout


def test_reference_full_marks_and_hostile_cells_cost_nothing_else(graded):
    full = graded["records"]["reference"]["max_score"]
    assert _score(graded, "reference") == full > 0
    for student in ("file_reader", "socket", "memory_hog", "stripped", "deleted_test", "renamed"):
        record = graded["records"][student]
        assert record["status"] == "graded", (student, record)
        assert _score(graded, student) == full, (student, record["notebooks"])


def test_patched_numpy_or_builtins_do_not_raise_a_score(graded):
    buggy_score = _score(graded, "buggy")
    assert buggy_score < graded["records"]["buggy"]["max_score"], "the buggy example must lose points"
    for student in ("patched_numpy", "patched_builtins", "grader_detector"):
        assert _score(graded, student) <= buggy_score, student
    for student in ("patched_numpy", "patched_builtins"):  # verdicts are decided outside the kernel
        outputs = all_outputs(graded["ws"], student, graded["assignment"], graded["first"])
        assert "vnd.mytorch.record" not in outputs, f"{student}: a raw record was left in the notebook"


def test_student_code_reads_nothing_it_should_not(graded):
    ws, assignment, first = graded["ws"], graded["assignment"], graded["first"]
    attempts = json.loads(adversarial_output(ws, "file_reader", assignment, first))
    assert attempts and all(v in ("FileNotFoundError", "PermissionError") for v in attempts.values()), attempts
    detector = json.loads(adversarial_output(ws, "grader_detector", assignment, first))
    assert detector["grading"] is True
    assert detector["found"] == [], "the grader detector found files outside its working copy"


def test_no_network(graded):
    ws, assignment, first = graded["ws"], graded["assignment"], graded["first"]
    result = json.loads(adversarial_output(ws, "socket", assignment, first))
    assert result == {"127.0.0.1": "ConnectionRefusedError", "1.1.1.1": "OSError"}, result
    assert graded["accepted"] == [], "a kernel reached the grader's loopback"


def test_fork_bomb_and_memory_hog_are_stopped_by_the_sandbox(graded):
    ws, assignment, first = graded["ws"], graded["assignment"], graded["first"]
    forks = adversarial_output(ws, "fork_bomb", assignment, first)
    assert forks.startswith("fork refused after") and int(forks.split()[3]) < 128, forks
    # Its sleeping children hold the process budget until the notebook ends, so later cells that
    # need a thread fail: the learner's own notebook pays, nobody else does.
    assert graded["records"]["fork_bomb"]["status"] == "graded"
    memory = adversarial_output(ws, "memory_hog", assignment, first)
    assert memory.startswith("MemoryError after") and int(memory.split()[2]) < 1536, memory


def test_dead_and_hung_kernels_are_recorded_with_the_reason(graded):
    first = graded["first"]
    loop = graded["records"]["endless_loop"]
    assert loop["status"] == "failed"
    reason = loop["notebooks"][first]["reason"]
    assert "per-cell timeout" in reason or f"time limit of {NOTEBOOK_TIMEOUT} s" in reason, reason
    slow = graded["records"]["slow_cells"]
    assert slow["status"] == "failed"
    assert f"time limit of {NOTEBOOK_TIMEOUT} s" in slow["notebooks"][first]["reason"]
    exited = graded["records"]["os_exit"]
    assert exited["status"] == "failed"
    assert "exited with code 1" in exited["notebooks"][first]["reason"]
    for record in (loop, slow, exited):  # the other notebooks of the submission were graded
        others = {n: nb for n, nb in record["notebooks"].items() if n != first}
        assert all(nb["status"] == "graded" and nb["score"] == nb["max_score"] for nb in others.values())


def test_broken_files_are_repaired_or_reported(graded):
    records, first = graded["records"], graded["first"]
    kinds = {s: {(f["kind"], f["action"]) for f in records[s]["preflight"]["findings"]} for s in records}
    assert ("metadata_stripped", "repaired") in kinds["stripped"]
    assert ("cell_deleted", "repaired") in kinds["deleted_test"]
    assert ("renamed", "repaired") in kinds["renamed"]
    assert ("unreadable", "problem") in kinds["corrupt"]
    corrupt = records["corrupt"]
    assert corrupt["status"] == "problems" and corrupt["notebooks"][first]["status"] == "not submitted"
    assert "corrupt" in graded["result"].stdout and "not valid JSON" in graded["result"].stdout


# ================================================================== the grader out of the learner's reach
#
# One class of submissions of the NumPy assignment's first notebook (1_layers; the other notebooks are
# not submitted), graded by `python -m course_tools grade` with feedback and, for the attacks on the
# grader's code, also by plain `nbgrader autograde`. Each attack starts from the reference solution or
# from the bundled `linear_bug` example (the honest buggy submission it must not outscore).

ISOLATION_ASSIGNMENT = "02_numpy_library"
ISOLATION_NOTEBOOK = "1_layers"
GRADER_FILES = REPO_ROOT / "course_tools" / "hidden"
VERDICT_FILES = GRADER_FILES / "verdicts"

INHERIT = MARK + """
try:
    from course_tools.hidden.verdicts import reference
except ImportError:
    from course_tools.hidden import reference
"""

IMPORTLIB = MARK + """
import importlib.util, os
reference = None
for path in PATHS:
    try:
        spec = importlib.util.spec_from_file_location("stolen", path)
        reference = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(reference)
        break
    except (OSError, AttributeError, ImportError):
        reference = None
if reference is None:  # search the whole disk for it
    for folder, dirs, files in os.walk("/"):
        dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
        if "reference.py" in files and "course_tools" in folder:
            spec = importlib.util.spec_from_file_location("stolen", os.path.join(folder, "reference.py"))
            reference = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(reference)
            break
"""

#: a recorded run of the reference solution (default seeds), replayed in place of the learner's own results
REPLAY = MARK + """
import json
from course_tools.hidden.probes import kit
_RECORDS = json.loads(RECORDS_JSON)
_publish = kit.Probe.publish
def _replayed(self, forge_seed=FORGE):
    stolen = _RECORDS.get(self.behaviour)
    if stolen is not None:
        self.items = stolen["items"]
        if forge_seed:
            self.seed = int(stolen["seed"])
    return _publish(self)
kit.Probe.publish = _replayed
"""

SILENCE = MARK + """
from course_tools.hidden.probes import kit
kit.Probe.publish = lambda self: None
"""

PATCH_PROBES = MARK + """
import numpy as np
from course_tools.hidden.probes import kit
kit.rng = lambda seed: np.random.default_rng(0)          # inputs the learner can predict
np.random.default_rng = lambda *args, **kwargs: np.random.Generator(np.random.PCG64(0))
kit.Probe.seconds = lambda self, key, fn, repeats=3: self.items.__setitem__(key, kit.encode(1e-6))
"""

FRAME_THIEF = """
class Linear:
    def __init__(self, in_features, out_features):
        self.W = np.zeros((out_features, in_features))
        self.b = np.zeros((out_features, 1))

    def forward(self, A):
        import sys
        self.A, self.N = A, A.shape[0]
        wanted, found = (A.shape[0], self.W.shape[0]), None
        frame = sys._getframe(1)
        while frame is not None:   # look for the expected output anywhere up the call stack
            for value in list(frame.f_locals.values()):
                if isinstance(value, np.ndarray) and value.shape == wanted and value is not A:
                    found = value
            frame = frame.f_back
        return found if found is not None else np.zeros(wanted)

    def backward(self, dLdZ):
        self.dLdW = dLdZ.T @ self.A
        self.dLdb = dLdZ.sum(axis=0, keepdims=True).T
        return dLdZ @ self.W
"""

FILE_PRINTER = MARK + """
import os
seen = []
for folder, dirs, files in os.walk("/"):
    dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev", "usr") and not d.startswith("python")
               and d not in ("site-packages", ".venv", "lib")]
    for name in files:
        path = os.path.join(folder, name)
        if name.endswith((".py", ".npz", ".json", ".db", ".toml", "secret")) and not path.startswith(os.getcwd()):
            seen.append(path)
print("SEEN", seen)
for path in sorted(seen, key=lambda p: "probes" not in p):  # grader files first, before any truncation
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            print(f.read())
    except OSError:
        pass
"""


def _answer_cells(assignment: str, notebook: str) -> dict[str, list[str]]:
    """{grade_id of an answer cell: names of the classes it defines} (from the source notebook)."""
    import ast

    source = nbformat.read(REPO_ROOT / "source" / assignment / f"{notebook}.ipynb", as_version=4)
    cells = {}
    for cell in source.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("solution") and not meta.get("grade"):
            text = "\n".join(line for line in cell.source.split("\n") if "SOLUTION" not in line)
            names = [n.name for n in ast.parse(text).body if isinstance(n, ast.ClassDef)]
            if names:
                cells[meta["grade_id"]] = names
    return cells


def _no_own_code(assignment: str, notebook: str, release_dir: Path, preamble: str) -> Any:
    """A submission that writes no class of its own: every class subclasses the grader's reference one."""
    edits = {}
    for grade_id, names in _answer_cells(assignment, notebook).items():
        solution = next(c.source for c in nbformat.read(REPO_ROOT / "source" / assignment / f"{notebook}.ipynb",
                                                        as_version=4).cells
                        if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
        text = "\n".join(line for line in solution.split("\n") if "SOLUTION" not in line)
        edits[grade_id] = (text, "\n".join(f"class {n}(reference.{n}):\n    pass" for n in names))
    return _with_cell(learner_notebook(assignment, notebook, edits, release_dir=release_dir), preamble)


def _recorded_reference_run(assignment: str, notebook: str) -> dict[str, Any]:
    """{check name: record} of the reference solution, run in this process with the default seeds."""
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from learner_cells import run_as_notebook
    from course_tools.hidden.probes import kit

    namespace = run_as_notebook(assignment, notebook)
    records: dict[str, Any] = {}
    source = nbformat.read(REPO_ROOT / "source" / assignment / f"{notebook}.ipynb", as_version=4)
    for cell in source.cells:
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("grade"):
            kit.SINK = sink = []
            try:
                exec(compile(cell.source, cell.id, "exec"), namespace)
            except Exception:  # noqa: BLE001 (only the records matter here)
                pass
            finally:
                kit.SINK = None
            for record in sink:
                records[record["behaviour"]] = record
    return records


def build_isolation_class(ws: Workspace) -> dict[str, tuple[str, Any]]:
    a, n, release = ISOLATION_ASSIGNMENT, ISOLATION_NOTEBOOK, ws.release_dir
    reference = learner_notebook(a, n, release_dir=release)
    honest_bug = buggy(a, n, release)
    recorded = json.dumps(_recorded_reference_run(a, n))
    old_paths = [str(VERDICT_FILES / "reference.py"), str(GRADER_FILES / "reference.py")]
    thief_cell = next(g for g, names in _answer_cells(a, n).items() if "Linear" in names)
    thief_text = "\n".join(line for line in next(
        c.source for c in nbformat.read(REPO_ROOT / "source" / a / f"{n}.ipynb", as_version=4).cells
        if c.metadata.get("nbgrader", {}).get("grade_id") == thief_cell).split("\n") if "SOLUTION" not in line)
    plan = {
        "reference": ("the reference solution", reference),
        "buggy": ("the linear_bug example: dLdW transposed", honest_bug),
        "inherits": ("no code of its own: every class inherits the grader's reference class",
                     _no_own_code(a, n, release, INHERIT)),
        "importlib": ("no code of its own: loads the reference file with importlib, searching the disk",
                      _no_own_code(a, n, release, IMPORTLIB.replace("PATHS", repr(old_paths)))),
        "replays": ("buggy; replays a recorded right run into every probe's record (the seed left as given)",
                    _with_cell(honest_bug, REPLAY.replace("RECORDS_JSON", repr(recorded)).replace("FORGE", "False"))),
        "forges_seed": ("buggy; replays a recorded right run with the seed it was recorded under",
                        _with_cell(honest_bug, REPLAY.replace("RECORDS_JSON", repr(recorded)).replace("FORGE", "True"))),
        "silences": ("buggy; stops the probes from publishing", _with_cell(honest_bug, SILENCE)),
        "patches_probes": ("buggy; patches the probes' generators and timer", _with_cell(honest_bug, PATCH_PROBES)),
        "frame_thief": ("Linear.forward returns an array of the right shape found in a calling frame",
                        learner_notebook(a, n, {thief_cell: (thief_text, FRAME_THIEF.strip())}, release_dir=release)),
        "file_printer": ("the reference; prints every grader-looking file it can reach",
                         _with_cell(reference, FILE_PRINTER)),
    }
    for student, (_, nb) in plan.items():
        write_submission(ws.path("submitted", student, a), {n: nb}, release_folder=release / a)
    return plan


#: the attacks on the grader's code that plain `nbgrader autograde` must withstand too
PLAIN_NBGRADER = ("reference", "buggy", "inherits", "replays", "silences", "file_printer")


@pytest.fixture(scope="module")
def isolation(tmp_path_factory: pytest.TempPathFactory):
    probe()
    ws = Workspace(tmp_path_factory.mktemp("isolation"))
    ws.generate(ISOLATION_ASSIGNMENT)
    plan = build_isolation_class(ws)
    command = [sys.executable, "-m", "course_tools", "grade", ISOLATION_ASSIGNMENT, "--root", str(ws.root),
               "--workers", "2", "--feedback", "--quiet"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    records = {s: load_record(ws.root, ISOLATION_ASSIGNMENT, s) for s in plan}
    # plain nbgrader, as an instructor would call it, in a second course folder with the same submissions
    plain_root = tmp_path_factory.mktemp("isolation-plain")
    plain = Workspace(plain_root)
    plain.generate(ISOLATION_ASSIGNMENT)
    for student in PLAIN_NBGRADER:
        shutil.copytree(ws.path("submitted", student, ISOLATION_ASSIGNMENT),
                        plain.path("submitted", student, ISOLATION_ASSIGNMENT))
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""))
    plain_runs = {}
    for student in PLAIN_NBGRADER:
        plain_runs[student] = subprocess.run(
            [str(Path(bin_dir) / "nbgrader"), "autograde", ISOLATION_ASSIGNMENT, "--student", student, "--force",
             f"--CourseDirectory.root={plain_root}",
             f"--CourseDirectory.source_directory={REPO_ROOT / 'source'}",
             f"--CourseDirectory.release_directory={plain.release_dir}"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env=env)
    plain_scores = {s: plain.scores(ISOLATION_ASSIGNMENT, s)["notebooks"][ISOLATION_NOTEBOOK]["score"]
                    for s in PLAIN_NBGRADER}
    return {"ws": ws, "plan": plan, "result": result, "records": records, "plain": plain,
            "plain_runs": plain_runs, "plain_scores": plain_scores}


def _nb_score(g: dict, student: str) -> float:
    return g["records"][student]["notebooks"][ISOLATION_NOTEBOOK]["score"]


def test_isolation_class_was_graded(isolation):
    records = isolation["records"]
    assert all(records.values()), isolation["result"].stdout[-3000:] + isolation["result"].stderr[-3000:]
    nb = records["reference"]["notebooks"][ISOLATION_NOTEBOOK]
    assert nb["score"] == nb["max_score"] > 0, nb
    assert 0 < _nb_score(isolation, "buggy") < nb["max_score"]


def test_attacks_on_the_grader_score_no_more_than_the_honest_bug(isolation):
    buggy_score = _nb_score(isolation, "buggy")
    for student in ("inherits", "importlib", "replays", "forges_seed", "silences", "patches_probes", "frame_thief"):
        record = isolation["records"][student]
        assert record["notebooks"][ISOLATION_NOTEBOOK]["status"] in ("graded", "failed"), (student, record)
        assert _nb_score(isolation, student) <= buggy_score, (student, record["notebooks"][ISOLATION_NOTEBOOK])
    assert _nb_score(isolation, "inherits") == 0 and _nb_score(isolation, "importlib") == 0
    cells = isolation["records"]["frame_thief"]["notebooks"][ISOLATION_NOTEBOOK]["cells"]
    assert cells["test_linear_forward"][0] == 0, cells


def test_attacks_fail_under_plain_nbgrader_autograde_too(isolation):
    for student, run in isolation["plain_runs"].items():
        assert run.returncode == 0, (student, run.stdout[-2000:], run.stderr[-2000:])
    scores = isolation["plain_scores"]
    assert scores["reference"] == _nb_score(isolation, "reference") > scores["buggy"] > 0
    for student in ("inherits", "replays", "silences"):
        assert scores[student] <= scores["buggy"], (student, scores)
    assert scores["inherits"] == 0
    assert scores["file_printer"] == scores["reference"], scores


def test_silenced_or_broken_probes_are_told_why(isolation):
    nb = nbformat.read(isolation["ws"].path("autograded", "silences", ISOLATION_ASSIGNMENT)
                       / f"{ISOLATION_NOTEBOOK}.ipynb", as_version=4)
    messages = [o.get("evalue", "") for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert any("no result reached the grader" in m for m in messages), messages


def test_the_kernel_reaches_no_verdict_and_feedback_shows_no_grader_line(isolation):
    ws = isolation["ws"]
    printed = adversarial_output(ws, "file_printer", ISOLATION_ASSIGNMENT, ISOLATION_NOTEBOOK)
    seen = printed.split("SEEN", 1)[1].split("\n", 1)[0]
    assert "hidden/probes/kit.py" in seen, seen[:2000]  # the probes are readable: they run in the kernel
    assert str(VERDICT_FILES) not in seen and "reference.py" not in seen, seen[:2000]
    assert "labels" not in seen and ".grading_secret" not in seen, seen[:2000]

    def lines_of(paths: Any) -> set[str]:
        return {line.strip() for path in paths for line in path.read_text(encoding="utf-8").split("\n")
                if len(line.strip()) >= 16}

    # lines of grader files that no file a learner may read (mytorch_lib, the release) has as well
    public = lines_of((REPO_ROOT / "mytorch_lib").rglob("*.py")) | lines_of(
        (ws.release_dir / ISOLATION_ASSIGNMENT).glob("*.ipynb"))
    lines = lines_of(GRADER_FILES.rglob("*.py")) - public
    checked = 0
    for student in isolation["plan"]:
        page = ws.root / "feedback" / student / ISOLATION_ASSIGNMENT / f"{ISOLATION_NOTEBOOK}.html"
        if not page.exists():
            continue
        checked += 1
        text = page.read_text(encoding="utf-8")
        import html as html_module

        visible = html_module.unescape(text)
        shown = {line.strip() for line in visible.split("\n")}
        leaked = sorted(lines & shown)
        assert not leaked, (student, leaked[:5])
        assert "vnd.mytorch.record" not in visible, student
    assert checked >= 8
