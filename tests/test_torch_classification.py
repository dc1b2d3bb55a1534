"""04_torch_classification: the data, the grader-only test split, and grading by test-set accuracy.

- The committed MNIST files match their pinned digests; the test split shares
  no image with the training split and appears nowhere learners get files
  from (``source/``, ``release/``, ``mytorch_lib/``), compared image by image.
- The grader module (course_tools.hidden.torch_classification_checks) runs in
  this process on the notebook's own cells: the reference solution reaches
  90 % with margin for 5 seeds in the grading configuration, a model trained
  for ten steps gets partial credit, and classic slips cost their own cell.
- One weak submission (a single training step) goes through nbgrader.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import nbformat
import numpy as np
import pytest
import torch

from course_tools import mnist_data
from course_tools.course import RELEASE_DIR, REPO_ROOT, SOURCE_DIR
from course_tools.hidden import torch_classification_checks as checks
from course_tools.sandbox import COURSE_READ_ONLY
from course_tools.torch_baselines import CLASSIFICATION, VARIANTS, apply_edits
from learner_cells import reference_code
from torch_cells import exec_cells, grade_variant

NOTEBOOK = "torch_classification"
ANSWERS = ("answer_build_model", "answer_accuracy", "answer_training", "answer_save")
DATA = """
images, labels = load_mnist("mnist_train.npz")
X_train, y_train, X_val, y_val = train_val_split(images, labels)
"""

torch.set_num_threads(1)


# ---------------------------------------------------------------- data


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return data["images"], data["labels"]


def _image_hashes(images: np.ndarray) -> set[str]:
    return {hashlib.sha256(row.tobytes()).hexdigest() for row in np.ascontiguousarray(images).reshape(len(images), -1)}


def _as_images(array: np.ndarray) -> np.ndarray | None:
    """Any array that could hold 28 x 28 images, as uint8 rows of 784 pixels (None if it cannot)."""
    if array.dtype.kind not in "uif" or array.size == 0 or array.size % 784:
        return None
    values = array.reshape(-1, 784)
    if array.dtype.kind == "f":
        top = float(np.nanmax(np.abs(values)))
        values = np.rint(values * 255) if top <= 1.0 else np.rint(values)
    if values.min() < 0 or values.max() > 255:
        return None
    return values.astype(np.uint8)


def shipped_image_hashes(*roots: Path) -> set[str]:
    """Hashes of every 28 x 28 image stored in a .npy/.npz file under ``roots``."""
    found: set[str] = set()
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.suffix == ".npy":
                arrays = [np.load(path, allow_pickle=False)]
            elif path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as data:
                    arrays = [data[k] for k in data.files]
            else:
                continue
            for array in arrays:
                images = _as_images(array)
                if images is not None:
                    found |= _image_hashes(images)
    return found


def test_committed_data_match_pinned_digests():
    for name, path, size in (("train", mnist_data.TRAIN_FILE, 8000), ("test", mnist_data.TEST_FILE, 2000)):
        images, labels = _load(path)
        assert images.shape == (size, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (size,) and labels.dtype == np.int64
        assert mnist_data.array_digest(images, labels) == mnist_data.DIGESTS[name], (
            f"{path} changed: rebuild it with `python -m course_tools.mnist_data` (see DATA.md)")
    train_counts = np.bincount(_load(mnist_data.TRAIN_FILE)[1], minlength=10)
    test_counts = np.bincount(_load(mnist_data.TEST_FILE)[1], minlength=10)
    assert np.all(np.abs(test_counts / (train_counts + test_counts) - 0.2) < 0.01), "the split is stratified 80/20"


def test_test_split_shares_no_image_with_training_split():
    assert not _image_hashes(_load(mnist_data.TEST_FILE)[0]) & _image_hashes(_load(mnist_data.TRAIN_FILE)[0])


def test_test_split_is_never_shipped_to_learners():
    test_hashes = _image_hashes(_load(mnist_data.TEST_FILE)[0])
    shipped = shipped_image_hashes(SOURCE_DIR, RELEASE_DIR, REPO_ROOT / "mytorch_lib")
    # the scan does find images: every training image is shipped with the release
    assert _image_hashes(_load(RELEASE_DIR / CLASSIFICATION / "mnist_train.npz")[0]) <= shipped
    leaked = test_hashes & shipped
    assert not leaked, f"{len(leaked)} grader-only test images are in source/, release/ or mytorch_lib/"
    test_bytes = mnist_data.TEST_FILE.read_bytes()
    for root in (SOURCE_DIR, RELEASE_DIR, REPO_ROOT / "mytorch_lib"):
        for path in root.rglob("*"):
            assert not (path.is_file() and path.read_bytes() == test_bytes), f"{path} is a copy of the test split"


def test_split_is_stratified_deterministic_and_keeps_duplicates_in_training():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(200, 28, 28), dtype=np.uint8)
    labels = np.repeat(np.arange(10), 20)
    images[1] = images[0]  # a duplicated image of digit 0
    first = mnist_data.split(images, labels)
    second = mnist_data.split(images, labels)
    for name in ("train", "test"):
        assert all(np.array_equal(a, b) for a, b in zip(first[name], second[name]))
    assert np.all(np.bincount(first["test"][1], minlength=10) == 4)
    assert _image_hashes(images[:1]) <= _image_hashes(first["train"][0])
    assert not _image_hashes(first["train"][0]) & _image_hashes(first["test"][0])


def test_npz_writer_is_byte_reproducible_and_readable():
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    labels = np.array([3, 7], dtype=np.int64)
    data = mnist_data.write_npz(None, images=images, labels=labels)
    assert data == mnist_data.write_npz(None, images=images, labels=labels)
    with np.load(io.BytesIO(data)) as loaded:
        assert np.array_equal(loaded["images"], images) and np.array_equal(loaded["labels"], labels)


# ---------------------------------------------------------------- grading in process


def notebook_cell(cell_id: str) -> str:
    nb = nbformat.read(SOURCE_DIR / CLASSIFICATION / f"{NOTEBOOK}.ipynb", as_version=4)
    return next(c.source for c in nb.cells if c.get("id") == cell_id)


def run_notebook_cells(folder: Path, seed: int, **replaced: str) -> dict:
    """Set-up, data, answer cells (some replaced) run as a notebook would, in ``folder``, with ``SEED = seed``."""
    setup = notebook_cell("setup").replace("SEED = 0", f"SEED = {seed}")
    cells = [replaced.get(i) or reference_code(CLASSIFICATION, NOTEBOOK, i) for i in ANSWERS]
    return exec_cells(setup, DATA, notebook_cell("to_device"), *cells)


@contextlib.contextmanager
def grading_folder(folder: Path) -> Iterator[Path]:
    """Work in ``folder`` holding a copy of the assignment's data, as in a grading run (NBGRADER_EXECUTION set)."""
    shutil.copy(mnist_data.TRAIN_FILE, folder / "mnist_train.npz")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("NBGRADER_EXECUTION", "autograde")
        yield folder


