"""Verdicts of ``04_torch_classification`` (course spec, section 8), and where its test labels live.

- :func:`check_build_model`: ``build_model()`` makes a fresh network with finite ``N x 10`` outputs;
- :func:`check_accuracy_function`: ``accuracy(model, X, y)`` is the fraction of right labels, a
  Python float, and changes nothing (the expected value is computed here in float64);
- :func:`check_saved_model`: ``model.pt`` loads into ``build_model()`` and predicts like ``model``;
- :func:`check_predictions`: ``predictions.npy`` holds ``model``'s validation predictions;
- :func:`check_val_accuracy`: the reported ``val_accuracy`` is ``model``'s, counted here
  against the validation labels of the genuine Fashion-MNIST training split;
- ``check_test_accuracy_<p>``: the labels that ``build_model()`` loaded with the submitted
  ``model.pt`` predicted for the grader's test images, counted here against the test labels
  (:data:`TEST_LABELS_FILE`, never in the kernel), reach ``p`` %.

The test split is kept as two files: the images, which the model must run on, next to the
probes (mounted into the grading sandbox), and the labels here. :data:`DIGESTS` pins the
arrays of both (:mod:`course_tools.quality.fashion_data` rebuilds and verifies them).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from course_tools.hidden.probes import torch_classification as probes
from course_tools.hidden.probes.kit import rng
from course_tools.hidden.verdicts.kit import Evidence, GradingMachineError, Opaque, Wrong
from mytorch_lib import fashion
from mytorch_lib.fashion import array_digest

#: The labels of the grader's test images; never mounted into the grading sandbox.
TEST_LABELS_FILE = Path(__file__).resolve().parent / "data" / "fashion_test_labels.npz"

#: SHA-256 of each committed file's arrays (see ``mytorch_lib.fashion.array_digest``): the test
#: images and the test labels. The training split's digest is ``mytorch_lib.fashion.TRAIN_DIGEST``.
DIGESTS = {
    "test_images": "ed3e63dacb81e373d75a5a02eb2b7ff25dab417e35d7f3b557f30668e1cec276",
    "test_labels": "de87078fbb551ff0ef0c100a32f5b63a68bd3cf55902fc9d98fe9eefea3c664d",
}
#: The largest ``model.pt`` graded (bytes). The course's designs need well under 5 MB; the cap keeps
#: a file that stores images instead of a network (a lookup table) from being graded at all.
MAX_MODEL_BYTES = 20_000_000
NUM_CLASSES = 10
#: Test-accuracy thresholds of the graded cells: full points at 90 %, partial credit below.
THRESHOLDS = (0.60, 0.75, 0.85, 0.90)
#: Least share of images on which the saved files must agree with ``model``.
AGREEMENT = 0.99

_cache: dict[str, Any] = {}


def test_labels() -> np.ndarray:
    """The labels ``(N,)`` (int64) of the grader's test images (checked against their pinned digest)."""
    if "test" not in _cache:
        with np.load(TEST_LABELS_FILE, allow_pickle=False) as data:
            labels = np.asarray(data["labels"], dtype=np.int64)
        if array_digest(labels=labels) != DIGESTS["test_labels"]:
            raise RuntimeError(f"{TEST_LABELS_FILE} does not match its pinned digest (see DATA.md)")
        _cache["test"] = labels
    return _cache["test"]


def validation_labels() -> np.ndarray:
    """The labels of the notebook's validation split, from the genuine Fashion-MNIST training split."""
    if "val" not in _cache:
        try:
            images, labels = fashion.load_fashion_mnist(download=False)
        except (OSError, ValueError) as error:
            raise GradingMachineError(f"{error}\nThe grading machine needs the Fashion-MNIST training files: "
                                      "install the Debian package dataset-fashion-mnist or set MYTORCH_DATA "
                                      "(see DATA.md).") from error
        _cache["val"] = fashion.train_val_split(images, labels)[3]
    return _cache["val"]


def _fraction_equal(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.asarray(a) == np.asarray(b)))


def _defined_function(evidence: Evidence, name: str) -> None:
    definition = evidence.definition(name)
    if definition.get("kind") == "missing":
        raise Wrong(f"{name} is not defined: run the cell that defines the function {name}")
    if definition.get("kind") != "function":
        raise Wrong(f"{name} should be a function, got {definition.get('kind')}")
    if definition.get("module") != "__main__":
        raise Wrong(f"{name} must be the function written in this notebook, not one from {definition.get('module')}")


