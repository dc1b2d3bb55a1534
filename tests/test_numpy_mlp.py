"""Hidden tests of 02_numpy_library/2_mlp: any right style scores, each bug costs its own cells, cheats fail.

The graded cells (visible checks with the recording layers of mytorch_lib,
hidden probes course_tools.hidden.probes.mlp with stand-ins whose answers come
from the seed, decided by course_tools.hidden.verdicts.mlp) run in this process
on learner code executed as a kernel would run it. The answer cells run
WITHOUT the learner's Linear and ReLU: every check must build the models from
stand-ins, which is what keeps a bug in the layers notebook from costing points
here. One submission goes through the real nbgrader pipeline: a monkeypatching
cheat, a specific bug and another right style next to a broken Linear.
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
from course_tools.hidden.probes import mlp as probes
from course_tools.hidden.verdicts import mlp as verdicts
from course_tools.hidden.verdicts.engine import HiddenCall, judge
from course_tools.hidden.verdicts.kit import Evidence
from learner_cells import GARBLES, garbled_outcomes, probe_records, LEARNER_CODE, failing, reference_code, run_as_notebook, submission, whole_cell
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


def hidden_records(namespace: dict, cell: str, seed: int | None = None) -> list[dict]:
    """The records the hidden probe of ``cell`` publishes in ``namespace`` (the visible part is not run)."""
    return probe_records(getattr(probes, f"check_{cell[len('test_'):]}"), namespace, seed)


def hidden_verdict(namespace: dict, cell: str, records: list[dict], seed: int | None = None) -> str | None:
    check = f"check_{cell[len('test_'):]}"
    seed = kit.default_seed(check) if seed is None else seed
    return judge(HiddenCall("mlp", check), records, seed, namespace.get(LEARNER_CODE, ""))


def hidden_failures(namespace: dict) -> dict[str, str]:
    """cell -> message of every hidden check that fails in ``namespace``, decided as grading decides."""
    messages = {cell: hidden_verdict(namespace, cell, hidden_records(namespace, cell)) for cell in sorted(CELLS)}
    return {cell: message for cell, message in messages.items() if message is not None}


@pytest.mark.parametrize("bug", list(BUGS))
def test_the_hidden_checks_alone_charge_each_bug_to_its_cells(bug: str):
    """The visible checks run in the kernel and can be fooled; the hidden verdicts must see every bug on their own."""
    cell, find, replace, expected = BUGS[bug]
    code = reference_code(ASSIGNMENT, NOTEBOOK, cell).replace(find, replace)
    namespace = run_as_notebook(ASSIGNMENT, NOTEBOOK, {cell: code})
    if bug == "layers kept on the class":
        exec("MLP4.shared = []", namespace)
    assert set(hidden_failures(namespace)) == expected


def test_the_hidden_checks_pass_right_answers_and_restore_the_names():
    for answers in (None, ALTERNATIVES):
        namespace = run_as_notebook(ASSIGNMENT, NOTEBOOK, answers)
        namespace["Linear"] = sentinel = object()
        assert hidden_failures(namespace) == {}
        assert namespace["Linear"] is sentinel and "ReLU" not in namespace


BROKEN_LINEAR = """
class Linear:
    def __init__(self, in_features, out_features):
        raise RuntimeError("this Linear is broken")

class ReLU:
    def forward(self, Z):
        return Z * 0
"""


def test_a_broken_linear_costs_nothing_here():
    namespace = run_as_notebook(ASSIGNMENT, NOTEBOOK)
    exec(BROKEN_LINEAR, namespace)
    assert failing(ASSIGNMENT, NOTEBOOK, namespace) == set()


def test_a_record_drawn_from_another_seed_fails():
    """A record made for other hidden inputs (replayed, or forged from the default seed) is not accepted."""
    namespace = run_as_notebook(ASSIGNMENT, NOTEBOOK)
    for cell in sorted(CELLS):
        records = hidden_records(namespace, cell, seed=1234)
        assert hidden_verdict(namespace, cell, records, seed=1234) is None
        assert hidden_verdict(namespace, cell, records, seed=4321) is not None  # the seed written in the record
        records[0]["seed"] = "4321"
        message = hidden_verdict(namespace, cell, records, seed=4321)
        if cell.endswith("_structure"):  # no hidden input: the structure is the same whatever the seed
            assert message is None
        else:
            assert message is not None and "did not receive" in message, (cell, message)


def test_hard_coded_answers_of_the_visible_recorders_fail():
    """A model that forges the visible recorders' markers instead of calling its layers earns nothing hidden."""
    cheat = """
class MLP0:
    def __init__(self):
        self.layers = [Linear(2, 3), ReLU()]

    def forward(self, A0):
        for layer in self.layers:
            layer.forward(np.zeros((A0.shape[0], 2 if layer is self.layers[0] else 3)))
        return np.full((A0.shape[0], 3), 2.0)

    def backward(self, dLdA):
        for layer in reversed(self.layers):
            layer.backward(np.full(dLdA.shape, 0.5))
        return np.full((dLdA.shape[0], 2), -1.0)
"""
    namespace = run_as_notebook(ASSIGNMENT, NOTEBOOK, {"mlp0": cheat})
    assert set(hidden_failures(namespace)) == {"test_mlp0_forward", "test_mlp0_backward"}


