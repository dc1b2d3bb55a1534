"""Plots the notebooks share: curves, functions, fits, images, confusion matrices, first-layer weights.

Each function draws on the given matplotlib ``ax`` (or a new figure) and
returns the axes, so notebooks can combine plots in one figure.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

__all__ = [
    "figure_needing",
    "plot_confusion_matrix",
    "plot_curves",
    "plot_feature_histograms",
    "plot_fit_1d",
    "plot_function_and_derivative",
    "show_first_layer",
    "show_images",
]


@contextlib.contextmanager
def figure_needing(needs: str) -> Iterator[None]:
    """Draw a figure from the learner's code without leaving empty axes behind when that code fails.

    While a function the figure calls is still a release stub (``NotImplementedError``),
    the half-drawn figure is dropped and one line says what the figure needs; any other
    error drops it too and is raised as usual, so the learner sees the traceback.
    """
    try:
        yield
    except NotImplementedError:
        plt.close("all")
        print(f"This figure appears once {needs} work (a stub still raises NotImplementedError).")
    except BaseException:
        plt.close("all")
        raise


def _axes(ax: plt.Axes | None, figsize: tuple[float, float] = (6, 4)) -> plt.Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def plot_curves(
    curves: Mapping[str, Sequence[float]],
    *,
    xlabel: str = "epoch",
    ylabel: str = "loss",
    title: str | None = None,
    logy: bool = False,
    ax: plt.Axes | None = None,
) -> plt.Axes:
    """One line per named sequence, e.g. ``{"train": losses, "validation": val_losses}``."""
    ax = _axes(ax)
    for name, values in curves.items():
        ax.plot(np.arange(1, len(values) + 1), values, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # 0.01, 0.02, 0.05, 0.1, ...
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def plot_function_and_derivative(
    f: Callable[[np.ndarray], np.ndarray],
    df: Callable[[np.ndarray], np.ndarray],
    *,
    name: str,
    low: float = -5.0,
    high: float = 5.0,
    ax: plt.Axes | None = None,
) -> plt.Axes:
    """Plot ``f(z)`` and ``df(z)`` on a grid of 401 points; both take and return ``N x 1`` arrays."""
    ax = _axes(ax, (5, 3.5))
    z = np.linspace(low, high, 401).reshape(-1, 1)
    described = name.endswith(")")  # a name with its settings, such as "Swish (beta=1)"
    ax.plot(z, f(z), label=name if described else f"{name}(z)")
    ax.plot(z, df(z), "--", label=f"derivative of {name}" if described else f"d{name}/dz")
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel("z")
    ax.set_title(name)
    ax.legend()
    return ax


def plot_fit_1d(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_grid: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    *,
    ax: plt.Axes | None = None,
) -> plt.Axes:
    """Scatter the training points and draw each named prediction curve over ``x_grid``."""
    ax = _axes(ax)
    ax.scatter(np.ravel(x_train), np.ravel(y_train), s=12, alpha=0.6, label="training points")
    order = np.argsort(np.ravel(x_grid))
    for name, y in predictions.items():
        ax.plot(np.ravel(x_grid)[order], np.ravel(y)[order], lw=2, label=name)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend()
    return ax


def show_images(
    images: np.ndarray,
    titles: Sequence[str] | None = None,
    *,
    n_cols: int = 8,
    image_shape: tuple[int, int] | None = None,
) -> plt.Figure:
    """Show a grid of grey-scale images (``N x H x W``, or ``N x H*W`` with ``image_shape``)."""
    images = np.asarray(images)
    if image_shape is not None:
        images = images.reshape((-1, *image_shape))
    n = len(images)
    n_rows = max(1, int(np.ceil(n / n_cols)))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.3 * n_cols, 1.5 * n_rows), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k < n:
            ax.imshow(images[k], cmap="gray_r")
            if titles is not None:
                ax.set_title(titles[k], fontsize=8)
    fig.tight_layout()
    return fig


def plot_confusion_matrix(
    labels: np.ndarray,
    predictions: np.ndarray,
    *,
    num_classes: int,
    class_names: Sequence[str] | None = None,
    ax: plt.Axes | None = None,
) -> plt.Axes:
    """Counts of (true class, predicted class) pairs as a heat map with the numbers written in."""
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (labels, predictions), 1)
    ax = _axes(ax, (5, 5))
    ax.imshow(counts, cmap="Blues")
    for i in range(num_classes):
        for j in range(num_classes):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center",
                    color="white" if counts[i, j] > counts.max() / 2 else "black", fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_xticks(range(num_classes))
    ax.set_yticks(range(num_classes))
    if class_names is not None:
        ax.set_xticklabels(class_names, rotation=60, ha="right", fontsize=8)
        ax.set_yticklabels(class_names, fontsize=8)
    return ax


def show_first_layer(model: Any, *, n_max: int = 32) -> plt.Figure:
    """The weights of a network's first learned layer, drawn as images.

    A ``Conv2d`` shows each output channel's kernel (first input channel); a
    ``Linear`` that reads flattened square images shows each unit's weights as an
    image of that size. Blue is negative, red positive, white zero.
    """
    import torch

    first = next((m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))), None)
    if first is None:
        raise ValueError("the network has no Conv2d or Linear layer to show")
    weights = first.weight.detach().float().cpu().numpy()
    if isinstance(first, torch.nn.Conv2d):
        kernels, title = weights[:, 0], f"first Conv2d: {weights.shape[0]} kernels of {weights.shape[2]} x {weights.shape[3]}"
    else:
        side = int(round(np.sqrt(weights.shape[1])))
        if side * side != weights.shape[1]:
            raise ValueError(f"the first Linear layer reads {weights.shape[1]} inputs, not a square image")
        kernels, title = weights.reshape(-1, side, side), f"first Linear: weights of {weights.shape[0]} units"
    kernels = kernels[:n_max]
    n_cols = min(8, len(kernels))
    n_rows = int(np.ceil(len(kernels) / n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.2 * n_cols, 1.2 * n_rows + 0.4), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k < len(kernels):
            top = float(np.abs(kernels[k]).max()) or 1.0
            ax.imshow(kernels[k], cmap="bwr", vmin=-top, vmax=top)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_feature_histograms(
    batches: Mapping[str, np.ndarray],
    *,
    feature_names: Sequence[str] | None = None,
    bins: int = 30,
) -> np.ndarray:
    """One panel per named ``N x C`` batch, each overlaying the histograms of its C features.

    Shows what a normalisation does to a batch, e.g.
    ``{"before": Z, "after BatchNorm": BZ}``. The features of a panel share its bins, so a
    feature on a much smaller scale than the others shows as a single spike.
    Returns the array of axes.
    """
    fig, axes = plt.subplots(1, len(batches), figsize=(5.0 * len(batches), 4.4), squeeze=False)
    for ax, (title, batch) in zip(axes[0], batches.items()):
        batch = np.asarray(batch, dtype=np.float64).reshape(len(batch), -1)
        names = feature_names or [f"feature {j}" for j in range(batch.shape[1])]
        low, high = float(batch.min()), float(batch.max())
        edges = np.linspace(low, high, bins + 1) if high > low else bins  # shared: scales stay comparable
        for j in range(batch.shape[1]):
            column = batch[:, j]
            mean, std = round(float(column.mean()), 6) + 0.0, float(column.std())
            ax.hist(column, bins=edges, alpha=0.5, label=f"{names[j]}: mean {mean:.3g}, std {std:.3g}")
        ax.set_title(title)
        ax.set_xlabel("value")
        ax.set_ylabel("count")
        # below the panel, one line per feature, at a size that reads on a laptop screen
        ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False)
    fig.tight_layout()
    return axes[0]
