"""Verdicts of ``02_numpy_library/6_bonus_adam_dropout``: Adam and Dropout (course spec, section 9).

- ``adam_init``: ``Adam(model, lr, betas, eps)`` stores ``l`` and ``L`` as SGD does, zero moments
  ``m_W``, ``v_W``, ``m_b``, ``v_b`` (float64, one per parameter, shaped like it), ``t = 0``, and
  leaves the parameters alone;
- ``adam_step``: after every one of several steps, each ``W`` and ``b`` is what
  ``torch.optim.Adam(lr, betas, eps, weight_decay=0, amsgrad=False)`` gives in float64, with the
  defaults, and with hidden settings by keyword and by position;
- ``dropout_train``: ``forward(A)`` returns ``A * mask / (1 - p)`` for the 0/1 mask it stores;
  the mask keeps each entry with probability ``1 - p``, independently of its neighbours and of the
  previous call (decided from its statistics on 10,000 entries, six standard errors wide: a right
  layer fails by chance less than once in 10^7 gradings, all twelve statistics together); ``p = 0`` keeps everything; whole-array code;
- ``dropout_eval``: ``forward(A, train=False)`` returns ``A`` unchanged, also after a training call;
- ``dropout_backward``: ``backward(G)`` returns ``G * mask / (1 - p)`` with the mask of the
  latest forward.

Only parameters are compared after an Adam step, never the moments: moments updated in place,
or a step size folded into one factor, give the same parameters and score. NumPy replays of
typical slips (no bias correction, eps inside the square root) only sharpen the message.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from course_tools.hidden.probes import adam_dropout as probes
from course_tools.hidden.probes.kit import rng
from course_tools.hidden.probes.sgd import ARCHITECTURES, STEPS
from course_tools.hidden.verdicts.kit import Evidence, Wrong, assert_close, torch64, written_here
from course_tools.hidden.verdicts.layers import vectorised_timings
from course_tools.hidden.verdicts.sgd import describe, layers_kept, parameters_untouched, raised, zero_arrays

RTOL = 1e-10
ATOL = 1e-12
DEFAULTS = {"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-8}
#: How many standard errors a mask statistic may stray before it is judged wrong.
SPREAD = 6.0

ADAM_HINT = ("hint: first t := t + 1; then for W and for b of every layer, each with its own moments, "
             "m := beta1 m + (1 - beta1) g, v := beta2 v + (1 - beta2) g^2, and the step uses the bias-corrected "
             "m / (1 - beta1^t) and v / (1 - beta2^t)")
SLIPS = {
    "no_bias_correction": "your parameters follow Adam without bias correction: divide m by (1 - beta1^t) and v by "
                          "(1 - beta2^t), with t the number of steps taken so far, this one included",
    "eps_inside": "your parameters follow a step with eps inside the square root: the step divides by "
                  "sqrt(v_hat) + eps",
    "t_late": "your bias correction uses the step count before this step: increase self.t first, so the first "
              "step divides by (1 - beta1^1)",
}


def _settings(run: probes.AdamRun) -> dict[str, Any]:
    return {**DEFAULTS, **run.settings}


def _call(run: probes.AdamRun) -> str:
    settings = run.settings
    if not settings:
        arguments = ""
    elif run.positional:
        arguments = f", {settings['lr']}, {settings['betas']}, {settings['eps']:.3g}"
    else:
        arguments = f", lr={settings['lr']}, betas={settings['betas']}, eps={settings['eps']:.3g}"
    return f"Adam(model{arguments}) on a model with layers {describe(run.start.architecture)}"


# ---------------------------------------------------------------- adam_init

def check_adam_init(evidence: Evidence) -> None:
    """Adam.__init__: l, L, zero moments m_W, v_W, m_b, v_b, t = 0; activations skipped; parameters untouched."""
    written_here(evidence, "Adam")
    settings, models = probes.cases_adam_init(rng(evidence.seed))
    call = f"Adam(model, lr={settings['lr']}, betas={settings['betas']}, eps={settings['eps']:.3g})"
    for m, start in enumerate(models):
        raised(evidence, f"init:{m}", f"{call} on a model with layers {describe(start.architecture)}")
        layers_kept(evidence, str(m), ARCHITECTURES[start.architecture], call, owner="Adam")
        for name in probes.MOMENTS:
            zero_arrays(evidence, str(m), name, start.W if name.endswith("W") else start.b, owner="Adam")
        t = evidence.attribute(f"t:{m}", "Adam.t", "set self.t = 0 in __init__ (the tests read it)")
        if isinstance(t, bool) or not isinstance(t, (int, float)) or t != 0:
            raise Wrong(f"Adam.t should start at 0 (no step taken yet), got {t!r}")
        parameters_untouched(evidence, str(m), start, owner="Adam")
    raised(evidence, "init:activations", "Adam(model) on a model made of activations only")
    stored = evidence.attribute("l:activations", "Adam.l", "set self.l in __init__ (the tests read it)")
    count = evidence.attribute("L:activations", "Adam.L", "set self.L in __init__ (the tests read it)")
    if stored != [] or isinstance(count, bool) or count != 0:
        raise Wrong("Adam on a model made of activations only should have l = [] and L = 0")


# ---------------------------------------------------------------- adam_step

def _torch_path(run: probes.AdamRun) -> list[list[np.ndarray]]:
    """torch.optim.Adam's parameters (W and b of every layer, in order) after each step."""
    import torch

    settings = _settings(run)
    params = [torch64(p, True) for pair in zip(run.start.W, run.start.b) for p in pair]
    optimizer = torch.optim.Adam(params, lr=settings["lr"], betas=settings["betas"], eps=settings["eps"],
                                 weight_decay=0, amsgrad=False, foreach=False)
    path = []
    for k in range(STEPS):
        grads = [g for pair in zip(run.dLdW[k], run.dLdb[k]) for g in pair]
        for p, g in zip(params, grads):
            p.grad = torch64(g)
        optimizer.step()
        path.append([p.detach().numpy().copy() for p in params])
    return path


