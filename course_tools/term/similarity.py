"""Similarity report for academic integrity: ``python -m course_tools similarity ASSIGNMENT``.

The report points instructors at pairs of submissions whose code is more
alike than independent work usually is. It never decides anything: a high
score is a reason to read both submissions, not a finding of misconduct.

How a score is made, for one notebook of one pair of learners:

1. **Preflight.** Each ``submitted/<student>/<assignment>`` folder is repaired
   exactly as grading repairs it (:func:`course_tools.grading.preflight.prepare_submission`,
   into a scratch folder), so that stripped metadata or reordered cells do not
   hide an answer cell. ``submitted/`` itself is only read.
2. **The learner's own code.** Of every answer cell (nbgrader ``solution``
   cells, see :func:`course_tools.notebook_model.is_code_answer`), only the lines the
   release cell did not contain are kept: the class and ``def`` lines, the
   docstrings, the comments and the ``raise NotImplementedError`` stubs of the
   release are removed, so an untouched release has no code at all.
3. **Fingerprints** with ``copydetect`` (winnowing, as in MOSS): the code is
   tokenised with pygments and every name becomes one letter (``V`` for
   variables and attributes, ``F`` for functions, ``O`` for classes), comments
   and whitespace disappear. k-grams of that text that also occur anywhere in
   the release's answer cells are dropped as boilerplate (copydetect's
   ``boilerplate`` hashes).
4. **Scores.** For a pair (a, b), ``similarity_a`` is the share of a's
   fingerprinted tokens that b's code also has (copydetect's
   ``compare_files``), and ``similarity_b`` the other way round. A pair is
   flagged when the larger of the two reaches the threshold and at least
   :data:`MIN_OVERLAP_TOKENS` tokens match.

Every learner is compared with every other learner of the class and with
every entry of the ``--against`` folders: an archive written by
``python -m course_tools archive`` (one JSON file per learner) or a plain
folder of submission folders (``<dir>/<id>/<assignment>/*.ipynb`` or
``<dir>/<id>/*.ipynb``).

Speed: each learner's notebook is repaired, extracted and fingerprinted once,
in forked worker processes (:func:`prepare_learners`); all pairs of a notebook
are then scored together from the fingerprints (:func:`pair_scores`, the
arithmetic of copydetect's ``get_copied_slices`` on arrays), and copydetect's
own ``compare_files`` runs again only on the flagged pairs shown, to highlight
them. ``python -m course_tools benchmark-similarity`` measures it.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import multiprocessing as mp
import os
import re
import shutil
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from course_tools.grading.preflight import prepare_submission
from course_tools.notebook_model import grade_id as cell_grade_id, is_code_answer

#: k: length of the fingerprinted k-grams, in characters of copydetect's filtered code (where every
#: name is one letter and whitespace is gone). Answer cells here are short methods: a statement such
#: as ``self.A = np.maximum(0, Z)`` is 12 filtered characters (``V.V=V.V(0,V)`` once ``self`` is a
#: name too). k must stay below the length of one such statement, or reordering statements would
#: break every k-gram; much shorter k-grams (5-6 characters, ``V=V.V(``) occur in any NumPy code and
#: make honest answers look alike (k = 6 gave independent answers of 1_layers 0.33-0.54, k = 10
#: gives 0.11-0.36, copies about 0.9 either way).
NOISE_CHARS = 10
#: winnowing window: one fingerprint is kept per window of consecutive k-grams, so any match of at
#: least NOISE_CHARS + WINDOW - 1 = 13 filtered characters (about one statement) is always found,
#: while a notebook keeps about 2 / (WINDOW + 1) of its k-grams.
WINDOW = 4
#: a pair is flagged at or above this similarity (larger side). Measured on the NumPy assignment
#: (tests/test_similarity.py, several runs): copies with every name changed, statements reordered and
#: comments rewritten score 0.83-0.96; correct answers written independently score 0.11-0.36. 0.6
#: leaves a wide margin on both sides.
DEFAULT_THRESHOLD = 0.6
#: fewer matching tokens than this never flag a pair: a learner who wrote one or two short methods
#: (``return dLdA * (self.A > 0)``) matches every classmate who wrote them the same obvious way.
MIN_OVERLAP_TOKENS = 60
#: flagged pairs shown with their code per notebook; the CSV lists every pair
DEFAULT_MAX_SHOWN = 100
#: rows of each "highest scores" table at the top of the page
TOP_ROWS = 20
#: ``format`` field of archive files
ARCHIVE_FORMAT = "mytorch-similarity-archive/1"
#: prefix of the learner column for entries of ``--against`` folders
AGAINST_PREFIX = "against:"
CSV_COLUMNS = ("notebook", "learner_a", "learner_b", "similarity_a", "similarity_b", "overlap_tokens", "flagged")
TEMPLATE_FILE = Path(__file__).resolve().parent / "templates" / "similarity_report.html"

# Names pygments keeps verbatim (``self``, ``cls``): swapped for plain names of the same length before
# fingerprinting, so that renaming ``self`` changes nothing and highlight positions stay valid.
_PSEUDO_NAMES = re.compile(r"\b(self|cls)\b")
_PSEUDO_SWAP = {"self": "slf_", "cls": "cl_"}
# Release lines that are removed wherever they appear in a submission (not only in release order).
_SINGLE_LINE_GIVEN = re.compile(r"^(#|def |async def |class |raise NotImplementedError\(|\w+ = None\b)")


class SimilarityError(ValueError):
    """The similarity report cannot be made; the message names the problem and the fix."""


# ----------------------------------------------------------------------------- extraction

@dataclass
class Learner:
    """The code one learner wrote, per notebook and answer cell.

    Attributes:
        label: the student id for the class; ``against:<folder>/<id>`` for an entry of ``--against``.
        notebooks: ``{notebook: {grade_id: own code}}``; cells without own code are left out.
        in_class: False for an entry of an ``--against`` folder (compared with the class only).
        prints: ``{notebook: copydetect CodeFingerprint}`` of the notebooks with own code
            (empty when only extracted, as for the archive).
    """

    label: str
    notebooks: dict[str, dict[str, str]] = field(default_factory=dict)
    in_class: bool = True
    prints: dict[str, Any] = field(default_factory=dict, repr=False)


def _cell_text(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _answer_cells(nb: dict[str, Any]) -> dict[str, str]:
    """``{grade_id: source}`` of the code answer cells of a notebook (JSON), in notebook order."""
    cells = {}
    for cell in nb.get("cells", []):
        grade_id = cell_grade_id(cell)
        if is_code_answer(cell) and grade_id:
            cells[grade_id] = _cell_text(cell)
    return cells


def own_code(release_text: str, submitted_text: str) -> str:
    """The lines of a submitted answer cell that its release cell did not contain.

    Release lines are recognised by their text (indentation ignored): in release order
    (``difflib`` alignment, which removes the given docstrings as whole blocks), and anywhere
    for one-line givens (comments, ``def``/``class`` lines, stubs, ``name = None`` placeholders),
    so that moving a method around does not turn its signature into the learner's code.
    Blank lines are dropped; the common indentation is removed.
    """
    release = [line.strip() for line in release_text.split("\n")]
    lines = submitted_text.split("\n")
    keys = [line.strip() for line in lines]
    given = [False] * len(lines)
    matcher = difflib.SequenceMatcher(None, release, keys, autojunk=False)
    for block in matcher.get_matching_blocks():
        for j in range(block.b, block.b + block.size):
            given[j] = True
    one_liners = {key for key in release if key and _SINGLE_LINE_GIVEN.match(key)}
    kept = [line for line, key, was_given in zip(lines, keys, given)
            if key and not was_given and key not in one_liners]
    return textwrap.dedent("\n".join(kept))


def notebook_code(release_nb: dict[str, Any], submitted_nb: dict[str, Any]) -> dict[str, str]:
    """``{grade_id: own code}`` for the answer cells of a (preflighted) notebook that hold own code."""
    release = _answer_cells(release_nb)
    result = {}
    for grade_id, text in _answer_cells(submitted_nb).items():
        if grade_id in release:
            code = own_code(release[grade_id], text)
            if code.strip():
                result[grade_id] = code
    return {grade_id: result[grade_id] for grade_id in release if grade_id in result}


def read_notebook_json(path: Path) -> dict[str, Any]:
    """A notebook file as plain JSON (preflight has already checked that it is a readable notebook)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def release_notebooks(release_dir: Path, assignment: str) -> dict[str, dict[str, Any]]:
    """``{notebook: JSON}`` of the release; raises :class:`SimilarityError` for an unknown assignment."""
    folder = Path(release_dir) / assignment
    releases = {p.stem: read_notebook_json(p) for p in sorted(folder.glob("*.ipynb"))}
    if not releases:
        known = sorted(p.name for p in Path(release_dir).iterdir() if p.is_dir()) if Path(release_dir).is_dir() else []
        raise SimilarityError(
            f"unknown assignment {assignment!r}: no release notebooks in {folder}. "
            + (f"Assignments released there: {', '.join(known)}. " if known else "")
            + f"Check the name, release it first (`nbgrader generate_assignment {assignment}`), "
              "or pass --release-dir to the folder that holds the release.")
    return releases


