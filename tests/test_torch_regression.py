"""Hidden tests of 03_torch_regression: right code scores, each classic slip costs its own cell, weak models fail.

Fast checks run the grader module (course_tools.hidden.torch_regression_checks)
in this process on the notebook's reference code and on broken variants; the
reference training run is repeated for 5 seeds and must beat the held-out
threshold with margin, while a straight line and a one-step model miss it.
One weak submission goes through the real nbgrader pipeline.
"""

from __future__ import annotations

import nbformat
import pytest
import torch

from course_tools.course import SOURCE_DIR
from course_tools.hidden import torch_regression_checks as checks
from course_tools.torch_baselines import REGRESSION, VARIANTS, apply_edits
from learner_cells import reference_code
from torch_cells import exec_cells, grade_variant

NOTEBOOK = "torch_regression"
IMPORTS = """
import torch
from torch import nn
from mytorch_lib import seed_everything
from mytorch_lib.data import make_regression_1d
from mytorch_lib.training import progress
"""
DATA = """
x_np, y_np = make_regression_1d(128, seed=0)
x_train = torch.tensor(x_np, dtype=torch.float32)
y_train = torch.tensor(y_np, dtype=torch.float32)
"""

torch.set_num_threads(1)


def code_cell(cell_id: str) -> str:
    """The source of a non-answer code cell of the notebook."""
    nb = nbformat.read(SOURCE_DIR / REGRESSION / f"{NOTEBOOK}.ipynb", as_version=4)
    return next(c.source for c in nb.cells if c.get("id") == cell_id)


def answers(**replaced: str) -> list[str]:
    """The reference answer cells, with some replaced by other learner code (keyword: grade id)."""
    ids = ("answer_regressor", "answer_evaluate", "answer_train")
    return [replaced.get(i) or reference_code(REGRESSION, NOTEBOOK, i) for i in ids]


def trained_namespace(seed: int, **replaced: str) -> dict:
    """Answer cells plus the notebook's own training cell, run with ``SEED = seed``."""
    return exec_cells(IMPORTS, DATA, f"SEED = {seed}", *answers(**replaced), code_cell("training_run"))


@pytest.fixture(scope="module")
def reference() -> dict:
    return exec_cells(IMPORTS, DATA, *answers())


def test_reference_code_passes_every_code_check(reference):
    checks.check_structure(reference)
    checks.check_evaluate(reference)
    checks.check_train_function(reference)


REGRESSOR = """
class Regressor(nn.Module):
    def __init__(self, hidden=32):
        super().__init__()
        {body}

    def forward(self, x):
        {forward}
"""
SEQUENTIAL = "self.net = nn.Sequential({layers})"


def regressor(layers: str | None = None, *, body: str | None = None, forward: str = "return self.net(x)") -> str:
    return REGRESSOR.format(body=body or SEQUENTIAL.format(layers=layers), forward=forward)


def test_structure_accepts_other_right_styles(reference):
    # separate attributes declared in another order, tanh from torch instead of nn.Tanh modules
    other = regressor(body="self.out = nn.Linear(hidden, 1)\n        self.mid = nn.Linear(hidden, hidden)\n"
                           "        self.inp = nn.Linear(1, hidden)",
                      forward="return self.out(torch.tanh(self.mid(torch.tanh(self.inp(x)))))")
    checks.check_structure(exec_cells(IMPORTS, other))


@pytest.mark.parametrize("learner_code, message", [
    (regressor("nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)"),
     "forward does not compute"),
    (regressor("nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, 1)"), "three nn.Linear layers"),
    (regressor("nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1), nn.Tanh()"),
     "forward does not compute"),
    (regressor("nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, hidden, bias=False), nn.Tanh(), nn.Linear(hidden, 1)"),
     "needs a bias"),
    (regressor(body="self.net = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1))"),
     "three nn.Linear layers"),
], ids=["relu", "one_hidden_layer", "tanh_on_output", "no_bias", "ignores_hidden"])
def test_structure_rejects_wrong_networks(learner_code, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_structure(exec_cells(IMPORTS, learner_code))


@pytest.mark.parametrize("learner_code, message", [
    ("def evaluate(model, x, y):\n    with torch.no_grad():\n        return nn.MSELoss()(model(x), y)", "returned a tensor"),
    ("def evaluate(model, x, y):\n    with torch.no_grad():\n        return ((model(x) - y) ** 2).sum().item()",
     "average the squared"),
    ("def evaluate(model, x, y):\n    loss = nn.MSELoss()(model(x), y)\n    loss.backward()\n    return loss.item()",
     "computed gradients"),
], ids=["tensor", "sum_not_mean", "gradients"])
def test_evaluate_rejects_slips(learner_code, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_evaluate(exec_cells(IMPORTS, learner_code))


@pytest.mark.parametrize("find, replace, message", [
    ("        optimizer.zero_grad()\n", "", "zero_grad"),
    ("        losses.append(loss.item())",
     "        with torch.no_grad():\n            losses.append(loss_fn(model(x), y).item())", "before optimizer.step"),
    ("torch.optim.Adam(model.parameters(), lr=lr)", "torch.optim.SGD(model.parameters(), lr=lr)", "Adam"),
    ("losses.append(loss.item())", "losses.append(loss)", "plain floats"),
], ids=["no_zero_grad", "loss_after_step", "sgd", "tensors"])
def test_train_rejects_slips(find, replace, message):
    code = reference_code(REGRESSION, NOTEBOOK, "answer_train")
    assert find in code
    with pytest.raises(AssertionError, match=message):
        checks.check_train_function(exec_cells(IMPORTS, code.replace(find, replace)))


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_reference_run_beats_threshold_with_margin(seed):
    ns = trained_namespace(seed)
    checks.check_training_run(ns)
    checks.check_heldout_mse(ns, checks.TARGET_MSE)
    assert checks.heldout_mse(ns["model"]) < 0.6 * checks.TARGET_MSE


@pytest.mark.parametrize("variant", ["linear", "one_step"])
def test_weak_models_miss_both_thresholds(variant):
    (grade_id, (find, replace)), = VARIANTS[REGRESSION][variant].edits.items()
    code = reference_code(REGRESSION, NOTEBOOK, grade_id)
    ns = trained_namespace(0, **{grade_id: code.replace(find, replace)})
    assert checks.heldout_mse(ns["model"]) > 2 * checks.LOOSE_MSE
    for threshold in (checks.LOOSE_MSE, checks.TARGET_MSE):
        with pytest.raises(AssertionError, match="above the threshold"):
            checks.check_heldout_mse(ns, threshold)
    with pytest.raises(AssertionError):
        checks.check_training_run(ns)


def test_training_run_must_come_from_the_model():
    ns = trained_namespace(0)
    ns["losses"] = [1.0, 0.001]  # a made-up history that the trained model does not match
    with pytest.raises(AssertionError, match="should be the model that"):
        checks.check_training_run(ns)


def test_variant_edits_match_the_source():
    nb = nbformat.read(SOURCE_DIR / REGRESSION / f"{NOTEBOOK}.ipynb", as_version=4)
    for variant in VARIANTS[REGRESSION].values():
        apply_edits(nbformat.from_dict(nb), variant.edits, seed=3)


def test_straight_line_submission_graded_by_nbgrader(grading):
    """Through nbgrader: the straight line keeps the loop and evaluation points, loses model and held-out ones."""
    score, lost = grade_variant(grading, "straight_line", REGRESSION, "linear")
    assert lost == {"test_regressor", "test_training_run", "test_heldout_loose", "test_heldout_target"}
    assert score == pytest.approx(3.0)
