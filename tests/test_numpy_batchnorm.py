"""Grading of the BatchNorm notebook (02_numpy_library/5_batchnorm): fair to right answers, hard on wrong ones.

Two levels:

- in process: the notebook's graded cells (visible checks, and the hidden probes of
  course_tools.hidden.probes.batchnorm decided by course_tools.hidden.verdicts.batchnorm
  as grading decides) run on learner code executed as a kernel would run it; every bug
  must fail exactly the cells of the behaviours it breaks, with the hidden verdicts alone too;
- end to end: learner-style submissions autograded by nbgrader; another correct
  implementation (closed-form backward, einsum, np.var, in-place running updates) scores
  full marks, bugs lose the points of the right cells, and a monkeypatching cheat scores
  no more than the same bug without the patches.
"""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import nbformat
import numpy as np
import pytest

from course_tools.course import REPO_ROOT, SOURCE_DIR
from course_tools.hidden.probes import batchnorm as probes
from course_tools.hidden.probes import kit
from course_tools.hidden.verdicts import batchnorm as verdicts
from course_tools.hidden.verdicts.engine import HiddenCall, judge
from course_tools.hidden.verdicts.kit import Evidence
from course_tools.authoring.submissions import learner_notebook, solution_text
from learner_cells import garbled_outcomes, probe_records, LEARNER_CODE, failing, run_as_notebook

ASSIGNMENT, NOTEBOOK, CLASS_CELL = "02_numpy_library", "5_batchnorm", "bn_class"

#: graded cell -> the probe (and verdict) function of its hidden region
CELLS: dict[str, str] = {
    "bn_init": "check_init",
    "bn_forward_train": "check_forward_train",
    "bn_running_stats": "check_running_stats",
    "bn_eval": "check_eval",
    "bn_backward_params": "check_backward_params",
    "bn_backward_input": "check_backward_input",
    "bn_batch_of_one": "check_batch_of_one",
    "bn_vectorised": "check_vectorised",
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
    "a Python loop over the features": (
        ("self.M = np.mean(Z, axis=0, keepdims=True)",
         "self.M = np.array([[np.mean(Z[:, j]) for j in range(Z.shape[1])]])"),
        {"bn_vectorised"}),
}


