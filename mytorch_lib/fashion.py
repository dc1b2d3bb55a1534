"""Fashion-MNIST for the classification notebook: finding (or fetching) the training images, the fixed split, tensors.

Fashion-MNIST (Zalando Research, MIT licence) holds 70,000 grey 28 x 28 pictures
of clothing in 10 classes; the notebook trains on the 60,000 of its public
training split. The files are looked for, in this order, in

1. the folder named by the environment variable ``MYTORCH_DATA`` (a course
   team points every machine at one shared copy this way);
2. ``fashion-mnist/`` in the working directory (next to the notebook);
3. ``/usr/share/datasets/fashion-mnist`` (the Debian/Ubuntu package
   ``dataset-fashion-mnist``);
4. ``~/.cache/mytorch/fashion-mnist`` (where a download goes).

Only when none of them has the files are they downloaded, once, from the public
sources in :data:`SOURCES` (26 MB), into the last folder. Whatever the source,
the decoded arrays must match the SHA-256 digest pinned in :data:`TRAIN_DIGEST`,
so a damaged or different file is refused instead of silently used. Provenance and
licence: ``DATA.md`` of the course repository.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CLASS_NAMES", "NUM_CLASSES", "TRAIN_DIGEST", "VAL_SEED", "VAL_SIZE", "array_digest", "data_folders",
           "load_fashion_mnist", "read_idx", "to_tensor", "train_val_split"]

#: The label ``k`` of an image names the ``k``-th class.
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot")
NUM_CLASSES = 10
#: The validation split is fixed (the grader recomputes it to check reported numbers).
VAL_SIZE = 5000
VAL_SEED = 0
TRAIN_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
#: SHA-256 of the decoded training split: the uint8 images (60000 x 28 x 28, C order), then the int64 labels.
TRAIN_DIGEST = "1f243a60b4b748a44c48b9a6f6907be2a08bee3e4e226f0e86fbde8e147b745a"
#: Public copies of the files, tried in order (the project's own download site, then its repository).
SOURCES = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
           "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/")
DEBIAN_FOLDER = Path("/usr/share/datasets/fashion-mnist")
CACHE_FOLDER = Path("~/.cache/mytorch/fashion-mnist")


def array_digest(images: np.ndarray | None = None, labels: np.ndarray | None = None) -> str:
    """SHA-256 of a split's arrays (uint8 images, then int64 labels, C order; either may be left out)."""
    h = hashlib.sha256()
    if images is not None:
        h.update(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    if labels is not None:
        h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in an IDX file (``.gz`` or plain): uint8 images ``N x 28 x 28`` or uint8 labels ``(N,)``."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: its header announces {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def data_folders() -> list[Path]:
    """Where the Fashion-MNIST files are looked for, in order (see the module's docstring)."""
    folders = [Path(os.environ["MYTORCH_DATA"]).expanduser()] if os.environ.get("MYTORCH_DATA") else []
    return folders + [Path("fashion-mnist"), DEBIAN_FOLDER, CACHE_FOLDER.expanduser()]


def _download(folder: Path, sources: tuple[str, ...]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in TRAIN_FILES:
        if (folder / name).exists():
            continue
        errors = []
        for base in sources:
            try:
                with urllib.request.urlopen(base + name, timeout=60) as response, \
                        tempfile.NamedTemporaryFile(dir=folder, delete=False) as part:
                    shutil.copyfileobj(response, part)
                os.replace(part.name, folder / name)
                break
            except OSError as error:
                errors.append(f"{base + name}: {error}")
        else:
            raise FileNotFoundError(
                "The Fashion-MNIST training files were not found and could not be downloaded:\n  "
                + "\n  ".join(errors) + "\nDownload train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz "
                f"from https://github.com/zalandoresearch/fashion-mnist and put them in {folder}, or ask your "
                "course team where the course keeps its copy (then set MYTORCH_DATA to that folder).")


def load_fashion_mnist(*, download: bool = True, sources: tuple[str, ...] = SOURCES) -> tuple[np.ndarray, np.ndarray]:
    """The 60,000 training images ``N x 28 x 28`` (uint8, 0 = background) and their labels ``(N,)`` (int64, 0..9).

    Looks in :func:`data_folders`; downloads into the last one when none has the files
    and ``download`` is true. Refuses files whose content is not Fashion-MNIST's.
    """
    folders = data_folders()
    found = next((f for f in folders if all((f / name).exists() for name in TRAIN_FILES)), None)
    if found is None:
        if not download:
            raise FileNotFoundError("The Fashion-MNIST training files were found in none of: "
                                    + ", ".join(str(f) for f in folders))
        found = folders[-1]
        _download(found, sources)
    images, labels = (read_idx(found / name) for name in TRAIN_FILES)
    labels = labels.astype(np.int64)
    if array_digest(images, labels) != TRAIN_DIGEST:
        raise ValueError(f"The files in {found} are not the Fashion-MNIST training split (their content does not "
                         "match the course's pinned digest): delete them and run this cell again to download "
                         "fresh copies.")
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
