"""04_torch_classification: Fashion-MNIST, the grader-only test split, and grading of the submitted model.

- Data: the loader finds the training split (MYTORCH_DATA, the Debian package, its cache) or
  fetches it once and checks it against its pinned digest; the committed test split matches its
  digests, shares no image with the training split, is never shipped to learners (compared image by
  image) and keeps its labels outside what the grading sandbox mounts.
- Grading in process: the notebook's cells run as in a grading run (``NBGRADER_EXECUTION`` set:
  nothing is trained, the submitted ``model.pt`` is loaded) and each hidden region's record is judged
  by course_tools.hidden.verdicts.torch_classification. The example model trained by the reference
  passes everything with 91 % or more; an untrained network and a linear model lose the accuracy
  points they should; a missing, unreadable, foreign or oversized ``model.pt`` costs exactly the
  points that need it, with a message; classic slips cost their own cell; tampered records fail.
- The bar (``course_tools.quality.torch_baselines``): a linear model and a plain MLP, trained as the notebook
  trains them, lose the 90 % points; a model that was never trained earns no accuracy point.
- Through nbgrader: a submission without ``model.pt`` keeps the points of its functions only.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import nbformat
import numpy as np
import pytest
import torch

from course_tools.quality import fashion_data
from course_tools.course import RELEASE_DIR, REPO_ROOT, SOURCE_DIR, notebooks
from course_tools.authoring.examples import EXAMPLE_FILES, EXAMPLE_MODEL_RECIPE, handed_in_files, recipe_digest
from course_tools.hidden.probes import torch_classification as probes
from course_tools.hidden.probes.kit import encode, rng
from course_tools.hidden.verdicts import torch_classification as checks
from course_tools.hidden.verdicts.engine import hidden_call, judge
from course_tools.hidden.verdicts.kit import Evidence, GradingMachineError
from course_tools.grading.sandbox import COURSE_READ_ONLY
from course_tools.authoring.submissions import learner_notebook
from course_tools.quality.torch_baselines import CLASSIFICATION, VARIANTS, apply_edits, run_variants
from learner_cells import reference_code
from mytorch_lib import fashion
import torch_cells
from torch_cells import evidence, exec_cells, hidden_verdict, judged, record

NOTEBOOK = "torch_classification"
ANSWERS = ("answer_accuracy", "answer_train", "answer_build_model", "answer_training")
EXAMPLE_MODEL = EXAMPLE_FILES / CLASSIFICATION / "model.pt"

torch.set_num_threads(1)


# ---------------------------------------------------------------- data


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
    """Hashes of every 28 x 28 image stored in a .npy/.npz/IDX file under ``roots``."""
    found: set[str] = set()
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.suffix == ".npy":
                arrays = [np.load(path, allow_pickle=False)]
            elif path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as data:
                    arrays = [data[k] for k in data.files]
            elif "idx3-ubyte" in path.name:
                arrays = [fashion.read_idx(path)]
            else:
                continue
            for array in arrays:
                images = _as_images(array)
                if images is not None:
                    found |= _image_hashes(images)
    return found


def _test_split() -> tuple[np.ndarray, np.ndarray]:
    with np.load(probes.TEST_IMAGES_FILE, allow_pickle=False) as images, \
            np.load(checks.TEST_LABELS_FILE, allow_pickle=False) as labels:
        assert images.files == ["images"] and labels.files == ["labels"], "images and labels are kept apart"
        return images["images"], labels["labels"]


@functools.cache
def _training_split() -> tuple[np.ndarray, np.ndarray]:
    return fashion.load_fashion_mnist(download=False)


def test_committed_test_split_matches_its_digests_and_is_balanced():
    images, labels = _test_split()
    assert images.shape == (fashion_data.TEST_SIZE, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (fashion_data.TEST_SIZE,) and labels.dtype == np.int64
    problem = "changed: rebuild it with `python -m course_tools fashion-data` (see DATA.md)"
    assert fashion.array_digest(images) == checks.DIGESTS["test_images"], f"test images {problem}"
    assert fashion.array_digest(labels=labels) == checks.DIGESTS["test_labels"], f"test labels {problem}"
    assert np.all(np.bincount(labels, minlength=10) == fashion_data.TEST_SIZE // 10)


def test_test_split_is_rebuilt_byte_for_byte_from_the_public_files():
    """`python -m course_tools fashion-data --check` rebuilds both files from the Debian package, identical."""
    built = fashion_data.build_test_split(fashion.DEBIAN_FOLDER)
    for name, path in fashion_data.FILES.items():
        assert built[name] == path.read_bytes(), f"{path.name} differs from a fresh build"
    assert fashion_data.main(["--check"]) == 0


def test_test_labels_stay_outside_the_grading_sandbox():
    """The kernel may read the test images (the model must run on them), never their labels."""
    mounted = [REPO_ROOT / part for part in COURSE_READ_ONLY]
    assert any(probes.TEST_IMAGES_FILE.is_relative_to(p) for p in mounted)
    assert not any(checks.TEST_LABELS_FILE.is_relative_to(p) for p in mounted)
    labels = checks.TEST_LABELS_FILE.read_bytes()
    for part in mounted:
        for path in (part.rglob("*") if part.is_dir() else [part]):
            assert not (path.is_file() and path.read_bytes() == labels), f"{path} is a copy of the test labels"


def test_test_split_shares_no_image_with_the_training_split():
    assert not _image_hashes(_test_split()[0]) & _image_hashes(_training_split()[0])


def test_test_split_is_never_shipped_to_learners(tmp_path):
    roots = (SOURCE_DIR, RELEASE_DIR, REPO_ROOT / "mytorch_lib")
    test_hashes = _image_hashes(_test_split()[0])
    leaked = test_hashes & shipped_image_hashes(*roots)
    assert not leaked, f"{len(leaked)} grader-only test images are in source/, release/ or mytorch_lib/"
    for test_file in (probes.TEST_IMAGES_FILE, checks.TEST_LABELS_FILE):
        test_bytes = test_file.read_bytes()
        for root in roots:
            for path in root.rglob("*"):
                assert not (path.is_file() and path.read_bytes() == test_bytes), f"{path} is a copy of {test_file.name}"
    # the scan does find images: three test images re-encoded as floats in [0, 1] among other arrays
    planted = tmp_path / "planted.npz"
    np.savez(planted, x=np.zeros(3), images=_test_split()[0][[5, 50, 500]].astype(np.float32) / 255)
    assert len(shipped_image_hashes(tmp_path) & test_hashes) == 3


@contextlib.contextmanager
def serving(folder: Path) -> Iterator[str]:
    """An HTTP server on localhost serving ``folder``; yields its base URL (ends with /)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write uint8 ``array`` as a gzipped IDX file (the format Fashion-MNIST is distributed in)."""
    import gzip

    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def test_loader_fetches_once_checks_the_content_and_says_what_to_do(tmp_path, monkeypatch):
    debian = fashion.DEBIAN_FOLDER
    monkeypatch.setattr(fashion, "DEBIAN_FOLDER", tmp_path / "no-debian-package")
    monkeypatch.setattr(fashion, "CACHE_FOLDER", tmp_path / "cache")
    monkeypatch.delenv("MYTORCH_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="found in none of"):
        fashion.load_fashion_mnist(download=False)
    with pytest.raises(FileNotFoundError, match="could not be downloaded"):
        fashion.load_fashion_mnist(sources=("http://127.0.0.1:9/",))
    with serving(debian) as url:
        images, labels = fashion.load_fashion_mnist(sources=("http://127.0.0.1:9/", url))  # the first source is down
    assert images.shape == (60000, 28, 28) and fashion.array_digest(images, labels) == fashion.TRAIN_DIGEST
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(fashion.TRAIN_FILES)
    again, _ = fashion.load_fashion_mnist(sources=())  # offline: read from the cache
    assert np.array_equal(again, images)
    # MYTORCH_DATA comes first; a folder with other content is refused with what to do
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(tmp_path / "cache" / fashion.TRAIN_FILES[1], other)
    write_idx(other / fashion.TRAIN_FILES[0], images[::-1])
    monkeypatch.setenv("MYTORCH_DATA", str(other))
    with pytest.raises(ValueError, match="delete them"):
        fashion.load_fashion_mnist()


# ---------------------------------------------------------------- grading in process


def notebook_cell(cell_id: str) -> str:
    nb = nbformat.read(SOURCE_DIR / CLASSIFICATION / f"{NOTEBOOK}.ipynb", as_version=4)
    return next(c.source for c in nb.cells if c.get("id") == cell_id)


def run_graded(folder: Path, handed_in: dict[str, Path] | None, **replaced: str) -> dict:
    """The notebook's cells as a grading run executes them in ``folder``, with ``handed_in`` (name -> file) there.

    Set-up, data, the answer cells (some replaced), the read-only cell that loads model.pt, the report
    cell and the read-only saving cell (which writes nothing in a grading run). Nothing is trained.
    """
    for name, path in (handed_in or {}).items():
        shutil.copy(path, folder / name)
    cells = [replaced.get(i) or reference_code(CLASSIFICATION, NOTEBOOK, i) for i in ANSWERS]
    report = replaced.get("answer_save") or reference_code(CLASSIFICATION, NOTEBOOK, "answer_save")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("NBGRADER_EXECUTION", "autograde")
        return exec_cells(notebook_cell("setup"), notebook_cell("data_load"), notebook_cell("to_device"), *cells,
                          notebook_cell("training_run"), report, notebook_cell("save_files"))


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> dict:
    """The reference notebook's namespace in a grading run of the example submission (its trained model.pt)."""
    folder = tmp_path_factory.mktemp("graded")
    namespace = run_graded(folder, handed_in_files(CLASSIFICATION))
    namespace["_folder"] = folder
    return namespace