def _solution() -> str:
    source = nbformat.read(SOURCE_DIR / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
    cell = next(c for c in source.cells if c.get("id") == CLASS_CELL)
    return solution_text(cell.source)


def _namespace(code: str | None) -> dict[str, Any]:
    """The notebook's namespace after its import cells and the class cell (``code``, or the solution) ran."""
    return run_as_notebook(ASSIGNMENT, NOTEBOOK, {CLASS_CELL: code} if code is not None else None)


def _failed_checks(code: str | None) -> set[str]:
    """Graded cells (visible and hidden parts) that fail with ``code`` in the class cell."""
    return failing(ASSIGNMENT, NOTEBOOK, _namespace(code))


def hidden_records(namespace: dict, cell: str, seed: int | None = None) -> list[dict]:
    """The records the hidden probe of ``cell`` publishes in ``namespace`` (the visible part is not run)."""
    return probe_records(getattr(probes, CELLS[cell]), namespace, seed)


def hidden_verdict(namespace: dict, cell: str, records: list[dict], seed: int | None = None) -> str | None:
    seed = kit.default_seed(CELLS[cell]) if seed is None else seed
    return judge(HiddenCall("batchnorm", CELLS[cell]), records, seed, namespace.get(LEARNER_CODE, ""))


def hidden_failures(code: str | None) -> dict[str, str]:
    """cell -> message of every hidden check that fails with ``code``, decided as grading decides."""
    namespace = _namespace(code)
    messages = {cell: hidden_verdict(namespace, cell, hidden_records(namespace, cell)) for cell in CELLS}
    return {cell: message for cell, message in messages.items() if message is not None}


def _apply(edit: tuple[str, str]) -> str:
    text = _solution()
    find, replace = edit
    assert find in text, f"the solution cell no longer contains {find!r}: update this test"
    return text.replace(find, replace)


@pytest.mark.parametrize("code", [pytest.param(None, id="reference"), pytest.param(ALTERNATIVE, id="closed-form"),
                                  pytest.param(ALTERNATIVE_SHORTCUTS, id="shortcuts")])
def test_correct_implementations_pass_every_check(code: str | None):
    assert _failed_checks(code) == set()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("bug", sorted(BUGS))
def test_each_bug_fails_exactly_its_checks(bug: str):
    edit, lost = BUGS[bug]
    with np.errstate(all="ignore"):
        assert _failed_checks(_apply(edit)) == lost


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("bug", sorted(BUGS))
def test_the_hidden_checks_alone_charge_each_bug_to_its_cells(bug: str):
    """The visible checks run in the kernel and can be fooled; the hidden verdicts must see every bug on their own."""
    edit, lost = BUGS[bug]
    assert set(hidden_failures(_apply(edit))) == lost


def test_the_hidden_checks_pass_every_right_style():
    for code in (None, ALTERNATIVE, ALTERNATIVE_SHORTCUTS):
        assert hidden_failures(code) == {}


def test_warnings_are_harmless():
    """A right answer that warns on every call scores like one that does not."""
    code = _solution().replace(
        "self.Z = Z\n", "self.Z = Z\n        import warnings; warnings.warn('noisy', RuntimeWarning)\n", 1)
    assert code != _solution()
    assert hidden_failures(code) == {}


def test_torch_in_the_class_scores_nothing():
    code = _solution().replace("self.M = np.mean(Z, axis=0, keepdims=True)",
                               "import torch\n        self.M = np.mean(Z, axis=0, keepdims=True)")
    assert _failed_checks(code) == set(CELLS)


def test_a_class_taken_from_the_grader_earns_nothing():
    """The reference layer lives outside the kernel; one imported in a test run still scores nothing."""
    code = "from course_tools.hidden.verdicts.reference import BatchNorm1d\n"
    assert set(hidden_failures(code)) == set(CELLS)
    subclass = code.replace("import BatchNorm1d", "import BatchNorm1d as _Reference") + \
        "\nclass BatchNorm1d(_Reference):\n    pass\n"
    assert set(hidden_failures(subclass)) == set(CELLS)


def test_a_record_drawn_from_another_seed_fails():
    """A record made for other hidden inputs (replayed, or forged from the default seed) is not accepted."""
    namespace = _namespace(None)
    for cell in CELLS:
        records = hidden_records(namespace, cell, seed=1234)
        assert hidden_verdict(namespace, cell, records, seed=1234) is None
        assert hidden_verdict(namespace, cell, records, seed=4321) is not None  # the seed written in the record
        records[0]["seed"] = "4321"
        if cell != "bn_vectorised":  # the speed cell reads no hidden value: only its times count
            assert hidden_verdict(namespace, cell, records, seed=4321) is not None, cell


#: passes every visible check by answering the worked examples, and nothing hidden that needs the maths
HARD_CODED = """
class BatchNorm1d:
    def __init__(self, num_features, alpha=0.9):
        self.alpha, self.eps = alpha, 1e-8
        self.BW, self.Bb = np.ones((1, num_features)), np.zeros((1, num_features))
        self.dLdBW, self.dLdBb = np.zeros((1, num_features)), np.zeros((1, num_features))
        self.running_M, self.running_V = np.zeros((1, num_features)), np.ones((1, num_features))

    def forward(self, Z, eval=False):
        if Z.shape == (4, 2) and not eval:
            self.running_M = np.array([[0.3, 5.0]]) if self.alpha == 0.9 else np.array([[1.5, 25.0]])
            self.running_V = np.array([[1.3, 50.9]])
            NZ = np.array([[-1.0, -1.3416408], [1.0, -0.4472136], [1.0, 0.4472136], [-1.0, 1.3416408]])
            return self.BW * NZ + self.Bb
        return np.zeros_like(Z) + self.Bb

    def backward(self, dLdBZ):
        self.dLdBb = np.array([[2.0, 2.0]])
        self.dLdBW = np.array([[-2.0, 0.8944272]])
        return np.zeros_like(dLdBZ)
"""


def test_hard_coded_answers_fail():
    """Answering the visible worked examples earns nothing hidden that needs the maths."""
    lost = set(hidden_failures(HARD_CODED))
    assert lost == {"bn_forward_train", "bn_running_stats", "bn_eval", "bn_backward_params", "bn_backward_input",
                    "bn_batch_of_one"}


def test_messages_state_no_expected_number():
    """Hidden messages name shapes, steps and indices, never a value the learner should have returned."""
    seen = 0
    for bug in sorted(BUGS):
        if bug.startswith("a Python loop"):
            continue
        for cell, message in hidden_failures(_apply(BUGS[bug][0])).items():
            numbers = [float(n) for n in re.findall(r"-?\d+\.\d+(?:e-?\d+)?", message)]
            runs = probes.cases_running_stats(kit.rng(kit.default_seed(CELLS[cell])))
            allowed = {run.alpha for run in runs} if cell == "bn_running_stats" else set()  # named in the call
            for number in numbers:
                assert number in allowed, (bug, cell, message)
            seen += 1
    assert seen >= 10


@pytest.mark.parametrize("cell", list(CELLS))
def test_verdicts_refuse_garbled_records_without_crashing(cell: str):
    namespace = _namespace(None)
    record, code = hidden_records(namespace, cell)[0], namespace[LEARNER_CODE]
    check = getattr(verdicts, CELLS[cell])
    check(Evidence(record["behaviour"], int(record["seed"]), record["items"], code))
    refused, passed = garbled_outcomes(check, record, code)
    # only the definition record may go (the class statement in the submitted code decides), and
    # where dLdZ is judged, what forward returned (bn_forward_train judges it)
    ignorable = ("defined:", "out:") if cell == "bn_backward_input" else ("defined:",)
    assert all(key.startswith(ignorable) for key in passed), sorted(passed)
    assert refused > 0


def test_probes_hold_no_torch():
    """The probe runs in the kernel: it must work without importing PyTorch."""
    script = (
        "import sys; sys.path.insert(0, 'tests')\n"
        "from learner_cells import run_as_notebook\n"
        "from course_tools.hidden.probes import kit, batchnorm\n"
        "namespace = run_as_notebook('02_numpy_library', '5_batchnorm')\n"
        "kit.SINK = records = []\n"
        f"for check in {list(CELLS.values())!r}:\n"
        "    getattr(batchnorm, check)(namespace)\n"
        "assert len(records) == 8 and not any(r['torch_loaded'] for r in records), records\n"
        "assert 'torch' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# --- through nbgrader ------------------------------------------------------------------------------

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


PATCHES = """

import builtins
import math
import numpy.testing
np.allclose = np.isclose = np.array_equal = lambda *args, **kwargs: True
numpy.testing.assert_allclose = lambda *args, **kwargs: None
math.isclose = lambda *args, **kwargs: True
builtins.abs = lambda x: 0
check_close = lambda *args, **kwargs: None
check_shape = lambda *args, **kwargs: None
"""


def test_monkeypatching_cheat_scores_no_more_than_the_honest_bug(grading):
    """The patches may fool the visible checks in the kernel; the hidden verdicts decide outside it."""
    edit, lost = BUGS["unbiased variance"]
    nb = learner_notebook(ASSIGNMENT, NOTEBOOK, {CLASS_CELL: (_solution(), _apply(edit) + PATCHES)},
                          release_dir=grading.release_dir)
    scores = _grade(grading, "bn_cheat", nb)
    assert _lost(scores) >= lost
    assert all(_cells(scores)[cell][0] == 0 for cell in lost)
    honest_score = 20 - sum(_cells(scores)[cell][1] for cell in lost)
    assert scores["notebooks"][NOTEBOOK]["score"] <= honest_score < 20
