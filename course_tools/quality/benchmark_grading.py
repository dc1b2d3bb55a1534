"""Benchmark: our class-grading command against a plain loop of ``nbgrader autograde`` calls.

``python -m course_tools benchmark-grading [--students N] [--assignments A ...] [--workers 1 2 ...]``

It builds a synthetic class (reference, blank and half-done submissions, plus
the bundled buggy examples, over every notebook of every assignment), then
grades the same submissions

1. with a plain loop of ``nbgrader autograde ASSIGNMENT --student S`` CLI calls
   (one process per submission, as an instructor's shell loop would);
2. with ``python -m course_tools grade`` (sandboxed, parallel workers), once
   per worker count asked for;
3. with ``python -m course_tools grade --scheduler tcp://127.0.0.1:PORT`` on a
   Dask cluster of ``--dask-workers`` worker processes on this machine (started
   once, before the first assignment, as ``dask scheduler`` and ``dask worker``);
4. bare: every notebook that nbgrader executed (the autograded copy, hidden tests
   included) executed once more with nbclient alone.

It prints submissions per minute for 1 to 3, their ratios, and the
per-notebook overhead of 2 (one worker) against 4, and checks that every
gradebook holds the same grades as the plain loop's. Timings depend on the machine's load: run it
on an otherwise idle machine.

``--baseline DIR`` compares instead the per-notebook grading time of this
checkout with another checkout of the course (for example an older commit:
``git worktree add /tmp/before <commit>``): the same synthetic class is graded
by ``python -m course_tools grade -j 1`` of each, alternately, ``--repeats``
times, and the median seconds per notebook are printed side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import nbformat

from course_tools.course import REPO_ROOT, Workspace, assignments, notebooks
from course_tools.authoring.examples import EXAMPLES, handed_in_files
from course_tools.authoring.submissions import learner_notebook, write_submission
from course_tools.notebook_model import is_answer


def half_done(assignment: str, notebook: str, release_dir: Path) -> Any:
    """The reference submission with every second answer cell left as the release's stub."""
    nb = learner_notebook(assignment, notebook, release_dir=release_dir)
    release = nbformat.read(release_dir / assignment / f"{notebook}.ipynb", as_version=4)
    stubs = {c.get("id"): c.source for c in release.cells if is_answer(c)}
    answer_index = 0
    for cell in nb.cells:
        if cell.get("id") in stubs:
            if answer_index % 2:
                cell.source = stubs[cell["id"]]
            answer_index += 1
    return nb


def synthetic_class(assignment: str, release_dir: Path, size: int) -> dict[str, dict[str, Any]]:
    """``size`` submissions ``{student: {notebook: nb}}`` cycling reference, blank, half-done, examples."""
    names = [nb.stem for nb in notebooks(assignment)]
    kinds: list[tuple[str, Any]] = [
        ("reference", lambda n: learner_notebook(assignment, n, release_dir=release_dir)),
        ("blank", lambda n: learner_notebook(assignment, n, filled=False, release_dir=release_dir)),
        ("half", lambda n: half_done(assignment, n, release_dir)),
    ]
    for example in EXAMPLES:
        if assignment in example.edits:
            edits = example.edits[assignment]
            kinds.append((example.student, lambda n, e=edits: learner_notebook(
                assignment, n, e.get(n), release_dir=release_dir)))
    result = {}
    for k in range(size):
        kind, make = kinds[k % len(kinds)]
        result[f"{kind}_{k:03d}"] = {name: make(name) for name in names}
    return result


def submit_class(workspace: Workspace, assignment: str, students: dict[str, dict[str, Any]]) -> None:
    for student, nbs in students.items():
        write_submission(workspace.path("submitted", student, assignment), nbs,
                         release_folder=workspace.release_dir / assignment, files=handed_in_files(assignment))


def gradebook_dump(db_url: str, assignment: str, course_id: str = "mytorch") -> dict[tuple, tuple]:
    """Everything autograding writes, keyed by (student, notebook, cell): scores, flags, comments.

    Ids and timestamps of the rows are left out, so two gradebooks graded from the
    same submissions compare equal when they hold the same grades.
    """
    from nbgrader.api import Gradebook

    dump: dict[tuple, tuple] = {}
    with Gradebook(db_url, course_id) as gb:
        for submission in gb.find_assignment(assignment).submissions:
            student = submission.student.id
            dump[(student,)] = (submission.timestamp, submission.extension, submission.score, submission.max_score)
            for nb in submission.notebooks:
                dump[(student, nb.name)] = (nb.score, nb.max_score, nb.needs_manual_grade, nb.late_submission_penalty)
                for grade in nb.grades:
                    dump[(student, nb.name, "grade", grade.name)] = (
                        grade.auto_score, grade.manual_score, grade.extra_credit, grade.needs_manual_grade,
                        grade.max_score)
                for comment in nb.comments:
                    dump[(student, nb.name, "comment", comment.name)] = (comment.auto_comment,
                                                                         comment.manual_comment)
    return dump


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    return env


