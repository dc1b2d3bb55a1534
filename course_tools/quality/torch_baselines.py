"""Reference and weak-model numbers of the PyTorch notebooks (``python -m course_tools baselines``).

Each run is a learner's submission: the release notebook with the reference
solution in its answer cells, a variant's edits (a weaker model, fewer epochs)
and the seed written into its set-up cell. The submissions of one assignment
are handed in to a course folder of their own and graded by the grading
engine (:mod:`course_tools.grading.engine`), sandboxed, in parallel, exactly as
``python -m course_tools grade`` grades a class. Modes:

- ``normal``: a learner first runs the notebook top to bottom in a fresh kernel
  (nbclient, without ``NBGRADER_EXECUTION``) and hands in what that run saved;
  the classification notebook always runs this way (grading only loads and
  measures the learner's ``model.pt``);
- ``autograde`` (regression only): the notebook is handed in unrun and the
  grader's run, which trains the model itself, is the one measured.

Each run reports:

- the score of every graded cell, from the gradebook;
- the grader's numbers (held-out MSE, test-set accuracy, ...): what the verdict
  modules measured from the hidden records, kept in the grading record;
- the wall time of the measured run (the learner's, else the grader's) and of
  its training cell, their CPU time (process time of the kernel: on a busy
  machine wall times grow, while CPU time stays close to what an idle machine
  takes), and the grader's seconds for the notebook.

Examples::

    python -m course_tools baselines                      # 5 seeds, both modes, weak models
    python -m course_tools baselines --seeds 0 1 2 --assignments 04_torch_classification
    python -m course_tools baselines --json build/torch_baselines.json
    python -m course_tools baselines --assignments 04_torch_classification --seeds 0 \
        --variants reference --save-files course_tools/authoring/example_files/04_torch_classification
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

import nbformat

from course_tools.authoring.submissions import Edits, learner_notebook, write_submission
from course_tools.course import Workspace
from course_tools.grading.execute import Execution, kernel_environment, run_notebook

REGRESSION, CLASSIFICATION = "03_torch_regression", "04_torch_classification"
NOTEBOOK = {REGRESSION: "torch_regression", CLASSIFICATION: "torch_classification"}
#: The cell that trains the graded model, timed separately.
TRAINING_CELL = {REGRESSION: "training_run", CLASSIFICATION: "training_run"}
#: Notebooks graded from what the learner's run saved (run as a learner, then as the grader).
GRADED_FROM_SAVED_MODEL = {CLASSIFICATION}
#: The files such a notebook's learner run saves and the learner hands in with it.
HANDED_IN = {CLASSIFICATION: ("model.pt", "predictions.npy")}
#: Cells replaced in the runs of most variants: teaching demos that train models of their own (the
#: linear model and the MLP of the classification notebook, measured by variants of their own).
SKIPPED_CELLS = {CLASSIFICATION: {"baselines": "baselines = {}"}}
SEED_LINE = "SEED = 0"
METRICS_MARKER = "MYTORCH_METRICS "


@dataclass(frozen=True)
class Variant:
    """A learner submission: the reference solution with ``edits`` to its answer cells."""

    description: str
    edits: Edits = field(default_factory=dict)
    #: Also run the teaching cells that train models of their own (:data:`SKIPPED_CELLS`).
    runs_demos: bool = False


_REGRESSOR_NET = """self.net = nn.Sequential(
            nn.Linear(1, hidden), nn.Tanh(),
            nn.Linear(hidden, hidden), nn.Tanh(),
            nn.Linear(hidden, 1),
        )"""
_CLASSIFIER_NET = """return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),   # N x 16 x 28 x 28
        nn.MaxPool2d(2),                                                             # N x 16 x 14 x 14
        nn.Conv2d(16, 32, kernel_size=3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),  # N x 32 x 14 x 14
        nn.MaxPool2d(2),                                                             # N x 32 x 7 x 7
        nn.Flatten(),                                                                # N x 1568
        nn.Dropout(0.25), nn.Linear(32 * 7 * 7, 128), nn.ReLU(),                     # N x 128
        nn.Linear(128, 10),                                                          # N x 10 logits
    )"""
_FINAL_TRAINING = "history = train(model, EPOCHS, lr=3e-3, batch_size=128, one_cycle=True)"
_LINEAR = "return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))"
_MLP = ("return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), "
        "nn.Linear(128, 10))")

#: assignment -> variant name -> variant. ``reference`` is the instructors' solution.
VARIANTS: dict[str, dict[str, Variant]] = {
    REGRESSION: {
        "reference": Variant("the reference solution"),
        "linear": Variant("a straight line: Regressor is one nn.Linear(1, 1), trained like the reference",
                          {"answer_regressor": (_REGRESSOR_NET, "self.net = nn.Linear(1, 1)")}),
        "one_step": Variant("train() stops after a single Adam step",
                            {"answer_train": ("range(epochs)", "range(min(epochs, 1))")}),
    },
    CLASSIFICATION: {
        "reference": Variant("the reference solution", runs_demos=True),
        "linear": Variant("a linear model (Flatten + Linear(784, 10)), trained as the notebook trains it: 5 epochs, "
                          "train()'s defaults",
                          {"answer_build_model": (_CLASSIFIER_NET, _LINEAR),
                           "answer_training": (_FINAL_TRAINING, "history = train(model, 5)")}),
        "mlp": Variant("an MLP (784-256-128-10, ReLU), trained as the notebook trains it: 10 epochs, train()'s defaults",
                       {"answer_build_model": (_CLASSIFIER_NET, _MLP),
                        "answer_training": (_FINAL_TRAINING, "history = train(model, 10)")}),
        "mlp_tuned": Variant("the same MLP trained with the reference's recipe (one-cycle, lr 3e-3) for 10 epochs",
                             {"answer_build_model": (_CLASSIFIER_NET, _MLP),
                              "answer_training": (_FINAL_TRAINING, _FINAL_TRAINING.replace("EPOCHS", "10"))}),
        "one_epoch": Variant("the reference design trained for a single epoch (one-cycle)",
                             {"answer_training": (_FINAL_TRAINING, _FINAL_TRAINING.replace("EPOCHS", "1"))}),
        "untrained": Variant("the reference design, never trained: model.pt holds its initial weights",
                             {"answer_training": (_FINAL_TRAINING, 'history = {"loss": [], "val_accuracy": []}')}),
    },
}


@dataclass
class Run:
    assignment: str
    variant: str
    seed: int
    mode: str
    score: float
    max_score: float
    cells: dict[str, tuple[float, float]]
    metrics: dict[str, float]
    notebook_seconds: float
    training_seconds: float
    problems: list[str]

    @property
    def failed_cells(self) -> list[str]:
        return [name for name, (got, full) in self.cells.items() if got < full]


def apply_edits(nb: Any, edits: Edits, *, seed: int, skipped: dict[str, str] | None = None) -> Any:
    """Apply ``edits`` (grade_id -> (find, replace)), the seed and ``skipped`` (cell id -> new source), in place."""
    pending = dict(edits)
    seeded = False
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if skipped and cell.get("id") in skipped:
            cell.source = skipped[cell["id"]]
        if cell.get("id") == "setup":
            if SEED_LINE not in cell.source:
                raise ValueError(f"the setup cell has no line {SEED_LINE!r}")
            cell.source = cell.source.replace(SEED_LINE, f"SEED = {seed}", 1)
            seeded = True
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in pending:
            find, replace = pending.pop(grade_id)
            if find not in cell.source:
                raise ValueError(f"cell {grade_id} does not contain {find!r}")
            cell.source = cell.source.replace(find, replace)
    if pending or not seeded:
        raise ValueError(f"cells not found: {sorted(pending) or ['setup']}")
    return nb


def _instrument(nb: Any, assignment: str) -> None:
    """Time the training cell's CPU use and append the cell that prints it (and the kernel's CPU time).

    The added cells carry no nbgrader metadata: a learner may add cells, and grading runs them too.
    """
    index = next(i for i, c in enumerate(nb.cells) if c.get("id") == TRAINING_CELL[assignment])
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(
        "_baseline_cpu = __import__('time').process_time() - _baseline_cpu", id="baseline_cpu_after"))
    nb.cells.insert(index, nbformat.v4.new_code_cell(
        "_baseline_cpu = __import__('time').process_time()", id="baseline_cpu_before"))
    nb.cells.append(nbformat.v4.new_code_cell(
        "import json as _json\n"
        "_numbers = dict(training_cpu_seconds=_baseline_cpu, kernel_cpu_seconds=__import__('time').process_time())\n"
        f"print({METRICS_MARKER!r} + _json.dumps(_numbers))",
        id="baseline_metrics"))


def _cell_seconds(cell: Any) -> float:
    timing = cell.get("metadata", {}).get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return float("nan")
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def _printed_numbers(nb: Any) -> dict[str, float]:
    """The CPU seconds the instrumentation cell printed in an executed notebook."""
    for cell in nb.cells:
        if cell.get("id") != "baseline_metrics":
            continue
        for out in cell.get("outputs", []):
            for line in out.get("text", "").splitlines():
                if line.startswith(METRICS_MARKER):
                    return json.loads(line[len(METRICS_MARKER):])
    return {}


def _training_seconds(nb: Any, assignment: str) -> float:
    return next((_cell_seconds(c) for c in nb.cells if c.get("id") == TRAINING_CELL[assignment]), math.nan)


def submission(assignment: str, variant: str, seed: int, release_dir: Path) -> Any:
    """The notebook a learner of ``variant`` hands in: the release, answered, edited, seeded and instrumented."""
    chosen = VARIANTS[assignment][variant]
    nb = learner_notebook(assignment, NOTEBOOK[assignment], chosen.edits, release_dir=release_dir)
    apply_edits(nb, {}, seed=seed, skipped=None if chosen.runs_demos else SKIPPED_CELLS.get(assignment))
    _instrument(nb, assignment)
    return nb


@dataclass
class _Planned:
    variant: str
    seed: int
    mode: str
    learner: Execution | None = None

    @property
    def student(self) -> str:
        return f"{self.variant}-seed{self.seed}-{self.mode}"


def _runs_as_learner(assignment: str, mode: str) -> bool:
    return assignment in GRADED_FROM_SAVED_MODEL or mode == "normal"


def run_variants(assignment: str, wanted: Iterable[tuple[str, int, str]], *, jobs: int = 1,
                 timeout: int = 1800, save_files: dict[tuple[str, int], Path] | None = None,
                 log: Any = None) -> list[Run]:
    """Hand in and grade one submission per ``(variant, seed, mode)`` of ``assignment``.

    Learners' runs (``normal`` mode, and every classification run) take ``jobs`` kernels at a
    time; then the grading engine grades every submission, on ``jobs`` sandboxed workers.
    ``save_files`` maps ``(variant, seed)`` to a folder that receives a copy of the files that
    run's learner saved to hand in (:data:`HANDED_IN`).
    """
    from course_tools.grading.class_grading import grade_class
    from course_tools.grading.engine import CourseSpec, GradeOptions
    from course_tools.grading.sandbox import sandbox_for_trusted_code

    planned = [_Planned(variant, seed, mode) for variant, seed, mode in wanted]
    for run in planned:
        if run.mode not in ("normal", "autograde"):
            raise ValueError(f"mode must be 'normal' or 'autograde', got {run.mode!r}")
    sandbox = sandbox_for_trusted_code("the variants", log)
    name = NOTEBOOK[assignment]
    with tempfile.TemporaryDirectory(prefix="mytorch-baselines-") as tmp:
        workspace = Workspace(Path(tmp) / "course")
        workspace.generate(assignment)
        release = workspace.release_dir / assignment

        def hand_in(run: _Planned) -> None:
            nb = submission(assignment, run.variant, run.seed, workspace.release_dir)
            folder = workspace.path("submitted", run.student, assignment)
            write_submission(folder, {name: nb}, release_folder=release)
            if not _runs_as_learner(assignment, run.mode):
                return
            run.learner = run_notebook(folder / f"{name}.ipynb", timeout=timeout, env=kernel_environment())
            nbformat.write(run.learner.notebook, folder / f"{name}.ipynb")  # handed in as run, outputs and all
            keep = (save_files or {}).get((run.variant, run.seed))
            if keep is not None:
                keep.mkdir(parents=True, exist_ok=True)
                for file_name in HANDED_IN[assignment]:
                    shutil.copy(folder / file_name, keep / file_name)

        with ThreadPoolExecutor(max(1, jobs)) as pool:
            list(pool.map(hand_in, planned))
        options = GradeOptions(workers=max(1, jobs), force=True, sandbox=sandbox, progress=False,
                               notebook_timeout=float(timeout))
        records = {r["student"]: r for r in grade_class(CourseSpec(str(workspace.root)), assignment,
                                                        [p.student for p in planned], options)}
        return [_run_of(assignment, p, records[p.student],
                        workspace.path("autograded", p.student, assignment) / f"{name}.ipynb") for p in planned]


def _run_of(assignment: str, planned: _Planned, record: dict[str, Any], autograded: Path) -> Run:
    """A :class:`Run` from a grading record, the autograded notebook and the learner's run (if any)."""
    outcome = record.get("notebooks", {}).get(NOTEBOOK[assignment], {})
    problems: list[str] = []
    if record.get("status") != "graded":
        problems.append(f"grading {record.get('status')}: {outcome.get('reason') or record.get('reason', '')}")
    graded = nbformat.read(autograded, as_version=4) if autograded.exists() else nbformat.v4.new_notebook()
    measured = planned.learner or Execution(graded, float(outcome.get("seconds", math.nan)))
    if planned.learner is not None:
        problems += planned.learner.problems()
    problems += Execution(graded, 0.0).problems()
    metrics: dict[str, float] = dict(outcome.get("numbers", {}))
    metrics.update(_printed_numbers(measured.notebook))
    metrics["grading_seconds"] = float(outcome.get("seconds", math.nan))
    cells = {cell: (float(got), float(full)) for cell, (got, full) in outcome.get("cells", {}).items()}
    mode = "learner+grader" if assignment in GRADED_FROM_SAVED_MODEL else planned.mode
    return Run(assignment, planned.variant, planned.seed, mode, float(outcome.get("score", 0.0)),
               float(outcome.get("max_score", 0.0)), cells, metrics, measured.seconds,
               _training_seconds(measured.notebook, assignment), problems)


