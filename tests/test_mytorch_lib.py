"""Unit tests of the helper library learners import."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import mytorch_lib
from mytorch_lib import checks, data, gradcheck, seeding, training
from mytorch_lib.checks import CheckFailure

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
matrices = hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=5), elements=finite)


# ---------------------------------------------------------------- checks

@given(matrices)
def test_check_close_accepts_equal_arrays(a):
    checks.check_close("f(X)", a.copy(), a)


@given(matrices, st.data())
def test_check_close_names_the_worst_element(a, draw):
    i = draw.draw(st.integers(0, a.shape[0] - 1))
    j = draw.draw(st.integers(0, a.shape[1] - 1))
    wrong = a.copy()
    wrong[i, j] += 1.0 + abs(a[i, j])
    with pytest.raises(CheckFailure) as info:
        checks.check_close("Linear.forward(A)", wrong, a, inputs={"A": a})
    message = str(info.value)
    assert message.startswith("Linear.forward(A): wrong values in 1 of")
    assert f"index ({i}, {j})" in message
    assert "called with:\n    A" in message


def test_check_close_reports_shape_dtype_and_nan():
    with pytest.raises(CheckFailure, match=r"expected shape \(2, 3\), got shape \(3, 2\)"):
        checks.check_close("f", np.zeros((3, 2)), np.zeros((2, 3)))
    with pytest.raises(CheckFailure, match="expected a numpy array of shape"):
        checks.check_close("f", [[0.0, 0.0]], np.zeros((1, 2)))
    with pytest.raises(CheckFailure, match="(?s)non-finite value nan at index \\(0, 1\\).*hint: an overflow"):
        checks.check_close("f", np.array([[0.0, np.nan]]), np.zeros((1, 2)))
    with pytest.raises(CheckFailure, match="expected dtype float64, got dtype int64"):
        checks.check_shape("f", np.zeros((2,), dtype=np.int64), (2,))


def test_check_scalar_and_type():
    checks.check_scalar("loss", np.float64(0.5), 0.5)
    checks.check_scalar("loss", np.array([0.5]), 0.5)
    with pytest.raises(CheckFailure, match="expected 0.5, got 0.6"):
        checks.check_scalar("loss", 0.6, 0.5)
    with pytest.raises(CheckFailure, match="expected a single number, got str"):
        checks.check_scalar("loss", "0.5x", 0.5)
    with pytest.raises(CheckFailure, match="expected a int or float, got str"):
        checks.check_type("n", "3", (int, float))


@pytest.mark.parametrize(
    "value, shape",
    [([0.1, 0.2], (2,)), (np.array([0.1, 0.2]), (2,)), ([[1, 2, 3], [4, 5, 6]], (2, 3)), (0.25, ()),
     ([0.25], ()), (0.25, (1,)), (np.float64(3.0), ()), ((1.0, 2.0), (2,))],
)
def test_as_answer_array_accepts_natural_forms(value, shape):
    out = checks.as_answer_array("a", value, shape)
    assert out.shape == shape and out.dtype == np.float64


@pytest.mark.parametrize(
    "value, shape, message",
    [(None, (2,), "a is still None"), ([1.0, 2.0, 3.0], (2,), "should have shape"),
     (["x", 1.0], (2,), "plain numbers"), ([[1.0, 2.0]], (2,), "should have shape"),
     ([1.0, float("nan")], (2,), "not a finite number")],
)
def test_as_answer_array_rejects_with_named_message(value, shape, message):
    with pytest.raises(CheckFailure, match=message):
        checks.as_answer_array("a", value, shape)


# ---------------------------------------------------------------- gradient checking

class _Affine:
    """A correct layer with parameters W (Cout x Cin), b (Cout x 1), for the checker's tests."""

    def __init__(self, cin: int, cout: int, rng: np.random.Generator, bug: str = "") -> None:
        self.W = rng.standard_normal((cout, cin))
        self.b = rng.standard_normal((cout, 1))
        self.bug = bug

    def forward(self, A):
        self.A = A
        return A @ self.W.T + self.b.T

    def backward(self, dLdZ):
        self.dLdW = dLdZ.T @ self.A
        self.dLdb = dLdZ.sum(axis=0, keepdims=True).T
        if self.bug == "dLdb_mean":
            self.dLdb = dLdZ.mean(axis=0, keepdims=True).T
        if self.bug == "no_dLdW":
            del self.dLdW
        return dLdZ @ self.W if self.bug != "dLdA_sign" else -(dLdZ @ self.W)


