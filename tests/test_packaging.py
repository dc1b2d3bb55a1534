"""mytorch_lib installs with pip straight from a git URL, and ships nothing but the helper library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from course_tools.course import REPO_ROOT


def test_install_from_git_url_ships_only_the_helper_library(tmp_path: Path):
    target = tmp_path / "site"
    # setuptools comes with the pinned environment (nbgrader and torch need it), so no build isolation.
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), f"git+file://{REPO_ROOT}"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    top_level = sorted(p.name for p in target.iterdir() if not p.name.endswith(".dist-info"))
    assert top_level == ["mytorch_lib"], f"the package must ship mytorch_lib only, got {top_level}"
    shipped = {p.name for p in (target / "mytorch_lib").rglob("*") if p.is_file() and p.suffix != ".pyc"}
    assert {"__init__.py", "checks.py", "gradcheck.py", "py.typed"} <= shipped
    probe = subprocess.run(
        [sys.executable, "-c", "import mytorch_lib, sys; print(mytorch_lib.__file__); "
         "import importlib.util as u; print(u.find_spec('course_tools'))"],
        capture_output=True, text=True, cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )
    assert probe.returncode == 0, probe.stderr
    module_file, course_tools_spec = probe.stdout.split("\n")[:2]
    assert module_file.startswith(str(target))
    assert course_tools_spec == "None", "instructor tooling must not be importable from the installed package"
