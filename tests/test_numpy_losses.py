"""Hidden tests of 02_numpy_library/3_losses: any right style scores, each bug costs its own cells, cheats fail.

Fast checks run the notebook's graded cells (visible checks and hidden tests,
which call course_tools.hidden.losses_checks) in this process on learner code
executed as a kernel would run it. Two submissions go through the real
nbgrader pipeline: alternative right answers (full marks), and specific bugs
(the right cells lost) next to a monkeypatching cheat in the SGD notebook
(nothing scored there).
"""

from __future__ import annotations

import numpy as np
import pytest

from course_tools.hidden import losses_checks
from learner_cells import (assert_refused_while_patched, failing, reference_code, run_as_notebook, submission,
                           whole_cell)

ASSIGNMENT = "02_numpy_library"
NOTEBOOK = "3_losses"
CELLS = ("mse_forward", "mse_backward", "ce_forward", "ce_stable", "ce_backward")

# --- learner code: right answers in other styles ----------------------------------------------

MSE_MEAN = """
class MSELoss:
    def forward(self, A, Y):
        self.A, self.Y = A, Y
        return float(np.mean((A - Y) ** 2))

    def backward(self):
        return 2.0 * (self.A - self.Y) / self.A.size
"""

MSE_ONES_VECTORS = """
class MSELoss:
    def forward(self, A, Y):
        self.A = A
        self.Y = Y
        N, C = A.shape
        SE = (A - Y) * (A - Y)
        SSE = np.ones((N, 1)).T @ SE @ np.ones((C, 1))
        return SSE.item() / (N * C)

    def backward(self):
        N, C = self.A.shape
        return (2 / (N * C)) * (self.A - self.Y)
"""

CE_SCIPY_EINSUM = """
from scipy.special import logsumexp, softmax

class CrossEntropyLoss:
    def forward(self, A, Y):
        self.A, self.Y = A, Y
        log_S = A - logsumexp(A, axis=1, keepdims=True)
        return -np.einsum("ij,ij->", Y, log_S) / A.shape[0]

    def backward(self):
        return (softmax(self.A, axis=1) - self.Y) / self.A.shape[0]
"""

CE_ONES_VECTORS = """
class CrossEntropyLoss:
    def forward(self, A, Y):
        self.A = A
        self.Y = Y
        N, C = A.shape
        m = A.max(axis=1).reshape(N, 1)
        log_S = A - (m + np.log(np.exp(A - m) @ np.ones((C, 1))))
        H = (-Y * log_S) @ np.ones((C, 1))
        return (np.ones((1, N)) @ H).item() / N

    def backward(self):
        E = np.exp(self.A - self.A.max(axis=1, keepdims=True))
        return (E / E.sum(axis=1, keepdims=True) - self.Y) / self.A.shape[0]
"""

# --- learner code: specific bugs ----------------------------------------------------------------

MSE_BUGS = {
    "divides by N only": ("return SSE / (N * C)", "return SSE / N", {"mse_forward"}),
    "forgets the 2 in backward": ("return 2 * (self.A - self.Y)", "return (self.A - self.Y)", {"mse_backward"}),
    "returns a 1 x 1 matrix": ("SSE = np.sum(SE)", "SSE = np.ones((1, N)) @ SE @ np.ones((C, 1))", {"mse_forward"}),
    "loops over samples": ("SSE = np.sum(SE)", "SSE = sum(float(np.sum(row)) for row in SE)", {"mse_forward"}),
}
CE_BUGS = {
    "logs an underflowed softmax": ("H = np.sum(-Y * log_S, axis=1)", "H = np.sum(-Y * np.log(self.S), axis=1)",
                                    {"ce_stable"}),
    "forgets the row maximum": ("shifted = A - np.max(A, axis=1, keepdims=True)", "shifted = A", {"ce_stable"}),
    "subtracts the global maximum": ("np.max(A, axis=1, keepdims=True)", "np.max(A)", {"ce_stable"}),
    "drops keepdims": ("np.max(A, axis=1, keepdims=True)", "np.max(A, axis=1)",
                       {"ce_forward", "ce_stable", "ce_backward"}),
    "divides by N * C": ("return np.mean(H)", "return np.sum(H) / A.size", {"ce_forward", "ce_stable"}),
    "forgets 1/N in backward": ("return (self.S - self.Y) / N", "return self.S - self.Y", {"ce_backward"}),
    "changes A in place": ("shifted = A - np.max(A, axis=1, keepdims=True)",
                           "A -= np.max(A, axis=1, keepdims=True)\n        shifted = A", {"ce_forward"}),
    "loops over samples in backward": ("return (self.S - self.Y) / N",
                                       "return np.array([(s - y) / N for s, y in zip(self.S, self.Y)])",
                                       {"ce_backward"}),
}


