"""Hidden tests of 03_torch_regression: right code scores, each classic slip costs its own cell, weak models fail.

Fast checks run each hidden region's probe in this process on the notebook's
reference code and on broken variants, and judge its record with the verdict
module (course_tools.hidden.verdicts.torch_regression), as grading does; the
reference training run is repeated for 5 seeds and must beat the held-out
threshold with margin, while a straight line and a one-step model miss it.
Records that were tampered with (another seed's predictions, hard-coded
values) fail, and messages never state an expected value. One weak submission
goes through the real nbgrader pipeline.
"""

from __future__ import annotations

import math
import re

import nbformat
import numpy as np
import pytest
import torch

import mytorch_lib.data
from course_tools.course import SOURCE_DIR
from course_tools.hidden.probes import torch_regression as probes
from course_tools.hidden.probes.kit import encode, rng
from course_tools.hidden.verdicts import torch_regression as verdicts
from course_tools.hidden.verdicts.kit import Evidence
from course_tools.quality.torch_baselines import REGRESSION, VARIANTS, apply_edits
from learner_cells import reference_code
from torch_cells import evidence, exec_cells, grade_variant, hidden_verdict, judged, record

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


def hidden(grade_id: str, namespace: dict, seed: int | None = None) -> str | None:
    return hidden_verdict(REGRESSION, grade_id, namespace, seed)


CODE_CELLS = ("test_regressor", "test_evaluate", "test_train")
HELDOUT_CELLS = ("test_heldout_loose", "test_heldout_target")


@pytest.fixture(scope="module")
def reference() -> dict:
    return exec_cells(IMPORTS, DATA, *answers())


@pytest.fixture(scope="module")
def trained() -> dict:
    return trained_namespace(0)


def test_reference_code_passes_every_code_check(reference):
    for cell in CODE_CELLS:
        assert hidden(cell, reference) is None, cell


def test_reference_code_passes_for_other_seeds(reference):
    """Grading seeds differ per learner: the inputs change, the verdict still accepts right code."""
    for seed in (1, 2, 2**62 + 12345):
        for cell in CODE_CELLS:
            assert hidden(cell, reference, seed) is None, (cell, seed)


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


def test_structure_accepts_other_right_styles():
    # separate attributes declared in another order, tanh from torch instead of nn.Tanh modules
    other = regressor(body="self.out = nn.Linear(hidden, 1)\n        self.mid = nn.Linear(hidden, hidden)\n"
                           "        self.inp = nn.Linear(1, hidden)",
                      forward="return self.out(torch.tanh(self.mid(torch.tanh(self.inp(x)))))")
    assert hidden("test_regressor", exec_cells(IMPORTS, other)) is None


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
    (regressor(body="self.net = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), "
                    "nn.Linear(hidden, 1))\n        self.extra = nn.Parameter(torch.zeros(3))"), "remove any other"),
    ("class Regressor:\n    def __init__(self, hidden=32):\n        pass", "subclass torch.nn.Module"),
    (regressor("nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1)")
     .replace("hidden=32", "width=32").replace("(1, hidden)", "(1, width)").replace("(hidden, hidden)", "(width, width)")
     .replace("(hidden, 1)", "(width, 1)"), "takes the hidden width as `hidden`"),
], ids=["relu", "one_hidden_layer", "tanh_on_output", "no_bias", "ignores_hidden", "extra_parameter", "not_a_module",
        "other_keyword"])
def test_structure_rejects_wrong_networks(learner_code, message):
    assert message in (hidden("test_regressor", exec_cells(IMPORTS, learner_code)) or "")


def test_structure_needs_the_class_written_in_the_notebook():
    ns = exec_cells(IMPORTS, regressor("nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), "
                                        "nn.Linear(hidden, 1)"))
    ns["Regressor"].__module__ = "somewhere_else"
    assert "written in this notebook" in hidden("test_regressor", ns)
    assert "is not defined" in hidden("test_regressor", exec_cells(IMPORTS))


