"""Probes of ``04_torch_classification``: what the learner's network, accuracy function, files and model produce.

The learner designs ``build_model()`` (float32 images ``N x 1 x 28 x 28`` in
[0, 1] -> logits ``N x 10``), trains ``model`` on Fashion-MNIST, reports
``val_accuracy`` and saves ``model.pt`` and ``predictions.npy``; ``model.pt`` is
submitted with the notebook, and grading evaluates it without training. The
probes record:

- ``build_model()``: what it returns, and its logits for images drawn from the seed;
- ``accuracy(model, X, y)``: its value for a drawn linear model and drawn data, and the
  model's parameters and gradients afterwards;
- ``model.pt``, ``predictions.npy``, ``val_accuracy``: what the files and the name hold,
  and the labels ``model`` predicts for the validation images;
- the test cells: the labels that ``build_model()`` loaded with the submitted
  ``model.pt`` predicts for the grader's test images (or why it could not).

The test images (``data/fashion_test_images.npz``, next to this module) are the
only grader data the kernel sees; their labels stay with the verdicts, which count
the right predictions and compare. The validation images are the fixed split of
the Fashion-MNIST training files that :mod:`mytorch_lib.fashion` finds on the
grading machine; the probe records the digest of the arrays it read.

The model is run where it lives (GPU or CPU), in eval mode, without gradients;
its train/eval mode and the learner's random state are restored.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from course_tools.hidden.probes.kit import FAILED, Probe, one_call

#: The grader's test images (uint8 ``N x 28 x 28``), without labels.
TEST_IMAGES_FILE = Path(__file__).resolve().parent / "data" / "fashion_test_images.npz"
MODEL_FILE, PREDICTIONS_FILE = "model.pt", "predictions.npy"
#: Validation images on which the reloaded ``model.pt`` is compared with ``model``.
SAVED_MODEL_IMAGES = 300
#: Images per forward pass.
BATCH_SIZE = 500

_cache: dict[str, Any] = {}


def _torch() -> Any:
    import torch

    return torch


@contextlib.contextmanager
def _own_random_state() -> Iterator[None]:
    """Random numbers drawn inside (e.g. by ``build_model()``) leave the learner's stream untouched."""
    with _torch().random.fork_rng(devices=[]):
        yield


def grader_test_images() -> np.ndarray:
    """The grader's test images ``N x 28 x 28`` (uint8)."""
    if "test" not in _cache:
        with np.load(TEST_IMAGES_FILE, allow_pickle=False) as data:
            _cache["test"] = np.asarray(data["images"], dtype=np.uint8)
    return _cache["test"]


def _validation(probe: Probe) -> np.ndarray | None:
    """The validation images of the Fashion-MNIST training split found on this machine (its digest is recorded)."""
    from mytorch_lib import fashion

    def load() -> tuple[str, np.ndarray]:
        if "validation" not in _cache:  # three cells ask: read, check and split the files once per kernel
            images, labels = fashion.load_fashion_mnist(download=False)
            _cache["validation"] = (fashion.array_digest(images, labels), fashion.train_val_split(images, labels)[2])
        return _cache["validation"]

    loaded = probe.attempt("train_data", load)
    if loaded is FAILED:
        return None
    digest, validation_images = loaded
    probe.record("train_data", digest)
    return validation_images


def _device_of(model: Any) -> Any:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return _torch().device("cpu")