@pytest.fixture
def in_graded_folder(graded, monkeypatch):
    monkeypatch.chdir(graded["_folder"])
    return graded


CELLS = ("test_build_model", "test_accuracy_function", "test_saved_model", "test_predictions", "test_val_accuracy")
TIERS = {threshold: f"test_accuracy_{round(100 * threshold)}" for threshold in checks.THRESHOLDS}


def hidden(grade_id: str, namespace: dict, seed: int | None = None) -> str | None:
    return hidden_verdict(CLASSIFICATION, grade_id, namespace, seed)


def passed_tiers(ns: dict) -> list[float]:
    return [threshold for threshold, cell in TIERS.items() if hidden(cell, ns) is None]


def measured_test_accuracy(ns: dict) -> float:
    return checks.test_accuracy(evidence(CLASSIFICATION, TIERS[0.9], ns))


def test_example_model_was_trained_by_the_current_reference():
    assert recipe_digest() == EXAMPLE_MODEL_RECIPE, (
        "the reference cells that decide the example model changed: retrain it with `python -m "
        "course_tools baselines --assignments 04_torch_classification --seeds 0 --variants reference "
        "--save-files course_tools/authoring/example_files/04_torch_classification` and pin the printed recipe "
        "digest in course_tools/authoring/examples.py")


