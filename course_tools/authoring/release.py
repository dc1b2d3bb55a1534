"""Regenerate ``release/`` from ``source/`` (``python -m course_tools release``).

Generation uses a throwaway gradebook, so releasing never touches a course's
real gradebook and gives the same bytes on every machine.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from course_tools.authoring.cells import embed_figures
from course_tools.course import RELEASE_DIR, Workspace, assignments, notebooks

README_TEXT = """# release/ is generated: do not edit

Every file below this folder is written by `python -m course_tools release`
(or `make release`) from `source/`, through nbgrader's `generate_assignment`.
Edit the notebooks in `source/` and regenerate; the test suite fails when this
folder differs from a fresh generation.
"""


def generate_release(release_dir: Path = RELEASE_DIR, names: list[str] | None = None) -> list[str]:
    """Generate the learner version of each assignment into ``release_dir``; returns the names.

    The figures of ``docs/figures`` are embedded into the source notebooks first
    (:func:`course_tools.authoring.cells.embed_figures`), so an edited figure reaches the release.
    """
    names = names or assignments()
    for name in names:
        for path in notebooks(name):
            embed_figures(path)
    release_dir = Path(release_dir)
    release_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mytorch-release-") as tmp:
        workspace = Workspace(Path(tmp), release_dir=release_dir)
        for name in names:
            workspace.generate(name)
    stale = sorted(p.name for p in release_dir.iterdir() if p.is_dir() and p.name not in assignments())
    if stale:
        raise RuntimeError(f"release/ holds assignments that are not in source/: {stale}; delete them")
    (release_dir / "README.md").write_text(README_TEXT, encoding="utf-8")
    return names
