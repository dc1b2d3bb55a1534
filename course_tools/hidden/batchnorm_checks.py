"""Hidden tests of the BatchNorm notebook (``02_numpy_library/5_batchnorm.ipynb``).

Each ``check_*`` function grades one behaviour of the learner's
``BatchNorm1d`` (course spec, section 6) and is called from one graded cell
with the notebook's ``globals()``. Inputs are fresh random float64 batches
whose shapes differ from the visible ones. Training-mode output and gradients
are compared with ``torch.nn.functional.batch_norm(..., training=True,
eps=1e-8)``; running statistics are computed here with the BIASED batch
variance (torch keeps the unbiased one and calls ``1 - alpha`` momentum), and
the batch of one sample, which torch refuses in training, is worked out by hand.

Model answer to the notebook's ungraded exercise (the matrix equations; ``1_N``
is an N x 1 column of ones, ``1_N X`` repeats a 1 x C row X over N rows, which
NumPy broadcasting does by itself; ``*`` and ``/`` are element-wise)::

    M     = 1/N 1_N^T Z                                  np.mean(Z, axis=0, keepdims=True)
    D     = Z - 1_N M
    V     = 1/N 1_N^T (D * D)
    NZ    = D / (1_N sqrt(V + eps))
    BZ    = (1_N BW) * NZ + 1_N Bb
    running_M = alpha running_M + (1 - alpha) M;  running_V likewise with V
    dLdBW = 1_N^T (dLdBZ * NZ)                            np.sum(..., axis=0, keepdims=True)
    dLdBb = 1_N^T dLdBZ
    dLdNZ = dLdBZ * (1_N BW)
    dLdV  = -1/2 (1_N^T (dLdNZ * D)) * (V + eps)^(-3/2)
    dLdM  = -(1_N^T dLdNZ) * (V + eps)^(-1/2) - 2/N dLdV * (1_N^T D)
    dLdZ  = dLdNZ * 1_N (V + eps)^(-1/2) + 2/N (1_N dLdV) * D + 1/N 1_N dLdM
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from course_tools.hidden import common, reference

EPS = 1e-8
NAME = "BatchNorm1d"
ARRAYS = ("BW", "Bb", "dLdBW", "dLdBb", "running_M", "running_V")
# Output values are O(1) (or O(1e4) where eps decides); any correct formula agrees to ~1e-12.
RTOL, ATOL = 1e-7, 1e-8


def _learner(namespace: Mapping[str, Any]) -> type:
    cls = common.learner_class(namespace, NAME)
    common.forbid(cls, common.NO_TORCH)
    return cls


def _row(what: str, layer: Any, name: str, C: int) -> np.ndarray:
    """The learner's attribute ``name`` as a float64 1 x C array, or a clear failure."""
    if not hasattr(layer, name):
        raise AssertionError(f"{what}: the layer has no attribute {name}; the tests read it by this exact name")
    return common.as_float64(f"{what}: {name}", getattr(layer, name), (1, C))


def _batch(rng: np.random.Generator, N: int, C: int) -> np.ndarray:
    """N x C float64 batch whose features have different offsets and scales."""
    offsets = rng.uniform(-5, 5, size=(1, C))
    scales = rng.uniform(0.2, 4, size=(1, C))
    return offsets + scales * rng.standard_normal((N, C))


def _with_params(layer: Any, rng: np.random.Generator, C: int) -> tuple[np.ndarray, np.ndarray]:
    """Give the layer random BW, Bb (1 x C); returns copies of them."""
    BW = rng.uniform(0.5, 2, size=(1, C)) * rng.choice([-1.0, 1.0], size=(1, C))
    Bb = rng.standard_normal((1, C))
    layer.BW, layer.Bb = BW.copy(), Bb.copy()
    return BW, Bb


