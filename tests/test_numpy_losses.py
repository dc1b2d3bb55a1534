"""Hidden tests of 02_numpy_library/3_losses: any right style scores, each bug costs its own cells, cheats fail.

Fast checks run the notebook's graded cells (visible checks, and the hidden
probes of course_tools.hidden.probes.losses decided by
course_tools.hidden.verdicts.losses as grading decides) in this process on
learner code executed as a kernel would run it. Two submissions go through the
real nbgrader pipeline: alternative right answers (full marks), and specific
bugs wrapped in monkeypatching (the same cells lost as without the patches).
"""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from course_tools.course import REPO_ROOT
from course_tools.hidden.probes import kit
from course_tools.hidden.probes import losses as probes
from course_tools.hidden.verdicts import losses as verdicts
from course_tools.hidden.verdicts.engine import HiddenCall, judge
from course_tools.hidden.verdicts.kit import Evidence
from course_tools.authoring.submissions import learner_notebook
from learner_cells import garbled_outcomes, probe_records, LEARNER_CODE, failing, reference_code, run_as_notebook, whole_cell

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


def with_bug(bug: str) -> tuple[str, str]:
    """(answer cell, code) of the reference solution with ``bug``."""
    cell, (find, replace, _) = ("mse_class", MSE_BUGS[bug]) if bug in MSE_BUGS else ("ce_class", CE_BUGS[bug])
    return cell, reference(cell).replace(find, replace)


SPEED_BUGS = {"loops over samples", "loops over samples in backward"}


def hidden_records(namespace: dict, cell: str, seed: int | None = None) -> list[dict]:
    """The records the hidden probe of ``cell`` publishes in ``namespace`` (the visible part is not run)."""
    return probe_records(getattr(probes, f"check_{cell}"), namespace, seed)


def hidden_verdict(namespace: dict, cell: str, records: list[dict], seed: int | None = None) -> str | None:
    seed = kit.default_seed(f"check_{cell}") if seed is None else seed
    return judge(HiddenCall("losses", f"check_{cell}"), records, seed, namespace.get(LEARNER_CODE, ""))


def hidden_failures(answers: dict[str, str] | None = None) -> dict[str, str]:
    """cell -> message of every hidden check that fails with ``answers``, decided as grading decides."""
    namespace = run_as_notebook(ASSIGNMENT, NOTEBOOK, answers)
    messages = {cell: hidden_verdict(namespace, cell, hidden_records(namespace, cell)) for cell in CELLS}
    return {cell: message for cell, message in messages.items() if message is not None}


@pytest.mark.parametrize("bug", list(MSE_BUGS) + list(CE_BUGS))
def test_the_hidden_checks_alone_charge_each_bug_to_its_cells(bug: str):
    """The visible checks run in the kernel and can be fooled; the hidden verdicts must see every bug on their own."""
    cell, code = with_bug(bug)
    expected = (MSE_BUGS.get(bug) or CE_BUGS[bug])[2]
    assert set(hidden_failures({cell: code})) == expected


def test_the_hidden_checks_pass_every_right_style():
    assert hidden_failures() == {}
    assert hidden_failures({"mse_class": MSE_MEAN, "ce_class": CE_SCIPY_EINSUM}) == {}
    assert hidden_failures({"mse_class": MSE_ONES_VECTORS, "ce_class": CE_ONES_VECTORS}) == {}


def test_warnings_are_harmless():
    """A right answer that warns (here: on every call) scores like one that does not."""
    noisy = reference("ce_class").replace(
        "self.A = A\n", "self.A = A\n        import warnings; warnings.warn('noisy', RuntimeWarning)\n", 1)
    assert noisy != reference("ce_class")
    assert hidden_failures({"ce_class": noisy}) == {}


def test_a_missing_backward_costs_the_backward_cell_only():
    """ce_stable judges backward on huge logits only when backward is right on ordinary ones."""
    code = reference("ce_class").replace("return (self.S - self.Y) / N", "raise NotImplementedError")
    assert set(hidden_failures({"ce_class": code})) == {"ce_backward"}
    wrong = reference("ce_class").replace("return (self.S - self.Y) / N", "return self.S - self.Y")
    assert set(hidden_failures({"ce_class": wrong})) == {"ce_backward"}


