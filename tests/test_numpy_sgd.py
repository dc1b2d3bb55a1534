"""Hidden tests of 02_numpy_library/4_sgd: any right style scores, each bug costs its own cells, cheats fail.

Fast checks run the notebook's graded cells (visible checks and hidden tests,
which call course_tools.hidden.sgd_checks) in this process on learner code
executed as a kernel would run it. Two submissions go through the real nbgrader
pipeline: a right SGD in another style next to a broken Linear in the layers
notebook (full marks here: the SGD tests use the grader's layers), and a
specific momentum bug (only that cell lost) next to a monkeypatching cheat in
the losses notebook (nothing scored there).
"""

from __future__ import annotations

import math

import nbformat
import pytest

from course_tools.course import SOURCE_DIR
from course_tools.hidden import sgd_checks
from learner_cells import (assert_refused_while_patched, failing, reference_code, run_as_notebook, submission,
                           whole_cell)

ASSIGNMENT = "02_numpy_library"
NOTEBOOK = "4_sgd"
CELLS = ("sgd_init", "sgd_plain", "sgd_momentum")

# --- learner code: right answers in other styles ----------------------------------------------

SGD_IN_PLACE_VELOCITY = """
class SGD:
    def __init__(self, model, lr=0.1, momentum=0):
        self.l = []
        for layer in model.layers:
            if hasattr(layer, "W") and hasattr(layer, "b"):
                self.l.append(layer)
        self.L = len(self.l)
        self.lr, self.mu = lr, momentum
        self.v_W = [np.zeros(layer.W.shape) for layer in self.l]
        self.v_b = [np.zeros(layer.b.shape) for layer in self.l]

    def step(self):
        # one formula for both cases: with mu = 0 the velocity is just the gradient
        for layer, v_W, v_b in zip(self.l, self.v_W, self.v_b):
            v_W *= self.mu
            v_W += layer.dLdW
            v_b *= self.mu
            v_b += layer.dLdb
            layer.W = layer.W - self.lr * v_W
            layer.b = layer.b - self.lr * v_b
"""

SGD_LR_IN_VELOCITY = """
class SGD:
    def __init__(self, model, lr=0.1, momentum=0):
        self.l = [layer for layer in model.layers if hasattr(layer, "W") and hasattr(layer, "b")]
        self.L = len(self.l)
        self.lr = lr
        self.mu = momentum
        self.v_W = [0.0 * layer.W for layer in self.l]
        self.v_b = [0.0 * layer.b for layer in self.l]

    def step(self):
        # the velocity carries the learning rate: v := mu v - lr g, W := W + v
        for i in range(self.L):
            self.v_W[i] = self.mu * self.v_W[i] - self.lr * self.l[i].dLdW
            self.v_b[i] = self.mu * self.v_b[i] - self.lr * self.l[i].dLdb
            self.l[i].W += self.v_W[i]
            self.l[i].b += self.v_b[i]
"""

SGD_WITH_BRANCH = """
class SGD:
    def __init__(self, model, lr=0.1, momentum=0):
        self.l = [layer for layer in model.layers if hasattr(layer, "W") and hasattr(layer, "b")]
        self.L = len(self.l)
        self.lr = lr
        self.mu = momentum
        self.v_W = [np.zeros_like(layer.W) for layer in self.l]
        self.v_b = [np.zeros_like(layer.b) for layer in self.l]

    def step(self):
        for i, layer in enumerate(self.l):
            if self.mu == 0:
                layer.W -= self.lr * layer.dLdW
                layer.b -= self.lr * layer.dLdb
            else:
                self.v_W[i] = self.mu * self.v_W[i] + layer.dLdW
                self.v_b[i] = self.mu * self.v_b[i] + layer.dLdb
                layer.W -= self.lr * self.v_W[i]
                layer.b -= self.lr * self.v_b[i]
"""

# --- learner code: specific bugs (edits of the reference solution) -----------------------------

BUGS = {
    "wrong default learning rate": ([("lr=0.1, momentum=0)", "lr=0.01, momentum=0)")], {"sgd_init"}),
    "velocity starts at ones": ([("np.zeros_like(layer.W)", "np.ones_like(layer.W)")], {"sgd_init", "sgd_momentum"}),
    "keeps the activations": ([('[layer for layer in model.layers if hasattr(layer, "W") and hasattr(layer, "b")]',
                                "list(model.layers)")], set(CELLS)),
    "updates a copy of W": ([("layer.W -= self.lr * self.v_W[i]", "W = layer.W\n            W = W - self.lr * self.v_W[i]")],
                            {"sgd_plain", "sgd_momentum"}),
    "no learning rate on b": ([("layer.b -= self.lr * self.v_b[i]", "layer.b -= self.v_b[i]")],
                              {"sgd_plain", "sgd_momentum"}),
    "dampens the gradient": ([("self.mu * self.v_W[i] + layer.dLdW", "self.mu * self.v_W[i] + (1 - self.mu) * layer.dLdW")],
                             {"sgd_momentum"}),
    "Nesterov look-ahead": ([("layer.W -= self.lr * self.v_W[i]",
                              "layer.W -= self.lr * (layer.dLdW + self.mu * self.v_W[i])")], {"sgd_momentum"}),
    "forgets the velocity between steps": ([("self.v_W[i] = self.mu * self.v_W[i] + layer.dLdW",
                                             "v_W = self.mu * self.v_W[i] + layer.dLdW"),
                                            ("layer.W -= self.lr * self.v_W[i]", "layer.W -= self.lr * v_W")],
                                           {"sgd_momentum"}),
}


