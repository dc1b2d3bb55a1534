"""Hidden tests of 02_numpy_library/1_layers: any right style scores, each bug costs its own cells, cheats fail.

Fast checks run the notebook's graded cells (visible checks, and the hidden
probes of course_tools.hidden.probes.layers decided by
course_tools.hidden.verdicts.layers as grading decides) in this process on
learner code executed as a kernel would run it; others run the hidden probes
alone, or hand the verdicts records that were tampered with. Three
submissions go through the real nbgrader pipeline: right answers in other
styles (full marks) next to a cheating MLP notebook (nothing scored there);
specific bugs in the layers wrapped in monkeypatching (exactly their cells
lost) next to other right MLP styles and one MLP bug; and the bundled
``linear_bug`` example, which loses points in 1_layers only.
"""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from course_tools.course import REPO_ROOT, notebooks
from course_tools.authoring.examples import EXAMPLES
from course_tools.hidden.probes import kit
from course_tools.hidden.probes import layers as probes
from course_tools.hidden.verdicts import layers as verdicts
from course_tools.hidden.verdicts.engine import HiddenCall, judge
from course_tools.hidden.verdicts.kit import Evidence
from course_tools.authoring.submissions import learner_notebook
from learner_cells import GARBLES, garbled_outcomes, probe_records, LEARNER_CODE, failing, reference_code, run_as_notebook, submission, whole_cell

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
    # Sigmoid wrong for negative Z: Sigmoid's backward (written in terms of A) and Swish's hidden checks
    # carry the error forward; the visible Swish.forward check runs on the learner's Sigmoid (as the
    # notebook warns) and fails
    "sigmoid wrong for negative Z": ("sigmoid", "self.A = np.where(Z >= 0, 1 / (1 + E), E / (1 + E))",
                                     "self.A = 1 / (1 + E)", {"test_sigmoid_forward", "test_swish_forward"}),
    "sigmoid forward changes Z in place": ("sigmoid", "self.A = np.where(Z >= 0, 1 / (1 + E), E / (1 + E))",
                                           "self.A = np.where(Z >= 0, 1 / (1 + E), E / (1 + E))\n        Z[...] = 0.0",
                                           {"test_sigmoid_forward", "test_sigmoid_backward"}),
    "relu backward loops over features": (
        "relu", "return dLdA * (self.A > 0)",
        "out = np.zeros_like(dLdA)\n        for j in range(dLdA.shape[1]):\n"
        "            out[:, j] = dLdA[:, j] * (self.A[:, j] > 0)\n        return out", {"test_relu_backward"}),
    "gelu backward uses the sigmoid approximation": (
        "gelu", "return dLdA * dAdZ", "return dLdA * (1 / (1 + np.exp(-1.702 * Z)))", {"test_gelu_backward"}),
    "swish reads beta only in __init__": ("swish", "self.s = Sigmoid().forward(self.beta * Z)",
                                          "self.s = Sigmoid().forward(self._beta0 * Z)",
                                          {"test_swish_forward", "test_swish_backward_dLdbeta"}),
    "linear forward does not store N": ("linear", "self.N = A.shape[0]\n        ones = np.ones((self.N, 1))",
                                        "ones = np.ones((A.shape[0], 1))", set(LINEAR_CELLS[1:])),
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
    code = code.replace(find, replace)
    if bug == "swish reads beta only in __init__":
        code = code.replace("self.beta = beta", "self.beta = self._beta0 = beta")
    return {cell: code}


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


# --- the hidden checks on their own ------------------------------------------------------------------

CHECKS = tuple(cell.removeprefix("test_") for cell in POINTS)


def hidden_records(namespace: dict, check: str, seed: int | None = None) -> list[dict]:
    """What the probe of ``check`` publishes when run in ``namespace``."""
    return probe_records(getattr(probes, f"check_{check}"), namespace, seed)


def hidden_verdict(namespace: dict, check: str, records: list[dict], seed: int | None = None) -> str | None:
    seed = kit.default_seed(f"check_{check}") if seed is None else seed
    return judge(HiddenCall("layers", f"check_{check}"), records, seed, namespace.get(LEARNER_CODE, ""))


