"""The learner bundle, published once per test run by the real command (shared by several test modules)."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
import time
from pathlib import Path


@functools.lru_cache(maxsize=1)
def published() -> tuple[Path, float]:
    """``python -m course_tools publish --out <tmp> --no-release-check``; returns (bundle folder, seconds).

    The release check is off because the round-trip tests already prove that
    release/ is a fresh generation; the bundle is built from a fresh generation either way.
    """
    from course_tools.__main__ import main

    root = Path(tempfile.mkdtemp(prefix="mytorch-bundle-"))
    atexit.register(shutil.rmtree, root, True)
    started = time.perf_counter()
    code = main(["publish", "--out", str(root / "learners"), "--no-release-check"])
    assert code == 0, "python -m course_tools publish failed (its output is above)"
    return root / "learners", time.perf_counter() - started
