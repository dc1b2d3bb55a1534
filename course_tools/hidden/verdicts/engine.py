"""From a graded notebook's outputs to verdicts: the part of grading that runs outside the kernel.

Every hidden test region of the course has the same two lines::

    from course_tools.hidden.probes import layers as _probes
    _probes.check_linear_forward(globals())

Before the kernel runs, :func:`seeded_source` writes the cell's seed into the
call (``..., seed=N)``); the seed comes from :func:`cell_seed`, a keyed hash of
the course secret, the learner, the notebook, the cell and the learner's code,
so it is the same on every regrade of the same submission, different for every
learner and for every resubmission, and unknown to anyone without the secret.

After the kernel has run, :func:`decide_cell` takes the cell's record out of
its outputs, checks that it is the one record of that cell's check with that
seed, and calls the verdict module's function of the same name. A wrong answer
(or a missing or malformed record) becomes the cell's error output, which
nbgrader scores 0; the message is what the learner reads.

The nbgrader preprocessors around this are in :mod:`course_tools.authoring.nbgrader_ext`;
in-process runs (tests) call :func:`decide_notebook`.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import math
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from course_tools.hidden.probes.kit import RECORD_MIME, RECORD_VERSION, default_seed
from course_tools.hidden.verdicts.kit import Evidence, GradingMachineError, Wrong

BEGIN, END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
_CALL = re.compile(
    r"^from course_tools\.hidden\.probes import (?P<module>\w+) as _probes\n"
    r"_probes\.(?P<check>check_\w+)\(globals\(\)(?:, seed=\d+)?\)$")
#: Environment variable that, when set, is the course secret (else the secret file is used).
SECRET_ENV = "MYTORCH_GRADING_SECRET"
#: Key of an autograded notebook's metadata that holds :func:`grader_numbers` of its run.
NUMBERS_METADATA = "mytorch_grader_numbers"
#: Marker between the answer cells in :func:`learner_code`.
CELL_SEPARATOR = "\n# --- cell ---\n"


@dataclass(frozen=True)
class HiddenCall:
    """The probe a hidden test region calls: ``course_tools.hidden.probes.<module>.<check>``."""

    module: str
    check: str


def hidden_region(source: str) -> str | None:
    """The text between the hidden-test markers (stripped), or None if the cell has none."""
    start, end = source.find(BEGIN), source.find(END)
    if start < 0 or end < start:
        return None
    return source[start + len(BEGIN):end].strip()


def hidden_call(source: str) -> HiddenCall | None:
    """The probe call of a test cell's hidden region; None if the cell has no hidden region.

    Raises ValueError for a hidden region that is not exactly the course's two lines
    (course authors: see the README's section on hidden tests).
    """
    region = hidden_region(source)
    if region is None:
        return None
    match = _CALL.match(region)
    if match is None:
        raise ValueError("a hidden test region must be exactly the two lines\n"
                         "    from course_tools.hidden.probes import <module> as _probes\n"
                         "    _probes.check_<behaviour>(globals())\n"
                         f"found:\n{region}")
    return HiddenCall(match["module"], match["check"])


def seeded_source(source: str, call: HiddenCall, seed: int) -> str:
    """``source`` with its hidden region rewritten to pass ``seed`` to the probe."""
    start, end = source.find(BEGIN), source.find(END)
    region = (f"\nfrom course_tools.hidden.probes import {call.module} as _probes\n"
              f"_probes.{call.check}(globals(), seed={seed})\n")
    return source[:start + len(BEGIN)] + region + source[end:]


def is_test_cell(cell: Any) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")


def learner_code(nb: Any) -> str:
    """The code of every code cell that is not a locked test cell, in order (what the learner wrote)."""
    parts = []
    for cell in nb.cells:
        if cell.get("cell_type") == "code" and not is_test_cell(cell):
            parts.append(str(cell.get("source", "")))
    return CELL_SEPARATOR.join(parts)


def course_secret(secret_file: str | os.PathLike[str] | None) -> bytes:
    """The course secret: ``$MYTORCH_GRADING_SECRET``, else the file (created, mode 0600, if missing).

    Keep the file for as long as grades may be recomputed: the hidden inputs depend on it.
    """
    value = os.environ.get(SECRET_ENV)
    if value:
        return value.encode("utf-8")
    if secret_file is None:
        raise ValueError(f"no course secret: set {SECRET_ENV} or HiddenTestSeeds.secret_file in nbgrader_config.py")
    path = Path(secret_file)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_hex(32) + "\n")
    return path.read_text(encoding="ascii").strip().encode("utf-8")


def cell_seed(secret: bytes, *, assignment: str, student: str, notebook: str, grade_id: str, code: str) -> int:
    """The seed of one hidden cell for one submission (63 bits of an HMAC-SHA256)."""
    digest = hashlib.sha256(code.encode("utf-8")).hexdigest()
    message = "\x1f".join((assignment, student, notebook, grade_id, digest)).encode("utf-8")
    return int.from_bytes(hmac.new(secret, message, hashlib.sha256).digest()[:8], "big") >> 1


def _records(cell: Any) -> tuple[list[Any], list[Any]]:
    """(records, outputs to keep) of a hidden cell.

    Results (``execute_result``) are dropped too: the probe call returns None, and nbgrader
    would read a number there as a partial score.
    """
    records, others = [], []
    for output in cell.get("outputs", []):
        data = output.get("data", {}) or {}
        if output.get("output_type") in ("display_data", "execute_result", "update_display_data") \
                and RECORD_MIME in data:
            records.append(data[RECORD_MIME])
        elif output.get("output_type") != "execute_result":
            others.append(output)
    return records, others


def _evidence(call: HiddenCall, records: list[Any], seed: int, code: str) -> Evidence | str:
    """The evidence of the one record of ``call`` with ``seed``, or the message for the learner if there is none."""
    if not records:
        return ("no result reached the grader: the hidden check did not finish (did your code replace or "
                "break numpy, IPython or the grading code?). Restart the kernel and run all cells.")
    if len(records) > 1:
        return "more than one result reached the grader for this check: remove code that runs in test cells"
    record = records[0]
    if not isinstance(record, dict) or record.get("version") != RECORD_VERSION \
            or record.get("behaviour") != call.check or str(record.get("seed")) != str(seed) \
            or not isinstance(record.get("items"), dict):
        return "the result of this check is malformed (was grading code replaced?)"
    return Evidence(call.check, seed, record["items"], code, bool(record.get("torch_loaded")))


def judge(call: HiddenCall, records: list[Any], seed: int, code: str) -> str | None:
    """None if the one record of ``call`` with ``seed`` is right, else the message for the learner."""
    evidence = _evidence(call, records, seed, code)
    if isinstance(evidence, str):
        return evidence
    verdicts = importlib.import_module(f"course_tools.hidden.verdicts.{call.module}")
    check: Callable[[Evidence], None] = getattr(verdicts, call.check)
    try:
        check(evidence)
    except Wrong as wrong:
        return str(wrong)
    except GradingMachineError:
        raise
    except Exception as error:  # noqa: BLE001 (a record that a verdict cannot read is the learner's loss)
        return f"the grader could not read what your code returned ({type(error).__name__}); 0 for this check"
    return None


def error_output(message: str) -> dict[str, Any]:
    """The error output nbgrader scores 0, with the learner's message."""
    import nbformat

    return nbformat.v4.new_output("error", ename="AssertionError", evalue=message,
                                  traceback=[f"AssertionError: {message}"])


def decide_cell(cell: Any, seed: int, code: str) -> None:
    """Replace the record in ``cell``'s outputs by the verdict: nothing if right, an error output if not.

    A cell that already failed in the kernel (a visible check, a learner exception that escaped)
    keeps its error; its record is dropped all the same.
    """
    call = hidden_call(str(cell.get("source", "")))
    if call is None:
        return
    records, others = _records(cell)
    cell["outputs"] = others
    if any(o.get("output_type") == "error" for o in others):
        return
    message = judge(call, records, seed, code)
    if message is not None:
        cell["outputs"].append(error_output(message))


def _hidden_cells(nb: Any) -> Iterable[tuple[Any, str, HiddenCall]]:
    """(cell, grade_id, call) of every hidden cell of a notebook."""
    for cell in nb.cells:
        if is_test_cell(cell):
            call = hidden_call(str(cell.source))
            if call is not None:
                yield cell, cell.metadata["nbgrader"]["grade_id"], call


def _seeded_hidden_cells(nb: Any, seed_of: Callable[[str], int] | None) -> Iterable[tuple[Any, HiddenCall, int]]:
    """(cell, call, seed) of every hidden cell; without ``seed_of``, each check's default seed."""
    for cell, grade_id, call in _hidden_cells(nb):
        yield cell, call, seed_of(grade_id) if seed_of else default_seed(call.check)


def hidden_calls(nb: Any) -> Iterable[tuple[str, HiddenCall]]:
    """(grade_id, call) of every hidden cell of a notebook."""
    for _, grade_id, call in _hidden_cells(nb):
        yield grade_id, call


def seed_notebook(nb: Any, seed_of: Callable[[str], int]) -> None:
    """Write each hidden cell's seed (``seed_of(grade_id)``) into its probe call."""
    for cell, call, seed in _seeded_hidden_cells(nb, seed_of):
        cell.source = seeded_source(str(cell.source), call, seed)


def decide_notebook(nb: Any, seed_of: Callable[[str], int] | None = None) -> None:
    """Turn every hidden cell's record into a verdict (``seed_of`` as given to :func:`seed_notebook`).

    Without ``seed_of``, each cell is expected to have run with its default seed (an unseeded run
    of a source notebook, as the tests do).
    """
    code = learner_code(nb)
    for cell, _, seed in _seeded_hidden_cells(nb, seed_of):
        decide_cell(cell, seed, code)


def grader_numbers(nb: Any, seed_of: Callable[[str], int] | None = None) -> dict[str, float]:
    """The numbers the verdict modules measure from a run's records (held-out MSE, test accuracy, ...).

    Read before :func:`decide_notebook` takes the records out of the outputs; ``seed_of`` as there.
    Each verdict module with a ``metrics(evidence)`` function contributes; only well-formed records
    count, and numbers that are not finite are left out. They describe the run for instructors
    (grading records, the PyTorch baselines); the verdicts alone decide the score.
    """
    code = learner_code(nb)
    evidence: dict[str, dict[str, Evidence]] = {}
    for cell, call, seed in _seeded_hidden_cells(nb, seed_of):
        found = _evidence(call, _records(cell)[0], seed, code)
        if isinstance(found, Evidence):
            evidence.setdefault(call.module, {})[call.check] = found
    numbers: dict[str, float] = {}
    for module, found_here in sorted(evidence.items()):
        measure = getattr(importlib.import_module(f"course_tools.hidden.verdicts.{module}"), "metrics", None)
        if measure is None:
            continue
        try:
            measured = measure(found_here)
        except Exception:  # noqa: BLE001 (records the learner's code shaped: no numbers, the verdicts still decide)
            continue
        numbers.update({name: float(value) for name, value in measured.items()
                        if isinstance(value, (int, float)) and math.isfinite(value)})
    return numbers