def extract_submission(release_folder: Path, releases: dict[str, dict[str, Any]], submitted: Path,
                       scratch: Path) -> dict[str, dict[str, str]]:
    """The learner's own code ``{notebook: {grade_id: code}}`` from one submission folder.

    The folder is repaired into ``scratch`` (replaced, then removed) by the same preflight as
    grading; ``submitted`` is only read. Notebooks that preflight cannot read are left out.
    """
    report = prepare_submission(release_folder, submitted, scratch, assignment=release_folder.name)
    notebooks = {}
    for name in report.gradable:
        code = notebook_code(releases[name], read_notebook_json(scratch / f"{name}.ipynb"))
        if code:
            notebooks[name] = code
    shutil.rmtree(scratch, ignore_errors=True)
    return notebooks


@dataclass
class _Source:
    """Where one learner's code comes from: a submission folder to extract, or code read from an archive."""

    label: str
    folder: Path | None = None
    notebooks: dict[str, dict[str, str]] | None = None
    in_class: bool = True


def class_sources(root: Path, assignment: str) -> list[_Source]:
    """One source per ``<root>/submitted/<student>/<assignment>`` folder; raises if there is none."""
    base = Path(root) / "submitted"
    students = sorted(p.name for p in base.iterdir() if (p / assignment).is_dir()) if base.is_dir() else []
    if not students:
        raise SimilarityError(
            f"no submissions of {assignment} in {base}/<student>/{assignment}. "
            f"Collect them first (`nbgrader collect {assignment}`, or copy each learner's files there), "
            "or pass --root to the course folder that holds submitted/.")
    return [_Source(student, folder=base / student / assignment) for student in students]


