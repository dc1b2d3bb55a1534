"""Hidden tests of the PyTorch classification notebook (course spec, section 8).

The learner designs ``build_model()`` (a fresh network: float32 images
``N x 1 x 28 x 28`` in [0, 1] -> logits ``N x 10``), trains ``model``, reports
``val_accuracy`` and saves ``model.pt`` (``torch.save(model.state_dict(), ...)``)
and ``predictions.npy`` (predicted labels of the fixed validation split).
Each ``check_*`` function takes the notebook namespace and checks one behaviour:

- :func:`check_build_model`: interface of ``build_model()``;
- :func:`check_accuracy_function`: ``accuracy(model, X, y)``;
- :func:`check_saved_model`: ``model.pt`` loads into ``build_model()`` and predicts like ``model``;
- :func:`check_predictions`: ``predictions.npy`` holds ``model``'s validation predictions;
- :func:`check_val_accuracy`: the reported ``val_accuracy`` is ``model``'s;
- :func:`check_test_accuracy`: accuracy of ``model`` on the grader-only test split
  (``data/mnist_test.npz``, 2,000 MNIST digits never shipped to learners) reaches a threshold.

Only ``course_tools.hidden`` and ``mytorch_lib`` are imported: the grading
sandbox exposes nothing else of the repository. The validation split is
recomputed from the training file next to the notebook (its digest is checked).

The model is evaluated where it lives (GPU or CPU), in eval mode, without
gradients; its train/eval mode and the learner's random state are restored.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from course_tools.hidden.mnist_files import DIGESTS, TEST_FILE, TRAIN_NAME, array_digest, load_split
from course_tools.hidden.torch_common import learner_function, learner_model, learner_value, torch_module

MODEL_FILE, PREDICTIONS_FILE = "model.pt", "predictions.npy"
NUM_CLASSES = 10
#: Test-accuracy thresholds of the graded cells: full points at 90 %, partial credit below.
THRESHOLDS = (0.60, 0.75, 0.85, 0.90)

_cache: dict[str, Any] = {}


@contextlib.contextmanager
def _own_random_state() -> Iterator[None]:
    """Random numbers drawn inside (e.g. by ``build_model()``) leave the learner's stream untouched."""
    torch = torch_module()
    with torch.random.fork_rng(devices=[]):
        yield


def hidden_test_split() -> tuple[np.ndarray, np.ndarray]:
    """The grader-only test images ``N x 28 x 28`` (uint8) and labels ``(N,)``."""
    if "test" not in _cache:
        _cache["test"] = load_split(TEST_FILE)
    return _cache["test"]


def validation_split() -> tuple[np.ndarray, np.ndarray]:
    """The notebook's validation images and labels, from the training file next to the notebook.

    The file must be the one shipped with the assignment (its digest is pinned).
    """
    if "val" not in _cache:
        from mytorch_lib.mnist import train_val_split

        path = Path(TRAIN_NAME)
        problem = f"{TRAIN_NAME} must stay next to the notebook, as it came with the assignment"
        if not path.exists():
            raise AssertionError(f"{TRAIN_NAME} was not found: {problem}")
        images, labels = load_split(path)
        if array_digest(images, labels) != DIGESTS["train"]:
            raise AssertionError(f"{TRAIN_NAME} was changed: {problem}")
        _, _, X_val, y_val = train_val_split(images, labels)
        _cache["val"] = (X_val, y_val)
    return _cache["val"]


def _as_input(images: np.ndarray) -> Any:
    torch = torch_module()
    return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)


