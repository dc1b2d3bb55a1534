"""How strong are the hidden tests? Mutate the solutions and autograde (``python -m course_tools mutate``).

A *mutant* is the reference solution of one answer cell with one small,
plausible mistake in it: a swapped arithmetic operator, a dropped ``.T``, a
wrong ``axis=``, ``mean`` for ``sum``, a constant off by one or with the
wrong sign, ``>`` for ``>=``, a deleted statement, ``np.minimum`` for
``np.maximum``, swapped branches of ``np.where``. Mutants are made on the
Python syntax tree of each solution region (between ``### BEGIN SOLUTION``
and ``### END SOLUTION``), so every one is valid code; only the text of the
mutated expression changes, the rest of the cell keeps its exact layout.

Each mutant is graded by the grading engine, as a learner's submission would be
(:class:`MutantGrader`): the assignment is generated into a course folder of
its own, a learner-style submission is built from
the release (:func:`course_tools.authoring.submissions.learner_notebook`) with the
mutant in its answer cell and the reference solution everywhere else, and
only the mutated notebook is autograded (its sibling notebooks lie next to
it, as a whole-assignment autograde would leave them). A mutant is

* **killed** when any graded cell scores less than with the reference
  solution (mutants that hit a cell timeout or kill the kernel count as
  killed and are reported separately as *timeout* / *crashed*);
* **survived** otherwise; a survivor listed in
  :mod:`course_tools.quality.mutation_equivalents` with a reason is *equivalent* (no
  test could tell it from the reference) and leaves the kill ratio.

The kill ratio of a notebook is ``killed / (mutants - equivalent)``; the
command exits 1 when any notebook is under ``--target`` (default 0.95).

Mutant ids are ``<notebook>:<grade_id>:<kind>@L<line>C<col>`` where line and
column (1-based) locate the mutated code in the answer cell as a learner sees
it (marker lines removed), e.g. ``1_layers:linear:transpose:drop@L18C17``.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import difflib
import json
import random
import shutil
import sys
import textwrap
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TextIO

import nbformat

from course_tools.course import REPO_ROOT, Workspace, notebooks
from course_tools.notebook_model import SOLUTION_MARKERS, is_code_answer, marker_regions, nbgrader_metadata
from course_tools.grading.class_grading import grade_class
from course_tools.grading.engine import CourseSpec, GradeOptions

DEFAULT_WORKDIR = REPO_ROOT / "build" / "mutation"
DEFAULT_TARGET = 0.95
DEFAULT_CELL_TIMEOUT = 60
#: error names nbgrader/nbclient record in a cell that ran out of time
_TIMEOUT_ERRORS = {"CellTimeoutError", "KeyboardInterrupt"}

# ---------------------------------------------------------------------------
# Mutation operators on Python code
# ---------------------------------------------------------------------------

_ARITH_SWAPS: dict[type, type] = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
                                  ast.MatMult: ast.Mult}
_COMPARE_SWAPS: dict[type, type] = {ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Lt: ast.LtE, ast.LtE: ast.Lt}
_FUNC_SWAPS = {"maximum": "minimum", "minimum": "maximum", "max": "min", "min": "max",
               "amax": "amin", "amin": "amax", "argmax": "argmin", "argmin": "argmax"}
_REDUCE_SWAPS = {"mean": "sum", "sum": "mean"}
#: reductions whose first positional argument (method) / second (np.function) is the axis
_REDUCTIONS = frozenset({"sum", "mean", "max", "min", "amax", "amin", "var", "std", "prod", "argmax",
                         "argmin", "cumsum", "median", "all", "any", "nansum", "nanmean"})
_AXIS_SWAPS = {0: 1, 1: 0, -1: 0}


@dataclass(frozen=True)
class CodeMutant:
    """One mutation of a piece of code.

    Attributes:
        kind: operator and variant, e.g. ``"binop:Add>Sub"``, ``"const:+1"``, ``"delete:drop"``.
        line: 1-based line of the mutated node in the original code.
        col: 0-based character column of the mutated node in the original code.
        code: the whole mutated code.
    """

    kind: str
    line: int
    col: int
    code: str


# A rule proposes (kind, node to change, how): how(copy_of_node) returns the
# replacement node, or _DELETE to remove a statement from its block.
_DELETE = object()
_Rule = tuple[str, ast.AST, Callable[[Any], Any]]


def _number(node: ast.AST) -> int | float | None:
    """The value of a numeric literal (``3``, ``0.5``, ``-1``); None for anything else."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant) \
            and type(node.operand.value) in (int, float):
        return -node.operand.value
    return None


def _literal(value: int | float) -> ast.expr:
    """A literal node as the parser would build it (negative numbers are ``-`` applied to a constant)."""
    if value < 0 or (isinstance(value, float) and str(value).startswith("-")):
        return ast.UnaryOp(op=ast.USub(), operand=ast.Constant(-value))
    return ast.Constant(value)


