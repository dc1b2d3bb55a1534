"""Helpers for the MyTorch course notebooks.

This package holds infrastructure only: checks with clear messages, a numeric
gradient checker, reproducible seeding, toy data, plots and a small training
loop. It never contains a solution to an exercise.

Glossary used in every docstring (one alphabet everywhere):

- ``N``: number of samples in a batch (rows).
- ``C``, ``Cin``, ``Cout``: number of features (columns), in and out of a layer.
- ``A``: what an activation outputs (and a linear layer takes in), ``N x C``.
- ``Z``: what a linear or BatchNorm layer outputs, ``N x C``.
- ``dLdX``: gradient of the scalar loss with respect to ``X``; same shape as ``X``.
"""

from mytorch_lib.checks import (
    CheckFailure,
    as_answer_array,
    call_checked,
    check_close,
    check_scalar,
    check_shape,
    check_type,
)
from mytorch_lib.gradcheck import check_layer_gradients, numeric_gradient, relative_error
from mytorch_lib.notebooks import import_from_notebook
from mytorch_lib.seeding import seed_everything, single_threaded

__all__ = [
    "CheckFailure",
    "as_answer_array",
    "call_checked",
    "check_close",
    "check_layer_gradients",
    "check_scalar",
    "check_shape",
    "check_type",
    "import_from_notebook",
    "numeric_gradient",
    "relative_error",
    "seed_everything",
    "single_threaded",
]

__version__ = "0.1.0"
