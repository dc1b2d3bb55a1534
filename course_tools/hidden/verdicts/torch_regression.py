"""Verdicts of ``03_torch_regression`` (course spec, section 7).

- :func:`check_structure`: ``Regressor(hidden)`` is an ``nn.Module`` computing
  Linear(1, h) -> tanh -> Linear(h, h) -> tanh -> Linear(h, 1) (its forward pass,
  with the drawn weights, against the same network in float64);
- :func:`check_evaluate`: ``evaluate(model, x, y)`` returns the MSE as a float and changes nothing;
- :func:`check_train_function`: ``train(model, x, y, epochs=, lr=)`` is full-batch Adam on the
  MSE (replayed here on the same initial weights and data) and returns the loss of every step;
- :func:`check_training_run`: the learner's own run (``model``, ``losses``) lowered the loss, and
  ``model`` is the model ``losses`` comes from;
- :func:`check_heldout_loose`, :func:`check_heldout_target`: the trained ``model``'s MSE on
  held-out points is below a threshold. The probe recorded predictions for inputs drawn from
  the seed; the targets (the genuine :func:`mytorch_lib.data.regression_target` plus noise drawn
  from the same seed) and the error are computed here only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from course_tools.hidden.probes import torch_regression as probes
from course_tools.hidden.probes.kit import rng
from course_tools.hidden.verdicts.kit import Evidence, Opaque, Wrong, assert_close, torch64

#: Standard deviation of the noise of the held-out targets (as in the notebook's data).
NOISE = 0.15
NOISE_VARIANCE = NOISE**2  # the best possible MSE on noisy held-out points
#: Held-out MSE thresholds of the two graded cells (the reference reaches about 0.026,
#: a straight line about 0.51; see ``python -m course_tools baselines``).
LOOSE_MSE, TARGET_MSE = 0.10, 0.05
#: Tolerances of float32 training against the replayed reference.
LOSS_RTOL, LOSS_ATOL = 2e-4, 1e-6
PARAM_RTOL, PARAM_ATOL = 1e-3, 1e-5


def _defined_here(evidence: Evidence, name: str, kind: str, what: str) -> dict[str, Any]:
    """The recorded definition of ``name``: a ``kind`` written in the notebook (not imported)."""
    definition = evidence.definition(name)
    if definition.get("kind") == "missing":
        raise Wrong(f"{name} is not defined: run the cell that defines {what}")
    if definition.get("kind") != kind:
        raise Wrong(f"{name} should be a {kind}, got {definition.get('kind')}")
    if definition.get("module") != "__main__":
        raise Wrong(f"{name} must be the {kind} written in this notebook, not one from {definition.get('module')}")
    return definition


def _python_float(evidence: Evidence, key: str) -> bool:
    """Whether the value recorded under ``key`` is a Python float (NumPy's float64 is one too)."""
    item = evidence.items.get(key)
    return isinstance(item, dict) and "float" in item and item.get("type") in ("float", "float64")


def _type_name(evidence: Evidence, key: str, value: Any) -> str:
    item = evidence.items.get(key)
    if isinstance(item, dict) and "float" in item:
        return str(item.get("type"))
    return value.type_name if isinstance(value, Opaque) else type(value).__name__


def _is_tensor(evidence: Evidence, key: str) -> bool:
    item = evidence.items.get(key)
    return isinstance(item, dict) and "tensor" in item


# ---------------------------------------------------------------- structure


def forward64(network: probes.Network, x: np.ndarray) -> np.ndarray:
    """The network of the notebook, in float64."""
    import torch

    (w1, b1), (w2, b2), (w3, b3) = [(torch64(W), torch64(b)) for W, b in network.layers]
    h = torch.tanh(torch64(x) @ w1.T + b1)
    h = torch.tanh(h @ w2.T + b2)
    return (h @ w3.T + b3).numpy()


def check_structure(evidence: Evidence) -> None:
    definition = _defined_here(evidence, "Regressor", "class", "class Regressor")
    if "torch.nn.modules.module.Module" not in definition.get("bases", ()):
        raise Wrong("Regressor must subclass torch.nn.Module (class Regressor(nn.Module): ...)")
    for k, case in enumerate(probes.cases_structure(rng(evidence.seed))):
        h = case.network.hidden
        error = evidence.raised(f"build:{k}")
        if error is not None:
            raise Wrong(f"Regressor(hidden={h}) failed: {error}; the constructor takes the hidden width as `hidden`")
        if evidence.has(f"type:{k}"):
            raise Wrong(f"Regressor(hidden={h}) did not make an nn.Module")
        linears = evidence.value(f"linears:{k}", f"the layers of Regressor(hidden={h})")
        try:
            found = sorted((int(i), int(o)) for i, o, _ in linears)
            biases = [bool(has_bias) for _, _, has_bias in linears]
        except (TypeError, ValueError):
            raise Wrong("the record of this check is malformed (was grading code replaced?)") from None
        expected = sorted([(1, h), (h, h), (h, 1)])
        if found != expected:
            raise Wrong(f"Regressor(hidden={h}) should hold three nn.Linear layers of shapes (in, out) = "
                        f"(1, {h}), ({h}, {h}), ({h}, 1); found {found}")
        if not all(biases):
            raise Wrong("every nn.Linear layer of Regressor needs a bias (bias=True, the default)")
        n_params = evidence.number(f"parameters:{k}", f"the number of parameters of Regressor(hidden={h})")
        expected_params = (h + h) + (h * h + h) + (h + 1)
        if n_params != expected_params:
            raise Wrong(f"Regressor(hidden={h}) has {n_params:.0f} parameters; the three linear layers have "
                        f"{expected_params}: remove any other parameter")
        what = f"Regressor(hidden={h}) on an input of shape ({len(case.x)}, 1)"
        out = evidence.value(f"forward:{k}", what)
        if not isinstance(out, np.ndarray) or out.shape != (len(case.x), 1):
            got = out.shape if isinstance(out, np.ndarray) else type(out).__name__
            raise Wrong(f"Regressor.forward should return an N x 1 tensor; for N = {len(case.x)} it returned {got}")
        try:
            assert_close(what, out, forward64(case.network, case.x), rtol=1e-4, atol=1e-5)
        except Wrong:
            raise Wrong(f"Regressor(hidden={h}) has the right layers, but forward does not compute "
                        "Linear(1, h) -> tanh -> Linear(h, h) -> tanh -> Linear(h, 1); check the order of the "
                        "layers and that tanh follows each of the two hidden layers only") from None


# ---------------------------------------------------------------- evaluate


def _unchanged(evidence: Evidence, network: probes.Network, function: str) -> None:
    after = evidence.value("parameters_after", f"the model's parameters after {function}")
    before = [array for layer in network.layers for array in layer]
    if not isinstance(after, list) or len(after) != len(before):
        raise Wrong("the record of this check is malformed (was grading code replaced?)")
    for got, want in zip(after, before):
        if not isinstance(got, np.ndarray) or got.shape != want.shape or not np.array_equal(got, want):
            raise Wrong(f"{function} changed the model's parameters: evaluation must not train")
    grads = evidence.value("gradients", "the model's gradients")
    if not isinstance(grads, list) or any(g is not False for g in grads):
        raise Wrong(f"{function} computed gradients; wrap the forward pass in `with torch.no_grad():`")


def check_evaluate(evidence: Evidence) -> None:
    _defined_here(evidence, "evaluate", "function", "the function evaluate")
    case = probes.cases_evaluate(rng(evidence.seed))
    what = f"evaluate(model, x, y) on {len(case.x)} points"
    value = evidence.value("value", what)
    if _is_tensor(evidence, "value"):
        raise Wrong("evaluate returned a tensor; return a plain Python float (use loss.item())")
    if not _python_float(evidence, "value"):
        raise Wrong(f"evaluate should return a Python float, got {_type_name(evidence, 'value', value)}")
    expected = float(np.mean((forward64(case.network, case.x) - case.y.astype(np.float64)) ** 2))
    if not math.isclose(value, expected, rel_tol=1e-4, abs_tol=1e-7):
        hint = "average the squared differences over all points"
        if math.isclose(value, expected * len(case.x), rel_tol=1e-4):
            hint = "you summed the squared differences: " + hint
        raise Wrong(f"{what} does not return the mean squared error of the model's predictions; {hint}")
    _unchanged(evidence, case.network, "evaluate")


# ---------------------------------------------------------------- train


def reference_train(case: probes.TrainCase, *, zero_grad: bool = True, record_after_step: bool = False
                    ) -> tuple[list[float], list[np.ndarray]]:
    """The loop the notebook asks for, on the case's model (float32, CPU); the flags give two classic slips.

    Returns the losses and the parameters after training. It runs on one thread, as the
    notebook's kernel does, so the float32 sums add up in the same order on every machine.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _replay(case, zero_grad=zero_grad, record_after_step=record_after_step)
    finally:
        torch.set_num_threads(threads)


def _replay(case: probes.TrainCase, *, zero_grad: bool, record_after_step: bool
            ) -> tuple[list[float], list[np.ndarray]]:
    import torch

    with torch.random.fork_rng(devices=[]):
        model = probes.sequential(case.network)
        x, y = torch.from_numpy(case.x), torch.from_numpy(case.y)
        optimizer = torch.optim.Adam(model.parameters(), lr=case.lr)
        loss_fn = torch.nn.MSELoss()
        losses = []
        for _ in range(case.epochs):
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
    return losses, [p.detach().numpy().copy() for p in model.parameters()]


def _close_lists(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(math.isclose(u, v, rel_tol=LOSS_RTOL, abs_tol=LOSS_ATOL) for u, v in zip(a, b))


def check_train_function(evidence: Evidence) -> None:
    _defined_here(evidence, "train", "function", "the function train")
    case = probes.cases_train(rng(evidence.seed))
    what = f"train(model, x, y, epochs={case.epochs}, lr={case.lr}) on {len(case.x)} points"
    losses = evidence.value("losses", what)
    if not isinstance(losses, (list, tuple)):
        raise Wrong(f"train should return a list of losses, got {type(losses).__name__}")
    if len(losses) != case.epochs:
        raise Wrong(f"train(..., epochs={case.epochs}) returned {len(losses)} losses; append one per epoch")
    items = evidence.items["losses"].get("list", [])
    if any(isinstance(item, dict) and "tensor" in item for item in items):
        raise Wrong("train returned tensors in its list; append plain floats (loss.item())")
    if not all(isinstance(v, (float, int)) and not isinstance(v, bool) for v in losses):
        raise Wrong("train should return a list of Python floats")
    losses = [float(v) for v in losses]
    expected, parameters = reference_train(case)
    if not _close_lists(losses, expected):
        hints = []
        if _close_lists(losses, reference_train(case, zero_grad=False)[0]):
            hints.append("the gradients pile up from step to step: call optimizer.zero_grad() before backward()")
        if _close_lists(losses, reference_train(case, record_after_step=True)[0]):
            hints.append("record the loss you called backward() on, before optimizer.step()")
        if math.isclose(losses[0], expected[0], rel_tol=LOSS_RTOL) and not hints:
            hints.append("the first loss is right but later ones differ: use torch.optim.Adam(model.parameters(), "
                         "lr=lr) with no other options, nn.MSELoss(), and all points in every step")
        if not hints:
            hints.append("the first loss is already wrong: compute the MSE of model(x) against y on all points")
        first = next(i for i, (u, v) in enumerate(zip(losses, expected))
                     if not math.isclose(u, v, rel_tol=LOSS_RTOL, abs_tol=LOSS_ATOL))
        raise Wrong(f"{what}: the losses differ from full-batch Adam on the MSE from epoch {first + 1} on; "
                    + "; ".join(hints))
    after = evidence.value("parameters_after", "the model's parameters after train")
    if not isinstance(after, list) or len(after) != len(parameters):
        raise Wrong("the record of this check is malformed (was grading code replaced?)")
    for got, want in zip(after, parameters):
        ok = isinstance(got, np.ndarray) and got.shape == want.shape and np.allclose(got, want, rtol=PARAM_RTOL,
                                                                                      atol=PARAM_ATOL)
        if not ok:
            raise Wrong(f"after train the model's parameters differ from {case.epochs} Adam steps: train must update "
                        "the model it is given, in place")


# ---------------------------------------------------------------- the learner's run and held-out points


def _predictions(evidence: Evidence, n: int) -> np.ndarray:
    """The trained model's recorded predictions for ``n`` inputs (``n x 1``)."""
    definition = evidence.definition("model")
    if definition.get("kind") == "missing":
        raise Wrong("model is not defined: run the cell that trains model (the training cell)")
    if evidence.value("model_is_module", "model") is not True:
        raise Wrong(f"model should be your trained torch.nn.Module, got {evidence.value('model_type', 'model')}")
    out = evidence.value("predictions", f"model on an input of shape ({n}, 1)")
    if not isinstance(out, np.ndarray) or out.shape != (n, 1):
        got = out.shape if isinstance(out, np.ndarray) else (out.type_name if isinstance(out, Opaque)
                                                             else type(out).__name__)
        raise Wrong(f"the model should map an N x 1 tensor to an N x 1 tensor; for N = {n} it gave {got}")
    return out.astype(np.float64)


def _mse(prediction: np.ndarray, y: np.ndarray) -> float:
    with np.errstate(all="ignore"):
        mse = float(np.mean((prediction - y) ** 2))
    return mse if math.isfinite(mse) else math.inf


def training_targets() -> np.ndarray:
    """Targets of the notebook's training points (the genuine library, in the grading process)."""
    from mytorch_lib.data import make_regression_1d

    return make_regression_1d(probes.TRAIN_SIZE, seed=probes.TRAIN_SEED)[1]


def training_mse(evidence: Evidence) -> float:
    x = probes.cases_training_run(rng(evidence.seed))
    return _mse(_predictions(evidence, len(x)), training_targets())


def check_training_run(evidence: Evidence) -> None:
    if evidence.definition("model").get("kind") == "missing":
        raise Wrong("model is not defined: run the cell that defines the trained model (the training cell)")
    if evidence.definition("losses").get("kind") == "missing":
        raise Wrong("losses is not defined: run the cell that defines the list of losses (the training cell)")
    _defined_here(evidence, "Regressor", "class", "class Regressor")
    if evidence.value("model_is_regressor", "model") is not True:
        raise Wrong(f"model should be a Regressor, got {evidence.value('model_type', 'model')}")
    losses = evidence.value("losses", "losses")
    values = []
    for v in losses if isinstance(losses, (list, tuple)) else [None]:
        if isinstance(v, np.ndarray) and v.size == 1:
            v = float(v.reshape(()))
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise Wrong("losses should be the list of floats returned by train")
        values.append(float(v))
    if len(values) < 2:
        raise Wrong(f"losses holds {len(values)} value(s): train for more than one epoch")
    if not all(math.isfinite(v) for v in values):
        raise Wrong("losses contains NaN or infinity: lower the learning rate")
    if not values[-1] <= 0.5 * values[0]:
        raise Wrong(f"the loss went from {values[0]:.4g} to {values[-1]:.4g}; training should at least "
                    "halve it (more epochs, or a different learning rate)")
    mse = training_mse(evidence)
    if not mse <= 1.5 * values[-1] + 1e-3:
        raise Wrong(f"model's MSE on the training points is {mse:.4g} but the last recorded loss is "
                    f"{values[-1]:.4g}: `model` should be the model that `losses` comes from")


def heldout_targets(seed: int) -> np.ndarray:
    """Targets of the held-out points of ``seed``: the curve plus noise drawn after the inputs."""
    from mytorch_lib.data import regression_target

    generator = rng(seed)
    x = probes.cases_heldout(generator)
    return regression_target(x) + NOISE * generator.standard_normal(x.shape)


def heldout_mse(evidence: Evidence) -> float:
    """MSE of the recorded predictions against the held-out targets of the evidence's seed."""
    return _mse(_predictions(evidence, probes.HELDOUT_SIZE), heldout_targets(evidence.seed))


def _heldout(behaviour: str, threshold: float) -> Any:
    def check(evidence: Evidence) -> None:
        mse = heldout_mse(evidence)
        if not mse < threshold:
            raise Wrong(f"the trained model's mean squared error on {probes.HELDOUT_SIZE} held-out points is "
                        f"{mse:.4g}, above the threshold {threshold}; the noise alone gives about {NOISE_VARIANCE:.4f}")

    check.__name__ = check.__qualname__ = behaviour
    check.__doc__ = f"The trained model's held-out MSE is below {threshold}."
    return check


check_heldout_loose = _heldout("check_heldout_loose", LOOSE_MSE)
check_heldout_target = _heldout("check_heldout_target", TARGET_MSE)


def metrics(evidence: dict[str, Evidence]) -> dict[str, float]:
    """The grader's numbers of one run, from its records (behaviour -> evidence): records, CSV, baselines."""
    out: dict[str, float] = {}
    run = evidence.get("check_training_run")
    try:
        losses = [float(v) for v in run.value("losses", "losses")] if run else []
    except (Wrong, TypeError, ValueError):
        losses = []
    out.update(first_loss=losses[0] if losses else math.nan, last_loss=losses[-1] if losses else math.nan,
               epochs=len(losses))
    for name, behaviour, measure in (("heldout_mse", "check_heldout_target", heldout_mse),
                                     ("training_mse", "check_training_run", training_mse)):
        try:
            out[name] = measure(evidence[behaviour])
        except (KeyError, Wrong):
            out[name] = math.nan
    return out