# ----------------------------------------------------------------------------- archive and --against

def write_archive(learners: Iterable[Learner], assignment: str, out: Path) -> list[Path]:
    """Write one ``<id>.json`` per learner to ``out``: the format, the assignment, the id and the code.

    Nothing else is stored: no grade, no name, no output, no notebook metadata.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for learner in learners:
        record = {"format": ARCHIVE_FORMAT, "assignment": assignment, "learner": learner.label,
                  "notebooks": learner.notebooks}
        path = out / f"{learner.label}.json"
        path.write_text(json.dumps(record, indent=1, sort_keys=True), encoding="utf-8")
        written.append(path)
    return written


def _read_archive_file(path: Path, assignment: str) -> _Source | None:
    """The learner stored in one archive file, or None if it archives another assignment."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SimilarityError(f"{path} is not a readable archive file ({exc.__class__.__name__}: {exc}); "
                              "remove it from the folder or write the archive again with "
                              "`python -m course_tools archive`.") from None
    if not isinstance(record, dict) or record.get("format") != ARCHIVE_FORMAT:
        raise SimilarityError(f"{path} is not a file of `python -m course_tools archive` (format "
                              f"{ARCHIVE_FORMAT!r} expected); keep only archive files in that folder.")
    if record.get("assignment") != assignment:
        return None
    notebooks = record.get("notebooks")
    if not isinstance(notebooks, dict) or not all(isinstance(cells, dict) for cells in notebooks.values()):
        raise SimilarityError(f"{path} has no readable code ({{notebook: {{cell: code}}}} expected); "
                              "write the archive again with `python -m course_tools archive`.")
    code = {str(nb): {str(grade_id): str(text) for grade_id, text in cells.items()} for nb, cells in notebooks.items()}
    return _Source(path.stem, notebooks=code)  # the file name: unique in the folder, and the learner id


def _submission_folders(folder: Path, assignment: str) -> list[_Source]:
    """A source per ``<folder>/<id>/<assignment>/*.ipynb`` or ``<folder>/<id>/*.ipynb``."""
    found = []
    for entry in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        nested = entry / assignment
        notebooks_folder = nested if nested.is_dir() else entry
        if any(notebooks_folder.glob("*.ipynb")):
            found.append(_Source(entry.name, folder=notebooks_folder))
    return found