@pytest.fixture
def in_assignment_folder(tmp_path):
    with grading_folder(tmp_path) as folder:
        yield folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """The reference notebook's namespace after training with seed 0 in a grading run."""
    with grading_folder(tmp_path_factory.mktemp("trained")) as folder:
        namespace = run_notebook_cells(folder, 0)
    namespace["_folder"] = folder  # where its model.pt and predictions.npy are
    return namespace


def passed_tiers(ns: dict) -> list[float]:
    passed = []
    for threshold in checks.THRESHOLDS:
        try:
            checks.check_test_accuracy(ns, threshold)
        except AssertionError:
            continue
        passed.append(threshold)
    return passed


def assert_reference_passes(ns: dict) -> None:
    for check in (checks.check_build_model, checks.check_accuracy_function, checks.check_saved_model,
                  checks.check_predictions, checks.check_val_accuracy):
        check(ns)
    assert passed_tiers(ns) == list(checks.THRESHOLDS)
    assert checks.hidden_test_accuracy(ns["model"]) >= 0.93


def test_reference_reaches_90_percent_with_margin(trained, monkeypatch):
    monkeypatch.chdir(trained["_folder"])
    assert_reference_passes(trained)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_reference_reaches_90_percent_with_margin_other_seeds(seed, in_assignment_folder):
    assert_reference_passes(run_notebook_cells(in_assignment_folder, seed))


@pytest.mark.parametrize("variant, expected_tiers", [("one_step", 0), ("ten_steps", "partial")])
def test_undertrained_models_lose_accuracy_points(variant, expected_tiers, in_assignment_folder):
    (grade_id, (find, replace)), = VARIANTS[CLASSIFICATION][variant].edits.items()
    code = reference_code(CLASSIFICATION, NOTEBOOK, grade_id).replace(find, replace)
    ns = run_notebook_cells(in_assignment_folder, 0, **{grade_id: code})
    checks.check_saved_model(ns)  # saving and reporting are still right
    checks.check_val_accuracy(ns)
    passed = len(passed_tiers(ns))
    if expected_tiers == "partial":
        assert 0 < passed < len(checks.THRESHOLDS)
    else:
        assert passed == expected_tiers
    assert checks.hidden_test_accuracy(ns["model"]) < 0.90


