"""04_torch_classification: the data, the grader-only test split, and grading by test-set accuracy.

- The committed MNIST files match their pinned digests; the test split shares
  no image with the training split and appears nowhere learners get files
  from (``source/``, ``release/``, ``mytorch_lib/``), compared image by image;
  its labels are kept apart from its images, outside what the grading sandbox mounts.
- Each hidden region's probe runs in this process on the notebook's own cells and
  its record is judged by course_tools.hidden.verdicts.torch_classification, as in
  grading: the reference solution reaches 90 % with margin for 5 seeds in the
  grading configuration, a model trained for ten steps gets partial credit, and
  classic slips cost their own cell. Tampered records fail.
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
from course_tools.hidden.probes import torch_classification as probes
from course_tools.hidden.probes.kit import encode, rng
from course_tools.hidden.verdicts import torch_classification as checks
from course_tools.hidden.verdicts.kit import Evidence
from course_tools.sandbox import COURSE_READ_ONLY
from course_tools.torch_baselines import CLASSIFICATION, VARIANTS, apply_edits
from learner_cells import reference_code
from torch_cells import evidence, exec_cells, grade_variant, hidden_verdict, judged, record

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


def _test_split() -> tuple[np.ndarray, np.ndarray]:
    with np.load(mnist_data.TEST_IMAGES_FILE, allow_pickle=False) as images, \
            np.load(mnist_data.TEST_LABELS_FILE, allow_pickle=False) as labels:
        assert images.files == ["images"] and labels.files == ["labels"], "images and labels are kept apart"
        return images["images"], labels["labels"]


def test_committed_data_match_pinned_digests():
    images, labels = _load(mnist_data.TRAIN_FILE)
    test_images, test_labels = _test_split()
    for name, (imgs, labs), size in (("train", (images, labels), 8000), ("test", (test_images, test_labels), 2000)):
        assert imgs.shape == (size, 28, 28) and imgs.dtype == np.uint8
        assert labs.shape == (size,) and labs.dtype == np.int64
    problem = "changed: rebuild it with `python -m course_tools.mnist_data` (see DATA.md)"
    assert mnist_data.array_digest(images, labels) == mnist_data.DIGESTS["train"], f"{mnist_data.TRAIN_FILE} {problem}"
    assert mnist_data.array_digest(test_images) == mnist_data.DIGESTS["test_images"], f"test images {problem}"
    assert mnist_data.array_digest(labels=test_labels) == mnist_data.DIGESTS["test_labels"], f"test labels {problem}"
    for name, path in mnist_data.FILES.items():
        assert mnist_data.file_digest(path.read_bytes())[0] == mnist_data.DIGESTS[name]
    train_counts = np.bincount(labels, minlength=10)
    test_counts = np.bincount(test_labels, minlength=10)
    assert np.all(np.abs(test_counts / (train_counts + test_counts) - 0.2) < 0.01), "the split is stratified 80/20"


def test_test_labels_stay_outside_the_grading_sandbox():
    """The kernel may read the test images (the model must run on them), never their labels."""
    mounted = [REPO_ROOT / part for part in COURSE_READ_ONLY]
    assert any(mnist_data.TEST_IMAGES_FILE.is_relative_to(p) for p in mounted)
    assert not any(mnist_data.TEST_LABELS_FILE.is_relative_to(p) for p in mounted)
    labels = mnist_data.TEST_LABELS_FILE.read_bytes()
    for part in mounted:
        for path in (part.rglob("*") if part.is_dir() else [part]):
            assert not (path.is_file() and path.read_bytes() == labels), f"{path} is a copy of the test labels"


def test_test_split_shares_no_image_with_training_split():
    assert not _image_hashes(_test_split()[0]) & _image_hashes(_load(mnist_data.TRAIN_FILE)[0])


def test_test_split_is_never_shipped_to_learners():
    test_hashes = _image_hashes(_test_split()[0])
    shipped = shipped_image_hashes(SOURCE_DIR, RELEASE_DIR, REPO_ROOT / "mytorch_lib")
    # the scan does find images: every training image is shipped with the release
    assert _image_hashes(_load(RELEASE_DIR / CLASSIFICATION / "mnist_train.npz")[0]) <= shipped
    leaked = test_hashes & shipped
    assert not leaked, f"{len(leaked)} grader-only test images are in source/, release/ or mytorch_lib/"
    for test_file in (mnist_data.TEST_IMAGES_FILE, mnist_data.TEST_LABELS_FILE):
        test_bytes = test_file.read_bytes()
        for root in (SOURCE_DIR, RELEASE_DIR, REPO_ROOT / "mytorch_lib"):
            for path in root.rglob("*"):
                assert not (path.is_file() and path.read_bytes() == test_bytes), f"{path} is a copy of {test_file.name}"


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


CELLS = ("test_build_model", "test_accuracy_function", "test_saved_model", "test_predictions", "test_val_accuracy")
TIERS = {threshold: f"test_accuracy_{round(100 * threshold)}" for threshold in checks.THRESHOLDS}


def hidden(grade_id: str, namespace: dict, seed: int | None = None) -> str | None:
    return hidden_verdict(CLASSIFICATION, grade_id, namespace, seed)


def passed_tiers(ns: dict) -> list[float]:
    return [threshold for threshold, cell in TIERS.items() if hidden(cell, ns) is None]


def measured_test_accuracy(ns: dict) -> float:
    return checks.test_accuracy(evidence(CLASSIFICATION, TIERS[0.9], ns))


def assert_reference_passes(ns: dict) -> None:
    for cell in CELLS:
        assert hidden(cell, ns) is None, cell
    assert passed_tiers(ns) == list(checks.THRESHOLDS)
    assert measured_test_accuracy(ns) >= 0.93


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
    assert hidden("test_saved_model", ns) is None  # saving and reporting are still right
    assert hidden("test_val_accuracy", ns) is None
    passed = len(passed_tiers(ns))
    if expected_tiers == "partial":
        assert 0 < passed < len(checks.THRESHOLDS)
    else:
        assert passed == expected_tiers
    assert measured_test_accuracy(ns) < 0.90


@pytest.mark.parametrize("find, replace, message", [
    ("return (predicted == y).float().mean().item()", "return 100 * (predicted == y).float().mean().item()", "percentage"),
    (".float().mean().item()", ".float().mean()", "tensor"),
    ("    model.eval()\n    with torch.no_grad():\n        predicted = model(X).argmax(dim=1)",
     "    predicted = model(X).argmax(dim=1)\n    model(X).sum().backward()", "gradients"),
    ("return (predicted == y).float().mean().item()", "return (predicted == y).float().sum().item()", "fraction of images"),
    ("return (predicted == y).float().mean().item()", "return (predicted[:100] == y[:100]).float().mean().item()",
     "fraction of images"),
], ids=["percent", "tensor", "gradients", "count", "first_hundred"])
def test_accuracy_slips(find, replace, message):
    code = reference_code(CLASSIFICATION, NOTEBOOK, "answer_accuracy")
    assert find in code
    got = hidden("test_accuracy_function", exec_cells("import torch\nfrom torch import nn", code.replace(find, replace)))
    assert message in (got or ""), got


def test_accuracy_passes_for_other_seeds():
    ns = exec_cells("import torch\nfrom torch import nn", reference_code(CLASSIFICATION, NOTEBOOK, "answer_accuracy"))
    for seed in (0, 1, 2**62 + 7):
        assert hidden("test_accuracy_function", ns, seed) is None
        case = probes.cases_accuracy(rng(seed))
        logits = case.X.reshape(len(case.X), -1) @ case.W.T + case.b
        top2 = np.sort(logits, axis=1)[:, -2:]
        assert np.min(top2[:, 1] - top2[:, 0]) > 0.3, "the drawn model has a clear answer for every image"
        assert 0.3 < np.mean(np.argmax(logits, axis=1) == case.y) < 0.7


@pytest.mark.parametrize("find, replace, grade_id, message", [
    ("predictions = model(X_val_t).argmax(dim=1).cpu().numpy()",
     "predictions = model(X_val_t).softmax(dim=1).cpu().numpy()", "test_predictions", "shape"),
    ("predictions = model(X_val_t).argmax(dim=1).cpu().numpy()",
     "predictions = model(X_val_t).argmax(dim=1).cpu().numpy()[::-1]", "test_predictions", "original order"),
    ("predictions = model(X_val_t).argmax(dim=1).cpu().numpy()",
     "predictions = model(X_val_t).argmax(dim=1).cpu().numpy().astype(float)", "test_predictions", "integer labels"),
    ('torch.save(model.state_dict(), "model.pt")\n', "", "test_saved_model", "not found"),
    ('torch.save(model.state_dict(), "model.pt")', 'torch.save(model, "model.pt")', "test_saved_model",
     "state_dict"),
    ('torch.save(model.state_dict(), "model.pt")', 'torch.save(build_model().state_dict(), "model.pt")',
     "test_saved_model", "agrees with model"),
    ('torch.save(model.state_dict(), "model.pt")', 'torch.save({"w": torch.zeros(3)}, "model.pt")',
     "test_saved_model", "does not fit build_model()"),
    ("val_accuracy = accuracy(model, X_val_t, y_val_t)",
     "val_accuracy = accuracy(model, X_train_t, y_train_t)", "test_val_accuracy", "validation images"),
    ("val_accuracy = accuracy(model, X_val_t, y_val_t)",
     "val_accuracy = 100 * accuracy(model, X_val_t, y_val_t)", "test_val_accuracy", "percentage"),
], ids=["probabilities_saved", "shuffled", "float_labels", "model_not_saved", "whole_model_pickled",
        "untrained_weights_saved", "other_state_dict", "train_accuracy", "percent"])
def test_save_slips_cost_their_own_cell(find, replace, grade_id, message, trained, in_assignment_folder):
    code = reference_code(CLASSIFICATION, NOTEBOOK, "answer_save")
    assert find in code
    namespace = dict(trained)
    exec(compile(code.replace(find, replace), "<learner cell>", "exec"), namespace)
    got = hidden(grade_id, namespace)
    assert message in (got or ""), got


def test_validation_split_needs_the_shipped_training_file(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(trained["_folder"])
    assert hidden("test_val_accuracy", trained) is None
    monkeypatch.chdir(tmp_path)
    assert "was not found" in hidden("test_val_accuracy", trained)
    images, labels = _load(mnist_data.TRAIN_FILE)
    mnist_data.write_npz(tmp_path / "mnist_train.npz", images=images[:1500], labels=labels[:1500])
    assert "was changed" in hidden("test_val_accuracy", trained)


def test_build_model_must_give_ten_logits(in_assignment_folder):
    code = reference_code(CLASSIFICATION, NOTEBOOK, "answer_build_model").replace(
        "nn.Linear(128, 10),", "nn.Linear(128, 10), nn.Softmax(dim=1), nn.Flatten(0),")
    ns = exec_cells("import torch\nfrom torch import nn", code)
    assert "N x 10 logits" in hidden("test_build_model", ns)


@pytest.mark.parametrize("code, message", [
    ("_net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))\ndef build_model():\n    return _net", "same object"),
    ("def build_model():\n    return nn.Sequential(nn.Flatten())", "without parameters"),
    ("def build_model():\n    return 'a network'", "torch.nn.Module"),
    ("def build_model():\n    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.Sigmoid(), nn.Linear(10, 10),"
     " nn.Softplus(beta=1e30, threshold=-1), nn.Threshold(0.5, float('inf')))", "NaN or infinite"),
], ids=["same_object", "no_parameters", "not_a_module", "infinite"])
def test_build_model_slips(code, message):
    got = hidden("test_build_model", exec_cells("import torch\nfrom torch import nn", code))
    assert message in (got or ""), got


# ---------------------------------------------------------------- what the split between kernel and grader changes


def test_test_cells_record_labels_only(trained):
    """A test cell's record holds the predicted labels of the test images; the verdict counts the right ones."""
    rec = evidence(CLASSIFICATION, "test_accuracy_60", trained)
    assert set(rec.items) == {"defined:model", "model_type", "model_is_module", "test_labels"}
    recorded = rec.value("test_labels", "labels")
    assert recorded["shape"] == [2000, 10] and recorded["labels"].shape == (2000,)
    assert judged("torch_classification", rec) is None