def _shift(value: int | float, delta: int) -> int | float:
    """``value + delta``, rounded to the precision of the literal (0.3 + 1 -> 1.3, not 1.2999999999999998)."""
    result = value + delta
    if isinstance(value, float):
        result = float(f"{result:.12g}")
    return result


def _func_name(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return None


def _is_numpy(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id in ("np", "numpy")


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _with(node: ast.AST, **changes: Any) -> ast.AST:
    new = copy.copy(node)
    for name, value in changes.items():
        setattr(new, name, value)
    return new


def _constant_rules(node: ast.expr, value: int | float) -> Iterator[_Rule]:
    yield "const:+1", node, lambda n: _literal(_shift(value, 1))
    yield "const:-1", node, lambda n: _literal(_shift(value, -1))
    if value != 0:
        yield "const:neg", node, lambda n: _literal(-value)


def _axis_rules(node: ast.AST, value: int | float | None, drop: Callable[[Any], Any]) -> Iterator[_Rule]:
    """Rules for an axis argument ``node`` whose literal value is ``value``; ``drop`` removes it."""
    if isinstance(value, int) and value in _AXIS_SWAPS:
        new = _AXIS_SWAPS[value]
        yield f"axis:{value}>{new}", node, lambda n: _literal(new)
    yield "axis:drop", node, drop


def _call_rules(call: ast.Call) -> Iterator[_Rule]:
    name = _func_name(call)
    for i, kw in enumerate(call.keywords):
        if kw.arg == "axis":
            def drop_kw(n: ast.Call, i: int = i) -> ast.Call:
                return _with(n, keywords=n.keywords[:i] + n.keywords[i + 1:])
            value = _number(kw.value)
            for kind, _, how in _axis_rules(kw.value, value, drop_kw):
                if kind == "axis:drop":
                    yield kind, call, how
                else:
                    yield kind, kw.value, how
        elif kw.arg == "keepdims" and isinstance(kw.value, ast.Constant) and kw.value.value is True:
            yield "keepdims:drop", call, lambda n, i=i: _with(n, keywords=n.keywords[:i] + n.keywords[i + 1:])
    if name in _REDUCTIONS and not any(kw.arg == "axis" for kw in call.keywords):
        # x.sum(0) or np.sum(x, 0): the axis is positional
        position = 1 if isinstance(call.func, ast.Attribute) and _is_numpy(call.func.value) else 0
        if len(call.args) > position and isinstance(_number(call.args[position]), int):
            def drop_arg(n: ast.Call, p: int = position) -> ast.Call:
                return _with(n, args=n.args[:p] + n.args[p + 1:])
            for kind, _, how in _axis_rules(call.args[position], _number(call.args[position]), drop_arg):
                yield kind, (call if kind == "axis:drop" else call.args[position]), how
    if isinstance(call.func, ast.Attribute):
        attr = call.func.attr
        if attr in _REDUCE_SWAPS:
            new = _REDUCE_SWAPS[attr]
            yield f"reduce:{attr}>{new}", call.func, lambda n, new=new: _with(n, attr=new)
        if attr in _FUNC_SWAPS:
            new = _FUNC_SWAPS[attr]
            yield f"func:{attr}>{new}", call.func, lambda n, new=new: _with(n, attr=new)
        if attr == "where" and _is_numpy(call.func.value) and len(call.args) == 3:
            yield "swap:where", call, lambda n: _with(n, args=[n.args[0], n.args[2], n.args[1]])
        if attr == "transpose":
            if _is_numpy(call.func.value) and len(call.args) == 1 and not call.keywords:
                yield "transpose:drop", call, lambda n: n.args[0]
            elif not _is_numpy(call.func.value) and not call.args and not call.keywords:
                yield "transpose:drop", call, lambda n: n.func.value
    elif isinstance(call.func, ast.Name) and call.func.id in ("max", "min") and len(call.args) >= 2:
        new = _FUNC_SWAPS[call.func.id]
        yield f"func:{call.func.id}>{new}", call.func, lambda n, new=new: _with(n, id=new)


def _rules(tree: ast.AST) -> Iterator[_Rule]:
    """Every mutation rule that applies somewhere in ``tree``."""
    parents: dict[ast.AST, ast.AST] = {}
    for parent in ast.walk(tree):
        for child in ast.iter_child_nodes(parent):
            parents[child] = parent
    for node in ast.walk(tree):
        parent = parents.get(node)
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITH_SWAPS:
            new = _ARITH_SWAPS[type(node.op)]
            yield f"binop:{type(node.op).__name__}>{new.__name__}", node, lambda n, new=new: _with(n, op=new())
        elif isinstance(node, ast.AugAssign) and type(node.op) in _ARITH_SWAPS:
            new = _ARITH_SWAPS[type(node.op)]
            yield f"augassign:{type(node.op).__name__}>{new.__name__}", node, lambda n, new=new: _with(n, op=new())
        elif isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                if type(op) in _COMPARE_SWAPS:
                    new = _COMPARE_SWAPS[type(op)]
                    tag = f"compare{i}" if len(node.ops) > 1 else "compare"
                    yield (f"{tag}:{type(op).__name__}>{new.__name__}", node,
                           lambda n, i=i, new=new: _with(n, ops=n.ops[:i] + [new()] + n.ops[i + 1:]))
        elif isinstance(node, ast.Attribute) and node.attr == "T" and isinstance(node.ctx, ast.Load):
            yield "transpose:drop", node, lambda n: n.value
        elif isinstance(node, ast.Call):
            yield from _call_rules(node)

        value = _number(node)
        in_axis = (isinstance(parent, ast.keyword) and parent.arg in ("axis", "keepdims")) or \
            (isinstance(parent, ast.Call) and _func_name(parent) in _REDUCTIONS and node in parent.args)
        negated_literal = isinstance(parent, ast.UnaryOp) and _number(parent) is not None
        if value is not None and not in_axis and not negated_literal:
            yield from _constant_rules(node, value)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and value is None:
            yield "sign:drop", node, lambda n: n.operand

        for name in ("body", "orelse", "finalbody"):
            block = getattr(node, name, None)
            if not isinstance(block, list):
                continue
            for stmt in block:
                if isinstance(stmt, ast.stmt) and not isinstance(stmt, ast.Pass) and not _is_docstring(stmt):
                    if len(block) == 1:
                        yield "delete:pass", stmt, lambda n: ast.Pass()
                    else:
                        yield "delete:drop", stmt, lambda n: _DELETE


def _apply(tree: ast.AST, target: ast.AST, how: Callable[[Any], Any]) -> ast.AST:
    """A deep copy of ``tree`` with ``target`` (a node of ``tree``) changed by ``how``."""
    index = next(i for i, node in enumerate(ast.walk(tree)) if node is target)
    new_tree = copy.deepcopy(tree)  # same shape, so the same walk order
    node = next(n for i, n in enumerate(ast.walk(new_tree)) if i == index)
    for parent in ast.walk(new_tree):
        for name, value in ast.iter_fields(parent):
            if value is node:
                setattr(parent, name, ast.copy_location(how(node), node))
                return new_tree
            if isinstance(value, list) and any(child is node for child in value):
                j = next(j for j, child in enumerate(value) if child is node)
                replacement = how(node)
                if replacement is _DELETE:
                    del value[j]
                else:
                    value[j] = ast.copy_location(replacement, node)
                return new_tree
    raise ValueError("mutation target not found in the copied tree")


def _offset(lines: list[str], line: int, byte_col: int) -> int:
    """Character offset in the joined ``lines`` of (1-based line, UTF-8 byte column)."""
    text = lines[line - 1]
    return sum(len(s) for s in lines[:line - 1]) + len(text.encode("utf-8")[:byte_col].decode("utf-8"))


def _same(code: str, tree: ast.AST) -> bool:
    try:
        return ast.dump(ast.parse(code)) == ast.dump(tree)
    except SyntaxError:
        return False


def _render(code: str, target: ast.AST, new_tree: ast.AST, replacement: Any) -> str:
    """The mutated code: only the text of ``target`` changes when that reproduces ``new_tree``."""
    lines = code.splitlines(keepends=True)
    start = _offset(lines, target.lineno, target.col_offset)
    end = _offset(lines, target.end_lineno, target.end_col_offset)
    candidates: list[str] = []
    if replacement is _DELETE:
        first = lines[target.lineno - 1]
        last = lines[target.end_lineno - 1]
        head = first[:len(first.encode("utf-8")[:target.col_offset].decode("utf-8"))]
        tail = code[end:_offset(lines, target.end_lineno, len(last.encode("utf-8")))]
        if not head.strip() and (not tail.strip() or tail.strip().startswith("#")):
            line_start = sum(len(s) for s in lines[:target.lineno - 1])
            line_end = sum(len(s) for s in lines[:target.end_lineno])
            candidates.append(code[:line_start] + code[line_end:])
    else:
        text = ast.unparse(replacement)
        candidates += [code[:start] + text + code[end:], code[:start] + f"({text})" + code[end:]]
    for candidate in candidates:
        if _same(candidate, new_tree):
            return candidate
    return ast.unparse(new_tree)  # layout lost, but the code is right


def code_mutants(code: str) -> list[CodeMutant]:
    """All mutants of ``code`` (a complete piece of Python), deduplicated, in source order.

    Raises:
        SyntaxError if ``code`` does not parse.
    """
    tree = ast.parse(code)
    seen = {ast.dump(tree)}
    found: list[CodeMutant] = []
    lines = code.splitlines(keepends=True)
    for kind, target, how in _rules(tree):
        new_tree = _apply(tree, target, how)
        dump = ast.dump(new_tree)
        if dump in seen:
            continue
        seen.add(dump)
        replacement = how(copy.deepcopy(target))
        column = len(lines[target.lineno - 1].encode("utf-8")[:target.col_offset].decode("utf-8"))
        found.append(CodeMutant(kind, target.lineno, column, _render(code, target, new_tree, replacement)))
    found.sort(key=lambda m: (m.line, m.col, m.kind))
    return found


# ---------------------------------------------------------------------------
# Mutants of notebooks
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Mutant:
    """A mutated answer cell of a source notebook.

    Attributes:
        id: ``<notebook>:<grade_id>:<kind>@L<line>C<col>`` (stable while the cell's code is unchanged).
        original: the cell's solution text as a learner would write it (marker lines removed).
        mutated: the same text with the mutation.
        diff: the first changed line, before -> after.
    """

    id: str
    notebook: str
    grade_id: str
    kind: str
    line: int
    col: int
    original: str
    mutated: str
    diff: str


def _diff(before: str, after: str) -> str:
    """The first changed line of ``before`` as ``L<n>: old  ->  new`` (``<deleted>`` when lines went)."""
    old, new = before.split("\n"), after.split("\n")
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        a = " | ".join(line.strip() for line in old[i1:i2]) or "<nothing>"
        b = " | ".join(line.strip() for line in new[j1:j2]) or "<deleted>"
        return f"L{i1 + 1}: {a}  ->  {b}"
    return "(no change)"


def _reindent(raw: list[str], code: str, mutated: str, indent: int) -> list[str]:
    """The raw region lines with the lines that differ between ``code`` and ``mutated`` replaced.

    ``code`` is the dedented region and ``mutated`` its mutant; lines they share
    at the start and at the end keep their raw text, the rest is indented by ``indent``.
    """
    old, new = code.split("\n"), mutated.split("\n")
    head = 0
    while head < min(len(old), len(new)) and old[head] == new[head]:
        head += 1
    tail = 0
    while tail < min(len(old), len(new)) - head and old[-1 - tail] == new[-1 - tail]:
        tail += 1
    middle = [" " * indent + line if line.strip() else "" for line in new[head:len(new) - tail]]
    return raw[:head] + middle + raw[len(raw) - tail:] if len(raw) == len(old) else \
        [" " * indent + line if line.strip() else "" for line in new]


def notebook_mutants(path: Path, warn: Callable[[str], None] = lambda _: None) -> list[Mutant]:
    """Every mutant of the solution regions of the answer cells in the notebook at ``path``."""
    nb = nbformat.read(path, as_version=4)
    name = Path(path).stem
    found: list[Mutant] = []
    for cell in nb.cells:
        if not is_code_answer(cell):
            continue
        grade_id = nbgrader_metadata(cell)["grade_id"]
        lines, regions = marker_regions(cell.source, *SOLUTION_MARKERS)
        original = "\n".join(lines)
        ids: set[str] = set()
        for start, end in regions:
            region = "\n".join(lines[start:end])
            code = textwrap.dedent(region)
            if not code.strip():
                continue
            indent = next((len(a) - len(b) for a, b in zip(region.split("\n"), code.split("\n")) if b.strip()), 0)
            try:
                mutants = code_mutants(code)
            except SyntaxError as exc:
                warn(f"{name}:{grade_id}: a solution region does not parse on its own ({exc.msg}); skipped")
                continue
            for m in mutants:
                mutated = "\n".join(lines[:start] + _reindent(lines[start:end], code, m.code, indent) + lines[end:])
                if mutated == original:
                    continue
                mutant_id = f"{name}:{grade_id}:{m.kind}@L{start + m.line}C{indent + m.col + 1}"
                unique, n = mutant_id, 1
                while unique in ids:
                    n += 1
                    unique = f"{mutant_id}#{n}"
                ids.add(unique)
                found.append(Mutant(unique, name, grade_id, m.kind, start + m.line, indent + m.col + 1,
                                    original, mutated, _diff(original, mutated)))
    return found


def assignment_mutants(assignment: str, notebook: str | Sequence[str] | None = None,
                       warn: Callable[[str], None] = lambda _: None) -> dict[str, list[Mutant]]:
    """Mutants per notebook of an assignment in ``source/`` (only the named notebook(s) if given)."""
    paths = notebooks(assignment)
    if notebook is not None:
        wanted = [notebook] if isinstance(notebook, str) else list(notebook)
        missing = sorted(set(wanted) - {p.stem for p in paths})
        if missing:
            raise ValueError(f"source/{assignment} has no notebook(s) {', '.join(missing)} (.ipynb)")
        paths = [p for p in paths if p.stem in wanted]
    return {p.stem: notebook_mutants(p, warn) for p in paths}


def sample_mutants(mutants: Sequence[Mutant], n: int | None, seed: int) -> list[Mutant]:
    """``n`` mutants drawn with ``random.Random(seed)`` (all when n is None or large), in source order."""
    if n is None or n >= len(mutants):
        return list(mutants)
    chosen = set(random.Random(seed).sample(range(len(mutants)), n))
    return [m for i, m in enumerate(mutants) if i in chosen]


def load_equivalents() -> dict[str, str]:
    """Mutant id -> reason, from :mod:`course_tools.quality.mutation_equivalents` (empty if absent)."""
    try:
        from course_tools.quality.mutation_equivalents import EQUIVALENT
    except ImportError:
        return {}
    return dict(EQUIVALENT)


# ---------------------------------------------------------------------------
# Grading: every mutant is a submission graded by the grading engine
# ---------------------------------------------------------------------------

@dataclass
class Graded:
    """What grading one notebook of a submission gave: its cell scores, or how it failed."""

    key: str
    cells: dict[str, tuple[float, float]] = field(default_factory=dict)
    timed_out_cells: list[str] = field(default_factory=list)
    failure: str = ""  # "timeout" (a time limit), "crashed" (kernel died / nbgrader failed), "error" (grader)
    detail: str = ""
    seconds: float = 0.0


def _student(key: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in key)[:120]


def _graded(key: str, record: dict[str, Any], notebook: str, workspace: Workspace) -> Graded:
    """The :class:`Graded` of ``notebook`` in an engine record (cell timeouts read from the autograded copy)."""
    result = Graded(key)
    nb = record.get("notebooks", {}).get(notebook)
    if nb is None:  # the grading itself failed (its process died or raised)
        result.failure, result.detail = "error", record.get("reason", "not graded")
        return result
    result.seconds = float(nb.get("seconds", 0.0))
    if nb["status"] != "graded":
        result.failure, result.detail = nb.get("failure", "crashed"), nb.get("reason", "")
        return result
    result.cells = {k: (float(v[0] or 0.0), float(v[1] or 0.0)) for k, v in nb.get("cells", {}).items()}
    graded = nbformat.read(workspace.path("autograded", record["student"], record["assignment"]) / f"{notebook}.ipynb",
                           as_version=4)
    result.timed_out_cells = [
        nbgrader_metadata(c).get("grade_id") or c.get("id", "?") for c in graded.cells if c.cell_type == "code"
        and any(o.get("output_type") == "error" and o.get("ename") in _TIMEOUT_ERRORS for o in c.outputs)]
    return result


class MutantGrader:
    """A course folder of its own where each mutant is handed in as a learner's submission.

    The submission is the release with the reference solution in every answer cell and
    the mutant in its own; :func:`course_tools.grading.class_grading.grade_class` grades
    only the mutated notebook (its siblings lie next to it, as a whole-assignment
    autograde would leave them), in the sandbox, on ``jobs`` local workers.
    """

    def __init__(self, assignment: str, workdir: Path, *, jobs: int, cell_timeout: int, memory_gb: float,
                 sandboxed: bool = True) -> None:
        from course_tools.authoring.submissions import learner_notebook
        from course_tools.grading.sandbox import SandboxSettings

        if workdir.exists():
            shutil.rmtree(workdir)
        self.assignment = assignment
        self.workspace = Workspace(workdir)
        self.workspace.generate(assignment)
        self.reference = {p.stem: learner_notebook(assignment, p.stem, release_dir=self.workspace.release_dir)
                          for p in notebooks(assignment, root=self.workspace.release_dir)}
        settings = SandboxSettings(memory_mb=int(memory_gb * 1024)) if memory_gb > 0 else SandboxSettings()
        self.options = GradeOptions(workers=jobs, force=True, sandbox=settings if sandboxed else None,
                                    cell_timeout=cell_timeout, progress=False,
                                    notebook_timeout=max(600.0, 10.0 * cell_timeout))

    def _submit(self, key: str, mutant: Mutant | None) -> str:
        from course_tools.authoring.examples import handed_in_files
        from course_tools.authoring.submissions import learner_notebook, write_submission

        ws, student = self.workspace, _student(key)
        nbs = dict(self.reference)
        if mutant is not None:
            nbs[mutant.notebook] = learner_notebook(self.assignment, mutant.notebook,
                                                    {mutant.grade_id: (mutant.original, mutant.mutated)},
                                                    release_dir=ws.release_dir)
        write_submission(ws.path("submitted", student, self.assignment), nbs,
                         release_folder=ws.release_dir / self.assignment, files=handed_in_files(self.assignment))
        return student

    def grade(self, work: dict[str, Mutant | None], notebook_names: Sequence[str], notebook_timeout: float | None = None,
              progress: Callable[[Graded, int, int], None] = lambda g, i, n: None) -> dict[str, dict[str, Graded]]:
        """Grade ``work`` (key -> mutant, or None for the reference); returns key -> notebook -> :class:`Graded`."""
        keys = {self._submit(key, mutant): key for key, mutant in work.items()}
        options = dataclasses.replace(self.options, notebooks=tuple(notebook_names),
                                      notebook_timeout=notebook_timeout or self.options.notebook_timeout)
        results: dict[str, dict[str, Graded]] = {}

        def done(record: dict[str, Any]) -> None:
            key = keys[record["student"]]
            results[key] = {nb: _graded(key, record, nb, self.workspace) for nb in notebook_names}
            for student_step in ("submitted", "preflighted", "autograded"):
                shutil.rmtree(self.workspace.path(student_step, record["student"], self.assignment),
                              ignore_errors=True)
            progress(results[key][notebook_names[0]], len(results), len(keys))

        grade_class(CourseSpec(str(self.workspace.root)), self.assignment, sorted(keys), options, on_record=done)
        return results


# ---------------------------------------------------------------------------
# Verdicts and the report
# ---------------------------------------------------------------------------

@dataclass
class Verdict:
    """The outcome of one mutant."""

    id: str
    notebook: str
    status: str  # killed | timeout | crashed | survived | equivalent | error
    diff: str
    seconds: float
    lost: dict[str, list[float]] = field(default_factory=dict)  # grade_id -> [score, reference score]
    detail: str = ""
    reason: str = ""  # why it is equivalent

    @property
    def killed(self) -> bool:
        return self.status in ("killed", "timeout", "crashed")


def classify(mutant: Mutant, graded: Graded, reference: Graded, equivalents: dict[str, str]) -> Verdict:
    """Killed when a cell scores less than with the reference; timeouts and crashes count as killed."""
    v = Verdict(mutant.id, mutant.notebook, "survived", mutant.diff, round(graded.seconds, 2), detail=graded.detail)
    if graded.failure in ("timeout", "crashed", "error"):
        v.status = graded.failure
        return v
    for grade_id, (ref_score, _) in reference.cells.items():
        score = graded.cells.get(grade_id, (0.0, 0.0))[0]
        if score < ref_score - 1e-9:
            v.lost[grade_id] = [score, ref_score]
    if graded.timed_out_cells:
        v.status, v.detail = "timeout", f"cell timeout in {', '.join(graded.timed_out_cells)}"
    elif v.lost:
        v.status = "killed"
    elif mutant.id in equivalents:
        v.status, v.reason = "equivalent", equivalents[mutant.id]
    return v


@dataclass
class NotebookReport:
    notebook: str
    generated: int  # mutants before sampling
    reference_score: list[float]  # [score, max score] of the reference solution
    reference_seconds: float
    verdicts: list[Verdict]

    def count(self, *statuses: str) -> int:
        return sum(v.status in statuses for v in self.verdicts)

    @property
    def ratio(self) -> float:
        judged = len(self.verdicts) - self.count("equivalent", "error")
        return self.count("killed", "timeout", "crashed") / judged if judged else 1.0

    def summary(self) -> dict[str, Any]:
        return {"notebook": self.notebook, "generated": self.generated, "graded": len(self.verdicts),
                "killed": self.count("killed", "timeout", "crashed"), "timeout": self.count("timeout"),
                "crashed": self.count("crashed"), "survived": self.count("survived"),
                "equivalent": self.count("equivalent"), "error": self.count("error"),
                "kill_ratio": round(self.ratio, 4), "reference_score": self.reference_score,
                "reference_seconds": round(self.reference_seconds, 2)}


def format_report(reports: Sequence[NotebookReport], target: float, wall: float,
                  stale: Sequence[str] = (), mislabelled: Sequence[str] = ()) -> str:
    """The human-readable report: a table per notebook, then survivors and equivalents."""
    header = f"{'notebook':<28}{'mutants':>8}{'killed':>8}{'timeout':>8}{'crashed':>8}{'survived':>9}" \
             f"{'equiv':>6}{'error':>6}{'ratio':>8}  "
    out = [header, "-" * len(header)]
    for r in reports:
        s = r.summary()
        mark = "ok" if r.ratio >= target else f"UNDER {target:.0%}"
        out.append(f"{r.notebook:<28}{s['graded']:>8}{s['killed']:>8}{s['timeout']:>8}{s['crashed']:>8}"
                   f"{s['survived']:>9}{s['equivalent']:>6}{s['error']:>6}{r.ratio:>8.1%}  {mark}")
    graded = sum(len(r.verdicts) for r in reports)
    seconds = sum(v.seconds for r in reports for v in r.verdicts)
    out.append(f"{graded} mutants graded in {wall:.0f} s wall "
               f"({seconds / graded if graded else 0:.1f} s of grading per mutant)")
    for r in reports:
        if r.reference_score[0] < r.reference_score[1]:
            out.append(f"WARNING {r.notebook}: the reference solution scores {r.reference_score[0]:g} of "
                       f"{r.reference_score[1]:g}; kills are counted against that")
        survivors = [v for v in r.verdicts if v.status == "survived"]
        if survivors:
            out.append(f"\nSurvivors in {r.notebook} ({len(survivors)}):")
            out += [f"  {v.id}\n      {v.diff}" for v in survivors]
        equivalent = [v for v in r.verdicts if v.status == "equivalent"]
        if equivalent:
            out.append(f"\nEquivalent in {r.notebook} ({len(equivalent)}):")
            out += [f"  {v.id}\n      {v.diff}\n      reason: {v.reason}" for v in equivalent]
        errors = [v for v in r.verdicts if v.status == "error"]
        if errors:
            out.append(f"\nNot graded (tool error) in {r.notebook}:")
            out += [f"  {v.id}: {v.detail}" for v in errors]
    if mislabelled:
        out.append("\nListed as equivalent but killed (remove from mutation_equivalents.py):")
        out += [f"  {m}" for m in mislabelled]
    if stale:
        out.append("\nListed as equivalent but no longer generated (stale ids in mutation_equivalents.py):")
        out += [f"  {m}" for m in stale]
    return "\n".join(out)


def run_mutation(assignment: str, *, notebook: str | Sequence[str] | None = None, sample: int | None = None,
                 seed: int = 0, jobs: int = 1, workdir: Path = DEFAULT_WORKDIR,
                 cell_timeout: int = DEFAULT_CELL_TIMEOUT,
                 mutant_timeout: float | None = None, memory_gb: float = 4.0, target: float = DEFAULT_TARGET,
                 json_path: Path | None = None, equivalents: dict[str, str] | None = None,
                 mutants: dict[str, list[Mutant]] | None = None, out: TextIO = sys.stdout,
                 verbose: bool = True, sandboxed: bool = True) -> tuple[int, list[NotebookReport]]:
    """Generate, grade and report the mutants of ``assignment``; returns (exit code, reports).

    Args:
        sample: grade only this many mutants per notebook, drawn with ``seed``.
        jobs: local grading workers (the grading engine's, sandboxed).
        cell_timeout: per-cell execution limit while grading mutants (seconds).
        mutant_timeout: wall limit per mutant (default: 3 x the reference's time + 2 cell timeouts).
        memory_gb: memory limit of each mutant's kernel (0: the sandbox's default).
        mutants: grade these instead of generating them (tests use it).
        sandboxed: False grades without the sandbox (only where bubblewrap cannot run).
    """
    def say(text: str) -> None:
        if verbose:
            print(text, file=out, flush=True)

    started = time.perf_counter()
    equivalents = load_equivalents() if equivalents is None else equivalents
    generated = mutants if mutants is not None else assignment_mutants(assignment, notebook, warn=say)
    chosen = {nb: sample_mutants(ms, sample, seed) for nb, ms in generated.items()}
    total = sum(len(ms) for ms in chosen.values())
    say(f"{assignment}: " + ", ".join(f"{nb} {len(chosen[nb])}/{len(ms)} mutants" for nb, ms in generated.items()))
    workdir = Path(workdir) / assignment

    # 1. the reference solution, every chosen notebook graded the same way
    grader = MutantGrader(assignment, workdir, jobs=jobs, cell_timeout=cell_timeout, memory_gb=memory_gb,
                          sandboxed=sandboxed)
    references = grader.grade({"reference": None}, list(chosen))["reference"]
    for nb, ref in references.items():
        if ref.failure or not ref.cells:
            raise RuntimeError(f"the reference solution of {assignment}/{nb} could not be graded: "
                               f"{ref.failure} {ref.detail}")
        say(f"reference {nb}: {sum(s for s, _ in ref.cells.values()):g}/"
            f"{sum(m for _, m in ref.cells.values()):g} in {ref.seconds:.1f} s")

    # 2. the mutants, notebook by notebook (each with its own time limit)
    mutants_started = time.perf_counter()
    progress_log = workdir.parent / f"{assignment}.progress.jsonl"
    progress_log.unlink(missing_ok=True)
    by_key = {m.id: m for ms in chosen.values() for m in ms}
    done_count = [0]

    def progress(g: Graded, _i: int, _n: int) -> None:
        mutant = by_key[g.key]
        verdict = classify(mutant, g, references[mutant.notebook], equivalents)
        done_count[0] += 1
        i, elapsed = done_count[0], time.perf_counter() - mutants_started
        with open(progress_log, "a", encoding="utf-8") as log:  # survives an interrupted run
            log.write(json.dumps(asdict(verdict)) + "\n")
        say(f"[{i}/{total}] {verdict.status:<10} {mutant.id}  ({g.seconds:.1f} s; "
            f"about {elapsed / i * (total - i) / 60:.0f} min left)")

    graded: dict[str, Graded] = {}
    for nb, ms in chosen.items():
        if not ms:
            continue
        cap = mutant_timeout if mutant_timeout is not None else 3 * references[nb].seconds + 2 * cell_timeout
        results = grader.grade({m.id: m for m in ms}, [nb], notebook_timeout=cap, progress=progress)
        graded.update({key: by_nb[nb] for key, by_nb in results.items()})
    wall = time.perf_counter() - started

    reports = []
    for nb, ms in chosen.items():
        ref = references[nb]
        verdicts = [classify(m, graded[m.id], ref, equivalents) for m in ms]
        reports.append(NotebookReport(nb, len(generated[nb]),
                                      [sum(s for s, _ in ref.cells.values()), sum(m for _, m in ref.cells.values())],
                                      ref.seconds, verdicts))
    all_ids = {m.id for ms in generated.values() for m in ms}
    prefixes = tuple(f"{nb}:" for nb in generated)
    stale = sorted(i for i in equivalents if i.startswith(prefixes) and i not in all_ids)
    mislabelled = sorted(v.id for r in reports for v in r.verdicts if v.id in equivalents and v.killed)
    say("")
    say(format_report(reports, target, wall, stale, mislabelled))
    if json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps({
            "assignment": assignment, "target": target, "sample": sample, "seed": seed, "jobs": jobs,
            "cell_timeout": cell_timeout, "wall_seconds": round(wall, 1), "total_mutants": total,
            "notebooks": [dict(r.summary(), mutants=[asdict(v) for v in r.verdicts]) for r in reports],
            "stale_equivalents": stale, "listed_equivalent_but_killed": mislabelled,
        }, indent=1) + "\n", encoding="utf-8")
        say(f"report written to {json_path}")
    return (0 if all(r.ratio >= target for r in reports) else 1), reports


def list_mutants(assignment: str, notebook: str | Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    """Print every mutant (id and diff) without grading; for writing the equivalents list."""
    generated = assignment_mutants(assignment, notebook, warn=lambda s: print(s, file=out))
    for nb, ms in generated.items():
        print(f"{nb}: {len(ms)} mutants", file=out)
        for m in ms:
            print(f"  {m.id}\n      {m.diff}", file=out)
    return 0


def add_arguments(parser: Any) -> None:
    """The options of ``python -m course_tools mutate``."""
    parser.add_argument("assignment", help="assignment folder in source/, e.g. 02_numpy_library")
    parser.add_argument("--notebook", action="append",
                        help="only this notebook (name without .ipynb); repeat for several")
    parser.add_argument("--sample", type=int, help="grade only N mutants per notebook (random, see --seed)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    parser.add_argument("--jobs", type=int, default=1, help="parallel grading workers (default 1)")
    parser.add_argument("--target", type=float, default=DEFAULT_TARGET,
                        help="exit 1 if a notebook's kill ratio is below this (default 0.95)")
    parser.add_argument("--json", type=Path, help="also write the full report as JSON to this path")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help="where the mutants' course folder goes (default build/mutation)")
    parser.add_argument("--cell-timeout", type=int, default=DEFAULT_CELL_TIMEOUT,
                        help="per-cell time limit while grading a mutant, seconds (default 60)")
    parser.add_argument("--mutant-timeout", type=float,
                        help="wall limit per mutant, seconds (default 3 x reference time + 2 cell timeouts)")
    parser.add_argument("--memory-gb", type=float, default=4.0,
                        help="memory limit of each mutant's kernel (default 4; 0: the sandbox's default)")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="grade the mutants without the bubblewrap sandbox (where it cannot run)")
    parser.add_argument("--list", action="store_true", help="print the mutants and their ids; grade nothing")


def main(args: Any) -> int:
    """Run ``python -m course_tools mutate`` with parsed ``args``."""
    if args.list:
        return list_mutants(args.assignment, args.notebook)
    code, _ = run_mutation(args.assignment, notebook=args.notebook, sample=args.sample, seed=args.seed,
                           jobs=args.jobs, workdir=args.workdir, cell_timeout=args.cell_timeout,
                           mutant_timeout=args.mutant_timeout, memory_gb=args.memory_gb, target=args.target,
                           json_path=args.json, sandboxed=not args.no_sandbox)
    return code
