"""Hidden tests of 02_numpy_library/1_layers: any right style scores, each bug costs its own cells, cheats fail.

Fast checks run the notebook's graded cells (visible checks and hidden tests,
which call course_tools.hidden.layers_checks) in this process on learner code
executed as a kernel would run it. Three submissions go through the real
nbgrader pipeline: right answers in other styles (full marks) next to a
cheating MLP notebook (nothing scored there); specific bugs in the layers
(exactly their cells lost) next to other right MLP styles and one MLP bug;
and the bundled ``linear_bug`` example, which loses points in 1_layers only.
"""

from __future__ import annotations

import numpy as np
import pytest

from course_tools.course import notebooks
from course_tools.examples import EXAMPLES
from course_tools.submissions import learner_notebook
from learner_cells import failing, reference_code, run_as_notebook, submission, whole_cell

ASSIGNMENT = "02_numpy_library"
NOTEBOOK = "1_layers"
LINEAR_CELLS = ("test_linear_init", "test_linear_forward", "test_linear_backward_dLdA", "test_linear_backward_dLdW",
                "test_linear_backward_dLdb")
POINTS = {"test_linear_init": 2, "test_linear_forward": 4, "test_linear_backward_dLdA": 3,
          "test_linear_backward_dLdW": 3, "test_linear_backward_dLdb": 3,
          "test_sigmoid_forward": 1, "test_sigmoid_backward": 0.5, "test_tanh_forward": 1, "test_tanh_backward": 0.5,
          "test_relu_forward": 0.5, "test_relu_backward": 1, "test_gelu_forward": 0.75, "test_gelu_backward": 0.75,
          "test_swish_forward": 0.5, "test_swish_backward_dLdZ": 0.75, "test_swish_backward_dLdbeta": 0.75,
          "test_softmax_forward": 1, "test_softmax_backward": 1}

# --- learner code: right answers in other styles ----------------------------------------------

ALTERNATIVES = {
    "linear": """
class Linear:
    def __init__(self, in_features, out_features):
        self.W = np.zeros([out_features, in_features], dtype=np.float64)
        self.b = np.zeros([out_features, 1])

    def forward(self, A):
        self.A, self.N = A, len(A)
        return np.einsum("ni,ji->nj", A, self.W) + self.b.T

    def backward(self, dLdZ):
        self.dLdW = np.einsum("nj,ni->ji", dLdZ, self.A)
        self.dLdb = np.sum(dLdZ, axis=0, keepdims=True).T
        return np.einsum("nj,ji->ni", dLdZ, self.W)
""",
    # the naive formula: overflows (with a warning, which grading ignores) but gives the right values
    "sigmoid": """
class Sigmoid:
    def forward(self, Z):
        self.A = 1 / (1 + np.exp(-Z))
        return self.A

    def backward(self, dLdA):
        return dLdA * self.A * (1 - self.A)
""",
    # built on Sigmoid, recomputing the forward pass in backward
    "tanh": """
class Tanh:
    def forward(self, Z):
        self.Z = Z
        self.A = 2 * Sigmoid().forward(2 * Z) - 1
        return self.A

    def backward(self, dLdA):
        A = 2 * Sigmoid().forward(2 * self.Z) - 1
        return dLdA - dLdA * A ** 2
""",
    "relu": """
class ReLU:
    def forward(self, Z):
        self.A = np.where(Z > 0, Z, 0.0)
        return self.A

    def backward(self, dLdA):
        return np.where(self.A > 0, dLdA, 0.0)
""",
    "gelu": """
_erf = np.vectorize(math.erf)

class GELU:
    def forward(self, Z):
        self.cdf = 0.5 * (1.0 + _erf(Z / math.sqrt(2.0)))
        self.pdf = np.exp(-0.5 * Z ** 2) / math.sqrt(2 * math.pi)
        self.Z = Z
        self.A = Z * self.cdf
        return self.A

    def backward(self, dLdA):
        return dLdA * (self.cdf + self.Z * self.pdf)
""",
    "swish": """
class Swish:
    def __init__(self, beta=1.0):
        self.beta = beta

    def forward(self, Z):
        self.Z = Z
        self.A = Z / (1 + np.exp(-self.beta * Z))
        return self.A

    def backward(self, dLdA):
        s = np.where(self.Z == 0, 0.5, self.A / np.where(self.Z == 0, 1.0, self.Z))
        self.dLdbeta = float(np.einsum("nc,nc->", dLdA, self.Z ** 2 * s * (1 - s)))
        return dLdA * (s + self.beta * self.Z * s * (1 - s))
""",
    # log-sum-exp forward; the per-row Jacobian loop the notebook teaches first
    "softmax": """
from scipy.special import logsumexp

class Softmax:
    def forward(self, Z):
        self.A = np.exp(Z - logsumexp(Z, axis=1, keepdims=True))
        return self.A

    def backward(self, dLdA):
        dLdZ = np.zeros_like(dLdA)
        for n in range(dLdA.shape[0]):
            a = self.A[n]
            J = np.diag(a) - np.outer(a, a)
            dLdZ[n] = dLdA[n] @ J
        return dLdZ
""",
}

