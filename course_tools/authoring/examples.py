"""Example submissions bundled with the course, graded by ``make demo`` and the tests.

Each example says, per assignment and notebook, which answer cells differ
from the reference solution. ``reference`` and ``untouched`` exist for every
assignment; a buggy example covers the assignments it names and is the
reference solution elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from course_tools.authoring.submissions import Edits


#: Files the examples hand in besides their notebooks, one folder per assignment: the classification
#: notebook's ``model.pt`` and ``predictions.npy``, saved by the reference solution's run with seed 0:
#: ``python -m course_tools baselines --assignments 04_torch_classification --seeds 0 --variants reference
#: --save-files course_tools/authoring/example_files/04_torch_classification``.
EXAMPLE_FILES = Path(__file__).resolve().parent / "example_files"


#: The cells of the classification notebook whose code decides the trained example model, and the
#: SHA-256 of their source when ``example_files/04_torch_classification/model.pt`` was trained
#: (:func:`recipe_digest`). A test fails when the reference changes and the model was not retrained.
EXAMPLE_MODEL_CELLS = ("setup", "data_load", "to_device", "answer_train", "answer_build_model", "answer_training")
EXAMPLE_MODEL_RECIPE = "fef03036d7c4bc6423d421e43c33773732adaca28110b41309b9ae4114d3286a"


def recipe_digest(assignment: str = "04_torch_classification", notebook: str = "torch_classification") -> str:
    """SHA-256 of the source of :data:`EXAMPLE_MODEL_CELLS` in the instructors' notebook, in that order."""
    import hashlib

    import nbformat

    from course_tools.course import SOURCE_DIR

    nb = nbformat.read(SOURCE_DIR / assignment / f"{notebook}.ipynb", as_version=4)
    cells = {cell.get("id"): cell.source for cell in nb.cells}
    return hashlib.sha256("\0".join(cells[c] for c in EXAMPLE_MODEL_CELLS).encode()).hexdigest()


def handed_in_files(assignment: str, *, filled: bool = True) -> dict[str, Path]:
    """name -> path of the files a filled example hands in with ``assignment`` (none for an untouched release)."""
    folder = EXAMPLE_FILES / assignment
    if not filled or not folder.is_dir():
        return {}
    return {path.name: path for path in sorted(folder.iterdir()) if path.is_file()}


@dataclass(frozen=True)
class Example:
    student: str
    description: str
    filled: bool = True
    #: assignment -> notebook -> edits of answer cells
    edits: Mapping[str, Mapping[str, Edits]] = field(default_factory=dict)


# A learner who slips on a[1] (sign error in a dot product) but then computes
# every later answer correctly from that wrong a, rounding to 2 decimals at
# each step. With errors carried forward only the 0.5 points of `a` are lost.
_CARRIED_FORWARD_SLIP = {
    "answer_a": ("[0.30, 0.24]", "[0.30, -0.16]"),
    "answer_z": ("[0.29, 0.24]", "[0.29, -0.16]"),
    "answer_y": ("[0.32]", "[0.63]"),
    "answer_loss": ("0.03", "0.02"),
    "answer_dL_dy": ("-0.37", "0.26"),
    "answer_dL_dw2": ("[[-0.11, -0.09]]", "[[0.08, -0.04]]"),
    "answer_dL_db2": ("[-0.37]", "[0.26]"),
    "answer_dL_dw1": ("[[-0.07, -0.09, 0.02], [0.08, 0.11, -0.03]]", "[[0.05, 0.07, -0.02], [-0.06, -0.08, 0.02]]"),
    "answer_W2_updated": ("[[0.75, -0.76]]", "[[0.66, -0.78]]"),
    "answer_b2_updated": ("[0.48]", "[0.17]"),
    "answer_W1_updated": ("[[0.14, 0.35, -0.51], [-0.24, 0.34, 0.61]]", "[[0.08, 0.26, -0.49], [-0.17, 0.44, 0.59]]"),
    "answer_b1_updated": ("[0.22, 0.06]", "[0.02, 0.30]"),
}

# A learner who writes dL_dw1 as x (dL/da)^T instead of (dL/da) x^T: the
# transposed, 3 x 2 gradient fails its check, and so does the update built on it.
_TRANSPOSED_GRADIENT = {
    "answer_dL_dw1": ("[[-0.07, -0.09, 0.02], [0.08, 0.11, -0.03]]", "[[-0.07, 0.08], [-0.09, 0.11], [0.02, -0.03]]"),
    "answer_W1_updated": ("[[0.14, 0.35, -0.51], [-0.24, 0.34, 0.61]]", "[[0.14, -0.24], [0.35, 0.34], [-0.51, 0.61]]"),
}

# A learner who writes Linear's weight gradient as A^T dLdZ, the transpose of dLdZ^T A
# (Cin x Cout instead of the Cout x Cin of W). Only the dLdW cell of 1_layers loses its
# points: the later notebooks grade their own classes with the course's reference layers.
_LINEAR_BUG = {
    "linear": ("self.dLdW = dLdZ.T @ self.A", "self.dLdW = self.A.T @ dLdZ"),
}

EXAMPLES: tuple[Example, ...] = (
    Example("reference", "every answer cell holds the instructors' solution"),
    Example("untouched", "the release exactly as handed out", filled=False),
    Example("slip_carried_forward", "pen and paper: sign slip in a[1], later answers carried forward correctly",
            edits={"01_pen_and_paper": {"pen_and_paper": _CARRIED_FORWARD_SLIP}}),
    Example("transposed_gradient", "pen and paper: dL_dw1 transposed (3 x 2), and W1_updated built from it",
            edits={"01_pen_and_paper": {"pen_and_paper": _TRANSPOSED_GRADIENT}}),
    Example("linear_bug", "NumPy library: Linear.backward stores dLdW transposed (A^T dLdZ); only 1_layers loses points",
            edits={"02_numpy_library": {"1_layers": _LINEAR_BUG}}),
)
