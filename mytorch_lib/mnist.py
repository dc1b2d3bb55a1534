"""The course's MNIST training images: loading, the fixed validation split, tensors.

The classification notebook ships ``mnist_train.npz`` next to itself: 8,000
real MNIST digits (28 x 28 grey levels, 0 = background) with their labels.
Where they come from and under which licence: ``DATA.md`` of the course
repository. Nothing here downloads anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["NUM_CLASSES", "VAL_SIZE", "VAL_SEED", "load_mnist", "to_tensor", "train_val_split"]

NUM_CLASSES = 10
#: The validation split is fixed (the grader recomputes it to check reported numbers).
VAL_SIZE = 1000
VAL_SEED = 0


def load_mnist(path: str | Path = "mnist_train.npz") -> tuple[np.ndarray, np.ndarray]:
    """Images and labels stored in a course ``.npz`` file.

    Returns ``images`` of shape ``N x 28 x 28`` (uint8, 0..255) and ``labels``
    of shape ``(N,)`` (int64, 0..9).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} was not found (working directory {Path.cwd()}); "
                                "keep the data file in the same folder as the notebook (on Colab: upload it "
                                "with the Files panel on the left)")
    with np.load(path, allow_pickle=False) as data:
        images = np.asarray(data["images"], dtype=np.uint8)
        labels = np.asarray(data["labels"], dtype=np.int64)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != (len(images),):
        raise ValueError(f"{path}: expected images N x 28 x 28 and N labels, got {images.shape} and {labels.shape}")
    return images, labels


def train_val_split(
    images: np.ndarray, labels: np.ndarray, *, val_size: int = VAL_SIZE, seed: int = VAL_SEED
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split off ``val_size`` random images for validation, the same ones on every machine.

    Returns ``(X_train, y_train, X_val, y_val)``: images ``N x 28 x 28`` and labels ``(N,)``.
    """
    if not 0 < val_size < len(images):
        raise ValueError(f"val_size must lie between 1 and {len(images) - 1}, got {val_size}")
    order = np.random.default_rng(seed).permutation(len(images))
    val, train = order[:val_size], order[val_size:]
    return images[train], labels[train], images[val], labels[val]


def to_tensor(images: np.ndarray, device: Any = None) -> Any:
    """uint8 images ``N x 28 x 28`` as a float32 tensor ``N x 1 x 28 x 28`` with values in [0, 1].

    The extra axis is the colour channel (one, grey), the layout ``torch.nn.Conv2d``
    expects; an MLP starts with ``torch.nn.Flatten()`` to get ``N x 784``.
    """
    import torch

    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"expected images of shape N x 28 x 28, got {images.shape}")
    tensor = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return tensor if device is None else tensor.to(device)