@pytest.mark.parametrize("learner_code, message", [
    ("def evaluate(model, x, y):\n    with torch.no_grad():\n        return nn.MSELoss()(model(x), y)", "returned a tensor"),
    ("def evaluate(model, x, y):\n    with torch.no_grad():\n        return ((model(x) - y) ** 2).sum().item()",
     "average the squared"),
    ("def evaluate(model, x, y):\n    loss = nn.MSELoss()(model(x), y)\n    loss.backward()\n    return loss.item()",
     "computed gradients"),
    ("def evaluate(model, x, y):\n    with torch.no_grad():\n        return np.float32(nn.MSELoss()(model(x), y).item())",
     "Python float"),
    ("def evaluate(model, x, y):\n    opt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
     "    loss = nn.MSELoss()(model(x), y)\n    value = loss.item()\n    loss.backward()\n    opt.step()\n"
     "    opt.zero_grad(set_to_none=True)\n    return value", "changed the model's parameters"),
], ids=["tensor", "sum_not_mean", "gradients", "float32", "trains"])
def test_evaluate_rejects_slips(learner_code, message):
    assert message in (hidden("test_evaluate", exec_cells(IMPORTS, "import numpy as np", learner_code)) or "")


@pytest.mark.parametrize("find, replace, message", [
    ("        optimizer.zero_grad()\n", "", "zero_grad"),
    ("        losses.append(loss.item())",
     "        with torch.no_grad():\n            losses.append(loss_fn(model(x), y).item())", "before optimizer.step"),
    ("torch.optim.Adam(model.parameters(), lr=lr)", "torch.optim.SGD(model.parameters(), lr=lr)", "Adam"),
    ("losses.append(loss.item())", "losses.append(loss)", "plain floats"),
    ("for _ in progress(range(epochs), desc=\"training\"):", "for _ in range(epochs - 1):", "one per epoch"),
    ("model.train()\n", "model = copy.deepcopy(model)\n    optimizer = torch.optim.Adam(model.parameters(), lr=lr)\n",
     "in place"),
], ids=["no_zero_grad", "loss_after_step", "sgd", "tensors", "one_epoch_short", "trains_a_copy"])
def test_train_rejects_slips(find, replace, message):
    code = reference_code(REGRESSION, NOTEBOOK, "answer_train")
    assert find in code
    got = hidden("test_train", exec_cells(IMPORTS, "import copy", code.replace(find, replace)))
    assert message in (got or ""), got


def test_train_accepts_other_right_styles():
    """The loss written out, zero_grad at the end of the step, optimizer.zero_grad(set_to_none=False)."""
    code = """
def train(model, x, y, *, epochs, lr):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    out = []
    for epoch in range(epochs):
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=False)
        out.append(float(loss.detach()))
    return out
"""
    assert hidden("test_train", exec_cells(IMPORTS, code)) is None


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_reference_run_beats_threshold_with_margin(seed):
    ns = trained_namespace(seed)
    for cell in ("test_training_run", *HELDOUT_CELLS):
        assert hidden(cell, ns) is None, cell
    assert verdicts.heldout_mse(evidence(REGRESSION, "test_heldout_target", ns)) < 0.6 * verdicts.TARGET_MSE


@pytest.mark.parametrize("variant", ["linear", "one_step"])
def test_weak_models_miss_both_thresholds(variant):
    (grade_id, (find, replace)), = VARIANTS[REGRESSION][variant].edits.items()
    code = reference_code(REGRESSION, NOTEBOOK, grade_id)
    ns = trained_namespace(0, **{grade_id: code.replace(find, replace)})
    assert verdicts.heldout_mse(evidence(REGRESSION, "test_heldout_target", ns)) > 2 * verdicts.LOOSE_MSE
    for cell in HELDOUT_CELLS:
        assert "above the threshold" in (hidden(cell, ns) or "")
    assert hidden("test_training_run", ns) is not None


def test_training_run_must_come_from_the_model(trained):
    ns = dict(trained)
    ns["losses"] = [1.0, 0.001]  # a made-up history that the trained model does not match
    assert "should be the model that" in hidden("test_training_run", ns)
    ns = dict(trained, losses=[float("nan")] * 3)
    assert "NaN" in hidden("test_training_run", ns)


# ---------------------------------------------------------------- what the split between kernel and grader changes


