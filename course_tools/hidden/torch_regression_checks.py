"""Hidden tests of the PyTorch regression notebook (course spec, section 7).

Each ``check_*`` function takes the notebook namespace (``globals()``) and
checks one behaviour, failing with an ``AssertionError`` a learner can act on:

- :func:`check_structure`: ``Regressor(hidden)`` is an ``nn.Module`` computing
  Linear(1, h) -> tanh -> Linear(h, h) -> tanh -> Linear(h, 1);
- :func:`check_evaluate`: ``evaluate(model, x, y)`` returns the MSE as a float
  and changes nothing;
- :func:`check_train_function`: ``train(model, x, y, epochs=, lr=)`` is full-batch
  Adam on the MSE and returns the loss of every step;
- :func:`check_training_run`: the learner's own run (``model``, ``losses``)
  lowered the loss;
- :func:`check_heldout_mse`: the trained ``model`` predicts points it never saw
  (generated here, with a seed the notebook does not know) with an MSE below a
  threshold.

Everything runs on the CPU in float32 (the learner's model is copied there), so
results do not depend on a GPU being present.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Mapping

import numpy as np

from course_tools.hidden.common import learner_class
from course_tools.hidden.torch_common import learner_function, learner_model, learner_value, torch_module
from mytorch_lib.data import make_regression_1d

#: The notebook's training set: ``make_regression_1d(TRAIN_SIZE, seed=TRAIN_SEED)``.
TRAIN_SIZE, TRAIN_SEED = 128, 0
#: Held-out points, drawn like the training points but with a seed only the grader knows.
HELDOUT_SIZE, HELDOUT_SEED = 2000, 7_340_211
NOISE_VARIANCE = 0.15**2  # the best possible MSE on noisy held-out points
#: Held-out MSE thresholds of the two graded cells (the reference reaches about 0.026,
#: a straight line about 0.51; see ``python -m course_tools.torch_baselines``).
LOOSE_MSE, TARGET_MSE = 0.10, 0.05


def _tensor(array: np.ndarray) -> Any:
    torch = torch_module()
    return torch.tensor(np.asarray(array, dtype=np.float32))


def _cpu_module(model: Any, what: str) -> Any:
    """A CPU float32 copy of ``model`` in eval mode (the learner's object is left untouched)."""
    torch = torch_module()
    if not isinstance(model, torch.nn.Module):
        raise AssertionError(f"{what} should be a torch.nn.Module, got {type(model).__name__}")
    try:
        clone = copy.deepcopy(model)
    except Exception as error:  # noqa: BLE001 (any failure is the learner's to fix)
        raise AssertionError(f"{what} cannot be copied ({type(error).__name__}: {error}); "
                             "keep only layers and tensors in the model") from None
    return clone.to("cpu").float().eval()


def predict(model: Any, x: np.ndarray) -> np.ndarray:
    """Predictions ``N x 1`` (float64) of ``model`` for inputs ``x`` of shape ``N x 1``, without gradients."""
    torch = torch_module()
    clone = _cpu_module(model, "the model")
    with torch.no_grad():
        out = clone(_tensor(x))
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(x), 1):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise AssertionError(f"the model should map an N x 1 tensor to an N x 1 tensor; for N = {len(x)} it gave {shape}")
    return out.double().numpy()


def heldout_mse(model: Any) -> float:
    """MSE of ``model`` on the grader's held-out points (noisy targets, like the training data)."""
    x, y = make_regression_1d(HELDOUT_SIZE, seed=HELDOUT_SEED)
    prediction = predict(model, x)
    with np.errstate(all="ignore"):
        mse = float(np.mean((prediction - y) ** 2))
    return mse if math.isfinite(mse) else math.inf


def training_mse(model: Any) -> float:
    """MSE of ``model`` on the notebook's training points."""
    x, y = make_regression_1d(TRAIN_SIZE, seed=TRAIN_SEED)
    with np.errstate(all="ignore"):
        return float(np.mean((predict(model, x) - y) ** 2))


