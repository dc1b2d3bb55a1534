"""Verdicts of ``02_numpy_library/5_batchnorm``: BatchNorm1d (course spec, section 6).

Training-mode output and gradients are compared with
``torch.nn.functional.batch_norm(..., training=True, eps=1e-8)`` in float64, on the
batches the probe drew from the cell's seed (:mod:`course_tools.hidden.probes.batchnorm`).
Running statistics are computed here with the BIASED batch variance (torch keeps the
unbiased one and calls ``1 - alpha`` momentum); eval mode and the batch of one sample,
which torch refuses in training, are worked out from the spec's formulas.

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

Any right formula scores (``np.var``, ``E[Z^2] - M^2``, ``einsum``, the closed-form
backward, in-place running updates); warnings are harmless.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from course_tools.hidden.probes import batchnorm as probes
from course_tools.hidden.probes.kit import rng
from course_tools.hidden.verdicts.kit import Evidence, Wrong, as_array, assert_close, torch64, vectorised, \
    written_here

NAME = probes.NAME
EPS = 1e-8
DEFAULT_ALPHA = 0.9
#: Output values are O(1) (or O(1e4) where eps decides); any correct formula agrees to ~1e-12.
RTOL, ATOL = 1e-7, 1e-8
#: how much slower than the calibration (a few element-wise passes over Z) forward + backward + eval
#: forward may be. Measured on a 2-core machine running three such cells at once besides its own load:
#: right answers (the notebook's, the closed-form backward, E[Z^2] - M^2) take up to about 14 times the
#: calibration, never more than a third of this allowance; a Python loop over the samples of the tall
#: batch takes 600 times or more, and even the cheapest loop over the features of the wide batch (one
#: sum per feature) about 45 times.
SPEED_RATIO = 25.0
SPEED_SLACK = 0.03


def _raised(evidence: Evidence, key: str, what: str) -> None:
    error = evidence.raised(key)
    if error is not None:
        raise Wrong(f"{what} raised {error}")


def _row(evidence: Evidence, key: str, what: str, name: str, C: int) -> np.ndarray:
    """The layer's attribute ``name`` recorded under ``key``, as a float64 1 x C array, or a clear failure."""
    value = evidence.attribute(key, f"{what}: {name}",
                               f"the layer has no attribute {name}; the tests read it by this exact name")
    return as_array(f"{what}: {name}", value, (1, C))


def _output(evidence: Evidence, key: str, what: str, shape: tuple[int, ...]) -> np.ndarray:
    return as_array(what, evidence.value(key, what), shape)


