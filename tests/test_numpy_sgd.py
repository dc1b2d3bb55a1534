"""Hidden tests of 02_numpy_library/4_sgd: any right style scores, each bug costs its own cells, cheats fail.

Fast checks run the notebook's graded cells (visible checks, and the hidden
probes of course_tools.hidden.probes.sgd decided by
course_tools.hidden.verdicts.sgd as grading decides) in this process on learner
code executed as a kernel would run it. Two submissions go through the real
nbgrader pipeline: a right SGD in another style next to a broken Linear in the
layers notebook (full marks here: the SGD tests step plain data holders, never
the learner's layers), and a specific momentum bug wrapped in monkeypatching
(only that cell lost, as without the patches).
"""

from __future__ import annotations

import re
import subprocess
import sys

import nbformat
import numpy as np
import pytest

from course_tools.course import REPO_ROOT, SOURCE_DIR
from course_tools.hidden.probes import kit
from course_tools.hidden.probes import sgd as probes
from course_tools.hidden.verdicts import sgd as verdicts
from course_tools.hidden.verdicts.engine import HiddenCall, judge
from course_tools.hidden.verdicts.kit import Evidence, Wrong, decode
from learner_cells import reference_record, GARBLES, garbled_outcomes, probe_records, LEARNER_CODE, failing, reference_code, run_as_notebook, submission, whole_cell

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
    "keeps copies of the layers": ([('[layer for layer in model.layers if hasattr(layer, "W") and hasattr(layer, "b")]',
                                     '[__import__("copy").copy(layer) for layer in model.layers '
                                     'if hasattr(layer, "W") and hasattr(layer, "b")]')], set(CELLS)),
    # the step makes float64 velocities again (float32 * float + float64), so only __init__ is wrong
    "single-precision velocities": ([("np.zeros_like(layer.W)", "np.zeros_like(layer.W, dtype=np.float32)")],
                                    {"sgd_init"}),
    "counts the activations in L": ([("self.L = len(self.l)", "self.L = len(model.layers)")], set(CELLS)),
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


def hidden_records(namespace: dict, cell: str, seed: int | None = None) -> list[dict]:
    """The records the hidden probe of ``cell`` publishes in ``namespace`` (the visible part is not run)."""
    return probe_records(getattr(probes, f"check_{cell}"), namespace, seed)


def hidden_verdict(namespace: dict, cell: str, records: list[dict], seed: int | None = None) -> str | None:
    seed = kit.default_seed(f"check_{cell}") if seed is None else seed
    return judge(HiddenCall("sgd", f"check_{cell}"), records, seed, namespace.get(LEARNER_CODE, ""))


def hidden_failures(code: str | None = None) -> dict[str, str]:
    """cell -> message of every hidden check that fails with ``code`` in the answer cell, decided as grading decides."""
    namespace = run_as_notebook(ASSIGNMENT, NOTEBOOK, {"sgd_class": code} if code else None)
    messages = {cell: hidden_verdict(namespace, cell, hidden_records(namespace, cell)) for cell in CELLS}
    return {cell: message for cell, message in messages.items() if message is not None}


@pytest.mark.parametrize("bug", list(BUGS))
def test_the_hidden_checks_alone_charge_each_bug_to_its_cells(bug: str):
    """The visible checks run in the kernel and can be fooled; the hidden verdicts must see every bug on their own."""
    assert set(hidden_failures(with_bug(bug))) == BUGS[bug][1]


def test_the_hidden_checks_pass_every_right_style():
    for code in (None, SGD_IN_PLACE_VELOCITY, SGD_LR_IN_VELOCITY, SGD_WITH_BRANCH):
        assert hidden_failures(code) == {}


def test_a_class_taken_from_the_grader_earns_nothing():
    """The reference optimiser lives outside the kernel; one imported in a test run still scores nothing."""
    code = "from course_tools.hidden.verdicts.reference import SGD\n"
    assert set(hidden_failures(code)) == set(CELLS)
    subclass = code.replace("import SGD", "import SGD as _Reference") + "\nclass SGD(_Reference):\n    pass\n"
    assert set(hidden_failures(subclass)) == set(CELLS)


def test_a_record_drawn_from_another_seed_fails():
    """A record made for other hidden inputs (replayed, or forged from the default seed) is not accepted."""
    namespace = run_as_notebook(ASSIGNMENT, NOTEBOOK)
    for cell in CELLS:
        records = hidden_records(namespace, cell, seed=1234)
        assert hidden_verdict(namespace, cell, records, seed=1234) is None
        assert hidden_verdict(namespace, cell, records, seed=4321) is not None  # the seed written in the record
        records[0]["seed"] = "4321"
        assert hidden_verdict(namespace, cell, records, seed=4321) is not None, cell


