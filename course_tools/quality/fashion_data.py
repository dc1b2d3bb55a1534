"""Build the grader's Fashion-MNIST test split (``python -m course_tools fashion-data``).

Learners train on Fashion-MNIST's public training split (60,000 images), which
:mod:`mytorch_lib.fashion` finds or fetches and checks against its pinned digest.
The grader measures the trained model on images of the public *test* split
(``t10k``), drawn once and committed in two files:

- ``course_tools/hidden/probes/data/fashion_test_images.npz``: the images
  (``images``, uint8 ``N x 28 x 28``), which the learner's model classifies inside
  the grading sandbox;
- ``course_tools/hidden/verdicts/data/fashion_test_labels.npz``: their labels
  (``labels``, int64), read by the grading process only, never mounted in the sandbox.

:data:`TEST_SIZE` images, :data:`TEST_SIZE` / 10 of every class, drawn with a fixed
seed among the test images that are not byte-identical to any training image.
The output is byte-for-byte reproducible (fixed seed, fixed zip timestamps); the
arrays' SHA-256 digests are pinned in
:mod:`course_tools.hidden.verdicts.torch_classification` (``DIGESTS``).

    python -m course_tools fashion-data                       # from /usr/share/datasets/fashion-mnist
    python -m course_tools fashion-data --source DIR          # from another folder with the four .gz files
    python -m course_tools fashion-data --check               # compare with the committed files, write nothing

Provenance and licence: ``DATA.md`` at the repository root.
"""

from __future__ import annotations

import argparse
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

from course_tools.course import REPO_ROOT
from course_tools.hidden.probes.torch_classification import TEST_IMAGES_FILE
from course_tools.hidden.verdicts.torch_classification import DIGESTS, TEST_LABELS_FILE
from mytorch_lib.fashion import DEBIAN_FOLDER, NUM_CLASSES, TRAIN_DIGEST, TRAIN_FILES, array_digest, read_idx

__all__ = ["FILES", "TEST_FILES", "TEST_SIZE", "build_test_split", "file_digest", "read_split", "write_npz"]

TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
#: Images of the grader's test split: enough that the accuracy it measures has a standard error of
#: 0.4 percentage points at 90 %, so the 90 % bar separates a model at 91-92 % from one at 88-89 %.
TEST_SIZE = 5000
SPLIT_SEED = 20170825
#: SHA-256 of the decoded public test split (images, then labels): the source the grader's split is drawn from.
T10K_DIGEST = "9a494dc49efeb996f4076c469b31cd058152067b1594ba6ab85dd739fce3775e"
#: Each committed file, under the name of its digest in :data:`DIGESTS`.
FILES = {"test_images": TEST_IMAGES_FILE, "test_labels": TEST_LABELS_FILE}


def read_split(folder: Path, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """The images (uint8 ``N x 28 x 28``) and labels (int64) of one split's two IDX files in ``folder``."""
    images, labels = (read_idx(Path(folder) / name) for name in names)
    return images, labels.astype(np.int64)


def build_test_split(folder: Path) -> dict[str, bytes]:
    """The bytes of the grader's two files, built from the Fashion-MNIST files in ``folder`` (keyed like :data:`FILES`)."""
    train_images, train_labels = read_split(folder, TRAIN_FILES)
    if array_digest(train_images, train_labels) != TRAIN_DIGEST:
        raise ValueError(f"the training files in {folder} are not Fashion-MNIST's")
    images, labels = read_split(folder, TEST_FILES)
    if T10K_DIGEST and array_digest(images, labels) != T10K_DIGEST:
        raise ValueError(f"the test files in {folder} are not Fashion-MNIST's")
    seen = {img.tobytes() for img in train_images}
    rng = np.random.default_rng(SPLIT_SEED)
    rows = []
    for label in range(NUM_CLASSES):
        candidates = [r for r in rng.permutation(np.flatnonzero(labels == label)) if images[r].tobytes() not in seen]
        rows += candidates[:TEST_SIZE // NUM_CLASSES]
    order = rng.permutation(np.asarray(rows))
    return {"test_images": write_npz(None, images=images[order]), "test_labels": write_npz(None, labels=labels[order])}


def file_digest(data: bytes) -> tuple[str, int]:
    """(digest of the arrays, number of samples) of a course ``.npz`` file's bytes (see ``array_digest``)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        images = arrays["images"] if "images" in arrays.files else None
        labels = arrays["labels"] if "labels" in arrays.files else None
    return array_digest(images, labels), len(images) if images is not None else len(labels)


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_tools fashion-data", description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, default=DEBIAN_FOLDER,
                        help=f"folder with Fashion-MNIST's four .gz files (default: {DEBIAN_FOLDER}, "
                             "from the Debian package dataset-fashion-mnist)")
    parser.add_argument("--check", action="store_true", help="compare with the committed files, write nothing")
    args = parser.parse_args(argv)
    missing = [n for n in TRAIN_FILES + TEST_FILES if not (args.source / n).exists()]
    if missing:
        print(f"{args.source} lacks {', '.join(missing)}: install the Debian package dataset-fashion-mnist "
              "(scripts/install_system_packages.sh) or pass --source", file=sys.stderr)
        return 2
    built = build_test_split(args.source)
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