# ---------------------------------------------------------------- structure


def _linear_layers(model: Any) -> list[Any]:
    torch = torch_module()
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)]


def _reference_forward(x: Any, layers: list[tuple[Any, Any]]) -> Any:
    torch = torch_module()
    (w1, b1), (w2, b2), (w3, b3) = layers
    h = torch.tanh(x @ w1.T + b1)
    h = torch.tanh(h @ w2.T + b2)
    return h @ w3.T + b3


def check_structure(namespace: Mapping[str, Any]) -> None:
    """``Regressor(hidden=h)``: Linear(1, h) -> tanh -> Linear(h, h) -> tanh -> Linear(h, 1)."""
    torch = torch_module()
    Regressor = learner_class(namespace, "Regressor")
    if not issubclass(Regressor, torch.nn.Module):
        raise AssertionError("Regressor must subclass torch.nn.Module (class Regressor(nn.Module): ...)")
    generator = torch.Generator().manual_seed(11)
    for hidden in (5, 17):
        try:
            model = Regressor(hidden=hidden)
        except TypeError as error:
            raise AssertionError(f"Regressor(hidden={hidden}) failed: {error}; "
                                 "the constructor takes the hidden width as `hidden`") from None
        linears = _linear_layers(model)
        shapes = sorted((m.in_features, m.out_features) for m in linears)
        expected = sorted([(1, hidden), (hidden, hidden), (hidden, 1)])
        if shapes != expected:
            raise AssertionError(f"Regressor(hidden={hidden}) should hold three nn.Linear layers of shapes "
                                 f"(in, out) = (1, {hidden}), ({hidden}, {hidden}), ({hidden}, 1); found {shapes}")
        if any(m.bias is None for m in linears):
            raise AssertionError("every nn.Linear layer of Regressor needs a bias (bias=True, the default)")
        n_params = sum(p.numel() for p in model.parameters())
        expected_params = (hidden + hidden) + (hidden * hidden + hidden) + (hidden + 1)
        if n_params != expected_params:
            raise AssertionError(f"Regressor(hidden={hidden}) has {n_params} parameters; the three linear layers "
                                 f"have {expected_params}: remove any other parameter")
        by_shape = {(m.in_features, m.out_features): m for m in linears}
        ordered = [by_shape[(1, hidden)], by_shape[(hidden, hidden)], by_shape[(hidden, 1)]]
        values = []
        with torch.no_grad():
            for layer in ordered:
                w = torch.randn(layer.weight.shape, generator=generator)
                b = torch.randn(layer.bias.shape, generator=generator)
                layer.weight.copy_(w)
                layer.bias.copy_(b)
                values.append((w, b))
            x = torch.linspace(-3, 3, 41).reshape(-1, 1)
            try:
                out = model(x)
            except Exception as error:  # noqa: BLE001
                raise AssertionError(f"Regressor(hidden={hidden}) failed on an input of shape (41, 1): "
                                     f"{type(error).__name__}: {error}") from None
            if not isinstance(out, torch.Tensor) or tuple(out.shape) != (41, 1):
                got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise AssertionError(f"Regressor.forward should return an N x 1 tensor; for N = 41 it returned {got}")
            expected_out = _reference_forward(x, values)
            if not torch.allclose(out.float(), expected_out, rtol=1e-4, atol=1e-5):
                worst = float((out.float() - expected_out).abs().max())
                raise AssertionError(
                    f"Regressor(hidden={hidden}) has the right layers, but forward does not compute "
                    f"Linear(1, h) -> tanh -> Linear(h, h) -> tanh -> Linear(h, 1) (largest difference {worst:.3g}); "
                    "check the order of the layers and that tanh follows each of the two hidden layers only")


# ---------------------------------------------------------------- evaluate


