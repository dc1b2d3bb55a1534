"""Hidden tests of 02_numpy_library/2_mlp: any right style scores, each bug costs its own cells, cheats fail.

The graded cells (visible checks with recording stand-in layers, hidden tests
with the course's reference layers, course_tools.hidden.mlp_checks) run in
this process on learner code executed as a kernel would run it. The answer
cells run WITHOUT the learner's Linear and ReLU: every check must build the
models from stand-ins, which is what keeps a bug in the layers notebook from
costing points here. The nbgrader round trips of this notebook are in
test_numpy_layers.py (other styles, a cheat, a bug next to buggy layers).
"""

from __future__ import annotations

import numpy as np
import pytest

from learner_cells import failing, reference_code, run_as_notebook
from mytorch_lib.checks import CheckFailure
from mytorch_lib.recorders import check_backward_wiring, check_forward_wiring, check_layers, recording_layers

ASSIGNMENT = "02_numpy_library"
NOTEBOOK = "2_mlp"
CELLS = {f"test_{model}_{part}" for model in ("mlp0", "mlp1", "mlp4") for part in ("structure", "forward", "backward")}

# --- learner code: right answers in other styles ----------------------------------------------

ALTERNATIVES = {
    "mlp0": """
from functools import reduce

class MLP0:
    def __init__(self):
        self.layers = [Linear(in_features=2, out_features=3), ReLU()]

    def forward(self, A0):
        return reduce(lambda A, layer: layer.forward(A), self.layers, A0)

    def backward(self, dLdA):
        for layer in self.layers[::-1]:
            dLdA = layer.backward(dLdA)
        return dLdA
""",
    # inherits forward and backward; keeps its layers in a tuple
    "mlp1": """
class MLP1(MLP0):
    def __init__(self):
        self.layers = (Linear(2, 3), ReLU(), Linear(3, 2), ReLU())
""",
    # keeps every activation of the forward pass and walks the layers by index
    "mlp4": """
import itertools

class MLP4:
    def __init__(self, sizes=(2, 4, 8, 8, 4, 2)):
        self.layers = list(itertools.chain.from_iterable(
            (Linear(a, b), ReLU()) for a, b in zip(sizes, sizes[1:])))

    def forward(self, A0):
        self.outputs = [A0]
        for layer in self.layers:
            self.outputs.append(layer.forward(self.outputs[-1]))
        return self.outputs[-1]

    def backward(self, dLdA):
        for k in range(len(self.layers) - 1, -1, -1):
            dLdA = self.layers[k].backward(dLdA)
        return dLdA
""",
}

# --- learner code: specific bugs: (answer cell, text to find, replacement, graded cells that must fail) -----

BUGS = {
    "backward in forward order": ("mlp0", "for layer in reversed(self.layers):", "for layer in self.layers:",
                                  {"test_mlp0_backward"}),
    "backward returns nothing": ("mlp0", "return dLdA", "return None", {"test_mlp0_backward"}),
    "forward feeds A0 to every layer": ("mlp0", "A = layer.forward(A)", "A = layer.forward(A0)",
                                        {"test_mlp0_forward"}),
    "last ReLU missing": ("mlp1", "self.layers = [Linear(2, 3), ReLU(), Linear(3, 2), ReLU()]",
                          "self.layers = [Linear(2, 3), ReLU(), Linear(3, 2)]", {"test_mlp1_structure"}),
    "one ReLU object used twice": ("mlp1", "self.layers = [Linear(2, 3), ReLU(), Linear(3, 2), ReLU()]",
                                   "relu = ReLU()\n        self.layers = [Linear(2, 3), relu, Linear(3, 2), relu]",
                                   {"test_mlp1_structure", "test_mlp1_backward"}),
    "forward skips the activations": ("mlp1", "            A = layer.forward(A)",
                                      "            A = layer.forward(A) if hasattr(layer, 'W') else A",
                                      {"test_mlp1_forward"}),
    "a hidden width wrong": ("mlp4", "widths = [2, 4, 8, 8, 4, 2]", "widths = [2, 4, 8, 4, 2]",
                             {"test_mlp4_structure"}),
    "backward skips the activations": ("mlp4", "            dLdA = layer.backward(dLdA)",
                                       "            dLdA = layer.backward(dLdA) if hasattr(layer, 'W') else dLdA",
                                       {"test_mlp4_backward"}),
    "layers kept on the class": ("mlp4", "        widths = [2, 4, 8, 8, 4, 2]\n        self.layers = []",
                                 "        widths = [2, 4, 8, 8, 4, 2]\n        self.layers = MLP4.shared\n"
                                 "        self.layers.clear()", {"test_mlp4_structure"}),
}


