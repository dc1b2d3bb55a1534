"""Check every submission against the release before grading, and repair what is unambiguous.

Plain nbgrader gives a silent zero for a notebook whose nbgrader metadata was
stripped (some editors and Colab round trips do this), skips a renamed
notebook, crashes on a file that is not a notebook, and scores a deleted test
cell 0 without a warning (``docs/nbgrader_facts.md``). :func:`prepare_submission`
looks at one ``submitted/<student>/<assignment>`` folder, compares each
notebook with the release the learner was given, and writes the copy that
nbgrader grades (``preflighted/<student>/<assignment>``); the submitted files
are never changed. Every finding names the notebook, what was found, what was
done and, when nothing could be done, what to do.

A cell of the submission is matched to a release cell, in this order:

1. its nbgrader ``grade_id`` (metadata present and known);
2. its cell id (Jupyter keeps cell ids when an editor drops other metadata);
3. for a locked cell, the same source text as the release;
4. for an answer cell, the stub's signature: the comment, ``def`` and
   ``class`` lines the release cell starts with, and the names it assigns;
5. by position: between two matched cells, when the submission and the
   release have the same number of cells there, of the same types.

Repairs: nbgrader metadata restored on matched cells; a deleted test cell put
back from the release at its place; extra copies of a test cell no longer
graded; matched cells put back in release order; a notebook saved under
another name (``Copy of x.ipynb``, ``x (1).ipynb``) graded under its release
name when its cells match that notebook and nothing else. Reported without
repair: a missing or unreadable notebook (it scores 0 until resubmitted).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import nbformat

from course_tools.notebook_model import is_answer, is_nbgrader_cell, is_test, nbgrader_metadata

#: nbgrader metadata fields that decide how a cell is graded
KEY_FIELDS = ("grade", "solution", "locked", "task", "grade_id", "points")
_STUB_LINE = re.compile(r"^\s*(# YOUR CODE HERE|raise NotImplementedError\(.*\)|YOUR ANSWER HERE)\s*$")
_PLACEHOLDER = re.compile(r"^(\w+) = None  # replace None with your answer$")
_SIGNATURE_LINE = re.compile(r"^\s*(#|def |async def |class )")
#: share of an answer cell's signature that must be found in a submission cell
SIGNATURE_SHARE = 0.6
#: share of a notebook's release cells that a renamed notebook must match
RENAME_SHARE = 0.5


@dataclass
class Finding:
    """One thing preflight noticed in a submitted notebook.

    Attributes:
        notebook: release name of the notebook (without .ipynb), or the file name for extra files.
        kind: short key (``metadata_stripped``, ``cell_deleted``, ``renamed``, ``unreadable``, ...).
        action: ``repaired`` (fixed before grading), ``problem`` (not fixed: the score is affected;
            ``advice`` says what to do) or ``note`` (no effect on the score).
        message: what was found and done, in one sentence.
        advice: for problems, what the instructor or learner should do.
    """

    notebook: str
    kind: str
    action: str
    message: str
    advice: str = ""


@dataclass
class PreflightReport:
    """Findings for one submission and the notebooks handed to nbgrader."""

    student: str
    assignment: str
    findings: list[Finding] = field(default_factory=list)
    gradable: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)

    @property
    def repaired(self) -> list[Finding]:
        return [f for f in self.findings if f.action == "repaired"]

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.action == "problem"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PreflightReport":
        data = dict(data)
        data["findings"] = [Finding(**f) for f in data.get("findings", [])]
        return cls(**data)


def _key(meta: dict[str, Any]) -> tuple:
    return tuple(meta.get(name) for name in KEY_FIELDS)


def _text(cell: Any) -> str:
    source = cell.get("source", "")
    return ("".join(source) if isinstance(source, list) else str(source)).strip()


def signature(release_cell: Any) -> list[str]:
    """What identifies an answer cell once filled in: header lines and names its stub assigns.

    ``["# a = W1 x + b1, a list of 2 numbers", "a ="]`` for a module-level answer;
    ``["class Linear:", "def forward(self, A):", ...]`` for a class to complete.
    """
    parts: list[str] = []
    for line in _text(release_cell).split("\n"):
        placeholder = _PLACEHOLDER.match(line.strip())
        if placeholder:
            parts.append(f"{placeholder.group(1)} =")
        elif _SIGNATURE_LINE.match(line) and not _STUB_LINE.match(line):
            parts.append(line.strip())
    return parts


def _signature_share(parts: list[str], text: str) -> float:
    if not parts:
        return 0.0
    lines = {line.strip() for line in text.split("\n")}
    found = 0
    for part in parts:
        if part.endswith(" =") and re.match(r"^\w+ =$", part):
            found += bool(re.search(rf"^{re.escape(part[:-2])}\s*=", text, re.M))
        else:
            found += part in lines
    return found / len(parts)


class _Matcher:
    """Matches the cells of one submitted notebook to the cells of its release notebook."""

    def __init__(self, release: Any, submitted: Any) -> None:
        self.release = release.cells
        self.cells = submitted.cells
        self.match: dict[int, int] = {}  # submission index -> release index
        self.how: dict[int, str] = {}
        self.release_by_grade_id = {nbgrader_metadata(c)["grade_id"]: i for i, c in enumerate(self.release)
                                    if nbgrader_metadata(c).get("grade_id")}

    def _claimed(self) -> set[int]:
        return set(self.match.values())

    def _set(self, j: int, i: int, how: str) -> None:
        self.match[j], self.how[j] = i, how

    def run(self) -> None:
        release_ids = {c.get("id"): i for i, c in enumerate(self.release) if c.get("id")}
        locked_text: dict[str, list[int]] = {}
        for i, c in enumerate(self.release):
            if nbgrader_metadata(c).get("locked"):
                locked_text.setdefault(_text(c), []).append(i)
        # 1. grade_id (several submission cells may claim the same release cell: duplicates)
        for j, cell in enumerate(self.cells):
            grade_id = nbgrader_metadata(cell).get("grade_id")
            if grade_id in self.release_by_grade_id and is_nbgrader_cell(cell):
                self._set(j, self.release_by_grade_id[grade_id], "grade id")
        # 2. cell id, 3. locked content
        for j, cell in enumerate(self.cells):
            if j in self.match:
                continue
            i = release_ids.get(cell.get("id"))
            if i is not None and i not in self._claimed() and self.release[i].cell_type == cell.cell_type:
                self._set(j, i, "cell id")
                continue
            candidates = [i for i in locked_text.get(_text(cell), []) if i not in self._claimed()]
            if len(candidates) == 1 and _text(cell):
                self._set(j, candidates[0], "locked content")
        # 4. answer-cell signature, unique best candidate
        answers = [i for i, c in enumerate(self.release) if is_answer(c) and c.cell_type == "code"]
        signatures = {i: signature(self.release[i]) for i in answers}
        for j, cell in enumerate(self.cells):
            if j in self.match or cell.cell_type != "code":
                continue
            scores = sorted(((_signature_share(signatures[i], _text(cell)), i) for i in answers
                             if i not in self._claimed()), reverse=True)
            if scores and scores[0][0] >= SIGNATURE_SHARE and (len(scores) == 1 or scores[1][0] < scores[0][0]):
                self._set(j, scores[0][1], "stub signature")
        # 5. position, between monotone anchors
        anchors = [(-1, -1)] + sorted((j, i) for j, i in self.match.items()) + [(len(self.cells), len(self.release))]
        for (j0, i0), (j1, i1) in zip(anchors, anchors[1:]):
            if i1 <= i0:
                continue
            gap_s, gap_r = list(range(j0 + 1, j1)), list(range(i0 + 1, i1))
            if len(gap_s) != len(gap_r) or not gap_s:
                continue
            if all(self.cells[j].cell_type == self.release[i].cell_type for j, i in zip(gap_s, gap_r)):
                for j, i in zip(gap_s, gap_r):
                    if i not in self._claimed() and is_nbgrader_cell(self.release[i]):
                        self._set(j, i, "position")


def _load(path: Path) -> tuple[Any | None, str]:
    """(notebook, "") or (None, why it cannot be read)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot be read ({exc.__class__.__name__}: {exc})"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
    if not isinstance(data, dict) or "cells" not in data and "worksheets" not in data:
        return None, "is JSON but not a Jupyter notebook (no cells)"
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as exc:  # nbformat raises several types for malformed notebooks
        return None, f"is not a readable notebook ({exc.__class__.__name__}: {str(exc)[:200]})"
    return nb, ""