@pytest.mark.parametrize("find, replace, message", [
    ("return (predicted == y).float().mean().item()", "return 100 * (predicted == y).float().mean().item()", "percentage"),
    (".float().mean().item()", ".float().mean()", "tensor"),
    ("    model.eval()\n    with torch.no_grad():\n        predicted = model(X).argmax(dim=1)",
     "    predicted = model(X).argmax(dim=1)\n    model(X).sum().backward()", "gradients"),
], ids=["percent", "tensor", "gradients"])
def test_accuracy_slips(find, replace, message):
    code = reference_code(CLASSIFICATION, NOTEBOOK, "answer_accuracy")
    assert find in code
    with pytest.raises(AssertionError, match=message):
        checks.check_accuracy_function(exec_cells("import torch\nfrom torch import nn", code.replace(find, replace)))


@pytest.mark.parametrize("find, replace, check, message", [
    ("predictions = model(X_val_t).argmax(dim=1).cpu().numpy()",
     "predictions = model(X_val_t).softmax(dim=1).cpu().numpy()", checks.check_predictions, "shape"),
    ("predictions = model(X_val_t).argmax(dim=1).cpu().numpy()",
     "predictions = model(X_val_t).argmax(dim=1).cpu().numpy()[::-1]", checks.check_predictions, "original order"),
    ('torch.save(model.state_dict(), "model.pt")\n', "", checks.check_saved_model, "not found"),
    ('torch.save(model.state_dict(), "model.pt")', 'torch.save(model, "model.pt")', checks.check_saved_model,
     "state_dict"),
    ('torch.save(model.state_dict(), "model.pt")', 'torch.save(build_model().state_dict(), "model.pt")',
     checks.check_saved_model, "agrees with model"),
    ("val_accuracy = accuracy(model, X_val_t, y_val_t)",
     "val_accuracy = accuracy(model, X_train_t, y_train_t)", checks.check_val_accuracy, "validation images"),
], ids=["probabilities_saved", "shuffled", "model_not_saved", "whole_model_pickled", "untrained_weights_saved",
        "train_accuracy"])
def test_save_slips_cost_their_own_cell(find, replace, check, message, trained, in_assignment_folder):
    code = reference_code(CLASSIFICATION, NOTEBOOK, "answer_save")
    assert find in code
    namespace = dict(trained)
    exec(compile(code.replace(find, replace), "<learner cell>", "exec"), namespace)
    with pytest.raises(AssertionError, match=message):
        check(namespace)


def test_validation_split_needs_the_shipped_training_file(tmp_path, monkeypatch):
    monkeypatch.setattr(checks, "_cache", {})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AssertionError, match="was not found"):
        checks.validation_split()
    images, labels = _load(mnist_data.TRAIN_FILE)
    mnist_data.write_npz(tmp_path / "mnist_train.npz", images=images[:1500], labels=labels[:1500])
    with pytest.raises(AssertionError, match="was changed"):
        checks.validation_split()


def test_build_model_must_give_ten_logits(in_assignment_folder):
    code = reference_code(CLASSIFICATION, NOTEBOOK, "answer_build_model").replace(
        "nn.Linear(128, 10),", "nn.Linear(128, 10), nn.Softmax(dim=1), nn.Flatten(0),")
    ns = exec_cells("import torch\nfrom torch import nn", code)
    with pytest.raises(AssertionError, match="N x 10 logits"):
        checks.check_build_model(ns)


def test_variant_edits_match_the_source():
    nb = nbformat.read(SOURCE_DIR / CLASSIFICATION / f"{NOTEBOOK}.ipynb", as_version=4)
    for variant in VARIANTS[CLASSIFICATION].values():
        apply_edits(nbformat.from_dict(nb), variant.edits, seed=1)


def test_grader_modules_import_inside_the_grading_sandbox(tmp_path):
    """The sandbox lets kernels read mytorch_lib and course_tools/hidden only: the checks must need nothing else."""
    for part in COURSE_READ_ONLY:
        source, target = REPO_ROOT / part, tmp_path / part
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target)
    code = ("import course_tools.hidden.torch_classification_checks as c, course_tools.hidden.torch_regression_checks\n"
            "assert c.hidden_test_split()[0].shape == (2000, 28, 28)")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- through nbgrader


def test_single_step_submission_graded_by_nbgrader(grading):
    """Through nbgrader: one training step keeps the design, saving and reporting points, earns no accuracy point."""
    score, lost = grade_variant(grading, "single_step", CLASSIFICATION, "one_step")
    assert lost == {f"test_accuracy_{round(100 * t)}" for t in checks.THRESHOLDS}
    assert score == pytest.approx(5.0)