def test_a_backward_that_is_only_unstable_costs_the_stability_cell():
    code = reference("ce_class").replace(
        "return (self.S - self.Y) / N",
        "E = np.exp(self.A)\n        return (E / E.sum(axis=1, keepdims=True) - self.Y) / N")
    assert set(hidden_failures({"ce_class": code})) == {"ce_stable"}


def test_a_class_taken_from_the_grader_earns_nothing():
    """The reference losses live outside the kernel; ones imported in a test run still score nothing."""
    answers = {"mse_class": "from course_tools.hidden.verdicts.reference import MSELoss\n",
               "ce_class": "from course_tools.hidden.verdicts.reference import CrossEntropyLoss\n"}
    assert set(hidden_failures(answers)) == set(CELLS)
    subclass = {}
    for cell, name in (("mse_class", "MSELoss"), ("ce_class", "CrossEntropyLoss")):
        subclass[cell] = answers[cell].replace(f"import {name}", f"import {name} as _Reference") + \
            f"\nclass {name}(_Reference):\n    pass\n"
    assert set(hidden_failures(subclass)) == set(CELLS)


def test_torch_in_the_class_scores_nothing():
    answers = {"mse_class": reference("mse_class").replace("SSE = np.sum(SE)",
                                                           "import torch\n        SSE = np.sum(SE)"),
               "ce_class": reference("ce_class").replace("H = np.sum(", "import torch\n        H = np.sum(")}
    assert set(hidden_failures(answers)) == set(CELLS)


def test_a_record_drawn_from_another_seed_fails():
    """A record made for other hidden inputs (replayed, or forged from the default seed) is not accepted."""
    namespace = run_as_notebook(ASSIGNMENT, NOTEBOOK)
    for cell in CELLS:
        records = hidden_records(namespace, cell, seed=1234)
        assert hidden_verdict(namespace, cell, records, seed=1234) is None
        assert hidden_verdict(namespace, cell, records, seed=4321) is not None  # the seed written in the record
        records[0]["seed"] = "4321"
        assert hidden_verdict(namespace, cell, records, seed=4321) is not None, cell


HARD_CODED = """
class MSELoss:
    def forward(self, A, Y):
        self.A, self.Y = A, Y
        return 3.25

    def backward(self):
        return np.array([[0.0, 1.0], [1.5, 0.0]])
"""


def test_hard_coded_answers_fail():
    """Returning the visible worked example's values passes the visible checks and nothing hidden."""
    assert failing_cells(mse=HARD_CODED) == {"mse_forward", "mse_backward"}


def test_messages_state_no_expected_number():
    """Hidden messages name shapes, indices and input sizes, never a value the learner should have returned."""
    seen = 0
    for bug in set(MSE_BUGS) | set(CE_BUGS):
        if bug in SPEED_BUGS:
            continue
        cell, code = with_bug(bug)
        for check, message in hidden_failures({cell: code}).items():
            case = getattr(probes, f"cases_{check}")(kit.rng(kit.default_seed(f"check_{check}")))
            batches = list(getattr(case, "batches", ())) + list(getattr(case, "extreme", ()))
            kind = "mse" if check.startswith("mse") else "ce"
            expected = []
            for A, Y in batches:
                value, grad = verdicts.torch_loss(kind, A, Y)
                expected += [value, *grad.ravel()]
            expected = np.array([e for e in expected if abs(e) > 1e-6])
            for number in re.findall(r"-?\d+\.\d+(?:e-?\d+)?", message):
                assert not np.any(np.isclose(float(number), expected, rtol=1e-3, atol=0)), (bug, message)
            seen += 1
    assert seen >= 8


