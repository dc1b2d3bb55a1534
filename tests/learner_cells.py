"""Run a notebook's graded cells on given learner code, in this process or through nbgrader.

In process: :func:`run_as_notebook` executes a source notebook's import cells
and answer cells (the reference solution, or the code given for a cell) the
way a kernel does, in one namespace named ``__main__``; :func:`failing` then
runs each graded test cell there (visible checks and hidden tests alike) and
lists those that raise. Through nbgrader: :func:`whole_cell` and
:func:`submission` build a learner-style submission for the ``grading`` fixture.
"""

from __future__ import annotations

import ast
import contextlib
import io
import textwrap
from typing import Any, Mapping

import nbformat
import numpy as np

from course_tools.course import SOURCE_DIR, notebooks
from course_tools.hidden.probes import kit
from course_tools.hidden.probes.kit import default_seed
from course_tools.hidden.verdicts.engine import CELL_SEPARATOR, hidden_call, judge
from course_tools.hidden.verdicts.kit import Evidence, Wrong, decode
from course_tools.authoring.submissions import learner_notebook, solution_text


#: where :func:`run_as_notebook` leaves the code it ran (what the grader reads as the learner's code)
LEARNER_CODE = "__learner_code__"


def _cells(assignment: str, notebook: str) -> list[Any]:
    return nbformat.read(SOURCE_DIR / assignment / f"{notebook}.ipynb", as_version=4).cells


def _meta(cell: Any) -> dict[str, Any]:
    return cell.get("metadata", {}).get("nbgrader", {})


def _is_import_only(source: str) -> bool:
    tree = ast.parse(source)
    return bool(tree.body) and all(isinstance(node, (ast.Import, ast.ImportFrom)) for node in tree.body)


def reference_code(assignment: str, notebook: str, grade_id: str) -> str:
    """The solution of an answer cell, as a learner who got it right would write it (no markers)."""
    for cell in _cells(assignment, notebook):
        if cell.get("id") == grade_id:
            return solution_text(cell.source)
    raise KeyError(f"{assignment}/{notebook} has no cell {grade_id}")