def test_reference_model_passes_with_91_percent(in_graded_folder):
    ns = in_graded_folder
    for cell in CELLS:
        assert hidden(cell, ns) is None, cell
    assert passed_tiers(ns) == list(checks.THRESHOLDS)
    assert measured_test_accuracy(ns) >= 0.91


def test_grading_does_not_train(graded):
    """In a grading run the read-only cell loads model.pt: the model equals the submitted weights."""
    assert graded["history"] is None
    submitted = torch.load(EXAMPLE_MODEL, map_location="cpu", weights_only=True)
    state = graded["model"].state_dict()
    assert state.keys() == submitted.keys()
    assert all(torch.equal(state[k].cpu(), submitted[k]) for k in submitted)


def handed_in_by(model: torch.nn.Module, folder: Path) -> dict[str, Path]:
    """model.pt and predictions.npy as a learner's run of ``model`` saves them (in ``folder/learner``)."""
    out = folder / "learner"
    out.mkdir()
    torch.save(model.state_dict(), out / "model.pt")
    X_val = fashion.to_tensor(fashion.train_val_split(*_training_split())[2])
    model.eval()
    with torch.no_grad():
        np.save(out / "predictions.npy", torch.cat([model(X_val[i:i + 1000]).argmax(dim=1)
                                                    for i in range(0, len(X_val), 1000)]).numpy())
    return {"model.pt": out / "model.pt", "predictions.npy": out / "predictions.npy"}