def _model(evidence: Evidence) -> None:
    """Fail unless ``model`` was defined and is a torch module."""
    if evidence.definition("model").get("kind") == "missing":
        raise Wrong("model is not defined: run the cell that defines the trained model (the training cell)")
    if evidence.value("model_is_module", "model") is not True:
        raise Wrong(f"model should be your trained torch.nn.Module, got {evidence.value('model_type', 'model')}")


def _train_data(evidence: Evidence) -> None:
    """The probe read the genuine training split (it is on the grading machine, outside the submission)."""
    validation_labels()  # the grading process has the data, or grading stops with a message for the course team
    error = evidence.raised("train_data")
    if error is not None:
        raise GradingMachineError(f"the grading kernel could not read the Fashion-MNIST training files ({error}); "
                                  "install the Debian package dataset-fashion-mnist or set MYTORCH_DATA (see DATA.md)")
    if evidence.value("train_data", "the training data") != fashion.TRAIN_DIGEST:
        raise Wrong("the validation images your model was run on are not Fashion-MNIST's: do not change "
                    "mytorch_lib or the data files")


def _labels(evidence: Evidence, key: str, n: int, what: str) -> np.ndarray:
    """The labels a model predicted for ``n`` images (recorded under ``key``), after checking its output shape."""
    error = evidence.raised(key)
    if error is not None:
        raise Wrong(f"{what} failed on a batch of images of shape (N, 1, 28, 28): {error}")
    value = evidence.value(key, what)
    if not isinstance(value, dict) or "shape" not in value:
        raise Wrong("the record of this check is malformed (was grading code replaced?)")
    shape = value["shape"]
    shape = tuple(shape) if isinstance(shape, list) else shape
    if shape != (n, NUM_CLASSES):
        raise Wrong(f"the model should map N x 1 x 28 x 28 images to N x 10 logits; for N = {n} it returned {shape}")
    labels = value.get("labels")
    if not isinstance(labels, np.ndarray) or labels.shape != (n,):
        raise Wrong("the record of this check is malformed (was grading code replaced?)")
    return labels.astype(np.int64)


# ---------------------------------------------------------------- build_model and accuracy


def check_build_model(evidence: Evidence) -> None:
    _defined_function(evidence, "build_model")
    images = probes.cases_build_model(rng(evidence.seed))
    error = evidence.raised("build")
    if error is not None:
        raise Wrong(f"build_model() raised {error}")
    if evidence.value("is_module", "build_model()") is not True:
        raise Wrong(f"build_model() should return a torch.nn.Module, got {evidence.value('type', 'build_model()')}")
    if evidence.value("same_object", "build_model()") is not False:
        raise Wrong("build_model() returned the same object twice: create a new network on every call")
    if not evidence.number("parameters", "the number of parameters of build_model()") > 0:
        raise Wrong("build_model() returned a network without parameters: nothing to train")
    error = evidence.raised("outputs")
    if error is not None:
        raise Wrong(f"the network of build_model() failed on a batch of images of shape ({len(images)}, 1, 28, 28): "
                    f"{error}")
    out = evidence.value("outputs", "build_model()'s network")
    if not isinstance(out, np.ndarray) or out.shape != (len(images), NUM_CLASSES):
        got = out.shape if isinstance(out, np.ndarray) else (out.type_name if isinstance(out, Opaque)
                                                             else type(out).__name__)
        raise Wrong(f"the model should map N x 1 x 28 x 28 images to N x 10 logits; for N = {len(images)} "
                    f"it returned {got}")
    if not np.all(np.isfinite(out)):
        raise Wrong("build_model()'s network gives NaN or infinite outputs on ordinary images")


