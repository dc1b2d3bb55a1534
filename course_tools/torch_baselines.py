"""Reference and weak-model numbers of the PyTorch notebooks (``python -m course_tools.torch_baselines``).

Each run executes a *source* notebook (solutions and hidden tests included)
top to bottom in a fresh kernel, in a copy of its assignment folder, after
applying a variant's edits and the seed, and reports:

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

``autograde`` mode sets ``NBGRADER_EXECUTION`` as nbgrader does (the
classification notebook then trains for fewer epochs); ``normal`` mode is a
learner running the notebook. Examples::

    python -m course_tools.torch_baselines                      # 5 seeds, both modes, weak models
    python -m course_tools.torch_baselines --seeds 0 --modes autograde --assignments 04_torch_classification
    python -m course_tools.torch_baselines --json build/torch_baselines.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import re
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
from course_tools.execute import kernel_environment, run_notebook
from course_tools.hidden.probes.kit import RECORD_MIME, default_seed
from course_tools.hidden.verdicts.engine import decide_notebook, hidden_calls
from course_tools.hidden.verdicts.kit import Evidence
from course_tools.submissions import Edits

REGRESSION, CLASSIFICATION = "03_torch_regression", "04_torch_classification"
NOTEBOOK = {REGRESSION: "torch_regression", CLASSIFICATION: "torch_classification"}
#: The verdict module of each notebook (its ``metrics`` gives the reported numbers).
VERDICTS = {REGRESSION: "torch_regression", CLASSIFICATION: "torch_classification"}
#: The cell that trains the graded model, timed separately.
TRAINING_CELL = {REGRESSION: "training_run", CLASSIFICATION: "answer_training"}
SEED_LINE = "SEED = 0"
METRICS_MARKER = "MYTORCH_METRICS "


@dataclass(frozen=True)
class Variant:
    """A learner submission: the reference solution with ``edits`` to its answer cells."""

    description: str
    edits: Edits = field(default_factory=dict)


_REGRESSOR_NET = """self.net = nn.Sequential(
            nn.Linear(1, hidden), nn.Tanh(),
            nn.Linear(hidden, hidden), nn.Tanh(),
            nn.Linear(hidden, 1),
        )"""
_CLASSIFIER_NET = """return nn.Sequential(
        nn.Flatten(),                        # N x 784
        nn.Linear(784, 256), nn.ReLU(),      # N x 256
        nn.Linear(256, 128), nn.ReLU(),      # N x 128
        nn.Linear(128, 10),                  # N x 10 logits (no softmax)
    )"""
_TRAINING_SETTINGS = """EPOCHS = 5 if is_autograding() else 10   # fewer epochs while the notebook is graded
BATCH_SIZE = 64"""

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
        "reference": Variant("the reference solution"),
        "linear": Variant("a linear model: build_model() is Flatten + Linear(784, 10), trained like the reference",
                          {"answer_build_model": (_CLASSIFIER_NET, "return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))")}),
        "one_step": Variant("a single Adam step on one batch of 7,000 images",
                            {"answer_training": (_TRAINING_SETTINGS, "EPOCHS = 1\nBATCH_SIZE = 7000")}),
        "ten_steps": Variant("ten Adam steps on batches of 700 images (one epoch)",
                             {"answer_training": (_TRAINING_SETTINGS, "EPOCHS = 1\nBATCH_SIZE = 700")}),
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


def apply_edits(nb: Any, edits: Edits, *, seed: int) -> Any:
    """Apply ``edits`` (grade_id -> (find, replace)) and the seed to a source notebook, in place."""
    pending = dict(edits)
    seeded = False
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
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
    """grade_id -> (points earned, points) of every graded code cell of an executed notebook, once judged."""
    ignore = re.compile(ignore_pattern)
    cells = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type != "code" or not meta.get("grade"):
            continue
        ok = True
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                ok = False
            elif out.get("output_type") == "stream" and out.get("name") == "stderr" and not ignore.search(out["text"]):
                ok = False
        cells[meta["grade_id"]] = (float(meta["points"]) if ok else 0.0, float(meta["points"]))
    return cells


def run_variant(assignment: str, variant: str = "reference", *, seed: int = 0, mode: str = "autograde",
                timeout: int = 600) -> Run:
    """Execute one variant of a PyTorch notebook with ``seed`` in ``mode`` (``normal`` or ``autograde``)."""
    if mode not in ("normal", "autograde"):
        raise ValueError(f"mode must be 'normal' or 'autograde', got {mode!r}")
    name = NOTEBOOK[assignment]
    nb = nbformat.read(SOURCE_DIR / assignment / f"{name}.ipynb", as_version=4)
    apply_edits(nb, VARIANTS[assignment][variant].edits, seed=seed)
    _instrument(nb, assignment)
    extra = {"NBGRADER_EXECUTION": "autograde"} if mode == "autograde" else {}
    with tempfile.TemporaryDirectory(prefix="mytorch-baseline-") as tmp:
        folder = Path(tmp) / assignment
        shutil.copytree(SOURCE_DIR / assignment, folder, ignore=shutil.ignore_patterns("*.ipynb", "__pycache__"))
        path = folder / f"{name}.ipynb"
        nbformat.write(nb, path)
        execution = run_notebook(path, timeout=timeout, env=kernel_environment(**extra))
    executed = execution.notebook
    metrics: dict[str, float] = grader_metrics(assignment, evidence_of(executed))
    decide_notebook(executed)
    cells = score_cells(executed, load_config().IgnorePattern.pattern)
    for out in executed.cells[-1].get("outputs", []):
        for line in out.get("text", "").splitlines():
            if line.startswith(METRICS_MARKER):
                metrics.update(json.loads(line[len(METRICS_MARKER):]))
    training = next(c for c in executed.cells if c.get("id") == TRAINING_CELL[assignment])
    return Run(assignment, variant, seed, mode, sum(c[0] for c in cells.values()), sum(c[1] for c in cells.values()),
               cells, metrics, execution.seconds, _cell_seconds(training), execution.problems())


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
    parser = argparse.ArgumentParser(prog="python -m course_tools.torch_baselines",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--assignments", nargs="*", default=[REGRESSION, CLASSIFICATION])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2, 3, 4], help="seeds of the reference runs")
    parser.add_argument("--modes", nargs="*", default=["normal", "autograde"], choices=["normal", "autograde"])
    parser.add_argument("--weak-seeds", nargs="*", type=int, default=[0], help="seeds of the weak variants")
    parser.add_argument("--variants", nargs="*", help="only these variants (default: all)")
    parser.add_argument("--json", type=Path, help="also write every run to this JSON file")
    args = parser.parse_args(argv)
    runs: list[Run] = []
    for assignment in args.assignments:
        for variant in VARIANTS[assignment]:
            if args.variants and variant not in args.variants:
                continue
            seeds = args.seeds if variant == "reference" else args.weak_seeds
            for mode in args.modes:
                for seed in seeds:
                    run = run_variant(assignment, variant, seed=seed, mode=mode)
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