def test_heldout_targets_never_enter_the_kernel(trained):
    """The record of a held-out cell holds the model's predictions only; the targets are drawn outside."""
    rec = evidence(REGRESSION, "test_heldout_target", trained)
    assert set(rec.items) == {"defined:model", "model_type", "model_is_module", "predictions"}
    x = probes.cases_heldout(rng(rec.seed))
    assert x.shape == (probes.HELDOUT_SIZE, 1)
    assert np.allclose(rec.array("predictions", "p").ravel(),
                       trained["model"](torch.tensor(x, dtype=torch.float32)).detach().numpy().ravel(), atol=1e-5)


def test_another_seeds_predictions_fail(trained):
    """Predictions for another seed's held-out inputs (a replayed record) miss every threshold."""
    rec = evidence(REGRESSION, "test_heldout_target", trained, seed=11)
    assert judged("torch_regression", rec) is None
    replayed = Evidence(rec.behaviour, 12, rec.items)
    assert "above the threshold" in judged("torch_regression", replayed)


def test_heldout_points_depend_on_the_seed():
    assert not np.allclose(probes.cases_heldout(rng(1)), probes.cases_heldout(rng(2)))
    assert np.array_equal(verdicts.heldout_targets(5), verdicts.heldout_targets(5))


def test_replacing_the_data_library_in_the_kernel_earns_nothing(trained, monkeypatch):
    """A learner cell that makes the library's curve (or its data) agree with a straight line gains nothing:
    the held-out inputs come from the seed and the targets from the genuine library, outside the kernel."""
    (grade_id, (find, replace)), = VARIANTS[REGRESSION]["linear"].edits.items()
    ns = trained_namespace(0, **{grade_id: reference_code(REGRESSION, NOTEBOOK, grade_id).replace(find, replace)})
    honest = [hidden(cell, ns) for cell in HELDOUT_CELLS]
    genuine = (mytorch_lib.data.make_regression_1d, mytorch_lib.data.regression_target)
    line = ns["model"]

    def fake(n=128, *, seed=0, **kwargs):
        x = np.random.default_rng(seed).uniform(-3, 3, size=(n, 1))
        return x, line(torch.tensor(x, dtype=torch.float32)).detach().numpy().astype(np.float64)

    with monkeypatch.context() as patch:
        patch.setattr(mytorch_lib.data, "make_regression_1d", fake)
        patch.setattr(mytorch_lib.data, "regression_target", lambda x: np.zeros_like(x))
        records = [evidence(REGRESSION, cell, ns) for cell in HELDOUT_CELLS]
    assert (mytorch_lib.data.make_regression_1d, mytorch_lib.data.regression_target) == genuine
    cheat = [judged("torch_regression", rec) for rec in records]
    assert all(c is not None for c in cheat) and all(h is not None for h in honest)


def test_hard_coded_records_fail(reference):
    """Values typed into a record (not what the learner's code returned) fail."""
    rec = evidence(REGRESSION, "test_train", reference)
    case = probes.cases_train(rng(rec.seed))
    fake = dict(rec.items, losses=encode([0.5] * case.epochs))
    assert "differ from full-batch Adam" in judged("torch_regression", Evidence(rec.behaviour, rec.seed, fake))
    rec = evidence(REGRESSION, "test_regressor", reference)
    forward = rec.array("forward:0", "f")
    fake = dict(rec.items, **{"forward:0": encode(np.zeros_like(forward))})
    assert "forward does not compute" in judged("torch_regression", Evidence(rec.behaviour, rec.seed, fake))
    # a record of another seed: the weights written into the layers differ, so forward differs
    assert judged("torch_regression", Evidence(rec.behaviour, rec.seed + 1, rec.items)) is not None
    malformed = dict(rec.items, **{"linears:0": {"bogus": 1}})
    assert "malformed" in judged("torch_regression", Evidence(rec.behaviour, rec.seed, malformed))


def _numbers(message: str) -> set[str]:
    return set(re.findall(r"\d+\.\d+", message))


def test_messages_never_state_expected_values():
    """The evaluate and train messages name what is wrong, not the MSE or the losses they should have returned."""
    ns = exec_cells(IMPORTS, "def evaluate(model, x, y):\n    with torch.no_grad():\n"
                             "        return 2.0 * nn.MSELoss()(model(x), y).item()")
    rec = evidence(REGRESSION, "test_evaluate", ns)
    message = judged("torch_regression", rec)
    case = probes.cases_evaluate(rng(rec.seed))
    expected = float(np.mean((verdicts.forward64(case.network, case.x) - case.y) ** 2))
    assert message and not any(math.isclose(float(n), expected, rel_tol=1e-2) for n in _numbers(message)), message
    code = reference_code(REGRESSION, NOTEBOOK, "answer_train").replace("        optimizer.zero_grad()\n", "")
    rec = evidence(REGRESSION, "test_train", exec_cells(IMPORTS, code))
    message = judged("torch_regression", rec)
    losses, _ = verdicts.reference_train(probes.cases_train(rng(rec.seed)))
    assert message and not any(math.isclose(float(n), v, rel_tol=1e-2) for n in _numbers(message) for v in losses)