def test_untrained_model_earns_no_accuracy_point(tmp_path):
    ns = exec_cells("import torch\nfrom torch import nn\nfrom mytorch_lib import seed_everything\nseed_everything(0)",
                    reference_code(CLASSIFICATION, NOTEBOOK, "answer_build_model"))
    ns = run_graded(tmp_path, handed_in_by(ns["build_model"](), tmp_path))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        assert passed_tiers(ns) == []
        assert measured_test_accuracy(ns) < 0.3
        for cell in CELLS:  # saving and reporting an untrained model are still right
            assert hidden(cell, ns) is None, cell


def test_one_epoch_linear_model_gets_partial_credit(tmp_path):
    linear = "def build_model():\n    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        learner = exec_cells(notebook_cell("setup"), notebook_cell("data_load"), notebook_cell("to_device"),
                             reference_code(CLASSIFICATION, NOTEBOOK, "answer_accuracy"),
                             reference_code(CLASSIFICATION, NOTEBOOK, "answer_train"), linear,
                             "seed_everything(0)\nmodel = build_model().to(device)\n_h = train(model, 1)")
    ns = run_graded(tmp_path, handed_in_by(learner["model"], tmp_path), answer_build_model=linear)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        passed = passed_tiers(ns)
        assert 0 < len(passed) < len(checks.THRESHOLDS) and 0.9 not in passed
        assert 0.75 < measured_test_accuracy(ns) < 0.9


def _tier_messages(ns: dict) -> set[str]:
    return {hidden(cell, ns) or "" for cell in TIERS.values()}


def test_missing_model_file_costs_the_model_points_with_a_message(tmp_path):
    """No model.pt: the read-only cell stops with what to do, and each test cell says what is missing."""
    with pytest.raises(FileNotFoundError, match="hand in model.pt together with the notebook"):
        run_graded(tmp_path, {})
    ns = exec_cells("import torch\nfrom torch import nn", reference_code(CLASSIFICATION, NOTEBOOK, "answer_build_model"))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        (message,) = _tier_messages(ns)
        assert "model.pt was not found with your notebook" in message


@pytest.mark.parametrize("content, message", [
    (lambda ns: torch.save(ns["build_model"](), "model.pt"), "could not be read with torch.load"),
    (lambda ns: Path("model.pt").write_bytes(b"not a model"), "could not be read with torch.load"),
    (lambda ns: torch.save([torch.zeros(3)], "model.pt"), "holds a list"),
    (lambda ns: torch.save(torch.nn.Linear(784, 10).state_dict(), "model.pt"), "does not fit build_model()"),
    (lambda ns: Path("model.pt").write_bytes(os.urandom(1000) * 20_001), "are not graded"),
], ids=["whole_model_pickled", "garbage", "a_list", "another_network", "oversized"])
def test_unusable_model_file_gives_a_message_and_no_accuracy_point(content, message, tmp_path):
    ns = exec_cells("import torch\nfrom torch import nn", reference_code(CLASSIFICATION, NOTEBOOK, "answer_build_model"))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        content(ns)
        (got,) = _tier_messages(ns)
        assert message in got, got


def test_build_model_that_changed_since_training_is_told(in_graded_folder):
    """model.pt trained with one design, build_model() now another: the message says to retrain."""
    ns = dict(in_graded_folder)
    exec(compile("def build_model():\n    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))", "<cell>", "exec"), ns)
    (got,) = _tier_messages(ns)
    assert "does not fit build_model()" in got and "run the training cell again" in got