def outputs(model: Any, images: np.ndarray) -> Any:
    """``model``'s outputs for uint8 images ``N x 28 x 28`` (as ``N x 1 x 28 x 28`` floats in [0, 1]), in eval mode.

    Returns the outputs of all batches as one float64 array, or the first output that is
    not a tensor of ``batch x ...`` (recorded as it is).
    """
    torch = _torch()
    device = _device_of(model)
    was_training = model.training
    model.eval()
    parts = []
    try:
        with torch.no_grad(), _own_random_state():
            for start in range(0, len(images), BATCH_SIZE):
                batch = torch.from_numpy(images[start:start + BATCH_SIZE].astype(np.float32) / 255.0).unsqueeze(1)
                out = model(batch.to(device))
                if not isinstance(out, torch.Tensor) or out.ndim < 1 or len(out) != len(batch) \
                        or (parts and tuple(out.shape[1:]) != parts[0].shape[1:]):
                    return out
                parts.append(out.detach().double().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(parts)


def labels_of(model: Any, images: np.ndarray) -> dict[str, Any]:
    """``{"shape": shape of the outputs, "labels": index of the largest output of each image}``."""
    out = outputs(model, images)
    if not isinstance(out, np.ndarray):
        return {"shape": list(out.shape) if hasattr(out, "shape") else type(out).__name__, "labels": None}
    labels = np.argmax(out.reshape(len(out), -1), axis=1).astype(np.int64) if out.size else None
    return {"shape": list(out.shape), "labels": labels}


def validation_labels_of(model: Any, images: np.ndarray) -> dict[str, Any]:
    """:func:`labels_of` for the validation images, computed once per state of ``model`` (two cells ask)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    key = ("validation_labels", id(model), digest.hexdigest(), len(images))
    if key not in _cache:
        _cache[key] = labels_of(model, images)
    return _cache[key]


def _model(probe: Probe, namespace: Mapping[str, Any]) -> Any:
    """The trained ``model`` if it is a torch module (what it is, is recorded), else None."""
    probe.learner("model")
    if "model" not in namespace:
        return None
    model = namespace["model"]
    torch = _torch()
    probe.record("model_type", type(model).__name__)
    probe.record("model_is_module", isinstance(model, torch.nn.Module))
    return model if isinstance(model, torch.nn.Module) else None


# ---------------------------------------------------------------- build_model


def cases_build_model(rng: np.random.Generator) -> np.ndarray:
    """Ordinary images (uint8 ``N x 28 x 28``) the fresh network is run on."""
    n = int(rng.integers(5, 12))
    return rng.integers(0, 256, size=(n, 28, 28)).astype(np.uint8)


def check_build_model(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Call ``build_model()`` twice; record what came back and the first network's outputs on drawn images."""

    def run(probe: Probe) -> None:
        torch = _torch()
        build_model = probe.learner("build_model")
        if not callable(build_model):
            return
        with _own_random_state():
            built = probe.attempt("build", lambda: (build_model(), build_model()))
        if built is FAILED:
            return
        fresh, other = built
        probe.record("type", type(fresh).__name__)
        probe.record("is_module", isinstance(fresh, torch.nn.Module))
        if not isinstance(fresh, torch.nn.Module):
            return
        probe.record("same_object", fresh is other)
        probe.record("parameters", sum(p.numel() for p in fresh.parameters()))
        probe.call("outputs", lambda: outputs(fresh.to("cpu"), cases_build_model(probe.rng)))

    return one_call(namespace, "check_build_model", seed, run)


# ---------------------------------------------------------------- accuracy


@dataclass(frozen=True)
class AccuracyCase:
    """``accuracy(Sequential(Flatten(), Linear(784, 10)) with W, b, X, y)``."""

    W: np.ndarray
    b: np.ndarray
    X: np.ndarray
    y: np.ndarray


def cases_accuracy(rng: np.random.Generator) -> AccuracyCase:
    """A linear model whose class for image ``i`` is ``chosen[i]``, by a wide margin; about half the labels agree."""
    n = int(rng.integers(500, 700))
    W = (0.002 * rng.standard_normal((10, 784))).astype(np.float32)
    W[np.arange(10), np.arange(10)] += 1.0
    b = (0.01 * rng.standard_normal(10)).astype(np.float32)
    X = rng.uniform(0.0, 1.0, size=(n, 784))
    X[:, :10] = rng.uniform(0.0, 0.4, size=(n, 10))
    chosen = rng.integers(0, 10, size=n)
    X[np.arange(n), chosen] = rng.uniform(0.9, 1.0, size=n)
    y = np.where(rng.uniform(size=n) < 0.45, chosen, rng.integers(0, 10, size=n)).astype(np.int64)
    return AccuracyCase(W, b, X.astype(np.float32).reshape(n, 1, 28, 28), y)


def linear_model(case: AccuracyCase) -> Any:
    """``Sequential(Flatten(), Linear(784, 10))`` with the case's weights; the learner's random stream is untouched."""
    torch = _torch()
    with _own_random_state():
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    with torch.no_grad():
        net[1].weight.copy_(torch.from_numpy(case.W))
        net[1].bias.copy_(torch.from_numpy(case.b))
    return net


def check_accuracy_function(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Call ``accuracy(model, X, y)`` on a drawn model and data; record the value, parameters and gradients after."""

    def run(probe: Probe) -> None:
        torch = _torch()
        accuracy = probe.learner("accuracy")
        if not callable(accuracy):
            return
        case = cases_accuracy(probe.rng)
        net = linear_model(case)
        with _own_random_state():
            probe.call("value", accuracy, net, torch.from_numpy(case.X), torch.from_numpy(case.y))
        probe.record("parameters_after", [p.detach().cpu().numpy().copy() for p in net.parameters()])
        probe.record("gradients", [p.grad is not None for p in net.parameters()])

    return one_call(namespace, "check_accuracy_function", seed, run)


# ---------------------------------------------------------------- files and reported numbers


def _exists(probe: Probe, key: str, name: str) -> bool:
    exists = Path(name).exists()
    probe.record(key, exists)
    return exists


def check_saved_model(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Load ``model.pt`` into ``build_model()``; record both networks' labels for validation images."""

    def run(probe: Probe) -> None:
        torch = _torch()
        build_model = probe.learner("build_model")
        model = _model(probe, namespace)
        if not _exists(probe, "file_exists", MODEL_FILE):
            return
        state = probe.attempt("load", lambda: torch.load(MODEL_FILE, map_location="cpu", weights_only=True))
        if state is FAILED:
            return
        probe.record("state_type", type(state).__name__)
        if not isinstance(state, dict) or not callable(build_model) or model is None:
            return
        with _own_random_state():
            reloaded = probe.attempt("build", build_model)
        if reloaded is FAILED:
            return
        if probe.attempt("load_state_dict", lambda: reloaded.load_state_dict(state)) is FAILED:
            return
        images = _validation(probe)
        if images is None:
            return
        images = images[:SAVED_MODEL_IMAGES]
        probe.call("reloaded_labels", lambda: labels_of(reloaded.to("cpu"), images))
        probe.call("model_labels", labels_of, model, images)

    return one_call(namespace, "check_saved_model", seed, run)


def check_predictions(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Record what ``predictions.npy`` holds and the labels ``model`` predicts for the validation images."""

    def run(probe: Probe) -> None:
        model = _model(probe, namespace)
        if not _exists(probe, "file_exists", PREDICTIONS_FILE):
            return
        saved = probe.attempt("saved", lambda: np.load(PREDICTIONS_FILE, allow_pickle=False))
        if saved is FAILED:
            return
        probe.record("saved", saved if isinstance(saved, np.ndarray) else type(saved).__name__)
        probe.record("saved_dtype", str(getattr(saved, "dtype", type(saved).__name__)))
        images = _validation(probe)
        if images is not None and model is not None:
            probe.call("model_labels", validation_labels_of, model, images)

    return one_call(namespace, "check_predictions", seed, run)


def check_val_accuracy(namespace: Mapping[str, Any], seed: int | None = None) -> None:
    """Record ``val_accuracy`` and the labels ``model`` predicts for the validation images."""

    def run(probe: Probe) -> None:
        probe.learner("val_accuracy")
        if "val_accuracy" in namespace:
            probe.record("val_accuracy", namespace["val_accuracy"])
        model = _model(probe, namespace)
        images = _validation(probe)
        if images is not None and model is not None:
            probe.call("model_labels", validation_labels_of, model, images)

    return one_call(namespace, "check_val_accuracy", seed, run)


# ---------------------------------------------------------------- the test set


def cases_test_accuracy(rng: np.random.Generator) -> np.ndarray:
    """The grader's test images (the same for every seed)."""
    return grader_test_images()


def submitted_model_labels(probe: Probe, build_model: Any, images: np.ndarray) -> None:
    """Load ``model.pt`` into a fresh ``build_model()`` and record its labels for ``images`` (or what went wrong).

    Records ``file_exists``, ``file_bytes``, then the outcome of each step (``load``,
    ``state_type``, ``build``, ``load_state_dict``) and finally ``test_labels``. The
    labels of one file and one ``build_model`` are computed once per kernel: the four
    test cells share them.
    """
    torch = _torch()
    if not _exists(probe, "file_exists", MODEL_FILE):
        return
    data = Path(MODEL_FILE).read_bytes()
    probe.record("file_bytes", len(data))
    key = ("test_labels", hashlib.sha256(data).hexdigest(), id(build_model), len(images))
    if key in _cache:
        for item, value in _cache[key]:
            probe.record(item, value)
        return
    steps: list[tuple[str, Any]] = []

    def keep(item: str, value: Any) -> None:
        steps.append((item, value))
        probe.record(item, value)

    state = probe.attempt("load", lambda: torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
    if state is FAILED:
        return
    keep("state_type", type(state).__name__)
    if not isinstance(state, dict) or not callable(build_model):
        return
    with _own_random_state():
        net = probe.attempt("build", build_model)
    if net is FAILED:
        return
    keep("is_module", isinstance(net, torch.nn.Module))
    if not isinstance(net, torch.nn.Module):
        return
    if probe.attempt("load_state_dict", lambda: net.load_state_dict(state)) is FAILED:
        return
    result = probe.call("test_labels", labels_of, net.to("cpu"), images)
    if result is not FAILED:
        steps.append(("test_labels", result))
        _cache[key] = steps


def _test_accuracy(behaviour: str) -> Any:
    def check(namespace: Mapping[str, Any], seed: int | None = None) -> None:
        def run(probe: Probe) -> None:
            build_model = probe.learner("build_model")
            submitted_model_labels(probe, build_model, cases_test_accuracy(probe.rng))

        return one_call(namespace, behaviour, seed, run)

    check.__name__ = check.__qualname__ = behaviour
    check.__doc__ = "Record the labels ``build_model()`` loaded with ``model.pt`` predicts for the grader's test images."
    return check


check_test_accuracy_60 = _test_accuracy("check_test_accuracy_60")
check_test_accuracy_75 = _test_accuracy("check_test_accuracy_75")
check_test_accuracy_85 = _test_accuracy("check_test_accuracy_85")
check_test_accuracy_90 = _test_accuracy("check_test_accuracy_90")