def _slip_path(run: probes.AdamRun, slip: str) -> list[list[np.ndarray]]:
    """The parameters after each step of Adam with one typical slip (for the message only)."""
    settings = _settings(run)
    lr, (beta1, beta2), eps = settings["lr"], settings["betas"], settings["eps"]
    params = [p.copy() for pair in zip(run.start.W, run.start.b) for p in pair]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    path = []
    for k in range(STEPS):
        t = k if slip == "t_late" else k + 1
        grads = [g for pair in zip(run.dLdW[k], run.dLdb[k]) for g in pair]
        for i, g in enumerate(grads):
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            with np.errstate(all="ignore"):
                m_hat = m[i] if slip == "no_bias_correction" else m[i] / (1 - beta1 ** t)
                v_hat = v[i] if slip == "no_bias_correction" else v[i] / (1 - beta2 ** t)
                denominator = np.sqrt(v_hat + eps) if slip == "eps_inside" else np.sqrt(v_hat) + eps
                params[i] = params[i] - lr * m_hat / denominator
        path.append([p.copy() for p in params])
    return path


def _learner_path(evidence: Evidence, t: int, count: int) -> list[list[np.ndarray]] | None:
    """The learner's parameters after each step, interleaved W, b per layer (None if unreadable)."""
    path = []
    for k in range(STEPS):
        try:
            W, b = evidence.value(f"W:{t}:{k}", "W"), evidence.value(f"b:{t}:{k}", "b")
        except Wrong:
            return None
        if not (isinstance(W, list) and isinstance(b, list) and len(W) == len(b) == count):
            return None
        path.append([p for pair in zip(W, b) for p in pair])
    return path


def _follows(learner: list[list[np.ndarray]], expected: list[list[np.ndarray]]) -> bool:
    for got_step, want_step in zip(learner, expected):
        for got, want in zip(got_step, want_step):
            if not (isinstance(got, np.ndarray) and got.shape == want.shape
                    and np.allclose(got, want, rtol=1e-8, atol=1e-12)):
                return False
    return True


def _diagnosis(evidence: Evidence, t: int, run: probes.AdamRun) -> str:
    learner = _learner_path(evidence, t, len(run.start.W))
    if learner is None:
        return ADAM_HINT
    for slip, message in SLIPS.items():
        if _follows(learner, _slip_path(run, slip)):
            return message
    return ADAM_HINT


