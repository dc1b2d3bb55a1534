"""Reproducible randomness and steady single-threaded numerics."""

from __future__ import annotations

import os
import random
import sys

import numpy as np

__all__ = ["seed_everything", "single_threaded"]

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def seed_everything(seed: int = 0) -> np.random.Generator:
    """Seed Python's ``random``, NumPy's global generator and PyTorch (if installed).

    Returns a fresh ``np.random.default_rng(seed)``: prefer passing that
    generator around to relying on global state.
    """
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:
        pass
    else:
        torch.manual_seed(seed)
    return np.random.default_rng(seed)


def single_threaded() -> None:
    """Use one thread for BLAS and PyTorch: steadier timings on small machines.

    The environment variables only take effect for libraries loaded after this
    call; PyTorch's thread count is set directly if PyTorch is already imported
    (this function never imports it, so NumPy-only notebooks stay torch-free).
    """
    for name in _THREAD_VARIABLES:
        os.environ.setdefault(name, "1")
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