def check_accuracy_function(evidence: Evidence) -> None:
    _defined_function(evidence, "accuracy")
    case = probes.cases_accuracy(rng(evidence.seed))
    what = f"accuracy(model, X, y) on {len(case.y)} images"
    value = evidence.value("value", what)
    item = evidence.items["value"]
    if isinstance(item, dict) and "tensor" in item:
        raise Wrong("accuracy returned a tensor; return a Python float (use .item())")
    if not (isinstance(item, dict) and "float" in item and item.get("type") in ("float", "float64")):
        shown = item.get("type") if isinstance(item, dict) and "float" in item else (
            value.type_name if isinstance(value, Opaque) else type(value).__name__)
        raise Wrong(f"accuracy should return a Python float, got {shown}")
    logits = case.X.reshape(len(case.X), -1).astype(np.float64) @ case.W.T.astype(np.float64) + case.b
    expected = _fraction_equal(np.argmax(logits, axis=1), case.y)
    if math.isclose(value, 100 * expected, rel_tol=1e-6):
        raise Wrong("accuracy returned a percentage; return a fraction between 0 and 1")
    if not math.isclose(value, expected, abs_tol=1e-6):
        raise Wrong(f"{what} is not the fraction of images the model classifies correctly; compare "
                    "model(X).argmax(dim=1) with y and average")
    after = evidence.value("parameters_after", "the model's parameters after accuracy")
    before = [case.W, case.b]
    if not isinstance(after, list) or len(after) != 2:
        raise Wrong("the record of this check is malformed (was grading code replaced?)")
    for got, want in zip(after, before):
        if not isinstance(got, np.ndarray) or got.shape != want.shape or not np.array_equal(got, want):
            raise Wrong("accuracy changed the model's parameters: evaluation must not train")
    grads = evidence.value("gradients", "the model's gradients")
    if not isinstance(grads, list) or any(g is not False for g in grads):
        raise Wrong("accuracy computed gradients; wrap the forward pass in `with torch.no_grad():`")


# ---------------------------------------------------------------- files and reported numbers


def _file(evidence: Evidence, name: str) -> None:
    if evidence.value("file_exists", name) is not True:
        raise Wrong(f"{name} was not found with your notebook: run the notebook outside grading (the read-only "
                    f"cell after your report saves it) and hand in {name} together with the notebook")


def _model_file_loads(evidence: Evidence) -> None:
    """``model.pt`` was read with ``weights_only=True``, holds a state dict, and loads into a fresh ``build_model()``."""
    name = probes.MODEL_FILE
    error = evidence.raised("load")
    if error is not None:
        raise Wrong(f"{name} could not be read with torch.load(..., weights_only=True) ({error.split(':')[0]}); "
                    f"save it with torch.save(model.state_dict(), {name!r})")
    state_type = evidence.value("state_type", f"the content of {name}")
    if state_type not in ("dict", "OrderedDict"):
        raise Wrong(f"{name} holds a {state_type}; save model.state_dict(), not the model")
    error = evidence.raised("build")
    if error is not None:
        raise Wrong(f"build_model() raised {error}")
    if "is_module" in evidence.items and evidence.value("is_module", "build_model()") is not True:
        raise Wrong("build_model() should return a torch.nn.Module")
    error = evidence.raised("load_state_dict")
    if error is not None:
        raise Wrong(f"{name} does not fit build_model(): {error.splitlines()[0]}. Save the weights of the "
                    "network build_model() makes now (run the training cell again after changing build_model)")


def check_saved_model(evidence: Evidence) -> None:
    _defined_function(evidence, "build_model")
    _model(evidence)
    _file(evidence, probes.MODEL_FILE)
    _model_file_loads(evidence)
    _train_data(evidence)
    n = min(probes.SAVED_MODEL_IMAGES, len(validation_labels()))
    reloaded = _labels(evidence, "reloaded_labels", n, f"build_model() loaded with {probes.MODEL_FILE}")
    trained = _labels(evidence, "model_labels", n, "model")
    agree = _fraction_equal(reloaded, trained)
    if agree < AGREEMENT:
        raise Wrong(f"build_model() loaded with {probes.MODEL_FILE} agrees with model on only {agree:.1%} of "
                    "validation images: save the trained model after training")


def check_predictions(evidence: Evidence) -> None:
    _model(evidence)
    name = probes.PREDICTIONS_FILE
    _file(evidence, name)
    error = evidence.raised("saved")
    if error is not None:
        raise Wrong(f"{name} could not be read with np.load ({error.split(':')[0]}); save a NumPy array of labels "
                    "with np.save")
    saved = evidence.value("saved", name)
    n = len(validation_labels())
    shape = saved.shape if isinstance(saved, (np.ndarray, Opaque)) else ()
    if shape != (n,):
        raise Wrong(f"{name} has shape {shape}; expected ({n},), one label per validation image")
    if not isinstance(saved, np.ndarray) or saved.dtype.kind not in "iu":
        raise Wrong(f"{name} holds {evidence.value('saved_dtype', name)} values; save integer labels "
                    "(argmax of the logits), not scores or probabilities")
    if saved.min() < 0 or saved.max() >= NUM_CLASSES:
        raise Wrong(f"{name} holds labels from {saved.min()} to {saved.max()}; expected 0..9")
    _train_data(evidence)
    agree = _fraction_equal(saved.astype(np.int64), _labels(evidence, "model_labels", n, "model"))
    if agree < AGREEMENT:
        raise Wrong(f"{name} agrees with model's predictions on only {agree:.1%} of the validation images: "
                    "predict X_val in its original order with the trained model, and hand in the files of one run")