def _release_share(release: Any, nb: Any) -> float:
    """Share of the release's graded cells that a notebook's cells match."""
    graded = [i for i, c in enumerate(release.cells) if is_nbgrader_cell(c)]
    if not graded:
        return 0.0
    matcher = _Matcher(release, nb)
    matcher.run()
    return len(set(matcher.match.values()) & set(graded)) / len(graded)


def _fresh_id(taken: set[str], wanted: str | None) -> str:
    if wanted and wanted not in taken:
        return wanted
    while True:
        candidate = uuid.uuid4().hex[:8]
        if candidate not in taken:
            return candidate


def _longest_increasing(values: list[int]) -> list[int]:
    """A longest strictly increasing subsequence (the cells that need not move)."""
    best: list[list[int]] = []
    for k, v in enumerate(values):
        chain = max((best[m] for m in range(k) if values[m] < v), key=len, default=[])
        best.append(chain + [v])
    return max(best, key=len, default=[])


def repair_notebook(name: str, release: Any, nb: Any) -> tuple[Any, list[Finding]]:
    """Repair one submitted notebook against its release; returns (notebook, findings).

    The returned notebook is a new object; ``nb`` is not changed.
    """
    nb = copy.deepcopy(nb)
    findings: list[Finding] = []
    matcher = _Matcher(release, nb)
    matcher.run()
    rel = release.cells
    graded_release = [i for i, c in enumerate(rel) if is_nbgrader_cell(c)]
    had_metadata = sum(1 for c in nb.cells if is_nbgrader_cell(c))

    # Duplicates: several submission cells matched to the same release cell.
    by_release: dict[int, list[int]] = {}
    for j, i in sorted(matcher.match.items()):
        by_release.setdefault(i, []).append(j)
    drop_meta: set[int] = set()
    for i, js in by_release.items():
        if len(js) < 2:
            continue
        grade_id = nbgrader_metadata(rel[i]).get("grade_id")
        if is_test(rel[i]):
            keep = js[0]
            for j in js[1:]:
                drop_meta.add(j)
                del matcher.match[j]
            findings.append(Finding(name, "cell_duplicated", "repaired",
                                    f"test cell '{grade_id}' appears {len(js)} times; only the first copy is "
                                    "graded, the other copies run as ordinary code"))
            matcher.match[keep] = i
        else:
            for j in js[:-1]:
                drop_meta.add(j)
                del matcher.match[j]
            findings.append(Finding(name, "cell_duplicated", "note",
                                    f"cell '{grade_id}' appears {len(js)} times; all copies run in order "
                                    "(the last one is kept as the answer cell)"))

    # Metadata: restore on matched cells, remove unknown grade ids.
    restored: list[str] = []
    for j, cell in enumerate(nb.cells):
        meta = nbgrader_metadata(cell)
        if j in matcher.match:
            want = nbgrader_metadata(rel[matcher.match[j]])
            if _key(meta) != _key(want) or meta.get("schema_version") != want.get("schema_version"):
                cell.metadata["nbgrader"] = copy.deepcopy(want)
                restored.append(f"{want.get('grade_id')} (by {matcher.how[j]})")
        elif j in drop_meta or is_nbgrader_cell(cell):
            if j not in drop_meta:
                findings.append(Finding(name, "unknown_cell", "repaired",
                                        f"a cell carries grade id '{meta.get('grade_id')}', which the release does "
                                        "not have; it runs as ordinary code"))
            cell.metadata.pop("nbgrader", None)
    if restored:
        kind, what = (("metadata_stripped", "the nbgrader metadata of every cell was removed (an editor or a "
                       "Colab round trip does this)") if had_metadata == 0 else
                      ("metadata_altered", "nbgrader metadata was missing or changed in some cells"))
        findings.append(Finding(name, kind, "repaired",
                                f"{what}; restored from the release for {len(restored)} cell(s): "
                                + ", ".join(restored)))

    # Order: matched cells must follow the release order; other cells travel with the one above them.
    pairs = sorted(matcher.match.items())
    order = [i for _, i in pairs]
    if order != sorted(order):
        staying = set(_longest_increasing(order))
        moved = [nbgrader_metadata(rel[i]).get("grade_id") or str(rel[i].get("id")) for i in order if i not in staying]
        keyed, last = [], -1
        for j in range(len(nb.cells)):
            last = matcher.match.get(j, last)
            keyed.append((last, j))
        keyed.sort()
        nb.cells = [nb.cells[j] for _, j in keyed]
        matcher.match = {new: matcher.match[old] for new, (_, old) in enumerate(keyed) if old in matcher.match}
        findings.append(Finding(name, "cells_reordered", "repaired",
                                "cells were out of the release order; put back in order: " + ", ".join(moved)))

    # Missing cells: put test cells back at their place; report missing answer cells.
    present = set(matcher.match.values())
    taken = {c.get("id") for c in nb.cells if c.get("id")}
    inserted: list[str] = []
    for i in graded_release:
        if i in present:
            continue
        meta = nbgrader_metadata(rel[i])
        if is_test(rel[i]):
            before = [j for j, r in matcher.match.items() if r < i]
            at = max(before) + 1 if before else 0
            cell = copy.deepcopy(rel[i])
            if nb.nbformat_minor >= 5 or "id" in cell:
                cell["id"] = _fresh_id(taken, cell.get("id"))
                taken.add(cell["id"])
            if nb.nbformat_minor < 5:
                cell.pop("id", None)
            nb.cells.insert(at, cell)
            matcher.match = {(j + 1 if j >= at else j): r for j, r in matcher.match.items()}
            matcher.match[at] = i
            inserted.append(meta.get("grade_id"))
        elif is_answer(rel[i]):
            findings.append(Finding(name, "answer_cell_missing", "note",
                                    f"answer cell '{meta.get('grade_id')}' was not found; its tests run on whatever "
                                    "the notebook defines elsewhere"))
    if inserted:
        findings.append(Finding(name, "cell_deleted", "repaired",
                                "test cell(s) deleted from the submission were put back from the release: "
                                + ", ".join(inserted)))
    return nb, findings