def test_hard_coded_labels_fail(trained):
    """A record of made-up labels (a constant class, or shuffled predictions) earns no accuracy point."""
    rec = evidence(CLASSIFICATION, "test_accuracy_60", trained)
    labels = rec.value("test_labels", "labels")["labels"]
    for fake_labels in (np.zeros(2000, dtype=np.int64), np.random.default_rng(0).permutation(labels)):
        fake = dict(rec.items, test_labels=encode({"shape": [2000, 10], "labels": fake_labels}))
        assert "this cell needs 60%" in judged("torch_classification", Evidence(rec.behaviour, rec.seed, fake))
    malformed = dict(rec.items, test_labels=encode({"shape": [2000, 10], "labels": labels[:10]}))
    assert "malformed" in judged("torch_classification", Evidence(rec.behaviour, rec.seed, malformed))


def test_hard_coded_accuracy_fails():
    """The accuracy a record claims must match the drawn model and data of the record's seed."""
    ns = exec_cells("import torch\nfrom torch import nn", reference_code(CLASSIFICATION, NOTEBOOK, "answer_accuracy"))
    rec = evidence(CLASSIFICATION, "test_accuracy_function", ns, seed=3)
    assert judged("torch_classification", rec) is None
    assert judged("torch_classification", Evidence(rec.behaviour, 4, rec.items)) is not None
    fake = dict(rec.items, value=encode(0.5))
    message = judged("torch_classification", Evidence(rec.behaviour, 3, fake))
    assert "fraction of images" in message
    assert f"{rec.value('value', 'v'):.3f}"[:4] not in message, "the message must not state the expected accuracy"