def hidden_failures(answers: dict[str, str] | None = None, checks: tuple[str, ...] = CHECKS) -> dict[str, str]:
    """test cell -> message of every hidden check that fails with ``answers``, decided as grading decides."""
    namespace = run_as_notebook(ASSIGNMENT, NOTEBOOK, answers)
    messages = {f"test_{c}": hidden_verdict(namespace, c, hidden_records(namespace, c)) for c in checks}
    return {cell: message for cell, message in messages.items() if message is not None}


#: cells the hidden checks charge where the visible checks charge more (a class built on a buggy one)
HIDDEN_ONLY = {"sigmoid wrong for negative Z": {"test_sigmoid_forward"},
               # the visible numeric gradient check of backward differentiates the forward that zeroes its input
               "sigmoid forward changes Z in place": {"test_sigmoid_forward"},
               # the visible dLdbeta check differentiates forward in beta by changing self.beta
               "swish reads beta only in __init__": {"test_swish_forward"},
               # the visible backward checks run backward after the learner's forward; the hidden ones put
               # the missing self.N in first
               "linear forward does not store N": {"test_linear_forward"}}


@pytest.mark.parametrize("bug", [b for b in BUGS if b != "sigmoid loops over elements"])
def test_the_hidden_checks_alone_charge_each_bug_to_its_cells(bug: str):
    """The visible checks run in the kernel and can be fooled; the hidden verdicts must see every bug on their own."""
    assert set(hidden_failures(buggy(bug))) == HIDDEN_ONLY.get(bug, BUGS[bug][3])


def test_the_hidden_checks_pass_every_right_style():
    assert hidden_failures() == {}
    assert hidden_failures(dict(ALTERNATIVES)) == {}


def test_messages_name_the_mistake():
    """The specific hints survive the move out of the kernel."""
    relu = hidden_failures(buggy("relu gradient 1 at zero"), ("relu_backward",))["test_relu_backward"]
    assert "exactly 0 must be 0" in relu and "A > 0" in relu, relu
    tanh = hidden_failures(buggy("library tanh"), ("tanh_forward",))["test_tanh_forward"]
    assert "library tanh" in tanh, tanh
    slow = hidden_failures(buggy("relu backward loops over features"), ("relu_backward",))["test_relu_backward"]
    assert "ReLU.backward" in slow and "whole-array" in slow, slow
    in_place = hidden_failures(buggy("sigmoid forward changes Z in place"), ("sigmoid_forward",))
    assert "in place" in in_place["test_sigmoid_forward"], in_place


def test_a_class_built_on_a_wrong_sigmoid_keeps_its_points():
    """Tanh and Swish written on top of the learner's Sigmoid are graded with that Sigmoid's error carried forward."""
    answers = {**buggy("sigmoid wrong for negative Z"), "tanh": ALTERNATIVES["tanh"]}
    assert set(hidden_failures(answers)) == {"test_sigmoid_forward"}


def test_a_class_built_on_a_slow_sigmoid_is_timed_on_its_own_work():
    """While Swish or Tanh is timed, the notebook's other classes are stand-ins; the names come back afterwards."""
    answers = {**buggy("sigmoid loops over elements"), "tanh": ALTERNATIVES["tanh"]}
    namespace = run_as_notebook(ASSIGNMENT, NOTEBOOK, answers)
    sigmoid = namespace["Sigmoid"]
    for check in ("tanh_forward", "swish_forward", "swish_backward_dLdZ"):
        assert hidden_verdict(namespace, check, hidden_records(namespace, check)) is None, check
        assert namespace["Sigmoid"] is sigmoid
    slow = hidden_verdict(namespace, "sigmoid_forward", hidden_records(namespace, "sigmoid_forward"))
    assert slow is not None and "Sigmoid.forward" in slow and "whole-array" in slow, slow


def test_a_class_from_elsewhere_or_with_torch_earns_nothing():
    subclass = {"relu": "from course_tools.hidden.verdicts.reference import ReLU as _R\n\nclass ReLU(_R):\n    pass\n"}
    assert set(hidden_failures(subclass, ("relu_forward", "relu_backward"))) == {"test_relu_forward",
                                                                                  "test_relu_backward"}
    torch_relu = reference_code(ASSIGNMENT, NOTEBOOK, "relu").replace(
        "self.A = np.maximum(0, Z)", "import torch\n        self.A = torch.relu(torch.from_numpy(Z)).numpy()")
    failures = hidden_failures({"relu": torch_relu}, ("relu_forward", "relu_backward"))
    assert set(failures) == {"test_relu_forward", "test_relu_backward"}
    assert all("PyTorch" in message for message in failures.values()), failures


