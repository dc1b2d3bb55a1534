"""Run the engine on many submissions: local worker processes, or a Dask cluster.

Both schedulers take the same work (one course, one set of options, the students
of one assignment) and hand back one record per submission, as each finishes, to
``on_record``; the caller saves it and moves the progress bar. Every task runs
:class:`course_tools.grading.engine.SubmissionGrader`, so a grade does not depend
on where it was computed.

- :class:`LocalScheduler`: N long-lived processes forked from this one (nbgrader
  already imported), each holding one grader. A worker that dies or is stuck past
  the longest legitimate job is replaced and its submission recorded as failed.
- :class:`DaskScheduler`: one Dask task per submission on a running cluster
  (``dask scheduler`` and ``dask worker`` processes, ``dask-jobqueue`` on Slurm, the
  Dask Kubernetes operator). Each worker process keeps one grader between tasks.
  A worker that dies mid-task (killed, out of memory, its machine gone) has its
  submission re-run on another worker by the Dask scheduler; the coordinator
  receives one result per submission whatever happened on the way.
  Every worker must see the course folder at the same path (``docs/grading_at_scale.md``).
"""

from __future__ import annotations

import ipaddress
import multiprocessing as mp
import os
import queue
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

from course_tools.grading.engine import (CourseSpec, GradeOptions, GradingRecord, GradingRefused, SubmissionGrader,
                                         crash_record)

#: what a scheduler calls with each finished record
OnRecord = Callable[[GradingRecord], None]


def _single_threaded_numerics() -> None:
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")


# ----------------------------------------------------------------------------- this machine