def failing_cells(code: str | None = None) -> set[str]:
    """Graded cells of 4_sgd that fail with ``code`` in the answer cell (the reference where None)."""
    return failing(ASSIGNMENT, NOTEBOOK, run_as_notebook(ASSIGNMENT, NOTEBOOK, {"sgd_class": code} if code else None))


def with_bug(bug: str) -> str:
    code = reference_code(ASSIGNMENT, NOTEBOOK, "sgd_class")
    for find, replace in BUGS[bug][0]:
        assert find in code, f"the reference solution no longer contains {find!r}: update this test"
        code = code.replace(find, replace)
    return code


def test_reference_passes_every_cell():
    assert failing_cells() == set()


@pytest.mark.parametrize("code", [SGD_IN_PLACE_VELOCITY, SGD_LR_IN_VELOCITY, SGD_WITH_BRANCH],
                         ids=["in-place-velocity", "lr-in-velocity", "branch-on-momentum"])
def test_right_answers_in_other_styles_pass(code: str):
    assert failing_cells(code) == set()


@pytest.mark.parametrize("bug", list(BUGS))
def test_each_bug_fails_exactly_its_cells(bug: str):
    assert failing_cells(with_bug(bug)) == BUGS[bug][1]


def test_patched_math_is_refused():
    assert_refused_while_patched(sgd_checks, CELLS, run_as_notebook(ASSIGNMENT, NOTEBOOK), math, "isclose")


# --- through nbgrader ------------------------------------------------------------------------------

BROKEN_LINEAR = """
class Linear:
    def __init__(self, in_features, out_features):
        self.W = np.zeros((out_features, in_features))
        self.b = np.zeros((out_features, 1))

    def forward(self, A):
        self.A = A
        return A @ self.W.T

    def backward(self, dLdZ):
        self.dLdW = self.A.T @ dLdZ
        self.dLdb = np.sum(dLdZ, axis=1, keepdims=True)
        return dLdZ @ self.W.T
"""

CHEATING_LOSSES = """
class MSELoss:
    def forward(self, A, Y):
        return 0.0

    def backward(self):
        return 0.0

import numpy.testing
np.allclose = lambda *args, **kwargs: True
numpy.testing.assert_allclose = lambda *args, **kwargs: None
"""


def linear_cell() -> str | None:
    """grade_id of the answer cell defining Linear in 1_layers, if that notebook exists."""
    path = SOURCE_DIR / ASSIGNMENT / "1_layers.ipynb"
    if not path.exists():
        return None
    nb = nbformat.read(path, as_version=4)
    return next((c.id for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("solution")
                 and "class Linear" in c.source), None)


def test_nbgrader_gives_another_style_full_marks_whatever_the_linear_layer(grading):
    edits = {"4_sgd": {"sgd_class": whole_cell(ASSIGNMENT, "4_sgd", "sgd_class", SGD_LR_IN_VELOCITY)}}
    linear = linear_cell()
    if linear is not None:
        edits["1_layers"] = {linear: whole_cell(ASSIGNMENT, "1_layers", linear, BROKEN_LINEAR)}
    scores = grading.grade("sgd_alternative", ASSIGNMENT, submission(grading, ASSIGNMENT, edits))["notebooks"]
    assert scores["4_sgd"]["score"] == scores["4_sgd"]["max_score"] == 10, scores["4_sgd"]["cells"]
    if linear is not None:
        assert scores["1_layers"]["score"] < scores["1_layers"]["max_score"], "the broken Linear should lose points"


def test_nbgrader_charges_a_momentum_bug_to_its_cell_and_refuses_a_cheat(grading):
    find, replace = BUGS["dampens the gradient"][0][0]
    edits = {"4_sgd": {"sgd_class": (find, replace)},
             "3_losses": {"mse_class": whole_cell(ASSIGNMENT, "3_losses", "mse_class", CHEATING_LOSSES)}}
    scores = grading.grade("sgd_bugs", ASSIGNMENT, submission(grading, ASSIGNMENT, edits))["notebooks"]
    cells = {cell: score for cell, (score, _) in scores["4_sgd"]["cells"].items() if cell in CELLS}
    assert cells == {"sgd_init": 2, "sgd_plain": 4, "sgd_momentum": 0}
    assert scores["3_losses"]["score"] == 0, scores["3_losses"]["cells"]