def against_sources(folder: Path, assignment: str, label: str) -> list[_Source]:
    """The entries of one ``--against`` folder (archive or submission folders), labelled ``against:<label>/<id>``."""
    folder = Path(folder)
    layouts = (f"an archive written by `python -m course_tools archive {assignment} --out DIR`, "
               f"or a folder of submission folders (DIR/<id>/{assignment}/*.ipynb or DIR/<id>/*.ipynb)")
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise SimilarityError(f"--against {folder} {what}. Give {layouts}.")
    archive_files = sorted(folder.glob("*.json"))
    if archive_files:
        sources = [source for path in archive_files if (source := _read_archive_file(path, assignment))]
        if not sources:
            raise SimilarityError(f"--against {folder} archives other assignments, not {assignment}; "
                                  f"give the archive of {assignment}.")
    else:
        sources = _submission_folders(folder, assignment)
        if not sources:
            raise SimilarityError(f"--against {folder} holds no archive files and no notebooks. Give {layouts}.")
    for source in sources:
        source.label, source.in_class = f"{AGAINST_PREFIX}{label}/{source.label}", False
    return sources


def against_labels(folders: Sequence[Path]) -> list[str]:
    """Short names for the ``--against`` folders: the folder name, or the full path where names repeat."""
    names = [Path(f).resolve().name for f in folders]
    return [name if names.count(name) == 1 else str(Path(f).resolve()) for name, f in zip(names, folders)]


# ----------------------------------------------------------------------------- fingerprints and scores

@dataclass
class Settings:
    """How code is fingerprinted and when a pair is flagged (see the module constants)."""

    noise_chars: int = NOISE_CHARS
    window: int = WINDOW
    threshold: float = DEFAULT_THRESHOLD
    min_overlap_tokens: int = MIN_OVERLAP_TOKENS


def _fingerprint_text(code: str) -> str:
    """``code`` with ``self``/``cls`` as ordinary names of the same length (positions unchanged)."""
    return _PSEUDO_NAMES.sub(lambda m: _PSEUDO_SWAP[m.group(1)], code)


def document(cells: dict[str, str]) -> str:
    """One notebook's own code as one text: the answer cells in release order, each under its grade id.

    The ``# cell:`` lines are comments, which fingerprints ignore; they only guide the reader.
    """
    return "\n".join(f"# cell: {grade_id}\n{code}" for grade_id, code in cells.items())


def fingerprint(code: str, settings: Settings, boilerplate: np.ndarray | None = None) -> Any:
    """copydetect's ``CodeFingerprint`` of a piece of Python code (filtered and winnowed).

    ``raw_code`` of the result is the fingerprinted text (``self`` swapped, same length as ``code``).
    """
    from copydetect import CodeFingerprint

    return CodeFingerprint("answer.py", settings.noise_chars, settings.window, boilerplate=boilerplate,
                           filter=True, language="python", fp=io.StringIO(_fingerprint_text(code)))


def boilerplate_hashes(release_nb: dict[str, Any], settings: Settings) -> np.ndarray:
    """Hashes of every k-gram of the release's answer cells (window 1: all of them, as copydetect does)."""
    text = "\n".join(_answer_cells(release_nb).values())
    if not text.strip():
        return np.array([], dtype=np.int64)
    release_settings = Settings(noise_chars=settings.noise_chars, window=1)
    return np.unique(np.array(sorted(fingerprint(text, release_settings).hashes), dtype=np.int64))


@dataclass
class PairScore:
    """Scores of one pair of learners for one notebook (one CSV row)."""

    notebook: str
    learner_a: str
    learner_b: str
    similarity_a: float
    similarity_b: float
    overlap_tokens: int
    flagged: bool = False
    #: learner_b is an entry of an --against folder
    against: bool = False

    @property
    def score(self) -> float:
        """The larger of the two similarities (usually that of the shorter code): what the page sorts by."""
        return max(self.similarity_a, self.similarity_b)

    def row(self) -> dict[str, Any]:
        return {"notebook": self.notebook, "learner_a": self.learner_a, "learner_b": self.learner_b,
                "similarity_a": f"{self.similarity_a:.3f}", "similarity_b": f"{self.similarity_b:.3f}",
                "overlap_tokens": self.overlap_tokens, "flagged": "yes" if self.flagged else ""}