def _reference_model(hidden: int, seed: int) -> Any:
    torch = torch_module()
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    nn = torch.nn
    model = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))
    torch.random.set_rng_state(torch_state)  # the learner's random stream is not disturbed
    return model


def check_evaluate(namespace: Mapping[str, Any]) -> None:
    """``evaluate(model, x, y)`` returns the mean squared error as a Python float and changes nothing."""
    torch = torch_module()
    evaluate = learner_function(namespace, "evaluate")
    model = _reference_model(6, seed=3)
    before = copy.deepcopy(model.state_dict())
    rng = np.random.default_rng(5)
    x_np = rng.uniform(-3, 3, size=(300, 1))
    y_np = np.sin(x_np) + 0.1 * rng.standard_normal((300, 1))
    x, y = _tensor(x_np), _tensor(y_np)
    with torch.no_grad():
        expected = float(((model(x) - y) ** 2).mean())
    value = evaluate(model, x, y)
    if isinstance(value, torch.Tensor):
        raise AssertionError("evaluate returned a tensor; return a plain Python float (use loss.item())")
    if not isinstance(value, float):
        raise AssertionError(f"evaluate should return a Python float, got {type(value).__name__}")
    if not math.isclose(value, expected, rel_tol=1e-4, abs_tol=1e-7):
        raise AssertionError(f"evaluate returned {value:.6g} for a model whose mean squared error on those "
                             f"points is {expected:.6g}; average the squared differences over all points")
    for name, tensor in model.state_dict().items():
        if not torch.equal(tensor, before[name]):
            raise AssertionError(f"evaluate changed the model's parameter {name}: evaluation must not train")
    if any(p.grad is not None for p in model.parameters()):
        raise AssertionError("evaluate computed gradients; wrap the forward pass in `with torch.no_grad():`")


# ---------------------------------------------------------------- train


def reference_train(model: Any, x: Any, y: Any, *, epochs: int, lr: float, zero_grad: bool = True,
                    record_after_step: bool = False) -> list[float]:
    """The loop the notebook asks for (full-batch Adam on the MSE); the flags give two classic slips."""
    torch = torch_module()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.MSELoss()
    losses = []
    for _ in range(epochs):
        if zero_grad:
            optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        if record_after_step:
            with torch.no_grad():
                losses.append(float(loss_fn(model(x), y)))
        else:
            losses.append(loss.item())
    return losses