# --- learner code: specific bugs: (answer cell, text to find, replacement, graded cells that must fail) -----

BUGS = {
    "W transposed in __init__": ("linear", "np.zeros((out_features, in_features))",
                                 "np.zeros((in_features, out_features))", {"test_linear_init"}),
    "bias added as a column": ("linear", "Z = A @ self.W.T + ones @ self.b.T", "Z = A @ self.W.T + self.b.T.sum()",
                               {"test_linear_forward"}),
    "N is the feature count": ("linear", "self.N = A.shape[0]", "self.N = A.shape[1]", {"test_linear_forward"}),
    "dLdW transposed": ("linear", "self.dLdW = dLdZ.T @ self.A", "self.dLdW = self.A.T @ dLdZ",
                        {"test_linear_backward_dLdW"}),
    "dLdb not summed": ("linear", "self.dLdb = dLdZ.T @ ones", "self.dLdb = dLdZ.T", {"test_linear_backward_dLdb"}),
    "dLdb flat": ("linear", "self.dLdb = dLdZ.T @ ones", "self.dLdb = np.sum(dLdZ, axis=0)",
                  {"test_linear_backward_dLdb"}),
    "dLdA scaled": ("linear", "dLdA = dLdZ @ self.W", "dLdA = dLdZ @ self.W / self.N", {"test_linear_backward_dLdA"}),
    "sigmoid derivative of tanh": ("sigmoid", "dAdZ = self.A - self.A * self.A", "dAdZ = 1 - self.A * self.A",
                                   {"test_sigmoid_backward"}),
    "sigmoid loops over elements": (
        "sigmoid", "self.A = np.where(Z >= 0, 1 / (1 + E), E / (1 + E))",
        "self.A = np.array([[1 / (1 + math.exp(-z)) if z > -700 else 0.0 for z in row] for row in Z])",
        {"test_sigmoid_forward"}),
    "library tanh": ("tanh", "self.A = np.sign(Z) * (1 - E) / (1 + E)", "self.A = np.tanh(Z)", {"test_tanh_forward"}),
    "textbook tanh overflows": ("tanh", "self.A = np.sign(Z) * (1 - E) / (1 + E)",
                                "self.A = (np.exp(Z) - np.exp(-Z)) / (np.exp(Z) + np.exp(-Z))", {"test_tanh_forward"}),
    "relu gradient 1 at zero": ("relu", "return dLdA * (self.A > 0)", "return dLdA * (self.A >= 0)",
                                {"test_relu_backward"}),
    "gelu tanh approximation": (
        "gelu", "self.A = 0.5 * Z * (1 + erf(Z / np.sqrt(2)))",
        "self.A = 0.5 * Z * (1 + np.tanh(np.sqrt(2 / np.pi) * (Z + 0.044715 * Z ** 3)))", {"test_gelu_forward"}),
    "swish ignores beta": ("swish", "Sigmoid().forward(self.beta * Z)", "Sigmoid().forward(Z)",
                           {"test_swish_forward", "test_swish_backward_dLdZ", "test_swish_backward_dLdbeta"}),
    "swish dLdbeta not summed": ("swish", "self.dLdbeta = np.sum(dLdA * Z * Z * s * (1 - s))",
                                 "self.dLdbeta = dLdA * Z * Z * s * (1 - s)", {"test_swish_backward_dLdbeta"}),
    "softmax without the row maximum": ("softmax", "E = np.exp(Z - np.max(Z, axis=1, keepdims=True))",
                                        "E = np.exp(Z)", {"test_softmax_forward"}),
    "softmax backward uses the diagonal only": (
        "softmax", "return self.A * (dLdA - np.sum(dLdA * self.A, axis=1, keepdims=True))",
        "return self.A * (1 - self.A) * dLdA", {"test_softmax_backward"}),
}


def failing_cells(answers: dict[str, str] | None = None) -> set[str]:
    """Graded cells of 1_layers that fail with this code in the answer cells (reference elsewhere)."""
    return failing(ASSIGNMENT, NOTEBOOK, run_as_notebook(ASSIGNMENT, NOTEBOOK, answers))


def buggy(bug: str) -> dict[str, str]:
    cell, find, replace, _ = BUGS[bug]
    code = reference_code(ASSIGNMENT, NOTEBOOK, cell)
    assert find in code, f"the reference solution no longer contains {find!r}: update this test"
    return {cell: code.replace(find, replace)}


def test_reference_passes_every_cell():
    assert failing_cells() == set()


@pytest.mark.parametrize("group", [("linear", "sigmoid", "tanh", "relu"), ("gelu", "swish", "softmax")],
                         ids=["linear-sigmoid-tanh-relu", "gelu-swish-softmax"])