def validation_accuracy(evidence: Evidence) -> float:
    """Accuracy of the recorded validation labels of ``model`` against the genuine validation labels."""
    truth = validation_labels()
    return _fraction_equal(_labels(evidence, "model_labels", len(truth), "model"), truth)


def check_val_accuracy(evidence: Evidence) -> None:
    if evidence.definition("val_accuracy").get("kind") == "missing":
        raise Wrong("val_accuracy is not defined: run the cell that reports it")
    item = evidence.items.get("val_accuracy")
    reported = evidence.value("val_accuracy", "val_accuracy")
    if not (isinstance(item, dict) and "float" in item) or not isinstance(reported, float):
        shown = reported.type_name if isinstance(reported, Opaque) else type(reported).__name__
        raise Wrong(f"val_accuracy should be a float, got {shown}")
    _model(evidence)
    _train_data(evidence)
    actual = validation_accuracy(evidence)
    if math.isclose(reported, 100 * actual, abs_tol=0.2):
        raise Wrong("val_accuracy looks like a percentage; report a fraction between 0 and 1")
    if not math.isclose(reported, actual, abs_tol=0.002):
        raise Wrong(f"val_accuracy is {reported:.4f}, but that is not the share of validation images model "
                    "classifies correctly: report the trained model's accuracy on X_val")


# ---------------------------------------------------------------- the test set


def test_accuracy(evidence: Evidence) -> float:
    """Accuracy on the grader's test images of ``build_model()`` loaded with the submitted ``model.pt``."""
    _defined_function(evidence, "build_model")
    name = probes.MODEL_FILE
    if evidence.value("file_exists", name) is not True:
        raise Wrong(f"{name} was not found with your notebook: the test set is measured on the model you hand in. "
                    f"Run the notebook outside grading (it saves {name}) and hand in {name} with the notebook")
    size = evidence.number("file_bytes", f"the size of {name}")
    if size > MAX_MODEL_BYTES:
        raise Wrong(f"{name} is {size / 1e6:.1f} MB; models over {MAX_MODEL_BYTES / 1e6:.0f} MB are not graded")
    _model_file_loads(evidence)
    truth = test_labels()
    return _fraction_equal(_labels(evidence, "test_labels", len(truth), f"build_model() loaded with {name}"), truth)


def _test_accuracy(behaviour: str, threshold: float) -> Any:
    def check(evidence: Evidence) -> None:
        score = test_accuracy(evidence)
        if not score >= threshold:
            raise Wrong(f"your model classifies {score:.1%} of the {len(test_labels())} test images correctly; "
                        f"this cell needs {threshold:.0%}")

    check.__name__ = check.__qualname__ = behaviour
    check.__doc__ = f"``model`` classifies at least {threshold:.0%} of the grader's test images correctly."
    return check


check_test_accuracy_60 = _test_accuracy("check_test_accuracy_60", 0.60)
check_test_accuracy_75 = _test_accuracy("check_test_accuracy_75", 0.75)
check_test_accuracy_85 = _test_accuracy("check_test_accuracy_85", 0.85)
check_test_accuracy_90 = _test_accuracy("check_test_accuracy_90", 0.90)


def metrics(evidence: dict[str, Evidence]) -> dict[str, float]:
    """The grader's numbers of one run, from its records (behaviour -> evidence): records, CSV, baselines."""
    out: dict[str, float] = {}
    for name, behaviour, measure in (("test_accuracy", "check_test_accuracy_90", test_accuracy),
                                     ("val_accuracy", "check_val_accuracy", validation_accuracy)):
        try:
            out[name] = measure(evidence[behaviour])
        except (KeyError, Wrong):
            out[name] = math.nan
    return out