def _run_failure(evidence: Evidence, t: int, run: probes.AdamRun) -> Wrong | None:
    """Why run ``t`` is wrong (None when every parameter after every step is torch's)."""
    call = _call(run)
    try:
        raised(evidence, f"init:{t}", call)
        for k, expected in enumerate(_torch_path(run)):
            raised(evidence, f"step:{t}:{k}", f"step {k + 1} of {call}: step()")
            for name, offset in (("W", 0), ("b", 1)):
                stored = evidence.value(f"{name}:{t}:{k}", f"the parameters after step {k + 1}")
                if not isinstance(stored, list) or len(stored) != len(run.start.W):
                    raise Wrong("the record of this check is malformed (was grading code replaced?)")
                for j, actual in enumerate(stored):
                    what = f"{call}, after step {k + 1}: layer {j} of Adam.l, {name}"
                    assert_close(what, actual, expected[2 * j + offset], rtol=RTOL, atol=ATOL)
    except Wrong as wrong:
        return wrong
    return None


def check_adam_step(evidence: Evidence) -> None:
    """Adam.step: torch.optim.Adam's parameters after each of several steps (defaults and hidden settings)."""
    written_here(evidence, "Adam")
    runs = probes.cases_adam_step(rng(evidence.seed))
    failures = [_run_failure(evidence, t, run) for t, run in enumerate(runs)]
    for t, (run, failure) in enumerate(zip(runs, failures)):
        if failure is None:
            continue
        if not run.settings and not any(failures[t + 1:]):
            raise Wrong(f"{failure}\n  with lr, betas and eps given, your Adam is right: Adam(model) should "
                        "default to lr=0.001, betas=(0.9, 0.999), eps=1e-8")
        raise Wrong(f"{failure}\n  {_diagnosis(evidence, t, run)}")


# ---------------------------------------------------------------- Dropout

def _rate(case: probes.DropoutCase) -> float:
    return 0.5 if case.p is None else case.p


def _name(case: probes.DropoutCase) -> str:
    return "Dropout()" if case.p is None else f"Dropout({case.p})"


def _input_kept(evidence: Evidence, key: str, A: np.ndarray, what: str) -> None:
    if evidence.value(key, f"the input of {what}") != probes.input_digest(A):
        raise Wrong(f"{what} changed its input array A in place: return a new array (in a network, the layer "
                    "before keeps that array as its own stored output)")


def _mask(evidence: Evidence, key: str, what: str, shape: tuple[int, ...]) -> np.ndarray:
    """The stored mask as a float64 array of 0s and 1s, failing clearly otherwise."""
    mask = evidence.attribute(key, f"{what}: self.mask", "store the mask of 0s and 1s as self.mask in forward")
    if not isinstance(mask, np.ndarray):
        raise Wrong(f"{what}: self.mask should be a numpy array, got {type(mask).__name__}")
    if mask.shape != tuple(shape):
        raise Wrong(f"{what}: self.mask has shape {mask.shape}, expected {tuple(shape)} (one entry per entry of A)")
    mask = mask.astype(np.float64)
    if not np.all((mask == 0) | (mask == 1)):
        raise Wrong(f"{what}: self.mask should hold only 0s and 1s (or False and True); the scaling by "
                    "1 / (1 - p) belongs in the returned value, not in the mask")
    return mask


def _output(evidence: Evidence, key: str, what: str, A: np.ndarray, mask: np.ndarray, p: float,
            towards: str) -> None:
    """The output is ``A * mask / (1 - p)``, with a message naming the likely slip."""
    actual = evidence.array(key, what, A.shape)
    try:
        assert_close(f"{what}, compared with {towards} * mask / (1 - p) for your stored mask", actual,
                     A * mask / (1 - p), rtol=1e-12, atol=1e-300)
    except Wrong as wrong:
        if p > 0 and np.allclose(actual, A * mask, rtol=1e-12, atol=0):
            raise Wrong(f"{wrong}\n  the kept entries are not scaled: divide by the keep probability 1 - p "
                        "(inverted dropout), so that the expected value stays the same") from None
        if p > 0 and np.allclose(actual, A * mask / p, rtol=1e-12, atol=0):
            raise Wrong(f"{wrong}\n  divide by the keep probability 1 - p, not by p") from None
        raise Wrong(f"{wrong}\n  in training, forward returns A * mask / (1 - p) and backward "
                    "dLdA * mask / (1 - p), with the same mask") from None


def _within(value: float, expected: float, count: int) -> bool:
    spread = SPREAD * np.sqrt(max(expected * (1 - expected), 1e-12) / count)
    return abs(value - expected) <= spread