def run_variant(assignment: str, variant: str = "reference", *, seed: int = 0, mode: str = "autograde",
                timeout: int = 1800, save_files: Path | None = None) -> Run:
    """One variant of a PyTorch notebook with ``seed`` in ``mode``, handed in and graded (see :func:`run_variants`)."""
    keep = {(variant, seed): save_files} if save_files is not None else None
    return run_variants(assignment, [(variant, seed, mode)], timeout=timeout, save_files=keep)[0]


KEY_METRIC = {REGRESSION: "heldout_mse", CLASSIFICATION: "test_accuracy"}


def _line(run: Run) -> str:
    key = KEY_METRIC[run.assignment]
    failed = ", ".join(run.failed_cells) or "-"
    return (f"{run.assignment:24} {run.variant:10} seed {run.seed} {run.mode:9} score {run.score:4.1f}/{run.max_score:.0f} "
            f"{key} {run.metrics.get(key, float('nan')):.4f}  notebook {run.notebook_seconds:5.1f} s  "
            f"training {run.training_seconds:5.1f} s (CPU {run.metrics.get('training_cpu_seconds', math.nan):5.1f} s)  "
            f"failed: {failed}")


def summarise(runs: list[Run]) -> list[str]:
    """One line per (assignment, variant, mode): the key metric's mean, min and max over seeds."""
    groups: dict[tuple[str, str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.assignment, run.variant, run.mode), []).append(run)
    lines = []
    for (assignment, variant, mode), group in groups.items():
        values = [r.metrics.get(KEY_METRIC[assignment], float("nan")) for r in group]
        lines.append(f"{assignment:24} {variant:10} {mode:9} {KEY_METRIC[assignment]} mean {statistics.mean(values):.4f} "
                     f"min {min(values):.4f} max {max(values):.4f} over {len(group)} seed(s); "
                     f"score {min(r.score for r in group):.1f}..{max(r.score for r in group):.1f}/{group[0].max_score:.0f}; "
                     f"notebook {statistics.mean(r.notebook_seconds for r in group):.1f} s "
                     f"(kernel CPU {statistics.mean(r.metrics.get('kernel_cpu_seconds', math.nan) for r in group):.1f} s), "
                     f"training {statistics.mean(r.training_seconds for r in group):.1f} s "
                     f"(CPU {statistics.mean(r.metrics.get('training_cpu_seconds', math.nan) for r in group):.1f} s)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_tools baselines",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--assignments", nargs="*", default=[REGRESSION, CLASSIFICATION])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2, 3, 4], help="seeds of the reference runs")
    parser.add_argument("--modes", nargs="*", default=["normal", "autograde"], choices=["normal", "autograde"])
    parser.add_argument("--weak-seeds", nargs="*", type=int, default=[0], help="seeds of the weak variants")
    parser.add_argument("--variants", nargs="*", help="only these variants (default: all)")
    parser.add_argument("--json", type=Path, help="also write every run to this JSON file")
    parser.add_argument("--save-files", type=Path,
                        help="copy the files the classification reference's first seed hands in (model.pt, "
                             "predictions.npy) into this folder (the example submissions' files: "
                             "course_tools/authoring/example_files/04_torch_classification)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="learner runs and grading workers at a time (default 1: steadier timings)")
    args = parser.parse_args(argv)
    runs: list[Run] = []
    for assignment in args.assignments:
        wanted = []
        for variant in VARIANTS[assignment]:
            if args.variants and variant not in args.variants:
                continue
            seeds = args.seeds if variant == "reference" else args.weak_seeds
            modes = ["normal"] if assignment in GRADED_FROM_SAVED_MODEL else args.modes
            wanted += [(variant, seed, mode) for mode in modes for seed in seeds]
        keep = None
        if args.save_files is not None and assignment in HANDED_IN and ("reference", args.seeds[0], "normal") in wanted:
            keep = {("reference", args.seeds[0]): args.save_files}
        print(f"{assignment}: {len(wanted)} run(s)", flush=True)
        for run in run_variants(assignment, wanted, jobs=args.jobs, save_files=keep):
            runs.append(run)
            print(_line(run), flush=True)
            for problem in run.problems:
                print(f"    {problem[:200]}", flush=True)
        if keep is not None:
            from course_tools.authoring.examples import recipe_digest

            print(f"saved {', '.join(HANDED_IN[assignment])} in {args.save_files}; pin EXAMPLE_MODEL_RECIPE = "
                  f"{recipe_digest()!r} in course_tools/authoring/examples.py", flush=True)
    print("\nSummary")
    for line in summarise(runs):
        print(line)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in runs], indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