def _local_worker(course: CourseSpec, options: GradeOptions, scratch: str, matplotlib_cache: str | None,
                  log_file: str, slot: int, tasks: Any, results: Any) -> None:
    _single_threaded_numerics()
    # nbgrader's console log (and any kernel chatter) goes to a file, not over the progress bar.
    with open(log_file, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    grader = SubmissionGrader(course, options, Path(scratch), Path(matplotlib_cache) if matplotlib_cache else None)
    while True:
        job = tasks.get()
        if job is None:
            return
        results.put(("start", slot, job))
        results.put(("done", slot, grader.grade_safely(*job)))


class LocalScheduler:
    """``workers`` grading processes on this machine (0: one per core, never more than submissions)."""

    def __init__(self, workers: int = 0) -> None:
        self.workers = workers

    def describe(self, jobs: int) -> str:
        return f"{self._count(jobs)} local workers"

    def _count(self, jobs: int) -> int:
        return max(1, min(self.workers or os.cpu_count() or 1, jobs))

    def run(self, course: CourseSpec, options: GradeOptions, assignment: str, students: list[str],
            on_record: OnRecord, *, logs: Path, matplotlib_cache: Path | None, job_limit: float,
            before_start: Callable[[], None] = lambda: None) -> None:
        """Grade ``students``; ``before_start`` runs while the workers import nbgrader."""
        # Workers are forked once nbgrader is imported here (2-3 s saved per worker);
        # where fork is unavailable they are spawned and import it themselves.
        import nbgrader.apps  # noqa: F401
        import nbgrader.converters  # noqa: F401

        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        tasks, results = ctx.Queue(), ctx.Queue()
        n_workers = self._count(len(students))
        scratch = Path(tempfile.mkdtemp(prefix="mytorch-grading-"))
        os.chmod(scratch, 0o755)

        def start(slot: int) -> Any:
            args = (course, options, str(scratch), str(matplotlib_cache) if matplotlib_cache else None,
                    str(logs / f"worker-{slot}.log"), slot, tasks, results)
            proc = ctx.Process(target=_local_worker, args=args, daemon=True)
            proc.start()
            return proc

        procs = {slot: start(slot) for slot in range(n_workers)}
        try:
            before_start()
            for student in students:
                tasks.put((assignment, student))
            for _ in range(n_workers):
                tasks.put(None)
            self._collect(procs, start, results, len(students), on_record, logs, job_limit)
        finally:
            for proc in procs.values():
                proc.join(timeout=5)
                if proc.is_alive():
                    proc.kill()
            shutil.rmtree(scratch, ignore_errors=True)

    @staticmethod
    def _collect(procs: dict[int, Any], start: Callable[[int], Any], results: Any, total: int,
                 on_record: OnRecord, logs: Path, job_limit: float) -> None:
        in_flight: dict[int, tuple[tuple[str, str], float]] = {}
        finished = startup_failures = 0
        while finished < total:
            try:
                kind, slot, payload = results.get(timeout=1.0)
            except queue.Empty:
                for slot, proc in list(procs.items()):
                    job = in_flight.get(slot)
                    stuck = job is not None and time.monotonic() - job[1] > job_limit
                    if job is not None and (stuck or not proc.is_alive()):
                        proc.kill()
                        proc.join()
                        why = "grader process stuck; stopped" if stuck else f"grader process died ({proc.exitcode})"
                        on_record(crash_record(*job[0], why))
                        finished += 1
                        in_flight.pop(slot)
                        procs[slot] = start(slot)
                    elif job is None and not proc.is_alive() and finished + len(in_flight) < total:
                        startup_failures += 1
                        if startup_failures > 2 * len(procs):
                            raise GradingRefused(
                                f"grading workers exit before taking any work (exit code {proc.exitcode}); "
                                f"see {logs}/worker-*.log. When calling grade_class from a script, guard the "
                                "call with `if __name__ == '__main__':` (on systems that spawn workers).")
                        procs[slot] = start(slot)
                continue
            if kind == "start":
                in_flight[slot] = (payload, time.monotonic())
            else:
                in_flight.pop(slot, None)
                finished += 1
                on_record(payload)


# ----------------------------------------------------------------------------- a Dask cluster

_graders: dict[str, SubmissionGrader] = {}
_grader_lock = threading.Lock()


def grade_on_dask_worker(course: CourseSpec, options: GradeOptions, assignment: str, student: str,
                         matplotlib_cache: str | None) -> GradingRecord:
    """The Dask task: grade one submission with this worker process's grader (made on first use).

    A grader holds process-wide state (the kernelspec path, nbgrader's API), so one
    process grades one submission at a time even if its worker runs several threads.
    """
    key = repr((course, options))
    with _grader_lock:
        if key not in _graders:
            _single_threaded_numerics()
            scratch = Path(tempfile.mkdtemp(prefix="mytorch-dask-grading-"))
            os.chmod(scratch, 0o755)
            _graders[key] = SubmissionGrader(course, options, scratch,
                                             Path(matplotlib_cache) if matplotlib_cache else None)
        return _graders[key].grade_safely(assignment, student)


def is_loopback(address: str) -> bool:
    """Whether a scheduler address (``tcp://HOST:PORT``) is on this machine only."""
    host = urlparse(address if "://" in address else f"tcp://{address}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DaskScheduler:
    """One task per submission on the Dask cluster whose scheduler listens at ``address``.

    Args:
        address: the scheduler, e.g. ``tcp://grading-head:8786``.
        retries: how often a task whose worker raised is tried again elsewhere (a worker
            that dies is handled by the Dask scheduler itself, up to its
            ``distributed.scheduler.allowed-failures``).
    """

    def __init__(self, address: str, retries: int = 1, connect_timeout: float = 30.0) -> None:
        self.address = address
        self.retries = retries
        self.connect_timeout = connect_timeout
        self.dashboard: str | None = None

    @property
    def local_only(self) -> bool:
        """Workers can only be on this machine (the scheduler listens on loopback)."""
        return is_loopback(self.address)

    def describe(self, jobs: int) -> str:
        return f"Dask at {self.address}"

    def _client(self) -> Any:
        from distributed import Client

        try:
            return Client(self.address, timeout=self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise GradingRefused(f"no Dask scheduler answers at {self.address} ({exc}); start one with "
                                 "`dask scheduler` and workers with `dask worker ADDRESS --nthreads 1`") from exc

    def run(self, course: CourseSpec, options: GradeOptions, assignment: str, students: list[str],
            on_record: OnRecord, *, logs: Path, matplotlib_cache: Path | None, job_limit: float,
            before_start: Callable[[], None] = lambda: None) -> None:
        from distributed import as_completed

        client = self._client()
        try:
            info = client.scheduler_info()
            if not info.get("workers"):
                raise GradingRefused(f"the Dask scheduler at {self.address} has no workers yet; start them with "
                                     f"`dask worker {self.address} --nthreads 1 --nworkers N`")
            if "dashboard" in info.get("services", {}):
                self.dashboard = client.dashboard_link
            before_start()
            cache = str(matplotlib_cache) if matplotlib_cache else None
            futures = {client.submit(grade_on_dask_worker, course, options, assignment, student, cache,
                                     key=f"grade-{assignment}-{student}-{os.getpid()}-{time.time_ns()}",
                                     pure=False, retries=self.retries): student for student in students}
            for future in as_completed(futures):
                student = futures[future]
                try:
                    record = future.result()
                except Exception as exc:  # the task failed on every worker it was given
                    record = crash_record(assignment, student,
                                          f"grading failed on the Dask cluster: {exc.__class__.__name__}: {exc}")
                on_record(record)
        finally:
            client.close()


def scheduler_for(address: str | None, workers: int = 0) -> LocalScheduler | DaskScheduler:
    """The scheduler the ``grade`` command asked for: Dask at ``address``, or local workers."""
    return DaskScheduler(address) if address else LocalScheduler(workers)