def test_right_answers_in_other_styles_pass(group: tuple[str, ...]):
    with np.errstate(all="ignore"):  # the naive sigmoid overflows harmlessly in the visible check
        assert failing_cells({cell: ALTERNATIVES[cell] for cell in group}) == set()


@pytest.mark.parametrize("bug", list(BUGS))
def test_each_bug_fails_exactly_its_cells(bug: str):
    with np.errstate(all="ignore"):
        assert failing_cells(buggy(bug)) == BUGS[bug][3]


def test_patched_numpy_is_refused():
    namespace = run_as_notebook(ASSIGNMENT, NOTEBOOK)
    genuine = np.allclose
    np.allclose = lambda *args, **kwargs: True
    try:
        assert failing(ASSIGNMENT, NOTEBOOK, namespace) == set(POINTS)
    finally:
        np.allclose = genuine


# --- through nbgrader ------------------------------------------------------------------------------

CHEATING_MLP0 = """
class MLP0:
    def __init__(self):
        self.layers = []

    def forward(self, A0):
        return A0

    def backward(self, dLdA):
        return dLdA

np.allclose = lambda *args, **kwargs: True
np.testing.assert_allclose = lambda *args, **kwargs: None
check_layers = check_forward_wiring = check_backward_wiring = lambda *args, **kwargs: None
"""

MLP_ALTERNATIVE = """
class MLP4:
    def __init__(self):
        sizes = (2, 4, 8, 8, 4, 2)
        self.layers = [layer for cin, cout in zip(sizes, sizes[1:]) for layer in (Linear(cin, cout), ReLU())]

    def forward(self, A0):
        for layer in self.layers:
            A0 = layer.forward(A0)
        return A0

    def backward(self, dLdA):
        for k in reversed(range(len(self.layers))):
            dLdA = self.layers[k].backward(dLdA)
        return dLdA
"""


def _lost(scores: dict, notebook: str) -> dict[str, float]:
    return {cell: m - s for cell, (s, m) in scores["notebooks"][notebook]["cells"].items() if s != m}


def test_nbgrader_gives_other_styles_full_marks_and_a_cheat_nothing(grading):
    edits = {"1_layers": {cell: whole_cell(ASSIGNMENT, NOTEBOOK, cell, code) for cell, code in ALTERNATIVES.items()},
             "2_mlp": {"mlp0": whole_cell(ASSIGNMENT, "2_mlp", "mlp0", CHEATING_MLP0)}}
    scores = grading.grade("layers_alternatives", ASSIGNMENT, submission(grading, ASSIGNMENT, edits))
    layers = scores["notebooks"][NOTEBOOK]
    assert layers["score"] == layers["max_score"] == 25, _lost(scores, NOTEBOOK)
    assert scores["notebooks"]["2_mlp"]["score"] == 0, scores["notebooks"]["2_mlp"]["cells"]


def test_nbgrader_charges_each_layer_bug_to_its_cells_only(grading):
    bugs = ("dLdb not summed", "relu gradient 1 at zero", "library tanh", "softmax without the row maximum")
    layer_edits: dict[str, tuple[str, str]] = {}
    for bug in bugs:
        cell, find, replace, _ = BUGS[bug]
        layer_edits[cell] = (find, replace)
    mlp_edits = {"mlp4": whole_cell(ASSIGNMENT, "2_mlp", "mlp4", MLP_ALTERNATIVE),
                 "mlp1": ("for layer in reversed(self.layers):", "for layer in self.layers[::-1][:-1]:")}
    scores = grading.grade("layers_bugs", ASSIGNMENT,
                           submission(grading, ASSIGNMENT, {"1_layers": layer_edits, "2_mlp": mlp_edits}))
    expected = set().union(*(BUGS[bug][3] for bug in bugs))
    assert _lost(scores, NOTEBOOK) == {cell: POINTS[cell] for cell in expected}
    # the MLP notebook runs on these buggy layers, yet only its own bug costs points
    assert _lost(scores, "2_mlp") == {"test_mlp1_backward": 4}


def test_linear_bug_costs_points_in_the_layers_notebook_only(grading):
    """Issue requirement: a bug in Linear loses points once, in 1_layers; every later notebook stays full."""
    example = next(e for e in EXAMPLES if e.student == "linear_bug")
    edits = example.edits[ASSIGNMENT]
    nbs = {nb.stem: learner_notebook(ASSIGNMENT, nb.stem, edits.get(nb.stem), release_dir=grading.release_dir)
           for nb in notebooks(ASSIGNMENT)}
    scores = grading.grade(example.student, ASSIGNMENT, nbs)
    assert _lost(scores, NOTEBOOK) == {"test_linear_backward_dLdW": 3}
    later = {name: nb for name, nb in scores["notebooks"].items() if name != NOTEBOOK}
    assert later, "no later notebook to compare"
    for name, nb in later.items():
        assert nb["score"] == nb["max_score"] > 0, f"{name} lost points for a bug in Linear: {_lost(scores, name)}"