def plain_loop(workspace: Workspace, assignment: str, students: list[str]) -> float:
    """Seconds for one ``nbgrader autograde`` CLI call per submission (what a shell loop does)."""
    nbgrader = str(Path(sys.executable).parent / "nbgrader")
    started = time.perf_counter()
    for student in students:
        subprocess.run([nbgrader, "autograde", assignment, "--student", student, "--force",
                        f"--CourseDirectory.root={workspace.root}",
                        f"--CourseDirectory.source_directory={REPO_ROOT / 'source'}",
                        f"--CourseDirectory.release_directory={workspace.release_dir}"],
                       cwd=REPO_ROOT, env=_env(), capture_output=True, check=False)
    return time.perf_counter() - started


def our_command(workspace: Workspace, assignment: str, workers: int,
                scheduler: str | None = None) -> tuple[float, list[dict[str, Any]]]:
    """Seconds for ``python -m course_tools grade`` (a fresh process, start-up included)."""
    from course_tools.grading.class_grading import submitted_students
    from course_tools.grading.engine import load_record

    started = time.perf_counter()
    where = ["--scheduler", scheduler] if scheduler else ["--workers", str(workers)]
    subprocess.run([sys.executable, "-m", "course_tools", "grade", assignment, "--root", str(workspace.root),
                    "--release-dir", str(workspace.release_dir), *where, "--force", "--quiet"],
                   cwd=REPO_ROOT, env=_env(), capture_output=True, check=False)
    seconds = time.perf_counter() - started
    records = [load_record(workspace.root, assignment, s) for s in submitted_students(workspace, assignment)]
    return seconds, [r for r in records if r]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def loopback_dask_cluster(workers: int, folder: Path, dashboard: bool = False) -> Iterator[dict[str, Any]]:
    """A ``dask scheduler`` and ``workers`` ``dask worker`` processes (one thread each) on 127.0.0.1.

    Yields ``{"address", "dashboard", "processes"}``; everything is stopped on exit.
    Logs go to ``folder``. This is what an instructor runs by hand on a cluster's machines.
    """
    from distributed import Client

    dask = str(Path(sys.executable).parent / "dask")
    folder.mkdir(parents=True, exist_ok=True)
    port, dashboard_port = _free_port(), _free_port()
    address = f"tcp://127.0.0.1:{port}"
    processes: list[subprocess.Popen] = []

    def start(name: str, *command: str) -> None:
        with open(folder / f"{name}.log", "wb") as log:
            processes.append(subprocess.Popen([dask, *command], cwd=folder, env=_env(), stdout=log,
                                              stderr=subprocess.STDOUT))

    try:
        start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(port),
              "--dashboard-address", f"127.0.0.1:{dashboard_port}" if dashboard else ":0")
        for i in range(workers):
            start(f"worker-{i}", "worker", address, "--nthreads", "1", "--name", f"grader-{i}",
                  "--local-directory", str(folder / f"worker-{i}"), "--no-dashboard")
        with Client(address, timeout=120, set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=120)
        yield {"address": address, "dashboard": f"127.0.0.1:{dashboard_port}", "processes": processes}
    finally:
        for proc in reversed(processes):
            proc.terminate()
        for proc in processes:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def bare_seconds(graded: Workspace, assignment: str, students: list[str]) -> dict[tuple[str, str], float]:
    """Per (student, notebook): seconds to execute, with nbclient alone, the notebook nbgrader executed.

    That is the autograded copy (hidden tests restored by nbgrader, outputs cleared), run in
    a copy of its folder with ``NBGRADER_EXECUTION=autograde`` as nbgrader sets it; the
    submitted notebook itself would be cheaper, since it has no hidden tests.
    """
    from course_tools.grading.execute import kernel_environment, run_notebook

    times = {}
    scratch = graded.root / "bare" / assignment
    for student in students:
        source = graded.path("autograded", student, assignment)
        if not source.is_dir():
            continue
        folder = scratch / student
        shutil.copytree(source, folder)
        for path in sorted(folder.glob("*.ipynb")):
            path.chmod(0o644)
            nb = nbformat.read(path, as_version=4)
            for cell in nb.cells:
                if cell.cell_type == "code":
                    cell.outputs, cell.execution_count = [], None
            nbformat.write(nb, path)
            env = kernel_environment(NBGRADER_EXECUTION="autograde")
            times[(student, path.stem)] = run_notebook(path, timeout=120, env=env).seconds
    return times


