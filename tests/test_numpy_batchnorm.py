"""Grading of the BatchNorm notebook (02_numpy_library/5_batchnorm): fair to right answers, hard on wrong ones.

Two levels:

- direct: the grader module's checks run on learner classes built from the
  solution cell with one plausible bug each; every bug must fail exactly the
  checks of the behaviours it breaks (fast, no nbgrader);
- end to end: learner-style submissions autograded by nbgrader; another
  correct implementation (closed-form backward, einsum, np.var, in-place
  running updates) scores full marks, bugs lose the points of the right
  cells, and a monkeypatching cheat scores nothing.
"""

from __future__ import annotations

from typing import Any, Callable

import nbformat
import numpy as np
import pytest

from course_tools.course import SOURCE_DIR
from course_tools.hidden import batchnorm_checks as grader
from course_tools.submissions import learner_notebook, solution_text

ASSIGNMENT, NOTEBOOK, CLASS_CELL = "02_numpy_library", "5_batchnorm", "bn_class"

#: graded cell -> the grader check it calls
CELLS: dict[str, Callable[[dict[str, Any]], None]] = {
    "bn_init": grader.check_init,
    "bn_forward_train": grader.check_forward_train,
    "bn_running_stats": grader.check_running_stats,
    "bn_eval": grader.check_eval,
    "bn_backward_params": grader.check_backward_params,
    "bn_backward_input": grader.check_backward_input,
    "bn_batch_of_one": grader.check_batch_of_one,
    "bn_vectorised": grader.check_vectorised,
}

#: A correct implementation in another style: np.var, a ones-vector product, einsum, in-place running
#: updates, the compact closed-form backward.
ALTERNATIVE = '''
class BatchNorm1d:
    def __init__(self, num_features, alpha=0.9):
        self.alpha = alpha
        self.eps = 1e-8
        shape = (1, num_features)
        self.BW, self.Bb = np.ones(shape), np.zeros(shape)
        self.dLdBW, self.dLdBb = np.zeros(shape), np.zeros(shape)
        self.running_M, self.running_V = np.zeros(shape), np.ones(shape)

    def forward(self, Z, eval=False):
        if eval:
            return self.BW * (Z - self.running_M) / np.sqrt(self.running_V + self.eps) + self.Bb
        N = Z.shape[0]
        mean = np.ones((1, N)) @ Z / N
        var = np.var(Z, axis=0, keepdims=True)
        self.inv_std = 1.0 / np.sqrt(var + self.eps)
        self.xhat = (Z - mean) * self.inv_std
        self.running_M *= self.alpha
        self.running_M += (1 - self.alpha) * mean
        self.running_V = self.alpha * self.running_V + (1 - self.alpha) * var
        return np.einsum("ij,j->ij", self.xhat, self.BW[0]) + self.Bb

    def backward(self, dLdBZ):
        N = dLdBZ.shape[0]
        self.dLdBW = np.einsum("ij,ij->j", dLdBZ, self.xhat)[np.newaxis, :]
        self.dLdBb = dLdBZ.sum(axis=0)[np.newaxis, :]
        g = dLdBZ * self.BW
        return self.inv_std / N * (N * g - g.sum(0, keepdims=True) - self.xhat * (g * self.xhat).sum(0, keepdims=True))
'''

#: Another correct one: variance as E[Z^2] - M^2, one code path for both modes, the spec's chain
#: without the 2/N dLdV sum(Z - M) term of dLdM (that sum is 0 up to rounding).
ALTERNATIVE_SHORTCUTS = '''
class BatchNorm1d:
    def __init__(self, num_features, alpha=0.9):
        self.alpha, self.eps = alpha, 1e-8
        self.BW = np.ones((1, num_features))
        self.Bb = np.zeros((1, num_features))
        self.dLdBW = np.zeros((1, num_features))
        self.dLdBb = np.zeros((1, num_features))
        self.running_M = np.zeros((1, num_features))
        self.running_V = np.ones((1, num_features))

    def forward(self, Z, eval=False):
        if eval:
            mean, var = self.running_M, self.running_V
        else:
            mean = Z.mean(axis=0, keepdims=True)
            var = (Z * Z).mean(axis=0, keepdims=True) - mean ** 2
            self.running_M = self.alpha * self.running_M + (1 - self.alpha) * mean
            self.running_V = self.alpha * self.running_V + (1 - self.alpha) * var
        NZ = (Z - mean) / np.sqrt(var + self.eps)
        if not eval:
            self.Z, self.mean, self.var, self.NZ = Z, mean, var, NZ
        return self.BW * NZ + self.Bb

    def backward(self, dLdBZ):
        N = dLdBZ.shape[0]
        self.dLdBW = (dLdBZ * self.NZ).sum(axis=0, keepdims=True)
        self.dLdBb = dLdBZ.sum(axis=0, keepdims=True)
        dLdNZ = dLdBZ * self.BW
        dLdV = -0.5 * (dLdNZ * (self.Z - self.mean)).sum(axis=0, keepdims=True) * (self.var + self.eps) ** -1.5
        dLdM = -dLdNZ.sum(axis=0, keepdims=True) / np.sqrt(self.var + self.eps)
        return dLdNZ / np.sqrt(self.var + self.eps) + dLdV * 2 / N * (self.Z - self.mean) + dLdM / N
'''

