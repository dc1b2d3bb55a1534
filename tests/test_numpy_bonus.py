"""Hidden tests of 02_numpy_library/6_bonus_adam_dropout: right styles score, each bug costs its own cells.

The notebook's graded cells (visible checks, and the hidden probes of
course_tools.hidden.probes.adam_dropout decided by
course_tools.hidden.verdicts.adam_dropout as grading decides) run in this
process on learner code executed as a kernel would run it. Dropout is random:
the right layers below are judged by the statistics of their masks, and must
pass for any seed of NumPy's global generator.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from course_tools.hidden.probes import adam_dropout as probes
from course_tools.hidden.probes import kit
from course_tools.hidden.verdicts import adam_dropout as verdicts
from course_tools.hidden.verdicts.engine import HiddenCall, judge
from course_tools.hidden.verdicts.kit import Evidence
from learner_cells import reference_record, GARBLES, LEARNER_CODE, failing, garbled_outcomes, probe_records, reference_code, run_as_notebook

ASSIGNMENT = "02_numpy_library"
NOTEBOOK = "6_bonus_adam_dropout"
ADAM_CELLS = ("adam_init", "adam_step")
DROPOUT_CELLS = ("dropout_train", "dropout_eval", "dropout_backward")
CELLS = ADAM_CELLS + DROPOUT_CELLS

# --- learner code: right answers in other styles ----------------------------------------------

# The paper's rearrangement with the corrections folded into the step size and, to stay the same
# algorithm, eps scaled by sqrt(1 - beta2^t); moments updated in place; one loop over all parameters.
ADAM_FOLDED = """
class Adam:
    def __init__(self, model, lr=0.001, betas=(0.9, 0.999), eps=1e-8):
        self.l = [layer for layer in model.layers if hasattr(layer, "W") and hasattr(layer, "b")]
        self.L = len(self.l)
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.m_W = [np.zeros(layer.W.shape) for layer in self.l]
        self.v_W = [np.zeros(layer.W.shape) for layer in self.l]
        self.m_b = [np.zeros(layer.b.shape) for layer in self.l]
        self.v_b = [np.zeros(layer.b.shape) for layer in self.l]
        self.t = 0

    def step(self):
        self.t += 1
        root = np.sqrt(1 - self.b2 ** self.t)
        size = self.lr * root / (1 - self.b1 ** self.t)
        for i, layer in enumerate(self.l):
            for name, m, v in (("W", self.m_W[i], self.v_W[i]), ("b", self.m_b[i], self.v_b[i])):
                g = getattr(layer, "dLd" + name)
                m *= self.b1
                m += (1 - self.b1) * g
                v *= self.b2
                v += (1 - self.b2) * np.square(g)
                setattr(layer, name, getattr(layer, name) - size * m / (np.sqrt(v) + self.eps * root))
"""

DROPOUT_GENERATOR = """
class Dropout:
    def __init__(self, p=0.5):
        self.p = p
        self.rng = np.random.default_rng()

    def forward(self, A, train=True):
        if train:
            self.mask = self.rng.binomial(1, 1 - self.p, size=A.shape).astype(np.float64)
            return np.where(self.mask == 1, A / (1 - self.p), 0.0)
        return A.copy()

    def backward(self, dLdA):
        return dLdA * (self.mask / (1 - self.p))
"""

DROPOUT_KEEP_FIRST = """
class Dropout:
    def __init__(self, p=0.5):
        self.p = p
        self.keep = 1 - p

    def forward(self, A, train=True):
        if not train:
            return A
        self.mask = np.random.uniform(size=A.shape) < self.keep
        out = A * self.mask
        return out / self.keep

    def backward(self, dLdA):
        return dLdA * self.mask / self.keep
