"""Run a notebook top to bottom with nbclient, outside nbgrader.

Used to prove that solution notebooks run cleanly and as the "bare
execution" baseline of the grading benchmark.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from course_tools.course import REPO_ROOT


@dataclass
class Execution:
    notebook: Any
    seconds: float

    def problems(self) -> list[str]:
        """Errors and stderr output (warnings included), one line per cell that has any."""
        found = []
        for cell in self.notebook.cells:
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    found.append(f"cell {cell.get('id')}: {out.get('ename')}: {out.get('evalue')}")
                elif out.get("output_type") == "stream" and out.get("name") == "stderr":
                    found.append(f"cell {cell.get('id')}: stderr: {out.get('text', '')[:300]}")
        return found


def kernel_environment(**extra: str) -> dict[str, str]:
    """The environment graders give kernels: one BLAS thread, the course root importable."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def run_notebook(path: Path, *, timeout: int = 300, env: dict[str, str] | None = None) -> Execution:
    """Execute ``path`` in its own folder; errors are recorded in the outputs, not raised."""
    from nbclient import NotebookClient
    from traitlets.config import Config

    nb = nbformat.read(path, as_version=4)
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env or kernel_environment())
    try:
        with tempfile.TemporaryDirectory(prefix="mytorch-kernel-") as runtime:
            # Sockets in a private folder instead of TCP ports on localhost: no other user of the
            # machine can reach the kernel, and ipykernel has no unencrypted-TCP warning to print.
            config = Config()
            config.KernelManager.transport = "ipc"
            config.KernelManager.connection_file = os.path.join(runtime, "kernel.json")
            client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True, config=config,
                                    resources={"metadata": {"path": str(Path(path).parent)}})
            started = time.perf_counter()
            client.execute()
            seconds = time.perf_counter() - started
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return Execution(nb, seconds)