def failing_cells(answers: dict[str, str] | None = None, extra: str = "") -> set[str]:
    """Graded cells of 2_mlp that fail with this code in the answer cells (reference elsewhere)."""
    namespace = run_as_notebook(ASSIGNMENT, NOTEBOOK, answers)
    assert "Linear" not in namespace and "ReLU" not in namespace, "the checks must not need the learner's layers"
    exec(extra, namespace)
    return failing(ASSIGNMENT, NOTEBOOK, namespace)


def test_reference_passes_every_cell():
    assert failing_cells() == set()


def test_right_answers_in_other_styles_pass():
    assert failing_cells(ALTERNATIVES) == set()


@pytest.mark.parametrize("bug", list(BUGS))
def test_each_bug_fails_exactly_its_cells(bug: str):
    cell, find, replace, expected = BUGS[bug]
    code = reference_code(ASSIGNMENT, NOTEBOOK, cell)
    assert find in code, f"the reference solution no longer contains {find!r}: update this test"
    extra = "MLP4.shared = []" if bug == "layers kept on the class" else ""
    assert failing_cells({cell: code.replace(find, replace)}, extra) == expected


def test_patched_numpy_is_refused():
    namespace = run_as_notebook(ASSIGNMENT, NOTEBOOK)
    genuine = np.allclose
    np.allclose = lambda *args, **kwargs: True
    try:
        assert failing(ASSIGNMENT, NOTEBOOK, namespace) == CELLS
    finally:
        np.allclose = genuine


def test_hard_coded_outputs_fail():
    """A model that returns fixed arrays of the right shapes passes no value check."""
    cheat = """
class MLP0:
    def __init__(self):
        self.layers = [Linear(2, 3), ReLU()]

    def forward(self, A0):
        return np.zeros((A0.shape[0], 3))

    def backward(self, dLdA):
        return np.zeros((dLdA.shape[0], 2))
"""
    assert failing_cells({"mlp0": cheat}) == {"test_mlp0_forward", "test_mlp0_backward"}


# --- the recording stand-ins, on their own ------------------------------------------------------------

class _Model:
    def __init__(self, order: str = "reverse"):
        self.layers = [Linear(2, 3), ReLU(), Linear(3, 1)]  # noqa: F821 (names given by recording_layers)
        self.order = order

    def forward(self, A):
        for layer in self.layers:
            A = layer.forward(A)
        return A

    def backward(self, dLdA):
        layers = self.layers[::-1] if self.order == "reverse" else self.layers
        for layer in layers:
            dLdA = layer.backward(dLdA)
        return dLdA


def test_recorders_accept_a_right_model_and_restore_the_names():
    namespace = globals()
    with recording_layers(namespace, "Linear", "ReLU"):
        model = _Model()
    assert "Linear" not in namespace and "ReLU" not in namespace
    check_layers(model, [("Linear", 2, 3), ("ReLU",), ("Linear", 3, 1)])
    check_forward_wiring(model)
    check_backward_wiring(model)


def test_recorders_name_the_mistake():
    with recording_layers(globals(), "Linear", "ReLU"):
        model = _Model(order="forward")
    with pytest.raises(CheckFailure, match=r"visited self.layers at positions \[0, 1, 2\], expected \[2, 1, 0\]"):
        check_backward_wiring(model)
    with pytest.raises(CheckFailure, match=r"layers\[2\] is Linear\(3, 1\), expected Linear\(3, 2\)"):
        check_layers(model, [("Linear", 2, 3), ("ReLU",), ("Linear", 3, 2)])