def _close_lists(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(math.isclose(u, v, rel_tol=2e-4, abs_tol=1e-6) for u, v in zip(a, b))


def check_train_function(namespace: Mapping[str, Any]) -> None:
    """``train(model, x, y, epochs=, lr=)``: full-batch Adam steps on the MSE, returns the loss of each step."""
    torch = torch_module()
    train = learner_function(namespace, "train")
    x_np, y_np = make_regression_1d(40, seed=2024)
    x, y = _tensor(x_np), _tensor(y_np)
    epochs, lr = 25, 0.02
    start = _reference_model(8, seed=9)
    trained_copy = copy.deepcopy(start)
    losses = train(trained_copy, x, y, epochs=epochs, lr=lr)
    if not isinstance(losses, (list, tuple)):
        raise AssertionError(f"train should return a list of losses, got {type(losses).__name__}")
    if len(losses) != epochs:
        raise AssertionError(f"train(..., epochs={epochs}) returned {len(losses)} losses; append one per epoch")
    if any(isinstance(v, torch.Tensor) for v in losses):
        raise AssertionError("train returned tensors in its list; append plain floats (loss.item())")
    if not all(isinstance(v, (float, int)) for v in losses):
        raise AssertionError("train should return a list of Python floats")
    losses = [float(v) for v in losses]
    expected = reference_train(copy.deepcopy(start), x, y, epochs=epochs, lr=lr)
    if not _close_lists(losses, expected):
        hints = []
        if _close_lists(losses, reference_train(copy.deepcopy(start), x, y, epochs=epochs, lr=lr, zero_grad=False)):
            hints.append("the gradients pile up from step to step: call optimizer.zero_grad() before backward()")
        if _close_lists(losses, reference_train(copy.deepcopy(start), x, y, epochs=epochs, lr=lr,
                                                record_after_step=True)):
            hints.append("record the loss you called backward() on, before optimizer.step()")
        if math.isclose(losses[0], expected[0], rel_tol=2e-4) and not hints:
            hints.append("the first loss is right but later ones differ: use torch.optim.Adam(model.parameters(), "
                         "lr=lr) with no other options, nn.MSELoss(), and all points in every step")
        if not hints:
            hints.append("the first loss is already wrong: compute the MSE of model(x) against y on all points")
        raise AssertionError(f"train's losses differ from full-batch Adam on the MSE: got {losses[:3]}..., "
                             f"expected {expected[:3]}...; " + "; ".join(hints))
    reference = copy.deepcopy(start)
    reference_train(reference, x, y, epochs=epochs, lr=lr)
    for (name, got), want in zip(trained_copy.state_dict().items(), reference.state_dict().values()):
        if not torch.allclose(got.float(), want, rtol=1e-3, atol=1e-5):
            raise AssertionError(f"after train the model's parameter {name} differs from {epochs} Adam steps: "
                                 "train must update the model it is given, in place")


# ---------------------------------------------------------------- the learner's run


def check_training_run(namespace: Mapping[str, Any]) -> None:
    """The learner's run: ``losses`` went down to at most half the first value, and ``model`` is the trained model."""
    model = learner_value(namespace, "model", "the trained model (the training cell)")
    losses = learner_value(namespace, "losses", "the list of losses (the training cell)")
    Regressor = learner_class(namespace, "Regressor")
    if not isinstance(model, Regressor):
        raise AssertionError(f"model should be a Regressor, got {type(model).__name__}")
    try:
        values = [float(v) for v in losses]
    except (TypeError, ValueError):
        raise AssertionError("losses should be the list of floats returned by train") from None
    if len(values) < 2:
        raise AssertionError(f"losses holds {len(values)} value(s): train for more than one epoch")
    if not all(math.isfinite(v) for v in values):
        raise AssertionError("losses contains NaN or infinity: lower the learning rate")
    if not values[-1] <= 0.5 * values[0]:
        raise AssertionError(f"the loss went from {values[0]:.4g} to {values[-1]:.4g}; training should at least "
                             "halve it (more epochs, or a different learning rate)")
    mse = training_mse(model)
    if not mse <= 1.5 * values[-1] + 1e-3:
        raise AssertionError(f"model's MSE on the training points is {mse:.4g} but the last recorded loss is "
                             f"{values[-1]:.4g}: `model` should be the model that `losses` comes from")


def check_heldout_mse(namespace: Mapping[str, Any], threshold: float) -> None:
    """The trained ``model``'s MSE on the grader's held-out points is below ``threshold``.

    Returns nothing on purpose: a number left as a cell's last value would be
    taken by nbgrader as the cell's (partial) score.
    """
    model = learner_model(namespace)
    mse = heldout_mse(model)
    if not mse < threshold:
        raise AssertionError(f"the trained model's mean squared error on held-out points is {mse:.4g}, "
                             f"above the threshold {threshold}; the noise alone gives about {NOISE_VARIANCE:.4f}")


def metrics(namespace: Mapping[str, Any]) -> dict[str, float]:
    """Numbers the evaluation script reports for a run of the notebook."""
    model = namespace.get("model")
    losses = list(namespace.get("losses") or [math.nan])
    out = {"first_loss": float(losses[0]), "last_loss": float(losses[-1]), "epochs": len(losses)}
    for name, measure in (("heldout_mse", heldout_mse), ("training_mse", training_mse)):
        try:
            out[name] = measure(model)
        except AssertionError:
            out[name] = math.nan
    return out