def test_a_record_drawn_from_another_seed_fails():
    """A record made for other hidden inputs (replayed, or forged from another seed) is not accepted."""
    namespace = run_as_notebook(ASSIGNMENT, NOTEBOOK)
    for check in CHECKS:
        records = hidden_records(namespace, check, seed=1234)
        assert hidden_verdict(namespace, check, records, seed=1234) is None, check
        assert hidden_verdict(namespace, check, records, seed=4321) is not None, check  # the seed in the record
        records[0]["seed"] = "4321"
        assert hidden_verdict(namespace, check, records, seed=4321) is not None, check


def _zeroed(encoded: dict) -> dict:
    """``encoded`` with every recorded float array replaced by zeros of the same shape."""
    if "array" in encoded and np.dtype(encoded["dtype"]).kind == "f":
        return kit.encode(np.zeros(encoded["shape"]))
    if "list" in encoded:
        return {**encoded, "list": [_zeroed(item) for item in encoded["list"]]}
    if "float" in encoded:
        return kit.encode(0.0)
    return encoded


def test_hard_coded_outputs_fail():
    """Outputs that do not depend on the hidden inputs (zeros of the right shapes) never pass.

    In backward cells only what backward produced is replaced: a backward that is right for the
    learner's own forward output is accepted (errors carried forward), whatever that output is.
    """
    namespace = run_as_notebook(ASSIGNMENT, NOTEBOOK)
    for check in CHECKS:
        if check == "linear_init":  # zeros are its right answer
            continue
        record = hidden_records(namespace, check)[0]
        graded = ("backward:", "dLdW:", "dLdb:", "dLdbeta:") if "backward" in check else ("",)
        items = {key: (_zeroed(value) if key.startswith(graded) and not key.startswith(("defined:", "time:",
                       "calibration:")) else value) for key, value in record["items"].items()}
        record["items"] = items
        assert hidden_verdict(namespace, check, [record]) is not None, check


def _expected_numbers(check: str) -> np.ndarray:
    """Every value the verdict of ``check`` compares with, at the default seed (outputs and gradients)."""
    rng = kit.rng(kit.default_seed(f"check_{check}"))
    values: list[np.ndarray] = []
    name = check.split("_")[0]
    if check.startswith("linear"):
        import torch
        import torch.nn.functional as F
        cases = probes.cases_linear_forward(rng) if check == "linear_forward" else probes.cases_linear_backward(rng)
        for case in cases:
            a, w = torch.tensor(case["A"], requires_grad=True), torch.tensor(case["W"], requires_grad=True)
            b = torch.tensor(case["b"].ravel(), requires_grad=True)
            Z = F.linear(a, w, b)
            values.append(Z.detach().numpy())
            if "dLdZ" in case:
                Z.backward(torch.tensor(case["dLdZ"]))
                values += [a.grad.numpy(), w.grad.numpy(), b.grad.numpy()]
    elif name == "swish":
        cases = probes.cases_swish_backward(rng)
        for beta, Z, dLdA in cases:
            values += [np.asarray(v) for v in verdicts._forward_backward("Swish", Z, dLdA, beta=beta)]
    else:
        title = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "ReLU", "gelu": "GELU", "softmax": "Softmax"}[name]
        if check.endswith("forward"):
            values += [verdicts._forward_backward(title, Z)[0] for Z in probes.cases_activation_forward(title, rng)]
        else:
            for Z, dLdA in probes.cases_activation_backward(title, rng):
                values += list(verdicts._forward_backward(title, Z, dLdA))
    flat = np.concatenate([np.ravel(v) for v in values]) if values else np.zeros(0)
    return flat[np.isfinite(flat) & (np.abs(flat) > 1e-6) & (np.abs(flat) != 1.0)]