def _device_of(model: Any) -> Any:
    torch = torch_module()
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def logits(model: Any, images: np.ndarray, *, batch_size: int = 500) -> np.ndarray:
    """``model``'s outputs ``N x 10`` (float64 NumPy) for uint8 images ``N x 28 x 28``, in eval mode."""
    torch = torch_module()
    device = _device_of(model)
    was_training = model.training
    model.eval()
    outputs = []
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                batch = _as_input(images[start:start + batch_size]).to(device)
                try:
                    out = model(batch)
                except Exception as error:  # noqa: BLE001 (any failure is the learner's to fix)
                    raise AssertionError(f"the model failed on a batch of images of shape {tuple(batch.shape)}: "
                                         f"{type(error).__name__}: {error}") from None
                if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(batch), NUM_CLASSES):
                    got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                    raise AssertionError(f"the model should map N x 1 x 28 x 28 images to N x 10 logits; "
                                         f"for N = {len(batch)} it returned {got}")
                outputs.append(out.detach().double().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(outputs)


def predicted_labels(model: Any, images: np.ndarray) -> np.ndarray:
    """Predicted classes ``(N,)`` (int64) of ``model`` for uint8 images ``N x 28 x 28``."""
    return np.argmax(logits(model, images), axis=1).astype(np.int64)


def _fraction_equal(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of positions where two label arrays agree, counted in plain Python."""
    return sum(1 for u, v in zip(a.tolist(), b.tolist()) if u == v) / len(b)


def hidden_test_accuracy(model: Any) -> float:
    """Accuracy of ``model`` on the grader-only test split."""
    images, labels = hidden_test_split()
    return _fraction_equal(predicted_labels(model, images), labels)


def validation_accuracy(model: Any) -> float:
    """Accuracy of ``model`` on the notebook's validation split."""
    images, labels = validation_split()
    return _fraction_equal(predicted_labels(model, images), labels)


# ---------------------------------------------------------------- checks


def check_build_model(namespace: Mapping[str, Any]) -> None:
    """``build_model()`` makes a fresh network for N x 1 x 28 x 28 images with finite N x 10 outputs."""
    torch = torch_module()
    build_model = learner_function(namespace, "build_model")
    with _own_random_state():
        fresh, other = build_model(), build_model()
    if not isinstance(fresh, torch.nn.Module):
        raise AssertionError(f"build_model() should return a torch.nn.Module, got {type(fresh).__name__}")
    if fresh is other:
        raise AssertionError("build_model() returned the same object twice: create a new network on every call")
    if not any(True for _ in fresh.parameters()):
        raise AssertionError("build_model() returned a network without parameters: nothing to train")
    images = np.random.default_rng(1).integers(0, 256, size=(7, 28, 28)).astype(np.uint8)
    out = logits(fresh.to("cpu"), images)
    if not np.all(np.isfinite(out)):
        raise AssertionError("build_model()'s network gives NaN or infinite outputs on ordinary images")


def check_accuracy_function(namespace: Mapping[str, Any]) -> None:
    """``accuracy(model, X, y)``: the fraction of correctly classified images, as a Python float."""
    torch = torch_module()
    accuracy = learner_function(namespace, "accuracy")
    with _own_random_state():
        torch.manual_seed(17)
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
        X = torch.rand(600, 1, 28, 28)
        y = torch.randint(0, 10, (600,))
    with torch.no_grad():
        chosen = net(X).argmax(dim=1)
    y[:250] = chosen[:250]  # about 250 + 35 of 600 right: not a round number
    expected = float((chosen == y).double().mean())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    value = accuracy(net, X, y)
    if isinstance(value, torch.Tensor):
        raise AssertionError("accuracy returned a tensor; return a Python float (use .item())")
    if not isinstance(value, float):
        raise AssertionError(f"accuracy should return a Python float, got {type(value).__name__}")
    if math.isclose(value, 100 * expected, rel_tol=1e-6):
        raise AssertionError("accuracy returned a percentage; return a fraction between 0 and 1")
    if not math.isclose(value, expected, abs_tol=1e-6):
        raise AssertionError(f"accuracy returned {value:.6f} for a model that classifies {expected:.6f} of the "
                             "images correctly; compare model(X).argmax(dim=1) with y and average")
    for name, tensor in net.state_dict().items():
        if not torch.equal(tensor, before[name]):
            raise AssertionError(f"accuracy changed the model's parameter {name}: evaluation must not train")
    if any(p.grad is not None for p in net.parameters()):
        raise AssertionError("accuracy computed gradients; wrap the forward pass in `with torch.no_grad():`")


def _file(name: str) -> Path:
    path = Path(name)
    if not path.exists():
        raise AssertionError(f"{name} was not found next to the notebook: run the cell that saves it")
    return path


def check_saved_model(namespace: Mapping[str, Any]) -> None:
    """``model.pt`` is a state dict that loads into ``build_model()`` and predicts like ``model``."""
    torch = torch_module()
    build_model = learner_function(namespace, "build_model")
    model = learner_model(namespace)
    try:
        state = torch.load(_file(MODEL_FILE), map_location="cpu", weights_only=True)
    except AssertionError:
        raise
    except Exception as error:  # noqa: BLE001
        raise AssertionError(f"{MODEL_FILE} could not be read with torch.load(..., weights_only=True) "
                             f"({type(error).__name__}); save it with torch.save(model.state_dict(), "
                             f"{MODEL_FILE!r})") from None
    if not isinstance(state, dict):
        raise AssertionError(f"{MODEL_FILE} holds a {type(state).__name__}; save model.state_dict(), not the model")
    with _own_random_state():
        reloaded = build_model()
    try:
        reloaded.load_state_dict(state)
    except Exception as error:  # noqa: BLE001
        raise AssertionError(f"{MODEL_FILE} does not fit build_model(): {str(error).splitlines()[0]}") from None
    images, _ = validation_split()
    images = images[:300]
    agree = _fraction_equal(predicted_labels(reloaded.to("cpu"), images), predicted_labels(model, images))
    if agree < 0.99:
        raise AssertionError(f"build_model() loaded with {MODEL_FILE} agrees with model on only {agree:.1%} of "
                             "validation images: save the trained model after training")


def check_predictions(namespace: Mapping[str, Any]) -> None:
    """``predictions.npy``: ``model``'s predicted labels of the validation images, in order, as integers."""
    model = learner_model(namespace)
    try:
        saved = np.load(_file(PREDICTIONS_FILE), allow_pickle=False)
    except AssertionError:
        raise
    except Exception as error:  # noqa: BLE001
        raise AssertionError(f"{PREDICTIONS_FILE} could not be read with np.load ({type(error).__name__}); "
                             "save a NumPy array of labels with np.save") from None
    images, _ = validation_split()
    if saved.shape != (len(images),):
        raise AssertionError(f"{PREDICTIONS_FILE} has shape {saved.shape}; expected ({len(images)},), "
                             "one label per validation image")
    if not np.issubdtype(saved.dtype, np.integer):
        raise AssertionError(f"{PREDICTIONS_FILE} holds {saved.dtype} values; save integer labels "
                             "(argmax of the logits), not scores or probabilities")
    if saved.min() < 0 or saved.max() >= NUM_CLASSES:
        raise AssertionError(f"{PREDICTIONS_FILE} holds labels from {saved.min()} to {saved.max()}; expected 0..9")
    agree = _fraction_equal(saved.astype(np.int64), predicted_labels(model, images))
    if agree < 0.99:
        raise AssertionError(f"{PREDICTIONS_FILE} agrees with model's predictions on only {agree:.1%} of the "
                             "validation images: predict X_val in its original order with the trained model")


def check_val_accuracy(namespace: Mapping[str, Any]) -> None:
    """The reported ``val_accuracy`` is the trained ``model``'s accuracy on the validation split (a fraction)."""
    reported = learner_value(namespace, "val_accuracy", "val_accuracy (the cell that reports it)")
    if not isinstance(reported, (float, np.floating)) or isinstance(reported, bool):
        raise AssertionError(f"val_accuracy should be a float, got {type(reported).__name__}")
    reported = float(reported)
    actual = validation_accuracy(learner_model(namespace))
    if math.isclose(reported, 100 * actual, abs_tol=0.2):
        raise AssertionError("val_accuracy looks like a percentage; report a fraction between 0 and 1")
    if not math.isclose(reported, actual, abs_tol=0.002):
        raise AssertionError(f"val_accuracy is {reported:.4f} but model classifies {actual:.4f} of the "
                             "validation images correctly: report the trained model's accuracy on X_val")


def check_test_accuracy(namespace: Mapping[str, Any], threshold: float) -> None:
    """``model`` classifies at least ``threshold`` of the grader-only test images correctly."""
    model = learner_model(namespace)
    score = hidden_test_accuracy(model)
    if not score >= threshold:
        raise AssertionError(f"your model classifies {score:.1%} of the {len(hidden_test_split()[1])} test images "
                             f"correctly; this cell needs {threshold:.0%}")


def metrics(namespace: Mapping[str, Any]) -> dict[str, float]:
    """Numbers the evaluation script reports for a run of the notebook."""
    model = namespace.get("model")
    history = namespace.get("history") or {}
    out: dict[str, float] = {"epochs": len(history.get("loss", []))}
    for name, measure in (("test_accuracy", hidden_test_accuracy), ("val_accuracy", validation_accuracy)):
        try:
            out[name] = measure(model)
        except (AssertionError, AttributeError):
            out[name] = math.nan
    return out