@pytest.mark.parametrize("cell", CELLS)
def test_verdicts_refuse_garbled_records_without_crashing(cell: str):
    namespace = run_as_notebook(ASSIGNMENT, NOTEBOOK)
    record, code = hidden_records(namespace, cell)[0], namespace[LEARNER_CODE]
    check = getattr(verdicts, f"check_{cell}")
    check(Evidence(record["behaviour"], int(record["seed"]), record["items"], code))
    refused, passed = garbled_outcomes(check, record, code)
    # a verdict may ignore only: the definition record (the class statement in the code decides);
    # in backward cells, what forward returned (the forward cells judge it); in ce_stable, the inputs
    # after forward and, when the garbled item makes the gate on ordinary logits fail, backward
    ignorable = {"defined:"} | ({"value:", "inputs:"} if "backward" in cell else set()) \
        | ({"inputs:"} if cell == "ce_stable" else set())
    assert all(key.startswith(tuple(ignorable)) or key.endswith(":ordinary") for key in passed), sorted(passed)
    assert refused > 0


def test_probes_hold_no_torch():
    """The probe runs in the kernel: it must work without importing PyTorch."""
    script = (
        "import sys; sys.path.insert(0, 'tests')\n"
        "from learner_cells import run_as_notebook\n"
        "from course_tools.hidden.probes import kit, losses\n"
        "namespace = run_as_notebook('02_numpy_library', '3_losses')\n"
        "kit.SINK = records = []\n"
        f"for cell in {CELLS!r}:\n"
        "    getattr(losses, f'check_{cell}')(namespace)\n"
        "assert len(records) == 5 and not any(r['torch_loaded'] for r in records), records\n"
        "assert 'torch' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# --- through nbgrader ------------------------------------------------------------------------------

PATCHES = """

import builtins
import math
import numpy.testing
np.allclose = np.isclose = np.array_equal = lambda *args, **kwargs: True
np.isfinite = lambda *args, **kwargs: True
numpy.testing.assert_allclose = lambda *args, **kwargs: None
math.isclose = lambda *args, **kwargs: True
builtins.abs = lambda x: 0
check_close = check_scalar = lambda *args, **kwargs: None
"""


def _grade(grading, student: str, edits: dict[str, tuple[str, str]]) -> dict:
    """Autograde a submission that holds only this notebook (it imports none of its siblings)."""
    nb = learner_notebook(ASSIGNMENT, NOTEBOOK, edits, release_dir=grading.release_dir)
    return grading.grade(student, ASSIGNMENT, {NOTEBOOK: nb})["notebooks"][NOTEBOOK]


def test_nbgrader_gives_alternatives_full_marks(grading):
    edits = {"mse_class": whole_cell(ASSIGNMENT, NOTEBOOK, "mse_class", MSE_ONES_VECTORS),
             "ce_class": whole_cell(ASSIGNMENT, NOTEBOOK, "ce_class", CE_SCIPY_EINSUM)}
    scores = _grade(grading, "losses_alternatives", edits)
    assert scores["score"] == scores["max_score"] == 10, scores["cells"]


def test_nbgrader_charges_bugs_to_their_cells_even_under_monkeypatching(grading):
    """The patches may fool the visible checks in the kernel; the cheat scores no more than the honest bugs."""
    mse_find, mse_replace, _ = MSE_BUGS["divides by N only"]
    ce_find, ce_replace, _ = CE_BUGS["logs an underflowed softmax"]
    honest = {"mse_class": reference("mse_class").replace(mse_find, mse_replace),
              "ce_class": reference("ce_class").replace(ce_find, ce_replace)}
    honest_lost = failing_cells(honest["mse_class"], honest["ce_class"])
    assert honest_lost == {"mse_forward", "ce_stable"}
    edits = {cell: whole_cell(ASSIGNMENT, NOTEBOOK, cell, code + (PATCHES if cell == "ce_class" else ""))
             for cell, code in honest.items()}
    scores = _grade(grading, "losses_bugs", edits)
    cells = {cell: scores["cells"][cell] for cell in CELLS}
    honest_scores = {cell: 0 if cell in honest_lost else max_score for cell, (_, max_score) in cells.items()}
    assert all(score <= honest_scores[cell] for cell, (score, _) in cells.items()), (cells, honest_scores)
    assert scores["score"] <= sum(honest_scores.values()) < scores["max_score"], scores["cells"]