def _copy_other_files(submitted: Path, out: Path) -> None:
    for path in sorted(submitted.rglob("*")):
        rel = path.relative_to(submitted)
        if path.is_symlink() or ".ipynb_checkpoints" in rel.parts or path.suffix == ".ipynb":
            continue
        if path.is_dir():
            (out / rel).mkdir(parents=True, exist_ok=True)
        elif path.is_file():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, out / rel)


def _stem_guess(file_name: str, names: Iterable[str]) -> str | None:
    """The release name that a renamed file most likely was (``Copy of x``, ``x (1)``, ``x-Copy1``)."""
    stem = re.sub(r"^(Copy of |copy_of_)", "", Path(file_name).stem)
    stem = re.sub(r"(\s*\(\d+\)|-Copy\d+|_copy|\s*copy)$", "", stem, flags=re.I)
    return stem if stem in set(names) else None


def prepare_submission(release_folder: Path, submitted: Path, out: Path, *, student: str = "",
                       assignment: str = "") -> PreflightReport:
    """Check ``submitted`` against ``release_folder`` and write the folder nbgrader will grade to ``out``.

    ``out`` is replaced. Notebooks that need no repair are copied byte for byte; a
    notebook that cannot be read or was not submitted is left out (nbgrader then
    scores it 0 and the report says so). Returns the findings.
    """
    release_folder, submitted, out = Path(release_folder), Path(submitted), Path(out)
    report = PreflightReport(student=student or submitted.parent.name, assignment=assignment or submitted.name)
    releases = {p.stem: nbformat.read(p, as_version=4) for p in sorted(release_folder.glob("*.ipynb"))}
    report.expected = sorted(releases)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    _copy_other_files(submitted, out)

    files = {p.name: p for p in sorted(submitted.glob("*.ipynb")) if p.is_file() and not p.is_symlink()}
    chosen: dict[str, tuple[Any, bytes | None]] = {}  # name -> (notebook, original bytes if unchanged)
    unreadable: dict[str, str] = {}
    for name in releases:
        path = files.pop(f"{name}.ipynb", None)
        if path is None:
            continue
        nb, why = _load(path)
        if nb is None:
            unreadable[name] = why
        else:
            chosen[name] = (nb, path.read_bytes())

    # Extra notebooks: a renamed copy of a missing notebook, or just an extra file.
    extras = {}
    for file_name, path in files.items():
        nb, why = _load(path)
        if nb is None:
            report.findings.append(Finding(file_name, "extra_file", "note",
                                           f"{file_name} is not part of the assignment and {why}; ignored"))
            continue
        extras[file_name] = nb
    for name in [n for n in releases if n not in chosen]:
        candidates = [(f, _release_share(releases[name], nb)) for f, nb in extras.items()]
        candidates = [(f, s) for f, s in candidates if s >= RENAME_SHARE]
        guessed = [f for f, _ in candidates if _stem_guess(f, releases) == name]
        if len(candidates) == 1 or len(guessed) == 1:
            file_name = guessed[0] if len(guessed) == 1 else candidates[0][0]
            chosen[name] = (extras.pop(file_name), None)
            unreadable.pop(name, None)
            report.findings.append(Finding(name, "renamed", "repaired",
                                           f"{file_name} is graded as {name}.ipynb (its cells match that notebook)"))
        elif len(candidates) > 1:
            report.findings.append(Finding(name, "renamed_ambiguous", "problem",
                                           f"{name}.ipynb is missing and several files could be it: "
                                           + ", ".join(f for f, _ in candidates),
                                           "Ask the learner which file to grade, rename it to "
                                           f"{name}.ipynb in submitted/ and grade again."))
    for file_name in extras:
        report.findings.append(Finding(file_name, "extra_file", "note",
                                       f"{file_name} is not part of the assignment; ignored"))
    for name, why in unreadable.items():
        report.findings.append(Finding(name, "unreadable", "problem",
                                       f"{name}.ipynb {why}; it scores 0",
                                       "Ask the learner to download the notebook again from Jupyter "
                                       "(File > Download) and resubmit; then grade again with --force."))
    for name in releases:
        if name not in chosen and name not in unreadable and not any(
                f.notebook == name and f.kind == "renamed_ambiguous" for f in report.findings):
            report.findings.append(Finding(name, "missing", "problem",
                                           f"{name}.ipynb was not submitted; it scores 0",
                                           "Check with the learner; if they submit it, grade again with --force."))

    for name, (nb, original) in sorted(chosen.items()):
        repaired, found = repair_notebook(name, releases[name], nb)
        report.findings.extend(found)
        target = out / f"{name}.ipynb"
        if original is not None and not any(f.action == "repaired" for f in found):
            target.write_bytes(original)
        else:
            nbformat.write(repaired, target)
        report.gradable.append(name)
    return report