def run_as_notebook(assignment: str, notebook: str, answers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The namespace after the notebook's import cells and answer cells ran, in order.

    ``answers`` maps the grade_id of an answer cell to the code that replaces its reference solution.
    """
    answers = dict(answers or {})
    namespace: dict[str, Any] = {"__name__": "__main__"}
    ran: list[str] = []
    for cell in _cells(assignment, notebook):
        if cell.cell_type != "code":
            continue
        meta = _meta(cell)
        if meta.get("solution") and not meta.get("grade"):
            code = answers.pop(cell.id, None) or solution_text(cell.source)
        elif _is_import_only(cell.source):
            code = cell.source
        else:
            continue
        exec(compile(textwrap.dedent(code), f"<{notebook}: {cell.id}>", "exec"), namespace)
        ran.append(textwrap.dedent(code))
    namespace[LEARNER_CODE] = CELL_SEPARATOR.join(ran)
    if answers:
        raise KeyError(f"{assignment}/{notebook} has no answer cells {sorted(answers)}")
    return namespace


def failing(assignment: str, notebook: str, namespace: dict[str, Any]) -> set[str]:
    """grade_ids of the graded test cells that fail when run in ``namespace`` (their output is discarded).

    A cell fails when it raises (a visible check) or when the verdict on its probe's record,
    decided here as the grading process would, is wrong.
    """
    failed = set()
    for cell in _cells(assignment, notebook):
        if cell.cell_type == "code" and _meta(cell).get("grade"):
            if verdict(cell, namespace) is not None:
                failed.add(cell.id)
    return failed


def verdict(cell: Any, namespace: dict[str, Any]) -> str | None:
    """None if a graded test cell passes in ``namespace``, else why not (visible or hidden part)."""
    kit.SINK = records = []
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(cell.source, f"<{cell.id}>", "exec"), namespace)
    except Exception as error:  # noqa: BLE001
        return f"{type(error).__name__}: {error}"
    finally:
        kit.SINK = None
    call = hidden_call(cell.source)
    if call is None:
        return None
    return judge(call, records, default_seed(call.check), namespace.get(LEARNER_CODE, ""))


def assert_refused_while_patched(checks: Any, cells: tuple[str, ...], namespace: dict[str, Any], owner: Any,
                                 attribute: str) -> None:
    """With ``owner.attribute`` replaced by an always-agreeing function, every hidden check refuses to grade."""
    genuine = getattr(owner, attribute)
    setattr(owner, attribute, lambda *args, **kwargs: True)
    try:
        for cell in cells:
            try:
                getattr(checks, cell)(namespace)
            except AssertionError as error:
                assert "grading refused" in str(error), f"{cell} failed, but not by refusing: {error}"
            else:
                raise AssertionError(f"{cell} graded although {attribute} was replaced")
    finally:
        setattr(owner, attribute, genuine)


def whole_cell(assignment: str, notebook: str, grade_id: str, new_text: str) -> tuple[str, str]:
    """A ``learner_notebook`` edit that replaces the whole solution of an answer cell by ``new_text``."""
    return reference_code(assignment, notebook, grade_id), textwrap.dedent(new_text).strip()


def submission(grading: Any, assignment: str, edits: Mapping[str, Mapping[str, tuple[str, str]]]) -> dict[str, Any]:
    """Every notebook of ``assignment``, filled with the reference solution apart from ``edits``."""
    return {nb.stem: learner_notebook(assignment, nb.stem, edits.get(nb.stem), release_dir=grading.release_dir)
            for nb in notebooks(assignment)}


def probe_records(probe: Any, namespace: dict[str, Any], seed: int | None = None) -> list[dict[str, Any]]:
    """The records the probe function ``probe`` publishes when run in ``namespace`` (no visible part)."""
    kit.SINK = records = []
    try:
        with np.errstate(all="ignore"):
            probe(namespace, seed=seed)
    finally:
        kit.SINK = None
    return records


def reference_record(assignment: str, notebook: str, probes: Any, verdicts: Any,
                     cell: str) -> tuple[dict[str, Any], str, Any]:
    """(record, learner code, verdict) of the hidden check of ``cell`` after the reference solution.

    The verdict is checked to accept the record, so that garbling it afterwards tests the refusals.
    """
    namespace = run_as_notebook(assignment, notebook)
    record = probe_records(getattr(probes, f"check_{cell}"), namespace)[0]
    check = getattr(verdicts, f"check_{cell}")
    check(Evidence(record["behaviour"], int(record["seed"]), record["items"], namespace[LEARNER_CODE]))
    return record, namespace[LEARNER_CODE], check


def means_the_same(encoded: Any, other: Any) -> bool:
    """True when two record items decode to equal values (then garbling one into the other changes nothing)."""
    try:
        return bool(np.all(decode(encoded) == decode(other)))
    except Exception:  # noqa: BLE001 (arrays of other shapes, exceptions: not the same)
        return False


#: what a tampered kernel might put in place of a record item (None: the item is deleted)
GARBLES = (None, {"str": "x"}, {"list": []}, {"object": "thing"}, {"raised": "KeyError: 'x'"},
           {"float": "nan", "type": "float"})


def garbled_outcomes(check: Any, record: dict[str, Any], code: str, garbles: tuple[Any, ...] = GARBLES,
                     keys: Any = None) -> tuple[int, set[str]]:
    """Run the verdict ``check`` on ``record`` with each item (or each of ``keys``) garbled in each way.

    Returns how many garbled records it refused with :class:`Wrong` and the keys whose garbling it
    let pass; any other exception propagates (a verdict must never crash on a record).
    """
    refused, passed = 0, set()
    for key in record["items"] if keys is None else keys:
        for garbled in garbles:
            if isinstance(garbled, dict) and means_the_same(garbled, record["items"][key]):
                continue
            items = dict(record["items"])
            if garbled is None:
                del items[key]
            else:
                items[key] = garbled
            try:
                check(Evidence(record["behaviour"], int(record["seed"]), items, code))
            except Wrong:
                refused += 1
            else:
                passed.add(key)
    return refused, passed