def run(args: argparse.Namespace) -> int:
    names = args.assignments or assignments()
    base = Path(args.workdir).resolve()
    shutil.rmtree(base, ignore_errors=True)
    with contextlib.ExitStack() as stack:
        cluster = None
        if args.dask_workers:
            cluster = stack.enter_context(loopback_dask_cluster(args.dask_workers, base / "dask-logs"))
        return _run(args, names, base, cluster["address"] if cluster else None)


def _run(args: argparse.Namespace, names: list[str], base: Path, dask_address: str | None) -> int:
    plain_ws, ours_ws, dask_ws = Workspace(base / "plain"), Workspace(base / "ours"), Workspace(base / "dask")
    spaces = [plain_ws, ours_ws] + ([dask_ws] if dask_address else [])
    total = {"plain": 0.0, "dask": 0.0, **{f"ours_{w}": 0.0 for w in args.workers}}
    n_submissions = n_notebooks = 0
    overheads: list[float] = []
    ours_nb_seconds = bare_nb_seconds = 0.0
    same = True
    for assignment in names:
        for ws in spaces:
            ws.generate(assignment)
        klass = synthetic_class(assignment, plain_ws.release_dir, args.students)
        for ws in spaces:
            submit_class(ws, assignment, klass)
        students = sorted(klass)
        n_submissions += len(students)
        n_notebooks += sum(len(nbs) for nbs in klass.values())
        print(f"{assignment}: {len(students)} submissions x {len(notebooks(assignment))} notebook(s)", flush=True)
        plain = plain_loop(plain_ws, assignment, students)
        total["plain"] += plain
        print(f"  plain nbgrader loop: {plain:6.1f} s", flush=True)
        for workers in args.workers:
            seconds, records = our_command(ours_ws, assignment, workers)
            total[f"ours_{workers}"] += seconds
            print(f"  course_tools grade -j {workers}: {seconds:6.1f} s ({plain / seconds:.2f}x the plain loop)",
                  flush=True)
            if workers == 1:
                bare = bare_seconds(plain_ws, assignment, students)
                for r in records:
                    for nb_name, nb in r["notebooks"].items():
                        if (r["student"], nb_name) in bare and nb.get("status") == "graded":
                            overheads.append(nb["seconds"] / bare[(r["student"], nb_name)])
                            ours_nb_seconds += nb["seconds"]
                            bare_nb_seconds += bare[(r["student"], nb_name)]
        if dask_address:
            seconds, _ = our_command(dask_ws, assignment, 0, scheduler=dask_address)
            total["dask"] += seconds
            print(f"  course_tools grade --scheduler (Dask, {args.dask_workers} workers): {seconds:6.1f} s "
                  f"({plain / seconds:.2f}x the plain loop)", flush=True)
        plain_dump = gradebook_dump(plain_ws.db_url, assignment)
        for ws in spaces[1:]:
            ours_dump = gradebook_dump(ws.db_url, assignment)
            if plain_dump != ours_dump:
                same = False
                diff = sorted(k for k in set(plain_dump) | set(ours_dump) if plain_dump.get(k) != ours_dump.get(k))
                print(f"  gradebooks of {ws.root.name} DIFFER at {diff[:5]}", flush=True)
    print()
    print(f"synthetic class: {n_submissions} submissions, {n_notebooks} notebooks, "
          f"assignments {', '.join(names)}; {os.cpu_count()} cores")
    plain_rate = n_submissions / total["plain"] * 60
    print(f"plain nbgrader autograde loop : {plain_rate:7.1f} submissions/min ({total['plain']:.0f} s)")
    for workers in args.workers:
        rate = n_submissions / total[f"ours_{workers}"] * 60
        print(f"course_tools grade -j {workers:<2}      : {rate:7.1f} submissions/min "
              f"({total[f'ours_{workers}']:.0f} s), {rate / plain_rate:.2f}x the plain loop")
    if dask_address:
        rate = n_submissions / total["dask"] * 60
        print(f"grade --scheduler (Dask, {args.dask_workers} w) : {rate:7.1f} submissions/min ({total['dask']:.0f} s), "
              f"{rate / plain_rate:.2f}x the plain loop")
        same_workers = f"ours_{args.dask_workers}"
        if same_workers in total:
            print(f"Dask time / local engine time with {args.dask_workers} workers: "
                  f"{total['dask'] / total[same_workers]:.2f}x")
    if overheads:
        print(f"per-notebook time, ours (-j 1: sandbox and nbgrader included) / bare nbclient: "
              f"total {ours_nb_seconds / bare_nb_seconds:.2f}x, median {statistics.median(overheads):.2f}x "
              f"over {len(overheads)} notebooks")
    print(f"gradebooks of every way identical to the plain loop's: {'yes' if same else 'NO'}")
    return 0 if same else 1