def test_probes_leave_the_learners_random_stream_alone(reference, trained):
    """Building the probe's models draws no number from the learner's PyTorch generator: a learner who does
    not reseed before training trains the same model whether or not the hidden cells ran before."""
    for grade_id, namespace in (*((cell, reference) for cell in CODE_CELLS),
                                *((cell, trained) for cell in ("test_training_run", *HELDOUT_CELLS))):
        torch.manual_seed(2024)
        before = torch.random.get_rng_state()
        record(REGRESSION, grade_id, namespace)
        assert torch.equal(before, torch.random.get_rng_state()), grade_id


def test_training_inputs_are_drawn_like_the_notebooks_and_ignore_a_replaced_library(monkeypatch):
    x = probes.cases_training_run(rng(0))
    assert np.array_equal(x, mytorch_lib.data.make_regression_1d(probes.TRAIN_SIZE, seed=probes.TRAIN_SEED)[0])
    monkeypatch.setattr(mytorch_lib.data, "make_regression_1d", lambda *args, **kwargs: (np.zeros((128, 1)),) * 2)
    assert np.array_equal(probes.cases_training_run(rng(0)), x)
    assert np.array_equal(probes.cases_training_run(rng(1)), x), "the training points do not depend on the seed"


def test_probe_module_holds_no_reference_training():
    """The kernel-side module draws inputs and records; Adam, the loss and the targets live in the verdicts."""
    import inspect

    source = inspect.getsource(probes)
    for name in ("optim", "MSELoss", "regression_target", "backward"):
        assert name not in source, name


def test_variant_edits_match_the_source():
    nb = nbformat.read(SOURCE_DIR / REGRESSION / f"{NOTEBOOK}.ipynb", as_version=4)
    for variant in VARIANTS[REGRESSION].values():
        apply_edits(nbformat.from_dict(nb), variant.edits, seed=3)


def test_straight_line_submission_graded_by_nbgrader(grading):
    """Through nbgrader: the straight line keeps the loop and evaluation points, loses model and held-out ones."""
    score, lost = grade_variant(grading, "straight_line", REGRESSION, "linear")
    assert lost == {"test_regressor", "test_training_run", "test_heldout_loose", "test_heldout_target"}
    assert score == pytest.approx(3.0)


def test_baselines_hand_in_and_grade_through_the_grading_engine():
    """The baselines grade their runs as a class is graded: sandboxed engine, gradebook scores, and the
    grader's numbers (held-out MSE) taken from the grading record, in the grader's run or after a learner's."""
    from course_tools.quality.torch_baselines import run_variants

    runs = run_variants(REGRESSION, [("reference", 0, "autograde"), ("one_step", 0, "autograde"),
                                     ("reference", 1, "normal")], jobs=2)
    reference, one_step, learner = runs
    for run in (reference, learner):
        assert run.problems == [] and run.failed_cells == [] and run.score == run.max_score == 10
        assert run.metrics["heldout_mse"] < verdicts.TARGET_MSE and run.metrics["epochs"] == 1000
        assert run.training_seconds > 0 and run.metrics["training_cpu_seconds"] > 0
    assert one_step.failed_cells == ["test_train", "test_training_run", *HELDOUT_CELLS]
    assert one_step.metrics["heldout_mse"] > 2 * verdicts.LOOSE_MSE
    assert all(p.startswith(tuple(f"cell {c}: " for c in one_step.failed_cells)) for p in one_step.problems)
    assert reference.metrics["grading_seconds"] == reference.notebook_seconds  # the grader's run is the one measured
    assert learner.metrics["grading_seconds"] != learner.notebook_seconds
    assert reference.metrics["heldout_mse"] != learner.metrics["heldout_mse"]  # another seed, another model