class _NoCode:
    """Stands for the fingerprint of a learner who wrote no code in a notebook."""

    hash_idx: dict[int, list[int]] = {}
    token_coverage = 0


_EMPTY = _NoCode()


class _Fingerprints:
    """The winnowed fingerprints of many documents as arrays, for scoring every pair at once.

    For document d: ``positions[d]`` (sorted filtered-text positions of its fingerprints),
    ``hash_ids[d]`` (a dense id per distinct hash) and ``coverage[d]`` (copydetect's
    ``token_coverage``); ``present`` is a (documents x hashes) boolean matrix.
    """

    def __init__(self, prints: Sequence[Any], k: int) -> None:
        self.k = k
        ids: dict[int, int] = {}
        self.positions: list[np.ndarray] = []
        self.hash_ids: list[np.ndarray] = []
        for fp in prints:
            pairs = sorted({(int(i), ids.setdefault(int(h), len(ids)))
                            for h, where in fp.hash_idx.items() for i in where})
            self.positions.append(np.array([p for p, _ in pairs], dtype=np.int64))
            self.hash_ids.append(np.array([h for _, h in pairs], dtype=np.int64))
        self.coverage = np.array([float(fp.token_coverage) for fp in prints])
        self.present = np.zeros((len(prints), max(1, len(ids))), dtype=bool)
        for d, hash_ids in enumerate(self.hash_ids):
            self.present[d, hash_ids] = True

    def overlap_with_all(self, a: int) -> np.ndarray:
        """Tokens of document ``a`` that each document also has (copydetect's token overlap), one per document.

        copydetect merges the matched k-grams [i, i + k) of ``a`` into slices and sums their
        lengths; for sorted positions that sum is ``sum(min(k, next matched position - i))``.
        """
        positions = self.positions[a]
        documents = self.present.shape[0]
        if len(positions) == 0:
            return np.zeros(documents, dtype=np.int64)
        shared = self.present[:, self.hash_ids[a]]
        far = positions[-1] + self.k + 1
        matched_at = np.where(shared, positions[None, :], far)
        # the next matched position to the right of each one: a reversed running minimum
        following = np.minimum.accumulate(matched_at[:, ::-1], axis=1)[:, ::-1]
        following = np.concatenate([following[:, 1:], np.full((documents, 1), far)], axis=1)
        spans = np.minimum(self.k, following - positions[None, :])
        return np.where(shared, spans, 0).sum(axis=1)