def torch_training(Z: np.ndarray, BW: np.ndarray, Bb: np.ndarray,
                   dLdBZ: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Training-mode BatchNorm by PyTorch in float64: ``BZ`` and, given ``dLdBZ``, the gradients."""
    import torch
    import torch.nn.functional as F

    z, w, b = common.torch64(Z, True), common.torch64(BW.ravel(), True), common.torch64(Bb.ravel(), True)
    out = F.batch_norm(z, None, None, w, b, training=True, eps=EPS)
    result = {"BZ": out.detach().numpy().copy()}
    if dLdBZ is not None:
        out.backward(common.torch64(dLdBZ))
        result.update(dLdZ=z.grad.numpy().copy(), dLdBW=w.grad.numpy().reshape(1, -1).copy(),
                      dLdBb=b.grad.numpy().reshape(1, -1).copy())
    return result


def _forward(what: str, layer: Any, Z: np.ndarray, **kwargs: Any) -> np.ndarray:
    out = layer.forward(Z.copy(), **kwargs)
    return common.as_float64(what, out, Z.shape)


# --------------------------------------------------------------------------- graded behaviours


def check_init(namespace: Mapping[str, Any]) -> None:
    """Constructor: the six 1 x C float64 arrays with the spec's values, none shared."""
    cls = _learner(namespace)
    expected = {"BW": 1.0, "Bb": 0.0, "dLdBW": 0.0, "dLdBb": 0.0, "running_M": 0.0, "running_V": 1.0}
    for C, args, kwargs in ((7, (), {}), (2, (0.6,), {}), (5, (), {"alpha": 0.25})):
        what = f"{NAME}({', '.join([str(C), *map(str, args), *(f'{k}={v}' for k, v in kwargs.items())])})"
        layer = cls(C, *args, **kwargs)
        for name, value in expected.items():
            array = getattr(layer, name, None)
            _row(what, layer, name, C)
            if array.dtype != np.float64:
                raise AssertionError(f"{what}: {name} has dtype {array.dtype}, expected float64")
            common.assert_close(f"{what}: {name}", array, np.full((1, C), value), rtol=0, atol=0)
        arrays = [(name, getattr(layer, name)) for name in ARRAYS]
        for i, (a_name, a) in enumerate(arrays):
            for b_name, b in arrays[i + 1:]:
                if np.shares_memory(a, b):
                    raise AssertionError(f"{what}: {a_name} and {b_name} are the same array in memory; "
                                         "create each with its own np.ones/np.zeros call")
    first, second = cls(3), cls(3)
    for name in ARRAYS:
        if np.shares_memory(getattr(first, name), getattr(second, name)):
            raise AssertionError(f"two {NAME} layers share the array {name}: create it inside __init__, "
                                 "not as a class attribute")


def check_forward_train(namespace: Mapping[str, Any]) -> None:
    """Training-mode output BZ equals PyTorch's, including a constant and a near-constant feature."""
    cls = _learner(namespace)
    rng = common.rng(501)
    for N, C in ((9, 5), (2, 3), (40, 1), (6, 8)):
        Z = _batch(rng, N, C)
        if C >= 5:
            Z[:, 1] = 2.5  # variance 0: only eps keeps the division finite
            Z[:, 3] = 1.0 + 1e-5 * rng.standard_normal(N)  # variance ~1e-10, far below eps
        layer = cls(C)
        BW, Bb = _with_params(layer, rng, C)
        expected = torch_training(Z, BW, Bb)["BZ"]
        what = f"{NAME}({C}).forward(Z) for Z of shape {Z.shape}"
        with np.errstate(all="ignore"):
            common.assert_close(what, _forward(what, layer, Z), expected, rtol=RTOL, atol=ATOL)
            common.assert_close(f"{NAME}({C}).forward(Z, eval=False)", _forward(what, layer, Z, eval=False),
                                expected, rtol=RTOL, atol=ATOL)


def _expected_running(alpha: float, batches: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Running mean and (biased) variance after each batch, as the spec defines them."""
    M, V, out = np.zeros((1, batches[0].shape[1])), np.ones((1, batches[0].shape[1])), []
    for Z in batches:
        M = alpha * M + (1 - alpha) * Z.mean(axis=0, keepdims=True)
        V = alpha * V + (1 - alpha) * Z.var(axis=0, keepdims=True)
        out.append((M, V))
    return out


def _running_hint(alpha: float, batches: list[np.ndarray], step: int, name: str, actual: np.ndarray) -> str:
    """A hint naming the usual mistake when ``actual`` matches it."""
    variants = {
        "alpha and 1 - alpha are swapped: the OLD running value is weighted by alpha": (1 - alpha, False),
        "use the biased variance (divide by N, as V in the forward pass), not the unbiased one": (alpha, True),
    }
    index = 0 if name == "running_M" else 1
    for hint, (a, unbiased) in variants.items():
        M, V = np.zeros((1, actual.shape[1])), np.ones((1, actual.shape[1]))
        for Z in batches[:step + 1]:
            M = a * M + (1 - a) * Z.mean(axis=0, keepdims=True)
            V = a * V + (1 - a) * Z.var(axis=0, keepdims=True, ddof=1 if unbiased else 0)
        if np.allclose(actual, (M, V)[index], rtol=1e-9, atol=1e-12):
            return hint
    return f"{name} := alpha * {name} + (1 - alpha) * (this batch's statistic), once per training forward"


def check_running_stats(namespace: Mapping[str, Any]) -> None:
    """running_M and running_V after each of several training steps (one of a single sample), two alphas."""
    cls = _learner(namespace)
    rng = common.rng(502)
    for alpha, sizes, C in ((None, (6, 11, 1, 8, 20), 4), (0.7, (5, 9, 2, 13), 3)):
        layer = cls(C) if alpha is None else cls(C, alpha=alpha)
        a = 0.9 if alpha is None else alpha
        _with_params(layer, rng, C)
        batches = [_batch(rng, N, C) for N in sizes]
        label = f"{NAME}({C})" if alpha is None else f"{NAME}({C}, alpha={alpha})"
        for step, (Z, (M, V)) in enumerate(zip(batches, _expected_running(a, batches))):
            with np.errstate(all="ignore"):
                layer.forward(Z.copy())
            for name, expected in (("running_M", M), ("running_V", V)):
                what = f"{label}: {name} after {step + 1} training forward call(s)"
                actual = _row(what, layer, name, C)
                try:
                    common.assert_close(what, actual, expected, rtol=1e-9, atol=1e-12)
                except AssertionError as error:
                    raise AssertionError(f"{error}\n  hint: {_running_hint(a, batches, step, name, actual)}") from None


def check_eval(namespace: Mapping[str, Any]) -> None:
    """Eval mode normalises with the running statistics and changes no attribute."""
    cls = _learner(namespace)
    rng = common.rng(503)
    for N, C in ((7, 4), (1, 3), (12, 6)):
        layer = cls(C)
        BW, Bb = _with_params(layer, rng, C)
        running_M = rng.standard_normal((1, C))
        running_V = rng.uniform(0.1, 3, size=(1, C))
        running_V[0, 0] = 0.0  # eps must be added here too
        layer.running_M, layer.running_V = running_M.copy(), running_V.copy()
        Z = _batch(rng, N, C)
        expected = BW * (Z - running_M) / np.sqrt(running_V + EPS) + Bb
        what = f"{NAME}({C}).forward(Z, eval=True) for Z of shape {Z.shape}"
        with np.errstate(all="ignore"):
            actual = _forward(what, layer, Z, eval=True)
        common.assert_close(what, actual, expected, rtol=RTOL, atol=ATOL)
        for name, before in (("running_M", running_M), ("running_V", running_V), ("BW", BW), ("Bb", Bb)):
            after = _row(what, layer, name, C)
            if not np.array_equal(after, before):
                raise AssertionError(f"{what} changed {name}: eval mode must leave the running statistics "
                                     "and the parameters as they are (update them only in training mode)")


def check_backward_params(namespace: Mapping[str, Any]) -> None:
    """dLdBW and dLdBb equal PyTorch's gradients, step after step on one layer (no accumulation)."""
    cls = _learner(namespace)
    rng = common.rng(504)
    C = 5
    layer = cls(C)
    for step, N in enumerate((8, 3, 15)):
        BW, Bb = _with_params(layer, rng, C)
        Z, dLdBZ = _batch(rng, N, C), rng.standard_normal((N, C))
        expected = torch_training(Z, BW, Bb, dLdBZ)
        with np.errstate(all="ignore"):
            layer.forward(Z.copy())
            layer.backward(dLdBZ.copy())
        for name in ("dLdBW", "dLdBb"):
            what = f"{NAME}({C}).backward(dLdBZ), step {step + 1} with N = {N}: {name}"
            actual = _row(what, layer, name, C)
            try:
                common.assert_close(what, actual, expected[name], rtol=RTOL, atol=ATOL)
            except AssertionError as error:
                hint = ("sum over the samples (axis 0) and keep the 1 x C shape" if step == 0 else
                        "assign the new gradient in backward instead of adding it to the old one")
                raise AssertionError(f"{error}\n  hint: {hint}") from None


def check_backward_input(namespace: Mapping[str, Any]) -> None:
    """The returned dLdZ equals PyTorch's gradient with respect to the input."""
    cls = _learner(namespace)
    rng = common.rng(505)
    for N, C, scale in ((10, 4, 1.0), (2, 3, 1.0), (25, 6, 80.0), (7, 1, 0.01)):
        layer = cls(C)
        BW, Bb = _with_params(layer, rng, C)
        Z, dLdBZ = scale * _batch(rng, N, C), rng.standard_normal((N, C))
        expected = torch_training(Z, BW, Bb, dLdBZ)["dLdZ"]
        what = f"{NAME}({C}).backward(dLdBZ) after forward(Z) with Z of shape {Z.shape}"
        with np.errstate(all="ignore"):
            layer.forward(Z.copy())
            actual = layer.backward(dLdBZ.copy())
        common.assert_close(f"{what}: the returned dLdZ", common.as_float64(what, actual, Z.shape),
                            expected, rtol=1e-6, atol=1e-9 * float(np.abs(expected).max()))


def check_batch_of_one(namespace: Mapping[str, Any]) -> None:
    """N = 1 in training mode: output Bb, no nan, and the gradients worked out by hand (torch refuses N = 1)."""
    cls = _learner(namespace)
    rng = common.rng(506)
    for C in (4, 1):
        layer = cls(C)
        _, Bb = _with_params(layer, rng, C)
        Z, dLdBZ = _batch(rng, 1, C), rng.standard_normal((1, C))
        what = f"{NAME}({C}) with a batch of one sample"
        with np.errstate(all="ignore"):
            out = _forward(f"{what}: forward(Z)", layer, Z)
        # One sample: M = Z, V = 0, NZ = 0 / sqrt(eps) = 0, so BZ = Bb.
        common.assert_close(f"{what}: forward(Z) (NZ is 0 when N = 1, so BZ = Bb)", out, Bb, rtol=RTOL, atol=ATOL)
        with np.errstate(all="ignore"):
            dLdZ = layer.backward(dLdBZ.copy())
        # NZ = 0 whatever Z is, so the loss cannot depend on Z, and dLdBW = sum(dLdBZ * NZ) = 0.
        common.assert_close(f"{what}: the dLdZ returned by backward (NZ stays 0 whatever the sample is)",
                            common.as_float64(f"{what}: backward", dLdZ, (1, C)), np.zeros((1, C)), rtol=0, atol=1e-6)
        common.assert_close(f"{what}: dLdBb", _row(what, layer, "dLdBb", C), dLdBZ, rtol=RTOL, atol=ATOL)
        common.assert_close(f"{what}: dLdBW", _row(what, layer, "dLdBW", C), np.zeros((1, C)), rtol=0, atol=1e-6)


def check_vectorised(namespace: Mapping[str, Any]) -> None:
    """forward, backward and eval forward on a tall and a wide batch run at NumPy speed."""
    cls = _learner(namespace)
    rng = common.rng(507)
    for N, C, loop in ((100000, 1, "over samples"), (4, 50000, "over features")):
        Z, dLdBZ = _batch(rng, N, C), rng.standard_normal((N, C))

        def run(layer_class: type) -> None:
            layer = layer_class(C)
            layer.forward(Z)
            layer.backward(dLdBZ)
            layer.forward(Z, eval=True)

        with np.errstate(all="ignore"):
            common.assert_vectorised(f"{NAME} (forward, backward, eval forward) on a {N} x {C} batch "
                                     f"(a Python loop {loop} is the usual cause)",
                                     lambda: run(cls), lambda: run(reference.BatchNorm1d))