"""

# --- learner code: specific bugs (edits of the reference solutions) -----------------------------

ADAM_BUGS = {
    "no bias correction": ([("correction1 = 1 - self.beta1 ** self.t", "correction1 = 1"),
                            ("correction2 = 1 - self.beta2 ** self.t", "correction2 = 1")], {"adam_step"},
                           "without bias correction"),
    "eps inside the square root": ([("(np.sqrt(self.v_W[i] / correction2) + self.eps)",
                                     "np.sqrt(self.v_W[i] / correction2 + self.eps)"),
                                    ("(np.sqrt(self.v_b[i] / correction2) + self.eps)",
                                     "np.sqrt(self.v_b[i] / correction2 + self.eps)")], {"adam_step"},
                                   "eps inside the square root"),
    "counts the step after the update": ([("        self.t += 1\n", ""),
                                          ("            layer.b -= self.lr * (self.m_b[i] / correction1) / "
                                           "(np.sqrt(self.v_b[i] / correction2) + self.eps)",
                                           "            layer.b -= self.lr * (self.m_b[i] / correction1) / "
                                           "(np.sqrt(self.v_b[i] / correction2) + self.eps)\n"
                                           "        self.t += 1")], {"adam_step"}, "nan or inf"),
    "wrong default eps": ([("eps=1e-8):", "eps=1e-6):")], {"adam_step"}, "default to lr=0.001"),
    "t starts at 1": ([("self.t = 0", "self.t = 1")], {"adam_init", "adam_step"}, "Adam.t should start at 0"),
    "shares one moment between W and b": ([("self.m_b[i] = self.beta1 * self.m_b[i]", "self.m_b[i] = self.beta1 * self.m_W[i].sum()")],
                                          {"adam_step"}, "hint: first t := t + 1"),
    "keeps the activations": ([('[layer for layer in model.layers if hasattr(layer, "W") and hasattr(layer, "b")]',
                                "list(model.layers)")], set(ADAM_CELLS), ""),
}

DROPOUT_BUGS = {
    "keeps with probability p": ([(">= self.p", "< self.p")], {"dropout_train"}, "probability to drop"),
    "no scaling": ([("return A * self.mask / (1 - self.p)", "return A * self.mask"),
                    ("return dLdA * self.mask / (1 - self.p)", "return dLdA * self.mask")],
                   {"dropout_train", "dropout_backward"}, "not scaled"),
    "scales by p": ([("return A * self.mask / (1 - self.p)", "return A * self.mask / self.p")],
                    {"dropout_train"}, "not by p"),
    "scales in evaluation": ([("return A\n", "return A * (1 - self.p)\n")], {"dropout_eval"}, "scaled A by 1 - p"),
    "a new mask in backward": ([("return dLdA * self.mask / (1 - self.p)",
                                 "return dLdA * (np.random.random(dLdA.shape) >= self.p) / (1 - self.p)")],
                               {"dropout_backward"}, "same mask"),
    "one mask per sample": ([("np.random.random(A.shape) >= self.p", "(np.random.random((A.shape[0], 1)) >= self.p) "
                              "| np.zeros(A.shape, dtype=bool)")], {"dropout_train"}, "not independent"),
    "re-seeds in forward": ([("self.mask = np.random.random(A.shape)", "np.random.seed(0)\n        "
                              "self.mask = np.random.random(A.shape)")], {"dropout_train"}, "same entries"),
    "changes its input in place": ([("return A * self.mask / (1 - self.p)", "A *= self.mask / (1 - self.p)\n        return A")],
                                   {"dropout_train"}, "in place"),
    "loops over the entries": ([("self.mask = np.random.random(A.shape) >= self.p",
                                 "self.mask = np.array([[np.random.random() >= self.p for _ in row] for row in A])")],
                               {"dropout_train"}, "took"),
    "mask scaled already": ([("self.mask = np.random.random(A.shape) >= self.p\n        return A * self.mask / (1 - self.p)",
                              "self.mask = (np.random.random(A.shape) >= self.p) / (1 - self.p)\n        return A * self.mask")],
                            {"dropout_train", "dropout_backward"}, "only 0s and 1s"),
}


def _answers(adam: str | None = None, dropout: str | None = None) -> dict[str, str] | None:
    answers = {key: code for key, code in (("adam_class", adam), ("dropout_class", dropout)) if code is not None}
    return answers or None


def with_bug(cell: str, edits: list[tuple[str, str]]) -> str:
    code = reference_code(ASSIGNMENT, NOTEBOOK, cell)
    for find, replace in edits:
        assert find in code, f"the reference solution no longer contains {find!r}: update this test"
        code = code.replace(find, replace)
    return code


def failing_cells(adam: str | None = None, dropout: str | None = None) -> set[str]:
    return failing(ASSIGNMENT, NOTEBOOK, run_as_notebook(ASSIGNMENT, NOTEBOOK, _answers(adam, dropout)))


def hidden_records(namespace: dict, cell: str, seed: int | None = None) -> list[dict]:
    return probe_records(getattr(probes, f"check_{cell}"), namespace, seed)


def hidden_verdict(namespace: dict, cell: str, records: list[dict], seed: int | None = None) -> str | None:
    seed = kit.default_seed(f"check_{cell}") if seed is None else seed
    return judge(HiddenCall("adam_dropout", f"check_{cell}"), records, seed, namespace.get(LEARNER_CODE, ""))


def hidden_failures(adam: str | None = None, dropout: str | None = None, seed: int | None = None) -> dict[str, str]:
    """cell -> message of every hidden check that fails, decided as grading decides."""
    namespace = run_as_notebook(ASSIGNMENT, NOTEBOOK, _answers(adam, dropout))
    messages = {cell: hidden_verdict(namespace, cell, hidden_records(namespace, cell, seed), seed) for cell in CELLS}
    return {cell: message for cell, message in messages.items() if message is not None}


def test_reference_passes_every_cell():
    assert failing_cells() == set()


@pytest.mark.parametrize("adam, dropout", [(ADAM_FOLDED, DROPOUT_GENERATOR), (None, DROPOUT_KEEP_FIRST)],
                         ids=["folded-step-and-generator", "keep-probability-first"])
def test_right_answers_in_other_styles_pass(adam: str | None, dropout: str):
    assert failing_cells(adam, dropout) == set()
    assert hidden_failures(adam, dropout) == {}


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_right_dropout_passes_for_any_global_seed_and_cell_seed(seed: int):
    """The statistics are wide enough that a right layer never fails by chance in practice."""
    np.random.seed(seed)
    assert hidden_failures(dropout=DROPOUT_KEEP_FIRST, seed=1000 + seed) == {}


@pytest.mark.parametrize("bug", list(ADAM_BUGS))
def test_each_adam_bug_fails_its_cells_with_a_message_that_names_it(bug: str):
    edits, cells, phrase = ADAM_BUGS[bug]
    code = with_bug("adam_class", edits)
    assert failing_cells(adam=code) == cells
    hidden = hidden_failures(adam=code)
    assert set(hidden) == cells
    assert any(phrase in message for message in hidden.values()), hidden


@pytest.mark.parametrize("bug", list(DROPOUT_BUGS))
def test_each_dropout_bug_fails_its_cells_with_a_message_that_names_it(bug: str):
    edits, cells, phrase = DROPOUT_BUGS[bug]
    code = with_bug("dropout_class", edits)
    hidden = hidden_failures(dropout=code)
    assert set(hidden) == cells
    assert any(phrase in message for message in hidden.values()), hidden
    assert failing_cells(dropout=code) == cells


def test_a_class_taken_from_the_grader_earns_nothing():
    code = "from course_tools.hidden.verdicts.reference import SGD as {name}\n"
    assert set(hidden_failures(adam=code.format(name="Adam"), dropout=code.format(name="Dropout"))) == set(CELLS)


def test_a_record_drawn_from_another_seed_fails():
    namespace = run_as_notebook(ASSIGNMENT, NOTEBOOK)
    for cell in ("adam_init", "adam_step", "dropout_eval", "dropout_backward"):
        records = hidden_records(namespace, cell, seed=1234)
        assert hidden_verdict(namespace, cell, records, seed=1234) is None
        assert hidden_verdict(namespace, cell, records, seed=4321) is not None, cell


def test_adam_messages_state_no_expected_number():
    """Messages may name the settings given to Adam and its defaults; no other number with a decimal point."""
    runs = probes.cases_adam_step(kit.rng(kit.default_seed("check_adam_step")))
    seen = 0
    for bug, (edits, _, _) in ADAM_BUGS.items():
        message = hidden_failures(adam=with_bug("adam_class", edits)).get("adam_step")
        if message is None:
            continue
        for given in [verdicts._call(run) for run in runs] + ["lr=0.001, betas=(0.9, 0.999), eps=1e-8"]:
            message = message.replace(given, "")
        assert not re.findall(r"\d\.\d|\de-", message), (bug, message)
        seen += 1
    assert seen >= 5


@pytest.mark.parametrize("cell", CELLS)
def test_verdicts_refuse_garbled_records_without_crashing(cell: str):
    record, code, check = reference_record(ASSIGNMENT, NOTEBOOK, probes, verdicts, cell)
    keys = [key for key in record["items"] if key.count(":") < 2 or key.split(":")[1] == "0"]
    refused, passed = garbled_outcomes(check, record, code, GARBLES[:5], keys)
    assert not passed, passed
    assert refused > 0