def pair_scores(notebook: str, learners: Sequence[Learner], prints: Sequence[Any],
                settings: Settings) -> list[PairScore]:
    """Scores of every class pair and of every (class learner, ``--against`` entry) pair for one notebook.

    ``prints[i]`` is the fingerprint of ``learners[i]``'s code in this notebook (None: no code of
    their own). Gives the same numbers as copydetect's ``compare_files`` on each pair.
    """
    arrays = _Fingerprints([fp if fp is not None else _EMPTY for fp in prints], settings.noise_chars)
    overlap = np.stack([arrays.overlap_with_all(d) for d in range(len(learners))]) if learners else np.zeros((0, 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        similarity = np.where(overlap > 0, overlap / arrays.coverage[:, None], 0.0)
    in_class = [learner.in_class for learner in learners]
    scores = []
    for a, learner in enumerate(learners):
        if not in_class[a]:
            continue
        for b in range(len(learners)):
            if b == a or (in_class[b] and b < a):
                continue
            pair = PairScore(notebook, learner.label, learners[b].label, float(similarity[a, b]),
                             float(similarity[b, a]), int(overlap[a, b]), against=not in_class[b])
            pair.flagged = pair.score >= settings.threshold and pair.overlap_tokens >= settings.min_overlap_tokens
            scores.append(pair)
    return scores


# ----------------------------------------------------------------------------- preparing the learners

@dataclass
class _Context:
    """What preparing a learner needs; forked workers inherit it."""

    release_folder: Path
    releases: dict[str, dict[str, Any]]
    scratch: Path
    settings: Settings | None = None  # None: extract only, no fingerprints
    boilerplate: dict[str, np.ndarray] = field(default_factory=dict)


def _prepare(context: _Context, index: int, source: _Source) -> Learner:
    """Extract (unless archived) and fingerprint one learner's code."""
    if source.folder is not None:
        notebooks = extract_submission(context.release_folder, context.releases, source.folder,
                                       context.scratch / str(index))
    else:
        notebooks = {nb: cells for nb, cells in (source.notebooks or {}).items() if nb in context.releases}
    learner = Learner(source.label, notebooks, in_class=source.in_class)
    if context.settings is not None:
        learner.prints = {nb: fingerprint(document(cells), context.settings, context.boilerplate[nb])
                          for nb, cells in notebooks.items()}
    return learner


_WORKER_CONTEXT: _Context | None = None


def _prepare_in_worker(job: tuple[int, _Source]) -> Learner:
    assert _WORKER_CONTEXT is not None
    return _prepare(_WORKER_CONTEXT, *job)


def prepare_learners(sources: Sequence[_Source], context: _Context, workers: int = 0) -> list[Learner]:
    """Every source extracted and fingerprinted, in order, with ``workers`` processes (0: one per core).

    Workers are forked, never spawned: copydetect hashes k-grams with Python's ``hash()``, whose
    salt differs between interpreters, and forked workers share the parent's. Where fork is not
    available the work is done in this process.
    """
    global _WORKER_CONTEXT
    workers = min(workers or os.cpu_count() or 1, len(sources))
    if workers < 2 or "fork" not in mp.get_all_start_methods():
        return [_prepare(context, i, source) for i, source in enumerate(sources)]
    _WORKER_CONTEXT = context
    try:
        with mp.get_context("fork").Pool(workers) as pool:
            jobs = list(enumerate(sources))
            return pool.map(_prepare_in_worker, jobs, chunksize=max(1, len(jobs) // (4 * workers)))
    finally:
        _WORKER_CONTEXT = None


# ----------------------------------------------------------------------------- the whole run

@dataclass
class FlaggedPair:
    """A flagged pair ready for the page: scores and both sides' code, highlighted and escaped."""

    pair: PairScore
    html_a: str
    html_b: str


@dataclass
class SimilarityResult:
    """What one run compared and found."""

    assignment: str
    learners: int
    against: int
    notebooks: list[str]
    pairs: list[PairScore]
    flagged: dict[str, list[FlaggedPair]]
    settings: Settings
    #: per notebook: how many learners (and --against entries) wrote code of their own there
    with_code: dict[str, int] = field(default_factory=dict)
    #: per notebook: the median score of the pairs whose both sides wrote code (how alike answers
    #: are there anyway: high where the exercise has one natural answer)
    median: dict[str, float] = field(default_factory=dict)
    seconds_extraction: float = 0.0
    seconds_comparison: float = 0.0

    @property
    def flagged_count(self) -> int:
        return sum(1 for p in self.pairs if p.flagged)


def highlighted(code: str, slices: np.ndarray) -> str:
    """``code`` as escaped HTML with the matched slices in ``<mark>`` (copydetect's ``highlight_overlap``)."""
    from copydetect.utils import highlight_overlap
    from markupsafe import escape

    if slices.size == 0:
        return str(escape(code))
    text, _share = highlight_overlap(code, slices.astype(int), "<mark>", "</mark>", escape_html=True)
    return text


@dataclass
class _Comparison:
    """What :func:`compare` found: every pair, the flagged pairs to show, and per-notebook context."""

    pairs: list[PairScore] = field(default_factory=list)
    flagged: dict[str, list[FlaggedPair]] = field(default_factory=dict)
    with_code: dict[str, int] = field(default_factory=dict)
    median: dict[str, float] = field(default_factory=dict)


def compare(learners: Sequence[Learner], notebooks: Sequence[str], settings: Settings,
            max_shown: int = DEFAULT_MAX_SHOWN) -> _Comparison:
    """Score every pair in every notebook; highlight the flagged pairs shown on the page (highest first)."""
    from copydetect import compare_files

    found = _Comparison()
    index = {learner.label: i for i, learner in enumerate(learners)}
    for notebook in notebooks:
        prints = [learner.prints.get(notebook) for learner in learners]
        pairs = pair_scores(notebook, learners, prints, settings)
        found.pairs.extend(pairs)
        coders = {learner.label for learner, fp in zip(learners, prints) if fp is not None}
        both = [p.score for p in pairs if p.learner_a in coders and p.learner_b in coders]
        found.with_code[notebook] = len(coders)
        found.median[notebook] = float(np.median(both)) if both else 0.0
        shown = sorted((p for p in pairs if p.flagged), key=lambda p: (-p.score, p.learner_a, p.learner_b))
        entries = []
        for pair in shown[:max_shown]:
            a, b = index[pair.learner_a], index[pair.learner_b]
            _overlap, _shares, (slices_a, slices_b) = compare_files(prints[a], prints[b])
            entries.append(FlaggedPair(pair, highlighted(document(learners[a].notebooks[notebook]), slices_a),
                                       highlighted(document(learners[b].notebooks[notebook]), slices_b)))
        if shown:
            found.flagged[notebook] = entries
    return found


def run_similarity(root: Path, assignment: str, *, release_dir: Path | None = None,
                   against: Sequence[Path] = (), settings: Settings | None = None,
                   max_shown: int = DEFAULT_MAX_SHOWN, workers: int = 0) -> SimilarityResult:
    """Extract, fingerprint and compare a class and the ``--against`` folders (writes nothing but temporary files)."""
    settings = settings or Settings()
    if not 0 < settings.threshold <= 1:
        raise SimilarityError(f"--threshold {settings.threshold:g} is outside (0, 1]: give a share such as "
                              f"{DEFAULT_THRESHOLD}.")
    release_dir = Path(release_dir) if release_dir else Path(root) / "release"
    releases = release_notebooks(release_dir, assignment)
    sources = class_sources(root, assignment)
    for folder, label in zip(against, against_labels(against)):
        sources += against_sources(Path(folder), assignment, label)
    started = time.perf_counter()
    boilerplate = {name: boilerplate_hashes(nb, settings) for name, nb in releases.items()}
    with tempfile.TemporaryDirectory(prefix="similarity-") as scratch:
        context = _Context(release_dir / assignment, releases, Path(scratch), settings, boilerplate)
        learners = prepare_learners(sources, context, workers)
    prepared = time.perf_counter()
    found = compare(learners, list(releases), settings, max_shown)
    in_class = sum(1 for learner in learners if learner.in_class)
    return SimilarityResult(assignment=assignment, learners=in_class, against=len(learners) - in_class,
                            notebooks=list(releases), pairs=found.pairs, flagged=found.flagged, settings=settings,
                            with_code=found.with_code, median=found.median,
                            seconds_extraction=prepared - started,
                            seconds_comparison=time.perf_counter() - prepared)


def archive_class(root: Path, assignment: str, out: Path, *, release_dir: Path | None = None,
                  workers: int = 0) -> list[Path]:
    """Extract every submission of ``assignment`` (after preflight repair) and write it as an archive to ``out``."""
    release_dir = Path(release_dir) if release_dir else Path(root) / "release"
    releases = release_notebooks(release_dir, assignment)
    sources = class_sources(root, assignment)
    for path in sorted(Path(out).glob("*.json")):
        if _read_archive_file(path, assignment) is None:
            raise SimilarityError(f"--out {out} already holds the archive of another assignment ({path.name}); "
                                  f"give each assignment its own folder, e.g. {Path(out) / assignment}.")
    with tempfile.TemporaryDirectory(prefix="similarity-") as scratch:
        learners = prepare_learners(sources, _Context(release_dir / assignment, releases, Path(scratch)), workers)
    return write_archive(learners, assignment, out)


# ----------------------------------------------------------------------------- report

def write_csv(pairs: Iterable[PairScore], path: Path) -> Path:
    """Every pair's scores, one row per pair and notebook."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for pair in pairs:
            writer.writerow(pair.row())
    return path


def render_html(result: SimilarityResult) -> str:
    """The report page: flagged pairs per notebook, highest first, code side by side (all learner text escaped)."""
    from jinja2 import Environment
    from markupsafe import Markup

    env = Environment(autoescape=True, keep_trailing_newline=True)
    template = env.from_string(TEMPLATE_FILE.read_text(encoding="utf-8"))
    sections = [{"notebook": notebook, "with_code": result.with_code.get(notebook, 0),
                 "median": result.median.get(notebook, 0.0),
                 "total": sum(1 for p in result.pairs if p.notebook == notebook and p.flagged),
                 "pairs": [{"pair": f.pair, "html_a": Markup(f.html_a), "html_b": Markup(f.html_b)}
                           for f in result.flagged.get(notebook, [])]}
                for notebook in result.notebooks]
    top = sorted((p for p in result.pairs if p.flagged), key=lambda p: (-p.score, p.notebook, p.learner_a))
    top_class = [p for p in top if not p.against][:TOP_ROWS]
    top_against = [p for p in top if p.against][:TOP_ROWS]
    return template.render(result=result, sections=sections, top_class=top_class, top_against=top_against,
                           settings=result.settings)


def write_report(result: SimilarityResult, out: Path) -> tuple[Path, Path]:
    """Write ``report.html`` and ``scores.csv`` into ``out``; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = write_csv(result.pairs, out / "scores.csv")
    html_path = out / "report.html"
    html_path.write_text(render_html(result), encoding="utf-8")
    return html_path, csv_path


# ----------------------------------------------------------------------------- command line

def _add_course_arguments(parser: Any) -> None:
    parser.add_argument("assignment", help="assignment name, e.g. 02_numpy_library")
    parser.add_argument("--root", default=None,
                        help="nbgrader course folder with submitted/ (default: nbgrader_config.py's)")
    parser.add_argument("--release-dir", default=None, help="release folder (default: <root>/release)")
    parser.add_argument("-j", "--workers", type=int, default=0,
                        help="processes that extract and fingerprint submissions (default: number of cores)")


def add_arguments(parser: Any) -> None:
    """Options of ``python -m course_tools similarity``."""
    _add_course_arguments(parser)
    parser.add_argument("--against", action="append", default=[], metavar="DIR",
                        help="also compare every learner with this folder: an archive of an earlier term "
                             "(`archive --out DIR`) or submission folders DIR/<id>/[ASSIGNMENT/]*.ipynb; repeatable")
    parser.add_argument("--out", default=None, help="report folder (default: <root>/similarity/<assignment>)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help=f"flag pairs whose similarity reaches this share (default {DEFAULT_THRESHOLD})")
    parser.add_argument("--max-shown", type=int, default=DEFAULT_MAX_SHOWN,
                        help=f"flagged pairs shown with their code per notebook (default {DEFAULT_MAX_SHOWN}; "
                             "the CSV has every pair)")


def add_archive_arguments(parser: Any) -> None:
    """Options of ``python -m course_tools archive``."""
    _add_course_arguments(parser)
    parser.add_argument("--out", required=True,
                        help="archive folder: one JSON file per learner (learner id and code, nothing else)")


def _paths(args: Any, out: str | None) -> tuple[Path, Path | None, Path]:
    """(course root, release folder or None for the default, output folder) of a command line.

    Refuses an output folder inside ``submitted/``: these commands only read submissions.
    """
    from course_tools.course import load_config

    root = Path(args.root or load_config().CourseDirectory.root).resolve()
    target = Path(out) if out else root / "similarity" / args.assignment
    submitted = root / "submitted"
    if target.resolve() == submitted or submitted in target.resolve().parents:
        raise SimilarityError(f"--out {target} is inside {submitted}, which this command never writes to; "
                              "choose a folder outside submitted/.")
    return root, Path(args.release_dir) if args.release_dir else None, target


def main(args: Any) -> int:
    """Run ``similarity``: 0 when the report was written, 2 when it could not be made."""
    try:
        root, release_dir, out = _paths(args, args.out)
        result = run_similarity(root, args.assignment, release_dir=release_dir, against=[Path(a) for a in args.against],
                                settings=Settings(threshold=args.threshold), max_shown=args.max_shown,
                                workers=args.workers)
    except SimilarityError as exc:
        print(f"similarity: {exc}", file=sys.stderr)
        return 2
    html_path, csv_path = write_report(result, out)
    against = f" and {result.against} entries of --against folders" if result.against else ""
    print(f"{result.learners} learners{against}, {len(result.notebooks)} notebooks: {len(result.pairs)} pairs "
          f"compared, {result.flagged_count} flagged at similarity >= {result.settings.threshold:g}")
    print(f"report: {html_path}\nscores: {csv_path}")
    print("A high score is a reason to read both submissions, not a verdict.")
    return 0


def archive_main(args: Any) -> int:
    """Run ``archive``: store the class's own code for a later ``--against``; 0 on success, 2 on bad input."""
    try:
        root, release_dir, out = _paths(args, args.out)
        written = archive_class(root, args.assignment, out, release_dir=release_dir, workers=args.workers)
    except SimilarityError as exc:
        print(f"archive: {exc}", file=sys.stderr)
        return 2
    print(f"{len(written)} learners of {args.assignment} archived in {out} (learner ids and their own code only); "
          f"compare a later term with it: --against {out}")
    return 0