def test_messages_state_no_hidden_number():
    """Messages name calls, shapes and positions; never a number of a hidden array."""
    messages = []
    for bug, (cell, find, replace, _) in BUGS.items():
        code = reference_code(ASSIGNMENT, NOTEBOOK, cell).replace(find, replace)
        namespace = run_as_notebook(ASSIGNMENT, NOTEBOOK, {cell: code})
        if bug == "layers kept on the class":
            exec("MLP4.shared = []", namespace)
        messages += hidden_failures(namespace).values()
    assert len(messages) >= len(BUGS)
    for message in messages:
        assert not re.search(r"\d\.\d", message), message


def _record(cell: str) -> tuple[dict, str]:
    namespace = run_as_notebook(ASSIGNMENT, NOTEBOOK)
    return hidden_records(namespace, cell)[0], namespace[LEARNER_CODE]


@pytest.mark.parametrize("cell", ["test_mlp1_structure", "test_mlp1_forward", "test_mlp4_backward"])
def test_verdicts_refuse_garbled_records_without_crashing(cell: str):
    record, code = _record(cell)
    check = getattr(verdicts, f"check_{cell[len('test_'):]}")
    check(Evidence(record["behaviour"], int(record["seed"]), record["items"], code))
    refused, passed = garbled_outcomes(check, record, code, GARBLES[:5])
    assert refused > 0 and not passed, passed  # every garbled record refused, and no other exception (a crash)


def test_probes_hold_no_torch():
    """The probe runs in the kernel: it must work without importing PyTorch."""
    script = (
        "import sys; sys.path.insert(0, 'tests')\n"
        "from learner_cells import run_as_notebook\n"
        "from course_tools.hidden.probes import kit, mlp\n"
        "namespace = run_as_notebook('02_numpy_library', '2_mlp')\n"
        "kit.SINK = records = []\n"
        "for model in ('mlp0', 'mlp1', 'mlp4'):\n"
        "    for part in ('structure', 'forward', 'backward'):\n"
        "        getattr(mlp, f'check_{model}_{part}')(namespace)\n"
        "assert len(records) == 9 and not any(r['torch_loaded'] for r in records), records\n"
        "assert 'torch' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


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


# --- through nbgrader ------------------------------------------------------------------------------

CHEATING_MLP0 = """
class MLP0:
    def __init__(self):
        self.layers = [Linear(2, 3), ReLU()]

    def forward(self, A0):
        return np.zeros((A0.shape[0], 3))

    def backward(self, dLdA):
        return np.zeros((dLdA.shape[0], 2))

import numpy.testing
np.allclose = np.array_equal = lambda *args, **kwargs: True
numpy.testing.assert_allclose = lambda *args, **kwargs: None
check_layers = check_forward_wiring = check_backward_wiring = lambda *args, **kwargs: None
"""

BROKEN_NOTEBOOK_LINEAR = """
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


def _linear_cell() -> str | None:
    """grade_id of the answer cell defining Linear in 1_layers, if that notebook exists."""
    path = SOURCE_DIR / ASSIGNMENT / "1_layers.ipynb"
    if not path.exists():
        return None
    nb = nbformat.read(path, as_version=4)
    return next((c.id for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("solution")
                 and "class Linear" in c.source), None)


def test_nbgrader_charges_a_cheat_and_a_bug_only_their_cells_whatever_the_linear_layer(grading):
    """The cheat loses what the same model without the patches loses (see test_hard_coded_outputs_fail)."""
    find, replace = "for layer in reversed(self.layers):", "for layer in self.layers[::-1][:-1]:"
    edits = {"2_mlp": {"mlp0": whole_cell(ASSIGNMENT, NOTEBOOK, "mlp0", CHEATING_MLP0), "mlp1": (find, replace),
                       "mlp4": whole_cell(ASSIGNMENT, NOTEBOOK, "mlp4", ALTERNATIVES["mlp4"])}}
    linear = _linear_cell()
    if linear is not None:
        edits["1_layers"] = {linear: whole_cell(ASSIGNMENT, "1_layers", linear, BROKEN_NOTEBOOK_LINEAR)}
    scores = grading.grade("mlp_cheat_and_bug", ASSIGNMENT, submission(grading, ASSIGNMENT, edits))["notebooks"]
    lost = {cell: m - s for cell, (s, m) in scores[NOTEBOOK]["cells"].items() if s != m}
    assert lost == {"test_mlp0_forward": 3, "test_mlp0_backward": 4, "test_mlp1_backward": 4}, scores[NOTEBOOK]