#: name -> (edit of the solution cell, graded cells that must lose their points)
BUGS: dict[str, tuple[tuple[str, str], set[str]]] = {
    "unbiased variance": (
        ("self.V = np.mean((Z - self.M) ** 2, axis=0, keepdims=True)",
         "self.V = np.var(Z, axis=0, keepdims=True, ddof=1)"),
        {"bn_forward_train", "bn_running_stats", "bn_backward_params", "bn_backward_input", "bn_batch_of_one"}),
    "no eps in the training forward": (
        ("self.NZ = (Z - self.M) / np.sqrt(self.V + self.eps)", "self.NZ = (Z - self.M) / np.sqrt(self.V)"),
        {"bn_forward_train", "bn_batch_of_one"}),
    "mean over the wrong axis": (
        ("self.M = np.mean(Z, axis=0, keepdims=True)", "self.M = np.mean(Z, axis=1, keepdims=True)"),
        {"bn_forward_train", "bn_running_stats", "bn_backward_params", "bn_backward_input", "bn_batch_of_one"}),
    "running statistics updated in eval mode": (
        ("return self.BW * NZ + self.Bb",
         "self.running_M = self.alpha * self.running_M + (1 - self.alpha) * np.mean(Z, axis=0, keepdims=True)\n"
         "            return self.BW * NZ + self.Bb"),
        {"bn_eval"}),
    "alpha swapped with 1 - alpha": (
        ("self.running_M = self.alpha * self.running_M + (1 - self.alpha) * self.M",
         "self.running_M = (1 - self.alpha) * self.running_M + self.alpha * self.M"),
        {"bn_running_stats"}),
    "no eps in eval mode": (
        ("NZ = (Z - self.running_M) / np.sqrt(self.running_V + self.eps)",
         "NZ = (Z - self.running_M) / np.sqrt(self.running_V)"),
        {"bn_eval"}),
    "parameter gradients accumulate": (
        ("self.dLdBW = np.sum(dLdBZ * self.NZ, axis=0, keepdims=True)",
         "self.dLdBW = self.dLdBW + np.sum(dLdBZ * self.NZ, axis=0, keepdims=True)"),
        {"bn_backward_params"}),
    "dLdZ without the path through the mean": (
        ("dLdZ = dLdNZ * inv_std + dLdV * 2 / self.N * centred + dLdM / self.N",
         "dLdZ = dLdNZ * inv_std + dLdV * 2 / self.N * centred"),
        {"bn_backward_input", "bn_batch_of_one"}),
    "dLdZ without the path through the variance": (
        ("dLdZ = dLdNZ * inv_std + dLdV * 2 / self.N * centred + dLdM / self.N",
         "dLdZ = dLdNZ * inv_std + dLdM / self.N"),
        {"bn_backward_input"}),
    "1 x C rows stored as (C,) vectors": (
        ("self.dLdBb = np.sum(dLdBZ, axis=0, keepdims=True)", "self.dLdBb = np.sum(dLdBZ, axis=0)"),
        {"bn_backward_params", "bn_batch_of_one"}),
    "shared array in the constructor": (
        ("self.dLdBb = np.zeros((1, num_features))", "self.dLdBb = self.dLdBW"),
        {"bn_init"}),
    "a Python loop over the samples": (
        ("dLdV = -0.5 * np.sum(dLdNZ * centred, axis=0, keepdims=True) * inv_std ** 3",
         "dLdV = np.zeros_like(self.V)\n"
         "        for i in range(self.N):\n"
         "            dLdV = dLdV - 0.5 * dLdNZ[i:i + 1] * centred[i:i + 1] * inv_std ** 3"),
        {"bn_vectorised"}),
}


