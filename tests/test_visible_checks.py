"""Visible checks diagnose a learner's slip instead of handing over the solution line.

Each case runs a notebook's answer cells with one typical slip, then the visible part of a test cell
(what the learner runs before submitting), and reads the message: it names the cause ("where is b?",
"off by a factor N", "keepdims"), shows the inputs, and never prints the solution's formula as code.
The library's own frames are marked hidden for IPython's tracebacks.
"""

from __future__ import annotations

import textwrap

import nbformat
import numpy as np
import pytest

from course_tools.course import RELEASE_DIR, SOURCE_DIR, notebooks
from course_tools.grading.execute import run_notebook
from learner_cells import reference_code, run_as_notebook
from mytorch_lib import checks, gradcheck
from mytorch_lib.checks import CheckFailure

NUMPY = "02_numpy_library"


def visible_part(notebook: str, grade_id: str) -> str:
    nb = nbformat.read(SOURCE_DIR / NUMPY / f"{notebook}.ipynb", as_version=4)
    source = next(c.source for c in nb.cells if c.get("id") == grade_id)
    return source.split("### BEGIN HIDDEN TESTS")[0]


def visible_message(notebook: str, grade_id: str, answer_cell: str, find: str, replace: str) -> str:
    """The message of the visible check ``grade_id`` after ``find`` -> ``replace`` in ``answer_cell``."""
    code = reference_code(NUMPY, notebook, answer_cell)
    assert find in code, find
    namespace = run_as_notebook(NUMPY, notebook, {answer_cell: code.replace(find, replace)})
    with pytest.raises(CheckFailure) as failure:
        exec(compile(visible_part(notebook, grade_id), f"<{grade_id}>", "exec"), namespace)
    return str(failure.value)


@pytest.mark.parametrize("notebook, grade_id, answer_cell, find, replace, diagnosis", [
    ("1_layers", "test_linear_forward", "linear", "Z = A @ self.W.T + ones @ self.b.T", "Z = A @ self.W.T",
     "where is b?"),
    ("1_layers", "test_linear_forward", "linear", "Z = A @ self.W.T + ones @ self.b.T", "Z = A @ self.W.T + self.b",
     "b must run along each row"),
    ("3_losses", "mse_forward", "mse_class", "return SSE / (N * C)", "return SSE / N", "over the N rows only"),
    ("3_losses", "mse_backward", "mse_class", "return 2 * (self.A - self.Y) / (N * C)",
     "return (self.A - self.Y) / (N * C)", "factor 2"),
    ("3_losses", "ce_forward", "ce_class", "shifted = A - np.max(A, axis=1, keepdims=True)",
     "shifted = A - np.max(A, axis=1)", "keepdims=True"),
    ("3_losses", "ce_forward", "ce_class", "return np.mean(H)", "return np.sum(H)", "their mean"),
    ("3_losses", "ce_backward", "ce_class", "return (self.S - self.Y) / N", "return self.S - self.Y", "factor N"),
    ("3_losses", "ce_backward", "ce_class", "return (self.S - self.Y) / N", "return (self.Y - self.S) / N",
     "wrong sign"),
], ids=["linear_no_b", "linear_b_as_column", "mse_mean_over_rows", "mse_no_2", "ce_no_keepdims", "ce_sum",
        "ce_backward_no_N", "ce_backward_sign"])
def test_a_slip_gets_its_diagnosis_not_the_solution(notebook, grade_id, answer_cell, find, replace, diagnosis):
    message = visible_message(notebook, grade_id, answer_cell, find, replace)
    assert f"diagnosis: {diagnosis}" in message or (diagnosis in message and "diagnosis:" in message), message
    for solution_line in ("@ b.T", "ones(N, 1)", "softmax(A) - Y", "2 (A - Y)", "(A - Y) /"):
        assert solution_line not in message, message


def test_linear_forward_shows_every_input():
    message = visible_message("1_layers", "test_linear_forward", "linear", "Z = A @ self.W.T + ones @ self.b.T",
                              "Z = A @ self.W.T")
    assert "A = [[1, 2, 3]" in message.replace(".", "") or "A = [[1., 2., 3.]" in message
    assert "W = " in message and "b = " in message


