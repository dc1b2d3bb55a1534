"""Reference and weak-model numbers of the PyTorch notebooks (``python -m course_tools baselines``).

Each run executes a *source* notebook (solutions and hidden tests included)
top to bottom in a fresh kernel, in a copy of its assignment folder, after
applying a variant's edits and the seed. The classification notebook is run
twice in the same folder, as a learner and then as the grader: first as a
learner runs it (it trains and saves ``model.pt``), then as nbgrader runs it
(``NBGRADER_EXECUTION`` set: it only loads and measures the saved model). Each
run reports:

- the score every graded cell would get: the hidden cells' records (display
  outputs of the executed copy, which runs with each cell's default seed) are
  judged by :func:`course_tools.hidden.verdicts.engine.decide_notebook`, as in
  grading, and a cell gets full points when it then holds no error and writes
  nothing to stderr beyond the warnings nbgrader is configured to ignore;
- the grader's numbers (held-out MSE, test-set accuracy, ...), computed by the
  verdict module's ``metrics`` from the same records, outside the kernel;
- the wall time of the whole notebook and of its training cell, and their CPU
  time (process time of the kernel: on a busy machine wall times grow, while
  CPU time stays close to what an idle machine takes).

For the regression notebook, ``autograde`` mode sets ``NBGRADER_EXECUTION``
as nbgrader does and ``normal`` mode is a learner running the notebook; the
classification notebook always runs both ways, one after the other. Examples::

    python -m course_tools baselines                      # 5 seeds, both modes, weak models
    python -m course_tools baselines --seeds 0 1 2 --assignments 04_torch_classification
    python -m course_tools baselines --json build/torch_baselines.json
    python -m course_tools baselines --assignments 04_torch_classification --seeds 0 \
        --variants reference --save-files course_tools/authoring/example_files/04_torch_classification
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import math
import shutil
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import nbformat

from course_tools.course import SOURCE_DIR, load_config
from course_tools.grading.execute import kernel_environment, run_notebook
from course_tools.hidden.probes.kit import RECORD_MIME, default_seed
from course_tools.hidden.verdicts.engine import decide_notebook, hidden_calls
from course_tools.hidden.verdicts.kit import Evidence
from course_tools.authoring.submissions import Edits

REGRESSION, CLASSIFICATION = "03_torch_regression", "04_torch_classification"
NOTEBOOK = {REGRESSION: "torch_regression", CLASSIFICATION: "torch_classification"}
#: The verdict module of each notebook (its ``metrics`` gives the reported numbers).
VERDICTS = {REGRESSION: "torch_regression", CLASSIFICATION: "torch_classification"}
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
    """Time the training cell's CPU use and append the cell that prints it (and the kernel's CPU time)."""
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


def evidence_of(nb: Any) -> dict[str, Evidence]:
    """behaviour -> the evidence of its record, for every hidden cell of an executed, unseeded notebook.

    Read before :func:`decide_notebook` takes the records out of the outputs.
    """
    found: dict[str, Evidence] = {}
    calls = {grade_id: call for grade_id, call in hidden_calls(nb)}
    for cell in nb.cells:
        call = calls.get(cell.get("metadata", {}).get("nbgrader", {}).get("grade_id"))
        if call is None:
            continue
        for out in cell.get("outputs", []):
            record = (out.get("data") or {}).get(RECORD_MIME)
            if isinstance(record, dict) and isinstance(record.get("items"), dict):
                found[call.check] = Evidence(call.check, default_seed(call.check), record["items"])
    return found


def grader_metrics(assignment: str, evidence: dict[str, Evidence]) -> dict[str, float]:
    """The verdict module's numbers (held-out MSE, test accuracy, ...) of one run's records."""
    verdicts = importlib.import_module(f"course_tools.hidden.verdicts.{VERDICTS[assignment]}")
    return verdicts.metrics(evidence)


def score_cells(nb: Any, ignore_pattern: str) -> dict[str, tuple[float, float]]:
    """grade_id -> (points earned, points) of every graded code cell of an executed, judged notebook.

    Scored by nbgrader's own rule (``nbgrader.utils.determine_grade``) after its ``IgnorePattern``
    step, as ``nbgrader autograde`` scores it.
    """
    from nbgrader.preprocessors import IgnorePattern
    from nbgrader.utils import determine_grade, is_grade

    judged, _ = IgnorePattern(pattern=ignore_pattern).preprocess(copy.deepcopy(nb), {})
    cells = {}
    for cell in judged.cells:
        if cell.cell_type == "code" and is_grade(cell):
            earned, points = determine_grade(cell)
            cells[cell.metadata.nbgrader.grade_id] = (float(earned or 0.0), float(points))
    return cells


def run_variant(assignment: str, variant: str = "reference", *, seed: int = 0, mode: str = "autograde",
                timeout: int = 1800, save_files: Path | None = None) -> Run:
    """Execute one variant of a PyTorch notebook with ``seed`` in ``mode`` (``normal`` or ``autograde``).

    A notebook graded from a saved model (classification) runs as a learner and then as the
    grader, whatever ``mode``; ``save_files`` (a folder) then receives a copy of the files the
    learner's run saved to hand in (:data:`HANDED_IN`).
    """
    if mode not in ("normal", "autograde"):
        raise ValueError(f"mode must be 'normal' or 'autograde', got {mode!r}")
    name = NOTEBOOK[assignment]
    nb = nbformat.read(SOURCE_DIR / assignment / f"{name}.ipynb", as_version=4)
    chosen = VARIANTS[assignment][variant]
    apply_edits(nb, chosen.edits, seed=seed, skipped=None if chosen.runs_demos else SKIPPED_CELLS.get(assignment))
    plain = nbformat.from_dict(nb)
    _instrument(nb, assignment)
    two_runs = assignment in GRADED_FROM_SAVED_MODEL
    grading_env = kernel_environment(NBGRADER_EXECUTION="autograde")
    with tempfile.TemporaryDirectory(prefix="mytorch-baseline-") as tmp:
        folder = Path(tmp) / assignment
        shutil.copytree(SOURCE_DIR / assignment, folder, ignore=shutil.ignore_patterns("*.ipynb", "__pycache__"))
        path = folder / f"{name}.ipynb"
        nbformat.write(nb, path)
        learner = run_notebook(path, timeout=timeout,
                               env=kernel_environment() if two_runs or mode == "normal" else grading_env)
        graded = learner
        if two_runs:
            if save_files is not None:
                save_files.mkdir(parents=True, exist_ok=True)
                for file_name in HANDED_IN[assignment]:
                    shutil.copy(folder / file_name, save_files / file_name)
            nbformat.write(plain, path)
            graded = run_notebook(path, timeout=timeout, env=grading_env)
    executed = graded.notebook
    metrics: dict[str, float] = grader_metrics(assignment, evidence_of(executed))
    decide_notebook(executed)
    cells = score_cells(executed, load_config().IgnorePattern.pattern)
    for out in learner.notebook.cells[-1].get("outputs", []):
        for line in out.get("text", "").splitlines():
            if line.startswith(METRICS_MARKER):
                metrics.update(json.loads(line[len(METRICS_MARKER):]))
    if two_runs:
        metrics["grading_seconds"] = graded.seconds
    training = next(c for c in learner.notebook.cells if c.get("id") == TRAINING_CELL[assignment])
    mode = "learner+grader" if two_runs else mode
    return Run(assignment, variant, seed, mode, sum(c[0] for c in cells.values()), sum(c[1] for c in cells.values()),
               cells, metrics, learner.seconds, _cell_seconds(training),
               learner.problems() + (graded.problems() if two_runs else []))


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
    args = parser.parse_args(argv)
    runs: list[Run] = []
    for assignment in args.assignments:
        for variant in VARIANTS[assignment]:
            if args.variants and variant not in args.variants:
                continue
            seeds = args.seeds if variant == "reference" else args.weak_seeds
            modes = ["normal"] if assignment in GRADED_FROM_SAVED_MODEL else args.modes
            for mode in modes:
                for seed in seeds:
                    keep = (args.save_files if assignment == CLASSIFICATION and variant == "reference"
                            and seed == seeds[0] else None)
                    run = run_variant(assignment, variant, seed=seed, mode=mode, save_files=keep)
                    if keep is not None:
                        from course_tools.authoring.examples import recipe_digest

                        print(f"saved {', '.join(HANDED_IN[assignment])} in {keep}; pin EXAMPLE_MODEL_RECIPE = "
                              f"{recipe_digest()!r} in course_tools/authoring/examples.py", flush=True)
                    runs.append(run)
                    print(_line(run), flush=True)
                    for problem in run.problems:
                        print(f"    {problem[:200]}", flush=True)
    print("\nSummary")
    for line in summarise(runs):
        print(line)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in runs], indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