def test_hard_coded_parameters_fail():
    """An SGD that writes the visible worked example's values (or leaves the model alone) earns no step points."""
    cheat = """
class SGD:
    def __init__(self, model, lr=0.1, momentum=0):
        self.l = [layer for layer in model.layers if hasattr(layer, "W") and hasattr(layer, "b")]
        self.L, self.lr, self.mu = len(self.l), lr, momentum
        self.v_W = [np.zeros_like(layer.W) for layer in self.l]
        self.v_b = [np.zeros_like(layer.b) for layer in self.l]
        self.steps = 0

    def step(self):
        self.steps += 1
        for layer in self.l:
            if layer.W.shape == (1, 2):
                layer.W = np.array([[0.95, 2.1]]) if self.steps == 1 else np.array([[0.855, 2.29]])
"""
    assert set(hidden_failures(cheat)) == {"sgd_plain", "sgd_momentum"}


def test_messages_state_no_expected_number():
    """Step messages may name the learning rate and momentum given to SGD; no other number, never a parameter."""
    seen = 0
    for bug in BUGS:
        for cell, message in hidden_failures(with_bug(bug)).items():
            if cell == "sgd_init":
                continue
            runs = getattr(probes, f"cases_{cell}")(kit.rng(kit.default_seed(f"check_{cell}")))
            given = {run.lr for run in runs} | {run.momentum for run in runs if run.momentum is not None}
            for number in re.findall(r"\d+\.\d+", message):
                assert float(number) in given, (bug, message)
            seen += 1
    assert seen >= 5


@pytest.mark.parametrize("cell", CELLS)
def test_verdicts_refuse_garbled_records_without_crashing(cell: str):
    record, code, check = reference_record(ASSIGNMENT, NOTEBOOK, probes, verdicts, cell)
    # every key of sgd_init; the keys of the first run of a step cell (the others are read the same way)
    keys = [key for key in record["items"] if cell == "sgd_init" or key.count(":") < 2 or key.split(":")[1] == "0"]
    refused, passed = garbled_outcomes(check, record, code, GARBLES[:5], keys)
    # only the velocities recorded after a step may go: they sharpen hints, never decide
    assert all(key.startswith(("v_W:", "v_b:")) and cell != "sgd_init" for key in passed), passed
    assert refused > 0


def test_step_velocities_are_never_compared():
    """Velocities that carry the learning rate, or any other bookkeeping, cost nothing while W and b are right."""
    record, code, _ = reference_record(ASSIGNMENT, NOTEBOOK, probes, verdicts, "sgd_momentum")
    items = {key: ({"list": [{"str": "anything"}]} if key.startswith(("v_W:", "v_b:")) else value)
             for key, value in record["items"].items()}
    verdicts.check_sgd_momentum(Evidence(record["behaviour"], int(record["seed"]), items, code))
    W = next(key for key in items if key.startswith("W:1:"))
    arrays = decode(items[W])
    items[W] = kit.encode([np.zeros_like(arrays[0])] + arrays[1:])
    with pytest.raises(Wrong, match=r"layer 0 of SGD\.l, W is wrong"):
        verdicts.check_sgd_momentum(Evidence(record["behaviour"], int(record["seed"]), items, code))


def test_probes_hold_no_torch():
    """The probe runs in the kernel: it must work without importing PyTorch."""
    script = (
        "import sys; sys.path.insert(0, 'tests')\n"
        "from learner_cells import run_as_notebook\n"
        "from course_tools.hidden.probes import kit, sgd\n"
        "namespace = run_as_notebook('02_numpy_library', '4_sgd')\n"
        "kit.SINK = records = []\n"
        "for cell in ('sgd_init', 'sgd_plain', 'sgd_momentum'):\n"
        "    getattr(sgd, f'check_{cell}')(namespace)\n"
        "assert len(records) == 3 and not any(r['torch_loaded'] for r in records), records\n"
        "assert 'torch' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


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

PATCHES = """

import math
import numpy.testing
np.allclose = np.isclose = np.array_equal = lambda *args, **kwargs: True
numpy.testing.assert_allclose = lambda *args, **kwargs: None
math.isclose = lambda *args, **kwargs: True
check_close = lambda *args, **kwargs: None
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


def test_nbgrader_charges_a_momentum_bug_to_its_cell_even_under_monkeypatching(grading):
    """The patches fool the visible checks in the kernel; the cheat still scores what the honest bug scores."""
    assert failing_cells(with_bug("dampens the gradient")) == {"sgd_momentum"}
    cheat = with_bug("dampens the gradient") + PATCHES
    edits = {"4_sgd": {"sgd_class": whole_cell(ASSIGNMENT, NOTEBOOK, "sgd_class", cheat)}}
    scores = grading.grade("sgd_bugs", ASSIGNMENT, submission(grading, ASSIGNMENT, edits))["notebooks"]
    cells = {cell: score for cell, (score, _) in scores["4_sgd"]["cells"].items() if cell in CELLS}
    assert cells == {"sgd_init": 2, "sgd_plain": 4, "sgd_momentum": 0}