def test_an_elementwise_gradient_is_not_told_to_check_transposes():
    class SquareWithSlip:  # dA/dZ should be 2 Z; this backward forgets the 2
        def forward(self, Z):
            self.Z = Z
            return Z * Z

        def backward(self, dLdA):
            return dLdA * self.Z + 0.1

    with pytest.raises(CheckFailure) as failure:
        gradcheck.check_layer_gradients(SquareWithSlip(), np.array([[0.5, -1.0, 2.0]]), params=[])
    assert "derivative" in str(failure.value) and "transpose" not in str(failure.value)


def test_a_gradient_off_by_a_factor_is_diagnosed():
    class HalfGradient:
        def forward(self, Z):
            self.Z = Z
            return Z * Z

        def backward(self, dLdA):
            return dLdA * self.Z  # half of 2 Z

    with pytest.raises(CheckFailure, match="1/2 times the expected"):
        gradcheck.check_layer_gradients(HalfGradient(), np.array([[0.5, -1.0, 2.0]]), params=[])


@pytest.mark.parametrize("shape, example", [((2, 3), "list of 2 rows, each a list of 3 numbers"),
                                            ((4,), "list of 4 numbers"), ((), "a single number")])
def test_answer_layout_hint_follows_the_expected_shape(shape, example):
    with pytest.raises(CheckFailure, match=example):
        checks.as_answer_array("answer", [[1.0, 2.0]] * 5, shape)


def test_single_numbers_get_a_factor_diagnosis_only_for_plain_factors():
    with pytest.raises(CheckFailure) as plain:
        checks.check_scalar("L", 6.5, 3.25)
    assert "2 times the expected" in str(plain.value)
    with pytest.raises(CheckFailure) as other:
        checks.check_scalar("L", 3.3, 3.25, hint="look at the mean")
    assert "diagnosis" not in str(other.value) and "hint: look at the mean" in str(other.value)


def test_library_frames_are_hidden_from_ipython_tracebacks():
    """IPython skips frames whose locals hold __tracebackhide__ (all but the one that raised)."""
    import inspect

    for function in (checks.check_close, checks.check_shape, checks.check_scalar, checks.check_type,
                     checks.as_answer_array, checks.call_checked, gradcheck.check_layer_gradients,
                     gradcheck.check_loss_gradients):
        assert "__tracebackhide__ = True" in inspect.getsource(function), function.__name__


def test_call_checked_passes_other_errors_through():
    with pytest.raises(ZeroDivisionError):
        checks.call_checked("f", lambda: 1 / 0)
    assert checks.call_checked("f", lambda x: x + 1, 1) == 2
    with pytest.raises(ValueError, match="not about shapes"):
        checks.call_checked("f", lambda: (_ for _ in ()).throw(ValueError("not about shapes")))


def test_demo_code_in_notebooks_uses_the_learners_methods():
    """The 2_mlp summary and the 4_sgd digits model state forward and backward in words; the loops are the
    learner's (the 4_sgd model inherits the learner's MLP0)."""
    for notebook in ("2_mlp", "4_sgd"):
        nb = nbformat.read(SOURCE_DIR / NUMPY / f"{notebook}.ipynb", as_version=4)
        given = [c.source for c in nb.cells if not c.get("metadata", {}).get("nbgrader", {}).get("solution")]
        text = "\n".join(given)
        assert "A = layer.forward(A)" not in text and "dLdA = layer.backward(dLdA)" not in text, notebook
    sgd = nbformat.read(SOURCE_DIR / NUMPY / "4_sgd.ipynb", as_version=4)
    assert any(textwrap.dedent(c.source).startswith("class DigitsMLP(MLP0):") for c in sgd.cells)


@pytest.mark.parametrize("assignment", [NUMPY])
def test_untouched_release_draws_no_empty_figures(assignment, tmp_path):
    """Run as a learner first opens them (plots drawn inline): a demo cell whose learner code is still a stub
    says what it needs instead of leaving empty axes behind an error."""
    import shutil

    folder = tmp_path / assignment
    shutil.copytree(RELEASE_DIR / assignment, folder)
    drawn = 0
    for path in notebooks(assignment, RELEASE_DIR):
        for cell in run_notebook(folder / path.name).notebook.cells:
            outputs = cell.get("outputs", [])
            images = sum("image/png" in o.get("data", {}) for o in outputs)
            drawn += images
            assert not (images and any(o.get("output_type") == "error" for o in outputs)), \
                f"{path.name}, cell {cell.get('id')}: a failed cell left a figure"
    assert drawn > 0, "the notebooks draw figures when run (the check above looked at real outputs)"
