"""Small nbgrader preprocessors used by ``nbgrader_config.py``.

- :class:`ClearSolutionsNamed` writes release stubs that say what to do:
  ``raise NotImplementedError("Linear.forward ...")`` inside a function or
  method, and ``name = None`` placeholders for module-level answer cells that
  only assign values (the pen-and-paper notebook's answers).
- :class:`ScrubHiddenTracebacks` keeps feedback from leaking hidden tests: in
  graded test cells it replaces each error's traceback (which quotes the
  failing hidden line) with the error's type and message only.
- :class:`IncludeHeaderAfterTitle` puts the shared header (the Colab set-up cell and
  how-to-work notes) after a notebook's title cell, so a learner sees the title and
  goals first.
- :class:`SandboxedExecute`, :class:`HiddenTestSeeds` and :class:`DecideHiddenTests`
  make up autograding (``Autograde.autograde_preprocessors``): the kernel runs in
  the bubblewrap sandbox, each hidden cell gets its seed before the kernel runs, and
  the verdicts are decided after it has run, in the grading process
  (:mod:`course_tools.hidden.verdicts.engine`).
"""

from __future__ import annotations

import ast
import re
from typing import Any

import os
import shutil
import tempfile
from pathlib import Path

from nbgrader.preprocessors import ClearSolutions, Execute, IncludeHeaderFooter, NbGraderPreprocessor
from nbgrader import utils
from traitlets import Unicode

_DEF = re.compile(r"^(\s*)(?:async\s+)?def\s+(\w+)")


def is_title_cell(cell: Any) -> bool:
    """A markdown cell that opens with a level-1 heading: the notebook's title (and its goals)."""
    return cell.get("cell_type") == "markdown" and str(cell.get("source", "")).lstrip().startswith("# ")


class IncludeHeaderAfterTitle(IncludeHeaderFooter):
    """nbgrader's header, placed after the notebook's title cell instead of above it.

    A notebook that does not open with a title cell gets the header at the top, as
    nbgrader places it. The footer, if any, is appended as nbgrader does.
    """

    def preprocess(self, nb: Any, resources: Any) -> tuple[Any, Any]:
        if not nb.cells or not is_title_cell(nb.cells[0]):
            return super().preprocess(nb, resources)
        title, rest = nb.cells[0], nb.cells[1:]
        nb.cells = rest
        nb, resources = super().preprocess(nb, resources)
        nb.cells.insert(0, title)
        return nb, resources
_CLASS = re.compile(r"^(\s*)class\s+(\w+)")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def enclosing_name(preceding: list[str], indent: int) -> str | None:
    """``Class.method`` or ``function`` enclosing a line indented by ``indent``."""
    func = None
    func_indent = indent
    for line in reversed(preceding):
        if not line.strip():
            continue
        if func is None:
            m = _DEF.match(line)
            if m and len(m.group(1)) < indent:
                func, func_indent = m.group(2), len(m.group(1))
                if func_indent == 0:
                    return func
            continue
        m = _CLASS.match(line)
        if m and len(m.group(1)) < func_indent:
            return f"{m.group(2)}.{func}"
        if _indent(line) < func_indent and not line.lstrip().startswith(("#", "@")):
            break
    return func


def answer_placeholders(region: list[str]) -> list[str] | None:
    """``["a = None", ...]`` if the region only assigns values to plain names, else None."""
    try:
        tree = ast.parse("\n".join(region))
    except SyntaxError:
        return None
    names: list[str] = []
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            return None
        if node.targets[0].id not in names:
            names.append(node.targets[0].id)
    return names or None