def _solution() -> str:
    source = nbformat.read(SOURCE_DIR / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
    cell = next(c for c in source.cells if c.get("id") == CLASS_CELL)
    return solution_text(cell.source)


def _namespace(code: str) -> dict[str, Any]:
    """A notebook-like namespace (classes belong to __main__) after running ``code``."""
    namespace: dict[str, Any] = {"__name__": "__main__", "np": np}
    exec(compile(code, "<learner cell>", "exec"), namespace)
    return namespace


def _failed_checks(code: str) -> set[str]:
    namespace = _namespace(code)
    failed = set()
    for cell, check in CELLS.items():
        try:
            check(namespace)
        except AssertionError:
            failed.add(cell)
        except Exception:  # a crash of the learner's code fails the cell too
            failed.add(cell)
    return failed


def _apply(edit: tuple[str, str]) -> str:
    text = _solution()
    find, replace = edit
    assert find in text, f"the solution cell no longer contains {find!r}: update this test"
    return text.replace(find, replace)


@pytest.mark.parametrize("code", [pytest.param(None, id="reference"), pytest.param(ALTERNATIVE, id="closed-form"),
                                  pytest.param(ALTERNATIVE_SHORTCUTS, id="shortcuts")])
def test_correct_implementations_pass_every_check(code: str | None):
    assert _failed_checks(code or _solution()) == set()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("bug", sorted(BUGS))
def test_each_bug_fails_exactly_its_checks(bug: str):
    edit, lost = BUGS[bug]
    with np.errstate(all="ignore"):
        assert _failed_checks(_apply(edit)) == lost


def test_torch_in_the_class_scores_nothing():
    code = _solution().replace("self.M = np.mean(Z, axis=0, keepdims=True)",
                               "import torch\n        self.M = np.mean(Z, axis=0, keepdims=True)")
    assert _failed_checks(code) == set(CELLS)


def _cells(scores: dict[str, Any]) -> dict[str, tuple[float, float]]:
    return scores["notebooks"][NOTEBOOK]["cells"]


def _lost(scores: dict[str, Any]) -> set[str]:
    return {cell for cell, (score, max_score) in _cells(scores).items() if score != max_score}


def _grade(grading: Any, student: str, notebook: Any) -> dict[str, Any]:
    """Autograde a submission that holds only this notebook (it does not import its siblings)."""
    return grading.grade(student, ASSIGNMENT, {NOTEBOOK: notebook})


def test_alternative_implementation_scores_full_marks(grading):
    nb = learner_notebook(ASSIGNMENT, NOTEBOOK, {CLASS_CELL: (_solution(), ALTERNATIVE)},
                          release_dir=grading.release_dir)
    scores = _grade(grading, "bn_alternative", nb)
    assert _lost(scores) == set()
    assert scores["notebooks"][NOTEBOOK]["score"] == 20


@pytest.mark.parametrize("bugs", [("unbiased variance",),
                                  ("alpha swapped with 1 - alpha", "running statistics updated in eval mode")],
                         ids=["unbiased", "alpha-and-eval"])
def test_bugs_lose_the_points_of_their_cells(bugs: tuple[str, ...], grading):
    code, lost = _solution(), set()
    for bug in bugs:  # bugs in different places of the class, charged to different cells
        (find, replace), cells = BUGS[bug]
        code, lost = code.replace(find, replace), lost | cells
    nb = learner_notebook(ASSIGNMENT, NOTEBOOK, {CLASS_CELL: (_solution(), code)}, release_dir=grading.release_dir)
    scores = _grade(grading, "bn_" + "_".join(b.split()[0] for b in bugs), nb)
    assert _lost(scores) == lost
    assert all(_cells(scores)[cell][0] == 0 for cell in lost)


def test_monkeypatching_cheat_scores_nothing(grading):
    edit, _ = BUGS["unbiased variance"]
    cheat = _apply(edit) + (
        "\n\nnp.allclose = lambda *args, **kwargs: True"
        "\ncheck_close = lambda *args, **kwargs: None"
        "\ncheck_shape = lambda *args, **kwargs: None\n")
    nb = learner_notebook(ASSIGNMENT, NOTEBOOK, {CLASS_CELL: (_solution(), cheat)}, release_dir=grading.release_dir)
    scores = _grade(grading, "bn_cheat", nb)
    assert scores["notebooks"][NOTEBOOK]["score"] == 0