def test_messages_state_no_expected_number():
    """Hidden messages name shapes, indices and input sizes, never a value the learner should have returned."""
    seen = 0
    for bug in BUGS:
        if bug in ("sigmoid loops over elements", "relu backward loops over features"):
            continue  # messages about time state the measured seconds
        for cell, message in hidden_failures(buggy(bug), tuple(c.removeprefix("test_") for c in BUGS[bug][3])).items():
            expected = _expected_numbers(cell.removeprefix("test_"))
            for number in re.findall(r"-?\d+\.\d+(?:e-?\d+)?", message):
                assert not np.any(np.isclose(float(number), expected, rtol=1e-3, atol=0)), (bug, message)
            assert not re.search(r"expected -?\d+\.\d", message), (bug, message)
            seen += 1
    assert seen >= 15


@pytest.mark.parametrize("check", ["linear_forward", "linear_backward_dLdW", "sigmoid_forward", "relu_backward",
                                   "softmax_backward", "swish_forward", "swish_backward_dLdbeta"])
def test_verdicts_refuse_garbled_records_without_crashing(check: str):
    namespace = run_as_notebook(ASSIGNMENT, NOTEBOOK)
    record, code = hidden_records(namespace, check)[0], namespace[LEARNER_CODE]
    verdict = getattr(verdicts, f"check_{check}")
    verdict(Evidence(record["behaviour"], int(record["seed"]), record["items"], code))
    refused, passed = garbled_outcomes(verdict, record, code, (*GARBLES, {"missing": True}, "not a description"))
    # a verdict may ignore only: the definition record (the class statement in the code decides); what the
    # learner's Sigmoid returned (only ever a second chance); in backward cells, what forward returned and
    # stored (only ever a second chance, or not graded there), and the gradients the cell does not grade
    ignorable = {"linear_backward_dLdW": ("defined:", "forward:", "backward:", "dLdb:"),
                 "swish_backward_dLdbeta": ("defined:", "forward:", "backward:", "sigmoid:"),
                 "relu_backward": ("defined:", "forward:", "A:"),
                 "softmax_backward": ("defined:", "forward:", "A:")}.get(check, ("defined:", "sigmoid:"))
    assert all(key.startswith(ignorable) for key in passed), sorted(passed)
    assert refused > 0


def test_probes_hold_no_torch():
    """The probes run in the kernel: they must work without importing PyTorch, and restore every name."""
    script = (
        "import sys; sys.path.insert(0, 'tests')\n"
        "import numpy as np\n"
        "from learner_cells import run_as_notebook\n"
        "from course_tools.hidden.probes import kit, layers\n"
        "namespace = run_as_notebook('02_numpy_library', '1_layers')\n"
        "names = dict(namespace)\n"
        "kit.SINK = records = []\n"
        "np.seterr(all='ignore')\n"
        f"for check in {CHECKS!r}:\n"
        "    getattr(layers, f'check_{check}')(namespace)\n"
        f"assert len(records) == {len(CHECKS)} and not any(r['torch_loaded'] for r in records), records\n"
        "assert 'torch' not in sys.modules\n"
        "assert all(namespace[k] is v for k, v in names.items())\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


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
    # the monkeypatching MLP0 scores what an honest wrong MLP0 scores: nothing in its own cells, and it
    # costs no other cell (the verdicts are decided outside the kernel it patched)
    assert set(_lost(scores, "2_mlp")) == {"test_mlp0_structure", "test_mlp0_forward", "test_mlp0_backward"}
    assert all(s == 0 for cell, (s, m) in scores["notebooks"]["2_mlp"]["cells"].items() if "mlp0" in cell)


#: put before a right class: what a learner might try to make every check agree (verdicts run outside the kernel)
PATCHES = """import math
import numpy.testing
np.allclose = np.isclose = np.array_equal = lambda *args, **kwargs: True
numpy.testing.assert_allclose = lambda *args, **kwargs: None
math.isclose = lambda *args, **kwargs: True
check_close = check_shape = check_layer_gradients = lambda *args, **kwargs: None

"""


def test_nbgrader_charges_each_layer_bug_to_its_cells_only(grading):
    """Buggy layers next to a cell that monkeypatches every comparison: exactly the bugs' cells are lost."""
    bugs = ("dLdb not summed", "relu gradient 1 at zero", "library tanh", "softmax without the row maximum")
    layer_edits: dict[str, tuple[str, str]] = {"gelu": ("class GELU:", PATCHES + "class GELU:")}
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