class ClearSolutionsNamed(ClearSolutions):
    """ClearSolutions whose Python stubs name what the learner has to write."""

    def _replace_solution_region(self, cell: Any, language: str) -> bool:
        if cell.cell_type != "code" or language != "python":
            return super()._replace_solution_region(cell, language)
        new_lines: list[str] = []
        region: list[str] | None = None
        indent = ""
        replaced = False
        for line in cell.source.split("\n"):
            if self.begin_solution_delimeter in line:
                if region is not None:
                    raise RuntimeError("encountered nested begin solution statements")
                region, indent, replaced = [], re.match(r"\s*", line).group(0), True
            elif self.end_solution_delimeter in line:
                if region is not None:
                    new_lines.extend(indent + s for s in self._stub(new_lines, region, indent, cell))
                region = None
            elif region is not None:
                region.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            else:
                new_lines.append(line)
        if region is not None:
            raise RuntimeError("no end solution statement found")
        cell.source = "\n".join(new_lines)
        return replaced

    def _stub(self, preceding: list[str], region: list[str], indent: str, cell: Any) -> list[str]:
        if not indent:
            names = answer_placeholders(region)
            if names:
                return [f"{name} = None  # replace None with your answer" for name in names]
        name = enclosing_name(preceding, len(indent))
        if name is None:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "this cell")
            what = f"the code of cell '{grade_id}'"
        else:
            what = name
        return ["# YOUR CODE HERE", f'raise NotImplementedError("{what} is not written yet: replace this line with your code")']


class ScrubHiddenTracebacks(NbGraderPreprocessor):
    """Feedback preprocessor: show failed test cells by their error message only.

    A traceback from a hidden test quotes the hidden assert line; the error
    type and message (which our checks write for learners) are kept.
    """

    def preprocess_cell(self, cell: Any, resources: Any, index: int) -> tuple[Any, Any]:
        if cell.cell_type == "code" and utils.is_grade(cell) and not utils.is_solution(cell):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    message = f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"
                    output["traceback"] = [message]
        return cell, resources


class SandboxedExecute(Execute):
    """nbgrader's Execute, with the kernel started in the grading sandbox (:mod:`course_tools.grading.sandbox`).

    ``python -m course_tools grade`` prepares its own sandboxed kernels (one per worker) and
    selects them with ``Execute.kernel_name``; plain ``nbgrader autograde`` gets one here, per
    notebook. Without bubblewrap grading stops with a message that says how to install it;
    ``MYTORCH_UNSANDBOXED=1`` is the explicit opt-out (student code then runs with your rights).
    """

    _sandbox_checked = False

    def preprocess(self, nb: Any, resources: Any, km: Any = None) -> tuple[Any, Any]:
        from course_tools.grading import sandbox

        if self.kernel_name == sandbox.KERNEL_NAME or km is not None:
            return super().preprocess(nb, resources, km=km)
        scratch = Path(tempfile.mkdtemp(prefix="mytorch-autograde-"))
        saved_path = os.environ.get("JUPYTER_PATH")
        try:
            sandboxed = os.environ.get("MYTORCH_UNSANDBOXED", "") not in ("1", "true", "yes")
            if not sandboxed:
                self.log.warning("MYTORCH_UNSANDBOXED is set: student code runs with your rights, outside the sandbox")
            elif not SandboxedExecute._sandbox_checked:
                sandbox.probe()  # once per process: it costs a sandbox start
                SandboxedExecute._sandbox_checked = True
            self._connection_file = sandbox.prepare_kernel(scratch, sandboxed=sandboxed)
            os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(scratch / "jupyter"), saved_path) if p)
            self.kernel_name = sandbox.KERNEL_NAME
            self._transport = "ipc" if sandboxed else "tcp"
            return super().preprocess(nb, resources)
        finally:
            self.kernel_name = ""
            if saved_path is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = saved_path
            shutil.rmtree(scratch, ignore_errors=True)

    def create_kernel_manager(self) -> Any:
        km = super().create_kernel_manager()
        connection_file = getattr(self, "_connection_file", None)
        if connection_file is not None and self.kernel_name:
            km.transport = self._transport
            km.connection_file = str(connection_file)
        return km