def _in_checkout(checkout: Path, *args: str) -> subprocess.CompletedProcess:
    """``python ARGS`` run from ``checkout`` (its course_tools, nbgrader_config.py and source/)."""
    env = _env()
    env["PYTHONPATH"] = str(checkout)
    return subprocess.run([sys.executable, *args], cwd=checkout, env=env, capture_output=True, text=True,
                          check=False)


def compare_with_baseline(args: argparse.Namespace) -> int:
    """Per-notebook grading seconds of this checkout and of ``args.baseline``, side by side."""
    from course_tools.grading.engine import load_record

    checkouts = {"before": Path(args.baseline).resolve(), "after": REPO_ROOT}
    names = args.assignments or assignments()
    base = Path(args.workdir).resolve()
    shutil.rmtree(base, ignore_errors=True)
    seconds: dict[tuple[str, str, str], list[float]] = {}
    for assignment in names:
        spaces = {}
        for label, checkout in checkouts.items():
            root = base / label
            made = _in_checkout(checkout, "-c", "import sys; from course_tools.course import Workspace; "
                                f"Workspace(sys.argv[1]).generate({assignment!r})", str(root))
            if made.returncode != 0:
                raise SystemExit(f"{checkout}: generate_assignment failed:\n{made.stderr[-2000:]}")
            spaces[label] = Workspace(root)
        klass = synthetic_class(assignment, spaces["after"].release_dir, args.students)
        for ws in spaces.values():
            submit_class(ws, assignment, klass)
        print(f"{assignment}: {len(klass)} submissions x {len(notebooks(assignment))} notebook(s)", flush=True)
        for _ in range(args.repeats):
            for label, checkout in checkouts.items():
                ws = spaces[label]
                run = _in_checkout(checkout, "-m", "course_tools", "grade", assignment, "--root", str(ws.root),
                                   "--workers", "1", "--force", "--quiet")
                if run.returncode not in (0, 1):
                    raise SystemExit(f"{checkout}: grade failed:\n{run.stderr[-2000:]}")
                for student in klass:
                    record = load_record(ws.root, assignment, student) or {}
                    for nb_name, nb in record.get("notebooks", {}).items():
                        if nb.get("status") == "graded":
                            seconds.setdefault((assignment, nb_name, label), []).append(nb["seconds"])
    print(f"\nper-notebook grading time, median over submissions and repeats (s), -j 1, {os.cpu_count()} cores")
    print(f"{'notebook':34} {'before':>8} {'after':>8} {'after/before':>13}")
    for assignment in names:
        for nb in notebooks(assignment):
            before = seconds.get((assignment, nb.stem, "before"), [])
            after = seconds.get((assignment, nb.stem, "after"), [])
            if before and after:
                b, a = statistics.median(before), statistics.median(after)
                print(f"{assignment + '/' + nb.stem:34} {b:8.2f} {a:8.2f} {a / b:12.2f}x")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_tools benchmark-grading", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=12, help="submissions per assignment (default 12)")
    parser.add_argument("--assignments", nargs="*", help="assignments (default: all in source/)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1],
                        help="worker counts to time our command with (default: 1 and the number of cores)")
    parser.add_argument("--dask-workers", type=int, default=2,
                        help="worker processes of the loopback Dask cluster (default 2; 0: no Dask row)")
    parser.add_argument("--workdir", default="build/benchmark", help="scratch course folders (default build/benchmark)")
    parser.add_argument("--baseline", default=None,
                        help="another checkout of the course: compare per-notebook grading time with it instead")
    parser.add_argument("--repeats", type=int, default=2, help="with --baseline: gradings per checkout (default 2)")
    args = parser.parse_args(argv)
    return compare_with_baseline(args) if args.baseline else run(args)


if __name__ == "__main__":
    sys.exit(main())
