"""Small nbgrader preprocessors used by ``nbgrader_config.py``.

- :class:`ClearSolutionsNamed` writes release stubs that say what to do:
  ``raise NotImplementedError("Linear.forward ...")`` inside a function or
  method, and ``name = None`` placeholders for module-level answer cells that
  only assign values (the pen-and-paper notebook's answers).
- :class:`ScrubHiddenTracebacks` keeps feedback from leaking hidden tests: in
  graded test cells it replaces each error's traceback (which quotes the
  failing hidden line) with the error's type and message only.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from nbgrader.preprocessors import ClearSolutions, NbGraderPreprocessor
from nbgrader import utils

_DEF = re.compile(r"^(\s*)(?:async\s+)?def\s+(\w+)")
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
