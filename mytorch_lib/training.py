"""A training loop with a progress bar, shared by the NumPy and PyTorch notebooks."""

from __future__ import annotations

import html
import os
import sys
import time
from typing import Any, Callable, Iterable, Iterator, TypeVar

from tqdm import tqdm

__all__ = ["EpochProgress", "fit", "is_autograding", "load_trained_model", "pick_device", "progress"]

T = TypeVar("T")


def is_autograding() -> bool:
    """True while nbgrader executes the notebook (it sets ``NBGRADER_EXECUTION``)."""
    return bool(os.environ.get("NBGRADER_EXECUTION"))


def progress(iterable: Iterable[T], *, desc: str = "", total: int | None = None) -> Iterator[T]:
    """A text progress bar written to standard output.

    Standard output, not standard error: nbgrader scores a graded cell zero for
    any output on standard error, and a progress bar is no reason to lose points.
    """
    return iter(tqdm(iterable, desc=desc, total=total, file=sys.stdout, leave=True,
                     mininterval=0.5, disable=is_autograding(), ascii=True))


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (JupyterLab, Notebook, Colab), where an output can be replaced in place."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class EpochProgress:
    """One progress line for a run of epochs, rewritten after every epoch with the latest numbers.

    In a notebook it is a single output updated in place (a display handle), so the saved
    notebook and its HTML export hold the final line only; elsewhere a text bar on standard
    output. Nothing is shown while the notebook is autograded.
    """

    WIDTH = 24

    def __init__(self, total: int, desc: str = "training") -> None:
        self.total, self.desc, self.done = total, desc, 0
        self.numbers: dict[str, float] = {}
        self.started = time.perf_counter()
        self._handle: Any = None
        self._bar: Any = None
        if is_autograding():
            return
        if _in_notebook():
            from IPython.display import display

            self._handle = display(self._bundle(), raw=True, display_id=True)
        else:
            self._bar = tqdm(total=total, desc=desc, file=sys.stdout, mininterval=0.5, ascii=True)

    def text(self) -> str:
        """``training  12/30 epochs [=========>      ]  40%  loss 0.1234  val_accuracy 0.9100  4.1 s, ~6.2 s left``."""
        share = self.done / self.total if self.total else 1.0
        filled = int(round(share * self.WIDTH))
        bar = ("=" * (filled - 1) + ">" if 0 < filled < self.WIDTH else "=" * filled).ljust(self.WIDTH)
        elapsed = time.perf_counter() - self.started
        left = f", ~{elapsed / self.done * (self.total - self.done):.1f} s left" if 0 < self.done < self.total else ""
        numbers = "".join(f"  {name} {value:.4f}" for name, value in self.numbers.items())
        return (f"{self.desc}  {self.done}/{self.total} epochs [{bar}] {share:4.0%}{numbers}  "
                f"{elapsed:.1f} s{left}")

    def _bundle(self) -> dict[str, str]:
        shown = html.escape(self.text())
        return {"text/plain": self.text(),
                "text/html": f'<progress value="{self.done}" max="{max(self.total, 1)}" style="width: 12em"></progress> '
                             f"<code>{shown}</code>"}

    def update(self, numbers: dict[str, float]) -> None:
        """One more epoch is done; ``numbers`` (loss, metrics) are its latest values."""
        self.done += 1
        self.numbers = dict(numbers)
        if self._handle is not None:
            self._handle.update(self._bundle(), raw=True)
        elif self._bar is not None:
            self._bar.set_postfix({k: f"{v:.4f}" for k, v in numbers.items()}, refresh=False)
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def fit(
    train_epoch: Callable[[int], float],
    epochs: int,
    *,
    evaluate: Callable[[], dict[str, float]] | None = None,
    desc: str = "training",
) -> dict[str, list[float]]:
    """Run ``epochs`` epochs with a progress line (:class:`EpochProgress`) and return the history.

    Args:
        train_epoch: called with the epoch number (0-based); trains one epoch
            and returns the mean training loss of that epoch.
        epochs: number of epochs.
        evaluate: optional; called after each epoch, returns named metrics
            (e.g. ``{"val_accuracy": 0.93}``) that are added to the history.
    Returns:
        ``{"loss": [...], <metric>: [...]}``, one value per epoch.
    """
    history: dict[str, list[float]] = {"loss": []}
    bar = EpochProgress(epochs, desc)
    try:
        for epoch in range(epochs):
            loss = float(train_epoch(epoch))
            history["loss"].append(loss)
            shown = {"loss": loss}
            if evaluate is not None:
                for name, value in evaluate().items():
                    history.setdefault(name, []).append(float(value))
                    shown[name] = float(value)
            bar.update(shown)
    finally:
        bar.close()
    return history


def pick_device() -> Any:
    """``torch.device("cuda")`` when a GPU is visible to PyTorch, else ``torch.device("cpu")``."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_trained_model(build_model: Callable[[], Any], path: str = "model.pt", device: Any = None) -> Any:
    """A fresh ``build_model()`` holding the weights saved in ``path``, on ``device``, in eval mode.

    Raises ``FileNotFoundError`` with what to do when the file is missing, and
    ``RuntimeError`` (PyTorch's message) when its weights do not fit the network.
    """
    import torch

    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} was not found next to the notebook. The grader evaluates the {path} you submit and never "
            f"trains: run the notebook outside grading (the training cell, then the cell that saves {path}) "
            f"and hand in {path} together with the notebook.")
    model = build_model()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model.eval()
    return model if device is None else model.to(device)
