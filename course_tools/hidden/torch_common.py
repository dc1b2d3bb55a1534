"""Building blocks of the hidden tests of the PyTorch notebooks.

Like :mod:`course_tools.hidden.common` for the NumPy notebooks: fetch what the
learner defined in the notebook namespace (``globals()``), failing with an
``AssertionError`` whose message a learner can act on. PyTorch is imported
lazily, inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from course_tools.hidden.integrity import require_untampered


def torch_module() -> Any:
    """The ``torch`` package (imported on first use)."""
    import torch

    return torch


def learner_value(namespace: Mapping[str, Any], name: str, what: str) -> Any:
    """``namespace[name]``; fails with "run the cell that defines <what>" when it is missing."""
    require_untampered()
    if name not in namespace:
        raise AssertionError(f"{name} is not defined: run the cell that defines {what}")
    return namespace[name]


def learner_function(namespace: Mapping[str, Any], name: str) -> Callable[..., Any]:
    """The function ``name`` as written in the notebook (not imported from elsewhere)."""
    func = learner_value(namespace, name, f"the function {name}")
    if not callable(func):
        raise AssertionError(f"{name} should be a function, got {type(func).__name__}")
    if getattr(func, "__module__", "__main__") != "__main__":
        raise AssertionError(f"{name} must be the function written in this notebook, not one from {func.__module__}")
    return func


def learner_model(namespace: Mapping[str, Any], name: str = "model") -> Any:
    """The trained ``torch.nn.Module`` the notebook left under ``name``."""
    model = learner_value(namespace, name, "the trained model (the training cell)")
    if not isinstance(model, torch_module().nn.Module):
        raise AssertionError(f"{name} should be your trained torch.nn.Module, got {type(model).__name__}")
    return model