class HiddenTestSeeds(NbGraderPreprocessor):
    """Before the kernel runs: write each hidden cell's seed into its probe call.

    The seed is a keyed hash of the course secret (``secret_file``, or the environment
    variable ``MYTORCH_GRADING_SECRET``), the learner, the notebook, the cell and the
    learner's code (:func:`course_tools.hidden.verdicts.engine.cell_seed`).
    """

    secret_file = Unicode("", help="file holding the course secret; created on first use").tag(config=True)

    def seed_function(self, code: str, resources: Any) -> Any:
        """``grade_id -> seed`` for a notebook whose learner code is ``code``."""
        from course_tools.hidden.verdicts import engine

        info = resources.get("nbgrader", {})
        secret = engine.course_secret(self.secret_file or None)

        def seed_of(grade_id: str) -> int:
            return engine.cell_seed(secret, assignment=str(info.get("assignment", "")),
                                    student=str(info.get("student", "")), notebook=str(info.get("notebook", "")),
                                    grade_id=grade_id, code=code)

        return seed_of

    def preprocess(self, nb: Any, resources: Any) -> tuple[Any, Any]:
        from course_tools.hidden.verdicts import engine

        engine.seed_notebook(nb, self.seed_function(engine.learner_code(nb), resources))
        return nb, resources


class DecideHiddenTests(HiddenTestSeeds):
    """After the kernel has run: decide every hidden cell from its record, in this process.

    Place it after ``Execute`` and ``IgnorePattern`` and before ``LimitOutput`` and
    ``SaveAutoGrades``. A wrong answer becomes the cell's error output (scored 0, the
    message shown in feedback); the records themselves are removed from the notebook.
    The numbers the verdict modules measure from the records (test accuracy, held-out
    MSE, ...) are kept in the notebook's metadata (:data:`engine.NUMBERS_METADATA`) for
    the grading record; whatever the submission held there is replaced.
    """

    def preprocess(self, nb: Any, resources: Any) -> tuple[Any, Any]:
        from course_tools.hidden.verdicts import engine

        seed_of = self.seed_function(engine.learner_code(nb), resources)
        numbers = engine.grader_numbers(nb, seed_of)
        engine.decide_notebook(nb, seed_of)
        nb.metadata.pop(engine.NUMBERS_METADATA, None)
        if numbers:
            nb.metadata[engine.NUMBERS_METADATA] = numbers
        return nb, resources


#: Grader lines shorter than this are too generic to scrub (``return None``, ``)``).
GRADER_LINE_MIN = 16


def grader_lines() -> frozenset[str]:
    """Stripped lines of every grader file (probes, verdicts) that learners never see in a release."""
    from course_tools.course import REPO_ROOT

    lines: set[str] = set()
    for path in sorted((REPO_ROOT / "course_tools" / "hidden").rglob("*.py")):
        for line in path.read_text(encoding="utf-8").split("\n"):
            stripped = line.strip()
            if len(stripped) >= GRADER_LINE_MIN:
                lines.add(stripped)
    return frozenset(lines)


class ScrubGraderText(NbGraderPreprocessor):
    """Feedback preprocessor: no line of grader code and no grading record in any output.

    The kernel can read the probes (they run there), so a learner cell could print them into
    its own outputs, or print the record a probe published. Every output line that is a line
    of a grader file, or that names the record's MIME type, is replaced by a short notice.
    """

    notice = "[removed from feedback: grader code]"

    def preprocess(self, nb: Any, resources: Any) -> tuple[Any, Any]:
        from course_tools.hidden.probes.kit import RECORD_MIME

        self._lines = grader_lines()
        self._mime = RECORD_MIME
        return super().preprocess(nb, resources)

    def _scrub(self, text: Any) -> Any:
        if isinstance(text, list):
            return [self._scrub(item) for item in text]
        if not isinstance(text, str):
            return text
        out = []
        for line in text.split("\n"):
            if line.strip() in self._lines or self._mime in line:
                out.append(self.notice)
            else:
                out.append(line)
        return "\n".join(out)

    def preprocess_cell(self, cell: Any, resources: Any, index: int) -> tuple[Any, Any]:
        if cell.cell_type != "code":
            return cell, resources
        kept = []
        for output in cell.get("outputs", []):
            data = output.get("data")
            if data is not None:
                if self._mime in data:
                    continue
                for key in list(data):
                    if key.startswith("text/") or key.endswith("json"):
                        data[key] = self._scrub(data[key]) if isinstance(data[key], (str, list)) else data[key]
            if "text" in output:
                output["text"] = self._scrub(output["text"])
            if output.get("output_type") == "error":
                output["evalue"] = self._scrub(output.get("evalue", ""))
                output["traceback"] = self._scrub(list(output.get("traceback", [])))
            kept.append(output)
        cell["outputs"] = kept
        return cell, resources
