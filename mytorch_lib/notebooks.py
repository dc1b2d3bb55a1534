"""Reuse the classes a learner wrote in a sibling notebook of the same assignment."""

from __future__ import annotations

import ast
import json
import os
import types
from typing import Any

__all__ = ["import_from_notebook"]


def _is_import_only(source: str) -> bool:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return bool(tree.body) and all(isinstance(node, (ast.Import, ast.ImportFrom)) for node in tree.body)


def import_from_notebook(path: str, *names: str) -> Any:
    """Run the answer cells of another notebook and return the names they define.

    Only two kinds of code cell are run, in order, in a fresh namespace: cells
    that contain nothing but ``import`` statements, and the learner's answer
    cells (nbgrader ``solution`` cells). Test cells, plots and demos are not
    run, so this is fast and has no side effects.

    Args:
        path: the sibling notebook, relative to the current working directory
            (the folder of the notebook that calls this), e.g. ``"01_layers.ipynb"``.
        names: the classes or functions to return, e.g. ``"Linear", "ReLU"``.

    Returns:
        The single object if one name is given, else a tuple in the order asked.

    Raises:
        FileNotFoundError if the notebook is not next to this one;
        ImportError naming the missing class if the notebook does not define it;
        the original exception, with the notebook named, if an answer cell fails.
    """
    if not names:
        raise TypeError("import_from_notebook needs at least one name to import")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} was not found next to this notebook (working directory {os.getcwd()}); "
            "keep all notebooks of the assignment in one folder"
        )
    with open(path, encoding="utf-8") as f:
        nb = json.load(f)
    module = types.ModuleType(os.path.splitext(os.path.basename(path))[0])
    module.__file__ = os.path.abspath(path)
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        meta = cell.get("metadata", {}).get("nbgrader", {})
        is_answer = bool(meta.get("solution")) and not meta.get("grade")
        if not (is_answer or _is_import_only(source)):
            continue
        try:
            exec(compile(source, f"<{path}: cell {cell.get('id', '?')}>", "exec"), module.__dict__)
        except Exception as exc:
            exc.add_note(f"(raised while running an answer cell of {path})")
            raise
    missing = [n for n in names if n not in module.__dict__]
    if missing:
        raise ImportError(
            f"{path} does not define {', '.join(missing)}: check the class names in its answer cells"
        )
    objects = tuple(module.__dict__[n] for n in names)
    return objects[0] if len(objects) == 1 else objects
