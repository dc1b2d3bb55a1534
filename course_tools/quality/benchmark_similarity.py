"""Benchmark: the similarity report on a synthetic class.

``python -m course_tools benchmark-similarity [--learners 300] [--assignment 02_numpy_library]``

It writes a class of synthetic submissions into a temporary course folder and
times ``run_similarity`` on it, split into extraction (preflight repair, the
learners' own code and its fingerprints, in parallel processes) and
comparison (every pair's scores, highlighting of the flagged pairs), then the
report writing. Every learner
starts from the reference solution and gets its own mix of edits, drawn from
a seeded random generator: local names renamed, independent statements
swapped, equivalent NumPy formulations, comments added. Most pairs therefore
share a lot of code, which is the expensive case for the comparison.

Timings depend on the machine's load: run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from course_tools.course import RELEASE_DIR, Workspace, notebooks
from course_tools.term.similarity import SimilarityResult, run_similarity, write_report
from course_tools.authoring.submissions import learner_notebook, write_submission
from course_tools.notebook_model import is_code_answer

#: equivalent formulations a learner may write instead of the reference's (find, replace)
REFORMULATIONS = (
    ("A @ self.W.T + ones @ self.b.T", "A.dot(self.W.T) + self.b.T"),
    ("dLdZ.T @ self.A", "np.dot(dLdZ.T, self.A)"),
    ("dLdZ @ self.W", "dLdZ.dot(self.W)"),
    ("np.maximum(0, Z)", "np.where(Z > 0, Z, 0.0)"),
    ("dLdA * (self.A > 0)", "np.where(self.A > 0, dLdA, 0.0)"),
    ("1 - self.A * self.A", "1 - self.A ** 2"),
    ("self.A - self.A * self.A", "self.A * (1 - self.A)"),
    ("np.sum(E, axis=1, keepdims=True)", "E.sum(axis=1, keepdims=True)"),
    ("np.max(Z, axis=1, keepdims=True)", "Z.max(axis=1, keepdims=True)"),
    ("A.shape[0]", "len(A)"),
    ("(A - Y) * (A - Y)", "(A - Y) ** 2"),
    ("np.mean(H)", "H.mean()"),
    ("np.sum(SE)", "SE.sum()"),
    ("for layer in reversed(self.layers):", "for layer in self.layers[::-1]:"),
    ("np.zeros_like(layer.W)", "np.zeros(layer.W.shape)"),
    ("np.zeros_like(layer.b)", "np.zeros(layer.b.shape)"),
    ("np.mean(Z, axis=0, keepdims=True)", "Z.mean(axis=0, keepdims=True)"),
    ("np.sqrt(self.V + self.eps)", "(self.V + self.eps) ** 0.5"),
)
#: names a learner may give to a local variable instead of the reference's
NAME_POOL = ("tmp", "val", "res", "out", "buf", "acc", "cur", "aux", "term", "part", "piece", "work")
COMMENTS = ("# compute it", "# vectorised", "# see the maths above", "# shapes checked by hand", "# TODO tidy")
_LOCAL_ASSIGNMENT = re.compile(r"^\s*([a-z_]\w*)\s*=(?!=)", re.M)
_SELF_ASSIGNMENT = re.compile(r"^\s*self\.(\w+)\s*=(?!=)")


def _rename_locals(code: str, rng: random.Random) -> str:
    names = sorted(set(_LOCAL_ASSIGNMENT.findall(code)) - {"self"})
    for name in names:
        if rng.random() < 0.7:
            code = re.sub(rf"(?<![\w.]){re.escape(name)}\b", f"{rng.choice(NAME_POOL)}_{name.lower()}", code)
    return code


def _swap_independent(code: str, rng: random.Random) -> str:
    """Swap neighbouring ``self.x = ...`` lines when neither mentions what the other assigns."""
    lines = code.split("\n")
    for i in range(len(lines) - 1):
        first, second = _SELF_ASSIGNMENT.match(lines[i]), _SELF_ASSIGNMENT.match(lines[i + 1])
        if (first and second and rng.random() < 0.5
                and f"self.{first.group(1)}" not in lines[i + 1] and f"self.{second.group(1)}" not in lines[i]):
            lines[i], lines[i + 1] = lines[i + 1], lines[i]
    return "\n".join(lines)


def _comment(code: str, rng: random.Random) -> str:
    lines = code.split("\n")
    for i, line in enumerate(lines):
        if line.strip() and not line.strip().startswith(("#", '"""', "def ", "class ")) and rng.random() < 0.15:
            lines[i] = f"{line}  {rng.choice(COMMENTS)}"
    return "\n".join(lines)