@pytest.mark.parametrize("find, replace, message", [
    ("return correct / len(X)", "return 100 * correct / len(X)", "percentage"),
    ("return correct / len(X)", "return torch.tensor(correct / len(X))", "tensor"),
    ("    model.eval()\n    correct = 0\n    with torch.no_grad():",
     "    model(X).sum().backward()\n    correct = 0\n    if True:", "gradients"),
    ("return correct / len(X)", "return float(correct)", "fraction of images"),
    ("return correct / len(X)", "return correct / 1000", "fraction of images"),
], ids=["percent", "tensor", "gradients", "count", "divided_by_chunk_size"])
def test_accuracy_slips(find, replace, message):
    code = reference_code(CLASSIFICATION, NOTEBOOK, "answer_accuracy")
    assert find in code
    got = hidden("test_accuracy_function", exec_cells("import torch\nfrom torch import nn", code.replace(find, replace)))
    assert message in (got or ""), got


def test_accuracy_in_one_pass_and_other_seeds_pass():
    one_pass = ("def accuracy(model, X, y):\n    model.eval()\n    with torch.no_grad():\n"
                "        return (model(X).argmax(dim=1) == y).float().mean().item()")
    for code in (reference_code(CLASSIFICATION, NOTEBOOK, "answer_accuracy"), one_pass):
        ns = exec_cells("import torch\nfrom torch import nn", code)
        for seed in (0, 1, 2**62 + 7):
            assert hidden("test_accuracy_function", ns, seed) is None
    for seed in (0, 1, 2**62 + 7):
        case = probes.cases_accuracy(rng(seed))
        logits = case.X.reshape(len(case.X), -1) @ case.W.T + case.b
        top2 = np.sort(logits, axis=1)[:, -2:]
        assert np.min(top2[:, 1] - top2[:, 0]) > 0.3, "the drawn model has a clear answer for every image"
        assert 0.3 < np.mean(np.argmax(logits, axis=1) == case.y) < 0.7


_PREDICT = ("predictions = torch.cat([model(X_val_t[start:start + 1000]).argmax(dim=1)\n"
            "                             for start in range(0, len(X_val_t), 1000)]).cpu().numpy()")


@pytest.mark.parametrize("find, replace, grade_id, message", [
    (_PREDICT, "predictions = model(X_val_t[:1000]).softmax(dim=1).cpu().numpy()", "test_predictions", "shape"),
    (_PREDICT, _PREDICT + "[::-1]", "test_predictions", "original order"),
    (_PREDICT, _PREDICT + ".astype(float)", "test_predictions", "integer labels"),
    ("val_accuracy = accuracy(model, X_val_t, y_val_t)",
     "val_accuracy = accuracy(model, X_train_t[:5000], y_train_t[:5000])", "test_val_accuracy", "validation images"),
    ("val_accuracy = accuracy(model, X_val_t, y_val_t)",
     "val_accuracy = 100 * accuracy(model, X_val_t, y_val_t)", "test_val_accuracy", "percentage"),
], ids=["probabilities", "shuffled", "float_labels", "train_accuracy", "percent"])
def test_report_slips_cost_their_own_cell(find, replace, grade_id, message, graded, tmp_path, monkeypatch):
    """A learner's run saves what the report cell computed; the grader checks the files handed in."""
    code = reference_code(CLASSIFICATION, NOTEBOOK, "answer_save")
    assert find in code
    shutil.copy(EXAMPLE_MODEL, tmp_path / "model.pt")
    monkeypatch.chdir(tmp_path)
    namespace = dict(graded)
    exec(compile(code.replace(find, replace), "<learner cell>", "exec"), namespace)
    np.save("predictions.npy", namespace["predictions"])
    got = hidden(grade_id, namespace)
    assert message in (got or ""), got


@pytest.mark.parametrize("handed_in, grade_id, message", [
    (lambda ns: None, "test_saved_model", "not found with your notebook"),
    (lambda ns: torch.save(ns["model"], "model.pt"), "test_saved_model", "could not be read"),
    (lambda ns: torch.save(ns["build_model"]().state_dict(), "model.pt"), "test_saved_model", "agrees with model"),
    (lambda ns: torch.save({"w": torch.zeros(3)}, "model.pt"), "test_saved_model", "does not fit build_model()"),
    (lambda ns: None, "test_predictions", "not found with your notebook"),
    (lambda ns: np.save("predictions.npy", np.roll(ns["predictions"], 1)), "test_predictions", "files of one run"),
], ids=["no_model_file", "whole_model_pickled", "untrained_weights", "other_state_dict", "no_predictions_file",
        "predictions_of_another_run"])