def test_probes_leave_the_learners_random_stream_alone(trained, monkeypatch):
    """The probes build their networks (build_model(), the drawn linear model, the reloaded model.pt) and run
    the trained model without drawing from the learner's PyTorch generator."""
    monkeypatch.chdir(trained["_folder"])
    for grade_id in (*CELLS, *TIERS.values()):
        torch.manual_seed(2024)
        before = torch.random.get_rng_state()
        record(CLASSIFICATION, grade_id, trained)
        assert torch.equal(before, torch.random.get_rng_state()), grade_id


def test_probe_holds_no_labels_or_comparison():
    import inspect

    source = inspect.getsource(probes)
    assert "labels.npz" not in source and "THRESHOLD" not in source and "==" not in source


def test_variant_edits_match_the_source():
    nb = nbformat.read(SOURCE_DIR / CLASSIFICATION / f"{NOTEBOOK}.ipynb", as_version=4)
    for variant in VARIANTS[CLASSIFICATION].values():
        apply_edits(nbformat.from_dict(nb), variant.edits, seed=1)


def test_probes_run_inside_the_grading_sandbox_without_the_labels(tmp_path):
    """The sandbox lets kernels read mytorch_lib and the probes only: they must need nothing else, and the
    test images are there while the labels and verdicts are not."""
    for part in COURSE_READ_ONLY:
        source, target = REPO_ROOT / part, tmp_path / part
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target)
    code = ("import course_tools.hidden.probes.torch_classification as c, course_tools.hidden.probes.torch_regression\n"
            "assert c.grader_test_images().shape == (2000, 28, 28)\n"
            "import importlib.util\n"
            "assert importlib.util.find_spec('course_tools.hidden.verdicts') is None\n"
            "import pathlib\n"
            "assert not list(pathlib.Path('.').rglob('*labels*'))")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- through nbgrader


def test_single_step_submission_graded_by_nbgrader(grading):
    """Through nbgrader: one training step keeps the design, saving and reporting points, earns no accuracy point."""
    score, lost = grade_variant(grading, "single_step", CLASSIFICATION, "one_step")
    assert lost == set(TIERS.values())
    assert score == pytest.approx(5.0)
