"""Where the MNIST files of notebook 4 live, and their pinned contents.

Grader side (imported by the hidden tests, inside the grading sandbox, which
sees ``course_tools/hidden`` but not the rest of the repository) and
instructor side (:mod:`course_tools.mnist_data` rebuilds the files and checks
them against :data:`DIGESTS`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

#: The grader-only test split (2,000 images); never copied to source/, release/ or mytorch_lib/.
TEST_FILE = Path(__file__).resolve().parent / "data" / "mnist_test.npz"
#: The learners' training split (8,000 images), shipped next to the notebook under this name.
TRAIN_NAME = "mnist_train.npz"

#: SHA-256 of ``images.tobytes() + labels.tobytes()`` of each committed split (see :func:`array_digest`).
DIGESTS = {
    "train": "856053feff8e16d557064c015e772870e4f8ddfa10f0c9575ab62675ab7b4058",
    "test": "6f23be8554863c9448af7217cc5e507cdfa699ade7ab57f350772c12242eca84",
}


def array_digest(images: np.ndarray, labels: np.ndarray) -> str:
    """SHA-256 of a split's arrays (uint8 images, then int64 labels, C order)."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()


def load_split(path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` of a course ``.npz`` file: uint8 ``N x 28 x 28`` and int64 ``(N,)``."""
    with np.load(path, allow_pickle=False) as data:
        return np.asarray(data["images"], dtype=np.uint8), np.asarray(data["labels"], dtype=np.int64)