def test_wrong_handed_in_files_cost_their_own_cell(handed_in, grade_id, message, graded, tmp_path, monkeypatch):
    """The files handed in must be the ones the learner's run saved: the model's weights and its predictions."""
    monkeypatch.chdir(tmp_path)
    kept = {"test_saved_model": "predictions.npy", "test_predictions": "model.pt"}[grade_id]  # the file not tested
    shutil.copy(graded["_folder"] / kept, kept)
    handed_in(graded)
    got = hidden(grade_id, graded)
    assert message in (got or ""), got


def test_a_grading_machine_without_the_training_data_stops_grading(in_graded_folder, monkeypatch):
    """Missing data on the grading machine is the course team's problem: grading stops with what to install."""
    rec = record(CLASSIFICATION, "test_val_accuracy", in_graded_folder)
    call = hidden_call(torch_cells.test_cell(CLASSIFICATION, "test_val_accuracy").source)
    assert judge(call, [rec], rec["seed"], "") is None
    monkeypatch.setattr(checks, "_cache", {})
    monkeypatch.setattr(fashion, "data_folders", lambda: [])
    with pytest.raises(GradingMachineError, match="dataset-fashion-mnist"):
        judge(call, [rec], rec["seed"], "")


def test_build_model_must_give_ten_logits():
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


def test_test_cells_record_labels_only(in_graded_folder):
    """A test cell's record holds the predicted labels of the test images; the verdict counts the right ones."""
    rec = evidence(CLASSIFICATION, "test_accuracy_60", in_graded_folder)
    assert set(rec.items) == {"defined:build_model", "file_exists", "file_bytes", "state_type", "is_module",
                              "test_labels"}
    recorded = rec.value("test_labels", "labels")
    assert recorded["shape"] == [5000, 10] and recorded["labels"].shape == (5000,)
    assert judged("torch_classification", rec) is None


def test_test_cells_share_one_evaluation_and_still_see_a_new_file(in_graded_folder, tmp_path, monkeypatch):
    """The four test cells measure one model.pt once; a different model.pt is measured again."""
    ns = in_graded_folder
    first = [record(CLASSIFICATION, cell, ns)["items"]["test_labels"] for cell in TIERS.values()]
    assert all(item == first[0] for item in first)
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(1)
    torch.save(ns["build_model"]().state_dict(), "model.pt")
    assert record(CLASSIFICATION, "test_accuracy_60", ns)["items"]["test_labels"] != first[0]


def test_hard_coded_labels_fail(in_graded_folder):
    """A record of made-up labels (a constant class, or shuffled predictions) earns no accuracy point."""
    rec = evidence(CLASSIFICATION, "test_accuracy_60", in_graded_folder)
    labels = rec.value("test_labels", "labels")["labels"]
    for fake_labels in (np.zeros(5000, dtype=np.int64), np.random.default_rng(0).permutation(labels)):
        fake = dict(rec.items, test_labels=encode({"shape": [5000, 10], "labels": fake_labels}))
        assert "this cell needs 60%" in judged("torch_classification", Evidence(rec.behaviour, rec.seed, fake))
    malformed = dict(rec.items, test_labels=encode({"shape": [5000, 10], "labels": labels[:10]}))
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


def test_probes_leave_the_learners_random_stream_alone(in_graded_folder):
    """The probes build their networks (build_model(), the drawn linear model, the reloaded model.pt) and run
    the trained model without drawing from the learner's PyTorch generator."""
    for grade_id in (*CELLS, *TIERS.values()):
        torch.manual_seed(2024)
        before = torch.random.get_rng_state()
        record(CLASSIFICATION, grade_id, in_graded_folder)
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
            "assert c.grader_test_images().shape == (5000, 28, 28)\n"
            "import importlib.util\n"
            "assert importlib.util.find_spec('course_tools.hidden.verdicts') is None\n"
            "import pathlib\n"
            "assert not list(pathlib.Path('.').rglob('*labels*'))")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- the bar, trained as the notebook trains