class _Scaled:
    """A layer with a learnable scalar ``beta``: forward = beta * Z**2."""

    def __init__(self) -> None:
        self.beta = 1.5

    def forward(self, Z):
        self.Z = Z
        return self.beta * Z ** 2

    def backward(self, dLdA):
        self.dLdbeta = np.sum(dLdA * self.Z ** 2)
        return dLdA * 2 * self.beta * self.Z


@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.integers(0, 1000))
@settings(max_examples=25, deadline=None)
def test_gradient_checker_accepts_correct_layers(n, cin, cout, seed):
    rng = np.random.default_rng(seed)
    gradcheck.check_layer_gradients(_Affine(cin, cout, rng), rng.standard_normal((n, cin)))


def test_gradient_checker_handles_scalar_parameters():
    gradcheck.check_layer_gradients(_Scaled(), np.random.default_rng(0).standard_normal((3, 2)))


@pytest.mark.parametrize(
    "bug, message",
    [("dLdb_mean", "dLdb disagrees with the numeric gradient"),
     ("dLdA_sign", "the returned dLdX disagrees"),
     ("no_dLdW", "backward did not set dLdW")],
)
def test_gradient_checker_catches_wrong_gradients(bug, message):
    rng = np.random.default_rng(1)
    layer = _Affine(3, 2, rng, bug=bug)
    with pytest.raises(CheckFailure, match=message):
        gradcheck.check_layer_gradients(layer, rng.standard_normal((4, 3)))


def test_loss_gradient_checker():
    class MSE:
        def forward(self, A, Y):
            self.A, self.Y = A, Y
            return float(np.mean((A - Y) ** 2))

        def backward(self):
            return 2 * (self.A - self.Y) / self.A.size

    class MSEForgotN(MSE):
        def backward(self):
            return 2 * (self.A - self.Y)

    rng = np.random.default_rng(2)
    A, Y = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    gradcheck.check_loss_gradients(MSE(), A, Y)
    with pytest.raises(CheckFailure, match="MSEForgotN.backward: dLdA disagrees"):
        gradcheck.check_loss_gradients(MSEForgotN(), A, Y)


@given(hnp.arrays(np.float64, (3, 2), elements=st.floats(-5, 5)))
@settings(max_examples=25, deadline=None)
def test_numeric_gradient_of_a_quadratic(x):
    expected = 2 * x
    numeric = gradcheck.numeric_gradient(lambda: float(np.sum(x ** 2)), x)
    np.testing.assert_allclose(numeric, expected, rtol=1e-6, atol=1e-6)


def test_relative_error_definition():
    assert gradcheck.relative_error([1.0, 0.0], [1.0, 0.0]) == 0.0
    assert gradcheck.relative_error([1.0], [3.0]) == pytest.approx(0.5)
    assert gradcheck.relative_error([], []) == 0.0


# ---------------------------------------------------------------- seeding, data, training