def torch_training(Z: np.ndarray, BW: np.ndarray, Bb: np.ndarray,
                   dLdBZ: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Training-mode BatchNorm by PyTorch in float64: ``BZ`` and, given ``dLdBZ``, the gradients."""
    import torch.nn.functional as F

    z, w, b = torch64(Z, True), torch64(BW.ravel(), True), torch64(Bb.ravel(), True)
    out = F.batch_norm(z, None, None, w, b, training=True, eps=EPS)
    result = {"BZ": out.detach().numpy().copy()}
    if dLdBZ is not None:
        out.backward(torch64(dLdBZ))
        result.update(dLdZ=z.grad.numpy().copy(), dLdBW=w.grad.numpy().reshape(1, -1).copy(),
                      dLdBb=b.grad.numpy().reshape(1, -1).copy())
    return result


# ---------------------------------------------------------------- init

def _call(case: probes.InitCase) -> str:
    arguments = [str(case.C), *map(str, case.args), *(f"{k}={v}" for k, v in case.kwargs.items())]
    return f"{NAME}({', '.join(arguments)})"


def check_init(evidence: Evidence) -> None:
    """Constructor: the six 1 x C float64 arrays with the spec's values, none shared."""
    written_here(evidence, NAME)
    starts = {"BW": 1.0, "Bb": 0.0, "dLdBW": 0.0, "dLdBb": 0.0, "running_M": 0.0, "running_V": 1.0}
    for k, case in enumerate(probes.cases_init(rng(evidence.seed))):
        what = _call(case)
        _raised(evidence, f"init:{k}", what)
        for name, start in starts.items():
            value = evidence.attribute(f"{name}:{k}", f"{what}: {name}",
                                       f"the layer has no attribute {name}; the tests read it by this exact name")
            array = as_array(f"{what}: {name}", value, (1, case.C))
            if value.dtype != np.float64:
                raise Wrong(f"{what}: {name} has dtype {value.dtype}, expected float64")
            assert_close(f"{what}: {name}", array, np.full((1, case.C), start), rtol=0, atol=0)
        shared = evidence.value(f"shared:{k}", what)
        if not isinstance(shared, list):
            raise Wrong("the record of this check is malformed (was grading code replaced?)")
        if shared:
            pair = shared[0]
            names = " and ".join(str(n) for n in pair) if isinstance(pair, list) else str(pair)
            raise Wrong(f"{what}: {names} are the same array in memory; create each with its own "
                        "np.ones/np.zeros call")
    what = f"two layers {NAME}({probes.TWO_LAYERS_C})"
    _raised(evidence, "init:first", f"{NAME}({probes.TWO_LAYERS_C})")
    _raised(evidence, "init:second", f"{NAME}({probes.TWO_LAYERS_C})")
    shared = evidence.value("shared:two", what)
    if not isinstance(shared, list):
        raise Wrong("the record of this check is malformed (was grading code replaced?)")
    if shared:
        raise Wrong(f"two {NAME} layers share the array {shared[0]}: create it inside __init__, "
                    "not as a class attribute")


# ---------------------------------------------------------------- forward in training mode

def check_forward_train(evidence: Evidence) -> None:
    """Training-mode output BZ equals PyTorch's, including a constant and a near-constant feature."""
    written_here(evidence, NAME)
    for i, step in enumerate(probes.cases_forward_train(rng(evidence.seed))):
        C = step.Z.shape[1]
        _raised(evidence, f"init:{i}", f"{NAME}({C})")
        expected = torch_training(step.Z, step.params.BW, step.params.Bb)["BZ"]
        what = f"{NAME}({C}).forward(Z) for Z of shape {step.Z.shape}"
        assert_close(what, _output(evidence, f"out:{i}", what, step.Z.shape), expected, rtol=RTOL, atol=ATOL)
        what = f"{NAME}({C}).forward(Z, eval=False) for Z of shape {step.Z.shape}"
        assert_close(what, _output(evidence, f"out:{i}:eval=False", what, step.Z.shape), expected,
                     rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------- running statistics

def _running(alpha: float, batches: tuple[np.ndarray, ...], unbiased: bool = False) -> list[tuple[np.ndarray, ...]]:
    """Running mean and variance after each batch (the spec: biased variance, old value weighted by alpha)."""
    C = batches[0].shape[1]
    M, V, out = np.zeros((1, C)), np.ones((1, C)), []
    for Z in batches:
        M = alpha * M + (1 - alpha) * Z.mean(axis=0, keepdims=True)
        V = alpha * V + (1 - alpha) * Z.var(axis=0, keepdims=True, ddof=1 if unbiased and len(Z) > 1 else 0)
        out.append((M, V))
    return out


def _running_hint(alpha: float, batches: tuple[np.ndarray, ...], step: int, name: str, actual: np.ndarray) -> str:
    """A hint naming the usual mistake when ``actual`` matches it."""
    variants = {
        "alpha and 1 - alpha are swapped: the OLD running value is weighted by alpha": (1 - alpha, False),
        "use the biased variance (divide by N, as V in the forward pass), not the unbiased one": (alpha, True),
    }
    index = 0 if name == "running_M" else 1
    for hint, (a, unbiased) in variants.items():
        with np.errstate(all="ignore"):
            candidate = _running(a, batches[:step + 1], unbiased)[-1][index]
            if np.allclose(actual, candidate, rtol=1e-9, atol=1e-12):
                return hint
    return f"{name} := alpha * {name} + (1 - alpha) * (this batch's statistic), once per training forward"


def check_running_stats(evidence: Evidence) -> None:
    """running_M and running_V after each of several training steps (one of a single sample), two alphas."""
    written_here(evidence, NAME)
    for r, run in enumerate(probes.cases_running_stats(rng(evidence.seed))):
        label = f"{NAME}({run.C})" if run.alpha is None else f"{NAME}({run.C}, alpha={run.alpha})"
        alpha = DEFAULT_ALPHA if run.alpha is None else run.alpha
        _raised(evidence, f"init:{r}", label)
        for s, (Z, (M, V)) in enumerate(zip(run.batches, _running(alpha, run.batches))):
            _raised(evidence, f"forward:{r}:{s}", f"{label}: training forward {s + 1} (Z of shape {Z.shape})")
            for name, expected in (("running_M", M), ("running_V", V)):
                what = f"{label}: {name} after {s + 1} training forward call(s)"
                actual = _row(evidence, f"{name}:{r}:{s}", what, name, run.C)
                try:
                    assert_close(what, actual, expected, rtol=1e-9, atol=1e-12)
                except Wrong as wrong:
                    raise Wrong(f"{wrong}\n  hint: {_running_hint(alpha, run.batches, s, name, actual)}") from None


# ---------------------------------------------------------------- eval mode

def check_eval(evidence: Evidence) -> None:
    """Eval mode normalises with the running statistics and changes no attribute."""
    written_here(evidence, NAME)
    for i, case in enumerate(probes.cases_eval(rng(evidence.seed))):
        C = case.Z.shape[1]
        _raised(evidence, f"init:{i}", f"{NAME}({C})")
        p = case.params
        expected = p.BW * (case.Z - case.running_M) / np.sqrt(case.running_V + EPS) + p.Bb
        what = f"{NAME}({C}).forward(Z, eval=True) for Z of shape {case.Z.shape}"
        assert_close(what, _output(evidence, f"out:{i}", what, case.Z.shape), expected, rtol=RTOL, atol=ATOL)
        for name, before in (("running_M", case.running_M), ("running_V", case.running_V), ("BW", p.BW),
                             ("Bb", p.Bb)):
            after = _row(evidence, f"{name}:{i}", what, name, C)
            if not np.array_equal(after, before):
                raise Wrong(f"{what} changed {name}: eval mode must leave the running statistics "
                            "and the parameters as they are (update them only in training mode)")


# ---------------------------------------------------------------- backward

def check_backward_params(evidence: Evidence) -> None:
    """dLdBW and dLdBb equal PyTorch's gradients, step after step on one layer (no accumulation)."""
    written_here(evidence, NAME)
    C = probes.PARAMS_C
    _raised(evidence, "init", f"{NAME}({C})")
    for s, step in enumerate(probes.cases_backward_params(rng(evidence.seed))):
        N = step.Z.shape[0]
        label = f"{NAME}({C}), step {s + 1} with N = {N}"
        _raised(evidence, f"forward:{s}", f"{label}: forward(Z)")
        _raised(evidence, f"backward:{s}", f"{label}: backward(dLdBZ)")
        expected = torch_training(step.Z, step.params.BW, step.params.Bb, step.dLdBZ)
        for name in ("dLdBW", "dLdBb"):
            what = f"{NAME}({C}).backward(dLdBZ), step {s + 1} with N = {N}: {name}"
            actual = _row(evidence, f"{name}:{s}", what, name, C)
            try:
                assert_close(what, actual, expected[name], rtol=RTOL, atol=ATOL)
            except Wrong as wrong:
                hint = ("sum over the samples (axis 0) and keep the 1 x C shape" if s == 0 else
                        "assign the new gradient in backward instead of adding it to the old one")
                raise Wrong(f"{wrong}\n  hint: {hint}") from None


def _forward_then_backward(evidence: Evidence, i: int, step: probes.Step) -> tuple[str, np.ndarray]:
    """(what, dLdZ) after the learner's forward and backward on ``step``, failing on an exception or a wrong shape."""
    C = step.Z.shape[1]
    _raised(evidence, f"init:{i}", f"{NAME}({C})")
    what = f"{NAME}({C}).backward(dLdBZ) after forward(Z) with Z of shape {step.Z.shape}"
    evidence.value(f"out:{i}", f"{NAME}({C}).forward(Z) for Z of shape {step.Z.shape}")
    dLdZ = evidence.value(f"dLdZ:{i}", what)
    return what, as_array(what, dLdZ, step.Z.shape)


def check_backward_input(evidence: Evidence) -> None:
    """The returned dLdZ equals PyTorch's gradient with respect to the input."""
    written_here(evidence, NAME)
    for i, step in enumerate(probes.cases_backward_input(rng(evidence.seed))):
        what, dLdZ = _forward_then_backward(evidence, i, step)
        expected = torch_training(step.Z, step.params.BW, step.params.Bb, step.dLdBZ)["dLdZ"]
        assert_close(f"{what}: the returned dLdZ", dLdZ, expected, rtol=1e-6,
                     atol=1e-9 * float(np.abs(expected).max()))


def check_batch_of_one(evidence: Evidence) -> None:
    """N = 1 in training mode: output Bb, no nan, and the gradients worked out by hand (torch refuses N = 1)."""
    written_here(evidence, NAME)
    for i, step in enumerate(probes.cases_batch_of_one(rng(evidence.seed))):
        C = step.Z.shape[1]
        what = f"{NAME}({C}) with a batch of one sample"
        _raised(evidence, f"init:{i}", f"{NAME}({C})")
        out = _output(evidence, f"out:{i}", f"{what}: forward(Z)", (1, C))
        # One sample: M = Z, V = 0, NZ = 0 / sqrt(eps) = 0, so BZ = Bb.
        assert_close(f"{what}: forward(Z) (NZ is 0 when N = 1, so BZ = Bb)", out, step.params.Bb,
                     rtol=RTOL, atol=ATOL)
        dLdZ = _output(evidence, f"dLdZ:{i}", f"{what}: backward", (1, C))
        # NZ = 0 whatever Z is, so the loss cannot depend on Z, and dLdBW = sum(dLdBZ * NZ) = 0.
        assert_close(f"{what}: the dLdZ returned by backward (NZ stays 0 whatever the sample is)", dLdZ,
                     np.zeros((1, C)), rtol=0, atol=1e-6)
        assert_close(f"{what}: dLdBb", _row(evidence, f"dLdBb:{i}", what, "dLdBb", C), step.dLdBZ,
                     rtol=RTOL, atol=ATOL)
        assert_close(f"{what}: dLdBW", _row(evidence, f"dLdBW:{i}", what, "dLdBW", C), np.zeros((1, C)),
                     rtol=0, atol=1e-6)


# ---------------------------------------------------------------- speed

def check_vectorised(evidence: Evidence) -> None:
    """forward, backward and eval forward on a tall and a wide batch run at NumPy speed."""
    written_here(evidence, NAME)
    for k, (N, C, loop) in enumerate(probes.LARGE):
        what = f"{NAME} (forward, backward, eval forward) on a {N} x {C} batch"
        seconds = evidence.seconds(f"seconds:{k}", what)
        calibration = evidence.seconds(f"calibration:{k}", "the timing of whole-array NumPy work")
        if not (np.isfinite(calibration) and calibration > 0):
            raise Wrong("the record of this check is malformed (was grading code replaced?)")
        vectorised(f"{what} (a Python loop {loop} is the usual cause)", seconds, calibration,
                   ratio=SPEED_RATIO, slack=SPEED_SLACK)
