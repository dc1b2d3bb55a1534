"""Reuse the classes a learner wrote in a sibling notebook of the same assignment."""

from __future__ import annotations

import ast
import json
import os
import sys
import types
from typing import Any

__all__ = ["find_notebook", "import_from_notebook"]

#: Where Google Drive appears on Colab once mounted (``drive.mount("/content/drive")``).
DRIVE = "/content/drive/MyDrive"
#: Folder levels below the Drive's top searched for a notebook (Colab saves to "Colab Notebooks").
DRIVE_DEPTH = 3


def _is_import_only(source: str) -> bool:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return bool(tree.body) and all(isinstance(node, (ast.Import, ast.ImportFrom)) for node in tree.body)


def on_colab() -> bool:
    """True on Google Colab, where every notebook runs on a machine of its own."""
    return "google.colab" in sys.modules or any(k.startswith("COLAB_") for k in os.environ)


def _in_drive(name: str, drive: str) -> list[str]:
    """Paths of ``name`` and ``Copy of name`` in a mounted Drive, newest first (hidden folders skipped)."""
    found = []
    top = drive.rstrip(os.sep).count(os.sep)
    for root, dirs, files in os.walk(drive):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if root.count(os.sep) - top < DRIVE_DEPTH else []
        found += [os.path.join(root, f) for f in files if f in (name, f"Copy of {name}")]
    return sorted(found, key=os.path.getmtime, reverse=True)


def find_notebook(path: str) -> str:
    """The file to read for the sibling notebook ``path``.

    Next to this notebook first; on Colab, where the other notebooks of an assignment are not
    next to this one, the learner's newest copy in a mounted Google Drive. Raises
    ``FileNotFoundError`` saying what to do.
    """
    if os.path.exists(path):
        return path
    name = os.path.basename(path)
    if not on_colab():
        raise FileNotFoundError(
            f"{path} was not found next to this notebook (working directory {os.getcwd()}): keep all notebooks "
            f"of the assignment in one folder, and save {name} before running this cell")
    if os.path.isdir(DRIVE):
        copies = _in_drive(name, DRIVE)
        if copies:
            print(f"Using {copies[0]} from your Google Drive, as last saved.")
            return copies[0]
        where = f"Your Google Drive is mounted, but holds no {name} (nor 'Copy of {name}')."
    else:
        where = f"{name} is not in {os.getcwd()}, and your Google Drive is not mounted."
    raise FileNotFoundError(
        f"On Colab every notebook runs on a machine of its own, so this notebook cannot see {name}. {where} "
        f"Either open {name}, save it to Drive (File -> Save a copy in Drive), then mount Drive here "
        "(from google.colab import drive; drive.mount('/content/drive')) and run this cell again: it finds "
        f"your copy; or download {name} (File -> Download -> Download .ipynb) and upload it here with the "
        "Files panel on the left.")


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

    The notebook is read as last saved: unsaved edits in its open tab are not seen.
    On Colab a notebook that is not next to this one is looked for in the learner's
    mounted Google Drive (:func:`find_notebook`).

    Raises:
        FileNotFoundError saying what to do if the notebook is not found;
        ImportError naming the missing class if the notebook does not define it;
        the original exception, with the notebook named, if an answer cell fails.
    """
    if not names:
        raise TypeError("import_from_notebook needs at least one name to import")
    path = find_notebook(path)
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
            exc.add_note(f"(raised while running an answer cell of {path}, as last saved: save {os.path.basename(path)} "
                         "after your last change, then run this cell again)")
            raise
    missing = [n for n in names if n not in module.__dict__]
    if missing:
        raise ImportError(
            f"{path} does not define {', '.join(missing)}: check the class names in its answer cells"
        )
    objects = tuple(module.__dict__[n] for n in names)
    return objects[0] if len(objects) == 1 else objects