def test_baselines_cell_trains_the_linear_model_and_the_mlp_with_the_learners_loop(monkeypatch):
    """The teaching cell that shows both known networks stalling below 90 %, with a stand-in for the slow training
    (the weak runs below skip that cell; the linear and MLP variants train the same networks as answers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mytorch_lib.plotting import plot_curves

    cell = next(c for c in nbformat.read(SOURCE_DIR / CLASSIFICATION / f"{NOTEBOOK}.ipynb", as_version=4).cells
                if c.get("id") == "baselines")
    trained = []

    def train(model, epochs, **options):
        trained.append(([type(layer).__name__ for layer in model], epochs, options))
        return {"loss": [1.0] * epochs, "val_accuracy": np.linspace(0.7, 0.85, epochs).tolist()}

    namespace = {"train": train, "is_autograding": lambda: False, "seed_everything": lambda seed: None, "SEED": 0,
                 "device": torch.device("cpu"), "nn": torch.nn, "plot_curves": plot_curves, "plt": plt}
    monkeypatch.setattr(plt, "show", lambda: None)
    exec(compile(cell.source, "baselines", "exec"), namespace)
    assert [(layers.count("Linear"), epochs, options) for layers, epochs, options in trained] == [(1, 5, {}), (3, 10, {})]
    assert set(namespace["baselines"]) == {"linear", "MLP"}
    plt.close("all")
    namespace.update(is_autograding=lambda: True)
    trained.clear()
    exec(compile(cell.source, "baselines", "exec"), namespace)
    assert trained == [] and namespace["baselines"] == {}, "a grading run trains nothing"


@pytest.fixture(scope="module")
def weak_runs() -> dict:
    """The weak variants of ``course_tools.quality.torch_baselines``, each trained as a learner would, handed in and
    graded by the grading engine (two at a time: each run is one single-threaded kernel)."""
    names = ("linear", "mlp", "untrained")
    runs = run_variants(CLASSIFICATION, [(name, 0, "normal") for name in names], jobs=2)
    return dict(zip(names, runs))


@pytest.mark.parametrize("variant, least, most", [("linear", 0.80, 0.87), ("mlp", 0.85, 0.90), ("untrained", 0, 0.3)])
def test_the_90_percent_bar_needs_design(weak_runs, variant, least, most):
    run = weak_runs[variant]
    tier_failures = tuple(f"cell {cell}: " for cell in TIERS.values())
    assert [p for p in run.problems if not p.startswith(tier_failures)] == [], run.problems
    assert least <= run.metrics["test_accuracy"] < most
    assert "test_accuracy_90" in run.failed_cells
    lost_accuracy_points = sum(full - got for cell, (got, full) in run.cells.items() if cell in TIERS.values())
    if variant == "untrained":
        assert lost_accuracy_points == 5
    assert set(run.failed_cells) <= set(TIERS.values()), "only accuracy points are lost"
    assert run.metrics["grading_seconds"] < 90, "grading evaluates the saved model, it does not train"


# ---------------------------------------------------------------- through nbgrader


def test_submission_without_model_file_keeps_only_its_functions_points(grading):
    """Through nbgrader: the reference notebook handed in without model.pt keeps the points of accuracy and
    build_model (2 of 10); every cell that needs the trained model says what is missing."""
    nbs = {nb.stem: learner_notebook(CLASSIFICATION, nb.stem, release_dir=grading.release_dir)
           for nb in notebooks(CLASSIFICATION)}
    scores = grading.grade("no_model_file", CLASSIFICATION, nbs, files={})
    cells = scores["notebooks"][NOTEBOOK]["cells"]
    assert {cell for cell, (got, full) in cells.items() if got == full} == {"test_accuracy_function", "test_build_model"}
    assert scores["score"] == pytest.approx(2.0)