def _statistics(evidence: Evidence, i: int, case: probes.DropoutCase, what: str, mask: np.ndarray) -> None:
    """Entries drawn independently (neighbours agree as often as independent draws at the kept rate
    would), the kept fraction 1 - p, and a second call's mask independent of the first."""
    p = _rate(case)
    kept = float(mask.mean())
    agree = kept * kept + (1 - kept) * (1 - kept)
    for axis, along in ((1, "a row (one sample)"), (0, "a column (one feature)")):
        first, second = np.moveaxis(mask, axis, 0)[:-1], np.moveaxis(mask, axis, 0)[1:]
        if not _within(float(np.mean(first == second)), agree, first.size):
            raise Wrong(f"{what}: neighbouring entries along {along} of self.mask are not independent: draw one "
                        "random number per entry of A (a mask of A's shape)")
    if not _within(kept, 1 - p, mask.size):
        if _within(kept, p, mask.size):
            raise Wrong(f"{what} kept {kept:.1%} of the entries, about p = {p}: p is the probability to drop an "
                        "entry, so keep each one with probability 1 - p")
        default = " (the default is p = 0.5)" if case.p is None else ""
        raise Wrong(f"{what} kept {kept:.1%} of the entries: each entry should be kept with probability "
                    f"1 - p{default}")
    raised(evidence, f"again:{i}", f"a second {what}")
    again = _mask(evidence, f"mask:{i}:again", f"a second {what}", mask.shape)
    if not _within(float(np.mean(again == mask)), agree, mask.size):
        raise Wrong(f"two calls of {what} dropped the same entries: draw a new mask at every forward call in "
                    "training (and do not re-seed the random generator there)")


def check_dropout_train(evidence: Evidence) -> None:
    """Dropout.forward in training: A * mask / (1 - p) with a 0/1 mask of the right statistics; vectorised."""
    written_here(evidence, "Dropout")
    for i, case in enumerate(probes.cases_dropout_train(rng(evidence.seed))):
        what = f"{_name(case)}.forward(A) on A of shape {case.A.shape}"
        raised(evidence, f"init:{i}", _name(case))
        mask = _mask(evidence, f"mask:{i}", what, case.A.shape)
        _output(evidence, f"out:{i}", what, case.A, mask, _rate(case), "A")
        _input_kept(evidence, f"input:{i}", case.A, what)
        if case.p == 0 and not np.all(mask == 1):
            raise Wrong(f"{what} dropped entries: with p = 0 every entry is kept")
        if case.A.size >= 1000:
            _statistics(evidence, i, case, what, mask)
    vectorised_timings(evidence, "Dropout(0.5).forward", len(probes.TIMING_SHAPES))


def check_dropout_eval(evidence: Evidence) -> None:
    """Dropout.forward(A, train=False) returns A unchanged, also after a training call."""
    written_here(evidence, "Dropout")
    for i, case in enumerate(probes.cases_dropout_eval(rng(evidence.seed))):
        raised(evidence, f"init:{i}", _name(case))
        for key, what in ((f"out:{i}", f"{_name(case)}.forward(A, train=False)"),
                          (f"out:{i}:after", f"{_name(case)}.forward(A, False) after a training forward")):
            actual = evidence.array(key, what, case.A.shape)
            if np.array_equal(actual, case.A):
                continue
            if np.allclose(actual, case.A * (1 - _rate(case)), rtol=1e-12, atol=0):
                raise Wrong(f"{what} scaled A by 1 - p: with inverted dropout the scaling happens in training, "
                            "so evaluation returns A unchanged")
            raise Wrong(f"{what} should return A unchanged (in evaluation nothing is dropped or scaled)")
        _input_kept(evidence, f"input:{i}", case.A, f"{_name(case)}.forward(A, train=False)")


def check_dropout_backward(evidence: Evidence) -> None:
    """Dropout.backward(G) after a training forward: G * mask / (1 - p) with the stored mask."""
    written_here(evidence, "Dropout")
    for i, case in enumerate(probes.cases_dropout_backward(rng(evidence.seed))):
        what = f"{_name(case)}.backward(dLdA) after forward(A) on A of shape {case.A.shape}"
        raised(evidence, f"init:{i}", _name(case))
        raised(evidence, f"forward:{i}", f"{_name(case)}.forward(A)")
        mask = _mask(evidence, f"mask:{i}", f"{_name(case)}.forward(A)", case.A.shape)
        _output(evidence, f"out:{i}", what, case.G, mask, _rate(case), "dLdA")