def test_seed_everything_is_reproducible():
    a = seeding.seed_everything(7).standard_normal(3), np.random.standard_normal(3)
    b = seeding.seed_everything(7).standard_normal(3), np.random.standard_normal(3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_regression_data_is_reproducible_and_shaped():
    x1, y1 = data.make_regression_1d(50, seed=3)
    x2, y2 = data.make_regression_1d(50, seed=3)
    assert x1.shape == y1.shape == (50, 1)
    np.testing.assert_array_equal(y1, y2)
    residual = y1 - data.regression_target(x1)
    assert 0.05 < residual.std() < 0.3
    assert not np.array_equal(data.make_regression_1d(50, seed=4)[0], x1)


@given(st.integers(1, 30), st.integers(2, 6), st.integers(0, 100))
def test_one_hot_rows_are_unit_vectors(n, c, seed):
    labels = np.random.default_rng(seed).integers(0, c, size=n)
    Y = data.one_hot(labels, c)
    assert Y.shape == (n, c)
    np.testing.assert_array_equal(Y.sum(axis=1), np.ones(n))
    np.testing.assert_array_equal(Y.argmax(axis=1), labels)


def test_one_hot_rejects_bad_labels():
    with pytest.raises(ValueError, match="labels must lie in 0..2"):
        data.one_hot(np.array([0, 3]), 3)
    with pytest.raises(ValueError, match="1-D integer array"):
        data.one_hot(np.array([0.0, 1.0]), 3)


@given(st.integers(1, 40), st.integers(1, 9), st.integers(0, 100))
def test_minibatches_cover_every_row_once(n, batch, seed):
    X = np.arange(n, dtype=np.float64).reshape(n, 1)
    seen = np.concatenate([xb for xb, _ in data.iterate_minibatches(X, X, batch, np.random.default_rng(seed))])
    np.testing.assert_array_equal(np.sort(seen.ravel()), X.ravel())


def test_spirals_and_digits():
    X, labels = data.make_spirals(20, n_classes=3, seed=0)
    assert X.shape == (60, 2) and set(labels) == {0, 1, 2}
    Xtr, ytr, Xte, yte = data.load_digits_split(seed=0)
    assert Xtr.shape[1] == 64 and len(Xtr) + len(Xte) == 1797
    assert 0.0 <= Xtr.min() and Xtr.max() <= 1.0


def test_fit_records_history_and_prints_to_stdout(capsys, monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    history = training.fit(lambda epoch: 1.0 / (epoch + 1), 3, evaluate=lambda: {"acc": 0.5})
    assert history == {"loss": [1.0, 0.5, 1.0 / 3], "acc": [0.5, 0.5, 0.5]}
    captured = capsys.readouterr()
    assert "training" in captured.out and captured.err == ""


def test_fit_in_a_notebook_rewrites_one_output_in_place(capsys, monkeypatch):
    """In a kernel the progress is one display output, updated after every epoch: a saved notebook (and
    its HTML export) keeps the final line only, with the epoch count and the latest loss and metrics."""
    import IPython.display

    shown: list[tuple[str, dict]] = []

    class Handle:
        def update(self, bundle: dict, raw: bool = False) -> None:
            shown.append(("update", bundle))

    def display(bundle: dict, raw: bool = False, display_id: bool = False) -> Handle:
        assert raw and display_id
        shown.append(("display", bundle))
        return Handle()

    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.setattr(training, "_in_notebook", lambda: True)
    monkeypatch.setattr(IPython.display, "display", display)
    training.fit(lambda epoch: 1.0 / (epoch + 1), 4, evaluate=lambda: {"val_accuracy": 0.875})
    assert [kind for kind, _ in shown] == ["display"] + ["update"] * 4
    first, last = shown[0][1]["text/plain"], shown[-1][1]["text/plain"]
    assert "0/4 epochs" in first and "4/4 epochs" in last and " 100%" in last
    assert "loss 0.2500" in last and "val_accuracy 0.8750" in last
    assert '<progress value="4" max="4"' in shown[-1][1]["text/html"]
    assert capsys.readouterr().out == "", "nothing is printed line by line in a notebook"
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    shown.clear()
    training.fit(lambda epoch: 1.0, 2)
    assert shown == [] and capsys.readouterr().out == "", "a grading run shows no progress"


def test_is_autograding(monkeypatch):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert training.is_autograding()
    monkeypatch.delenv("NBGRADER_EXECUTION")
    assert not training.is_autograding()


def test_import_from_notebook_runs_only_answers_and_imports(tmp_path, monkeypatch):
    import nbformat

    from course_tools.authoring.cells import code, solution, tests, write_notebook

    write_notebook(tmp_path / "layers.ipynb", [
        code("imports", "import numpy as np"),
        code("demo", "raise RuntimeError('demo cells must not run')"),
        solution("answer", "class Doubler:\n    def forward(self, Z):\n        return 2 * np.asarray(Z)"),
        tests("check", '"""t"""\nraise AssertionError("test cells must not run")', 1),
    ], total_points=1)
    assert nbformat.read(tmp_path / "layers.ipynb", as_version=4).cells
    monkeypatch.chdir(tmp_path)
    Doubler = mytorch_lib.import_from_notebook("layers.ipynb", "Doubler")
    np.testing.assert_array_equal(Doubler().forward([1, 2]), [2, 4])
    with pytest.raises(ImportError, match="does not define Tripler"):
        mytorch_lib.import_from_notebook("layers.ipynb", "Tripler")
    with pytest.raises(FileNotFoundError, match="keep all notebooks of the assignment in one folder"):
        mytorch_lib.import_from_notebook("missing.ipynb", "Doubler")


def test_import_from_notebook_on_colab_finds_the_learners_copy_in_drive(tmp_path, monkeypatch, capsys):
    """On Colab the sibling notebook is not next to this one: the learner's newest copy in a mounted Drive is
    used (named as saved, or 'Copy of ...'); without one, the message says how to get it there."""
    import os
    import time

    from course_tools.authoring.cells import solution, write_notebook
    from mytorch_lib import notebooks

    work, drive = tmp_path / "content", tmp_path / "drive"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("COLAB_RELEASE_TAG", "test")
    monkeypatch.setattr(notebooks, "DRIVE", str(drive))
    with pytest.raises(FileNotFoundError, match="your Google Drive is not mounted") as missing:
        mytorch_lib.import_from_notebook("1_layers.ipynb", "Layer")
    assert "drive.mount" in str(missing.value) and "Files panel" in str(missing.value)
    for folder, version in (("Colab Notebooks/old", 1), ("Colab Notebooks", 2)):
        (drive / folder).mkdir(parents=True, exist_ok=True)
        name = "1_layers.ipynb" if version == 1 else "Copy of 1_layers.ipynb"
        write_notebook(drive / folder / name, [solution("answer", f"class Layer:\n    version = {version}")],
                       total_points=0)
        os.utime(drive / folder / name, (time.time() + version, time.time() + version))
    (drive / ".trash").mkdir()
    write_notebook(drive / ".trash" / "1_layers.ipynb", [solution("answer", "class Layer:\n    version = 3")],
                   total_points=0)
    os.utime(drive / ".trash" / "1_layers.ipynb", (time.time() + 9, time.time() + 9))
    assert mytorch_lib.import_from_notebook("1_layers.ipynb", "Layer").version == 2
    assert "Copy of 1_layers.ipynb from your Google Drive" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="holds no 2_mlp.ipynb"):
        mytorch_lib.import_from_notebook("2_mlp.ipynb", "MLP0")


def test_import_from_notebook_says_the_file_is_read_as_saved(tmp_path, monkeypatch):
    from course_tools.authoring.cells import solution, write_notebook

    write_notebook(tmp_path / "1_layers.ipynb", [solution("answer", "raise NotImplementedError()")], total_points=0)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NotImplementedError) as failure:
        mytorch_lib.import_from_notebook("1_layers.ipynb", "Linear")
    assert "as last saved: save 1_layers.ipynb after your last change" in "\n".join(failure.value.__notes__)


def test_figure_needing_drops_half_drawn_figures(capsys):
    import matplotlib.pyplot as plt

    from mytorch_lib.plotting import figure_needing

    plt.close("all")
    with figure_needing("your Softmax"):
        plt.subplots()
        raise NotImplementedError("Softmax.forward")
    assert plt.get_fignums() == [] and "appears once your Softmax work" in capsys.readouterr().out
    with pytest.raises(KeyError):
        with figure_needing("your Softmax"):
            plt.subplots()
            raise KeyError("a bug")
    assert plt.get_fignums() == []
    with figure_needing("your Softmax"):
        plt.subplots()
    assert len(plt.get_fignums()) == 1, "a figure that worked is kept"
    plt.close("all")