def reference(grade_id: str) -> str:
    return reference_code(ASSIGNMENT, NOTEBOOK, grade_id)


def failing_cells(mse: str | None = None, ce: str | None = None) -> set[str]:
    """Graded cells of 3_losses that fail with this code in the answer cells (reference where None)."""
    answers = {cell: code for cell, code in (("mse_class", mse), ("ce_class", ce)) if code is not None}
    return failing(ASSIGNMENT, NOTEBOOK, run_as_notebook(ASSIGNMENT, NOTEBOOK, answers))


def test_reference_passes_every_cell():
    assert failing_cells() == set()


@pytest.mark.parametrize("mse, ce", [(MSE_MEAN, CE_SCIPY_EINSUM), (MSE_ONES_VECTORS, CE_ONES_VECTORS)],
                         ids=["mean-scipy-einsum", "ones-vectors"])
def test_right_answers_in_other_styles_pass(mse: str, ce: str):
    assert failing_cells(mse, ce) == set()


@pytest.mark.parametrize("bug", list(MSE_BUGS) + list(CE_BUGS))
def test_each_bug_fails_exactly_its_cells(bug: str):
    cell, (find, replace, expected) = ("mse_class", MSE_BUGS[bug]) if bug in MSE_BUGS else ("ce_class", CE_BUGS[bug])
    code = reference(cell)
    assert find in code, f"the reference solution no longer contains {find!r}: update this test"
    assert failing_cells(**{cell[:-6]: code.replace(find, replace)}) == expected


def test_patched_numpy_is_refused():
    assert_refused_while_patched(losses_checks, CELLS, run_as_notebook(ASSIGNMENT, NOTEBOOK), np, "allclose")


# --- through nbgrader ------------------------------------------------------------------------------

CHEATING_SGD = """
class SGD:
    def __init__(self, model, lr=0.1, momentum=0):
        pass

    def step(self):
        pass

import builtins
np.allclose = lambda *args, **kwargs: True
builtins.abs = lambda x: 0
"""


def test_nbgrader_gives_alternatives_full_marks(grading):
    edits = {"3_losses": {"mse_class": whole_cell(ASSIGNMENT, "3_losses", "mse_class", MSE_ONES_VECTORS),
                          "ce_class": whole_cell(ASSIGNMENT, "3_losses", "ce_class", CE_SCIPY_EINSUM)}}
    scores = grading.grade("losses_alternatives", ASSIGNMENT, submission(grading, ASSIGNMENT, edits))
    scores = scores["notebooks"]["3_losses"]
    assert scores["score"] == scores["max_score"] == 10, scores["cells"]


def test_nbgrader_charges_each_bug_to_its_cells_and_refuses_a_cheat(grading):
    mse_find, mse_replace, _ = MSE_BUGS["divides by N only"]
    ce_find, ce_replace, _ = CE_BUGS["logs an underflowed softmax"]
    edits = {"3_losses": {"mse_class": (mse_find, mse_replace), "ce_class": (ce_find, ce_replace)},
             "4_sgd": {"sgd_class": whole_cell(ASSIGNMENT, "4_sgd", "sgd_class", CHEATING_SGD)}}
    scores = grading.grade("losses_bugs", ASSIGNMENT, submission(grading, ASSIGNMENT, edits))["notebooks"]
    cells = {cell: score for cell, (score, _) in scores["3_losses"]["cells"].items() if cell in CELLS}
    assert cells == {"mse_forward": 0, "mse_backward": 2, "ce_forward": 2, "ce_stable": 0, "ce_backward": 2}
    assert scores["4_sgd"]["score"] == 0, scores["4_sgd"]["cells"]