def varied_answer(code: str, rng: random.Random) -> str:
    """One learner's version of a reference answer cell: some reformulations, renames, swaps, comments."""
    for find, replace in REFORMULATIONS:
        if find in code and rng.random() < 0.5:
            code = code.replace(find, replace)
    return _comment(_swap_independent(_rename_locals(code, rng), rng), rng)


def synthetic_class(assignment: str, size: int, seed: int = 0,
                    release_dir: Path = RELEASE_DIR) -> dict[str, dict[str, Any]]:
    """``{learner: {notebook: nb}}``: ``size`` varied copies of the reference solution."""
    rng = random.Random(seed)
    names = [nb.stem for nb in notebooks(assignment)]
    reference = {name: learner_notebook(assignment, name, release_dir=release_dir) for name in names}
    result: dict[str, dict[str, Any]] = {}
    for k in range(size):
        learner: dict[str, Any] = {}
        for name, nb in reference.items():
            copy = nb.copy()
            copy.cells = [cell.copy() for cell in nb.cells]
            for cell in copy.cells:
                if is_code_answer(cell):
                    cell.source = varied_answer(cell.source, rng)
            learner[name] = copy
        result[f"learner_{k:03d}"] = learner
    return result


def run(learners: int, assignment: str, keep: Path | None = None, workers: int = 0) -> SimilarityResult:
    """Write the synthetic class, run the report on it and print the figures."""
    with tempfile.TemporaryDirectory(prefix="similarity-benchmark-") as tmp:
        root = Path(keep or tmp)
        workspace = Workspace(root, release_dir=RELEASE_DIR)
        started = time.perf_counter()
        for learner, nbs in synthetic_class(assignment, learners).items():
            write_submission(workspace.path("submitted", learner, assignment), nbs,
                             release_folder=RELEASE_DIR / assignment)
        setup = time.perf_counter() - started
        result = run_similarity(root, assignment, release_dir=RELEASE_DIR, workers=workers)
        started = time.perf_counter()
        html_path, _csv_path = write_report(result, root / "similarity" / assignment)
        writing = time.perf_counter() - started
        print(f"assignment:            {assignment}")
        print(f"learners:              {result.learners}")
        print(f"notebooks:             {len(result.notebooks)}")
        print(f"pairs compared:        {len(result.pairs)} ({result.flagged_count} flagged at "
              f">= {result.settings.threshold:g}: every synthetic learner starts from the reference)")
        print(f"extraction:            {result.seconds_extraction:.1f} s (preflight repair, own code, fingerprints; "
              f"{workers or os.cpu_count()} processes)")
        print(f"comparison:            {result.seconds_comparison:.1f} s "
              "(every pair's scores, highlighting of the shown pairs)")
        print(f"extraction+comparison: {result.seconds_extraction + result.seconds_comparison:.1f} s")
        print(f"report writing:        {writing:.1f} s ({html_path.stat().st_size / 1e6:.1f} MB of HTML)")
        print(f"(writing the synthetic class took {setup:.1f} s and is not counted)")
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_tools benchmark-similarity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--learners", type=int, default=300, help="size of the synthetic class (default 300)")
    parser.add_argument("--assignment", default="02_numpy_library", help="assignment (default 02_numpy_library)")
    parser.add_argument("-j", "--workers", type=int, default=0, help="processes (default: number of cores)")
    parser.add_argument("--keep", default=None, help="write the class and report here instead of a temporary folder")
    args = parser.parse_args(argv)
    run(args.learners, args.assignment, Path(args.keep) if args.keep else None, args.workers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
