"""A bubblewrap sandbox for student code while autograding.

nbgrader runs every notebook in a Jupyter kernel that it starts from a
kernelspec. :func:`install_kernelspec` writes one whose command is
:mod:`course_tools.grading.sandbox_launcher`: the kernel then starts inside
``bwrap`` with no network, read-only access to the Python installation and to
the course code the hidden tests import, write access to its own working copy
only, and bounded memory, processes, file size and run time. The grader
selects it with ``Execute.kernel_name`` (see :mod:`course_tools.grading.class_grading`).

Facts this relies on (measured, see ``docs/nbgrader_facts.md``): the kernel must use
the ``ipc`` transport (sockets in the bound connection folder) because the
sandbox has its own network namespace; ``JPY_PARENT_PID`` must not reach the
kernel (the launcher clears the environment); ``/tmp`` is mounted before the
folders below it.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from course_tools.grading import sandbox_launcher
from course_tools.course import REPO_ROOT

KERNEL_NAME = "mytorch-sandbox"
LAUNCHER = Path(sandbox_launcher.__file__).resolve()

#: course paths the kernel may read: the helper library learners import, and the probes hidden
#: test cells call (``course_tools.hidden.probes``, with the inputs they need). Nothing else of
#: the repo: the verdicts, references, expected values and labels stay outside.
COURSE_READ_ONLY = ("mytorch_lib", "course_tools/__init__.py", "course_tools/hidden/__init__.py",
                    "course_tools/hidden/probes")


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot start a sandbox on this machine."""


@dataclass(frozen=True)
class SandboxSettings:
    """Limits of one sandboxed kernel (one kernel grades one notebook).

    Attributes:
        memory_mb: address-space limit of every process in the sandbox (RLIMIT_AS).
            A PyTorch kernel maps about 0.7 GB; 4096 leaves room for training.
        max_processes: processes and threads (RLIMIT_NPROC); a kernel uses about 10.
        file_size_mb: largest file the kernel may write (RLIMIT_FSIZE).
        wall_clock_cap: seconds a kernel may live, on top of nbgrader's per-cell timeout.
        uid_base: when grading as root, worker ``k`` runs its kernels as user id
            ``uid_base + k`` so that the process limit counts that sandbox only.
    """

    memory_mb: int = 4096
    max_processes: int = 128
    file_size_mb: int = 512
    wall_clock_cap: float = 900.0
    uid_base: int = 64000

    def launcher_config(self, *, slot: int, scratch_dir: Path, status_file: Path | None,
                        matplotlib_cache: Path | None, sandboxed: bool = True) -> dict[str, Any]:
        """The JSON the launcher reads (paths absolute, sizes in bytes).

        ``sandboxed=False`` (the instructor's explicit opt-out) keeps only the time cap.
        """
        return {
            "sandbox": sandboxed,
            "bwrap": find_tool("bwrap") if sandboxed else None,
            "setpriv": find_tool("setpriv") if sandboxed and os.geteuid() == 0 else None,
            "python": sys.executable,
            "python_path": [str(REPO_ROOT)] if sandboxed else [str(probe_only_path(Path(scratch_dir) / "kernel-path"))],
            "read_only": read_only_paths() + ([str(data)] if (data := course_data_folder()) else []),
            "env": {"MYTORCH_DATA": str(data)} if data else {},
            "memory_bytes": self.memory_mb * 2**20,
            "max_processes": self.max_processes,
            "file_size_bytes": self.file_size_mb * 2**20,
            "wall_clock_cap": self.wall_clock_cap,
            "uid": self.uid_base + slot,
            "scratch_dir": str(scratch_dir),
            "status_file": str(status_file) if status_file else None,
            "matplotlib_cache": str(matplotlib_cache) if matplotlib_cache else None,
            "settings": asdict(self),
        }


def find_tool(name: str) -> str:
    """Absolute path of a program the sandbox needs (``bwrap``, ``setpriv``)."""
    path = shutil.which(name) or shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin")
    if path is None:
        raise SandboxUnavailable(
            f"`{name}` was not found. Install it (Debian/Ubuntu: sudo apt-get install -y bubblewrap util-linux, "
            "or run scripts/install_system_packages.sh).")
    return path


def read_only_paths() -> list[str]:
    """Python installation, virtual environment and the course code hidden tests import."""
    paths = {os.path.realpath(sys.base_prefix), os.path.abspath(sys.prefix), os.path.realpath(sys.prefix)}
    paths |= {str(REPO_ROOT / p) for p in COURSE_READ_ONLY}
    return sorted(p for p in paths if os.path.exists(p))


def course_data_folder() -> Path | None:
    """The folder with the Fashion-MNIST training files on this machine (``mytorch_lib.fashion``), if any.

    Kernels see it read-only and find it through ``MYTORCH_DATA``: the classification
    notebook loads its training images from there, and so do its probes.
    """
    from mytorch_lib.fashion import TRAIN_FILES, data_folders

    return next((f.resolve() for f in data_folders() if all((f / n).is_file() for n in TRAIN_FILES)), None)


def prepare_matplotlib_cache(folder: Path) -> Path | None:
    """Build matplotlib's font cache once in ``folder`` (copied into each kernel's fresh /tmp)."""
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MPLCONFIGDIR=str(folder), MPLBACKEND="agg")
    result = subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"], env=env,
                            capture_output=True, check=False)
    return folder if result.returncode == 0 else None


def install_kernelspec(folder: Path, config: dict[str, Any]) -> Path:
    """Write ``folder/kernels/mytorch-sandbox/kernel.json`` and the launcher's config.

    Put ``folder`` first on ``JUPYTER_PATH`` so that ``Execute.kernel_name =
    "mytorch-sandbox"`` finds it. Returns the kernelspec folder.
    """
    spec_dir = Path(folder) / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    config_path = spec_dir / "sandbox.json"
    config_path.write_text(json.dumps(config, indent=1), encoding="utf-8")
    spec = {
        "argv": [sys.executable, "-I", "-S", str(LAUNCHER), str(config_path), "{connection_file}"],
        "display_name": "Python 3 (grading sandbox)",
        "language": "python",
        # The sandbox runs in its own session: a SIGINT to the launcher would not reach
        # the kernel, so interrupts (per-cell timeouts) travel as control messages.
        "interrupt_mode": "message",
        "metadata": {"debugger": False},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1), encoding="utf-8")
    return spec_dir


def probe_only_path(folder: Path) -> Path:
    """A folder for ``PYTHONPATH`` from which only ``course_tools.hidden.probes`` can be imported.

    Used where the kernel runs outside the sandbox (the explicit opt-out): the repository
    root on its path would make the verdicts and references importable.
    """
    package = folder / "course_tools" / "hidden"
    package.mkdir(parents=True, exist_ok=True)
    for init in (folder / "course_tools" / "__init__.py", package / "__init__.py"):
        init.write_text("", encoding="utf-8")
    link = package / "probes"
    if not link.exists():
        link.symlink_to(REPO_ROOT / "course_tools" / "hidden" / "probes", target_is_directory=True)
    return folder


def prepare_kernel(scratch: Path, settings: SandboxSettings = SandboxSettings(), *, slot: int = 0,
                   sandboxed: bool = True, status_file: Path | None = None,
                   matplotlib_cache: Path | None = None) -> Path:
    """Install the sandbox kernelspec under ``scratch/jupyter``; return the connection file to use.

    Put ``scratch/jupyter`` on ``JUPYTER_PATH``, select ``KERNEL_NAME`` and give the kernel
    manager the returned connection file (and the ``ipc`` transport when ``sandboxed``).
    """
    scratch = Path(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    os.chmod(scratch, 0o755)
    config = settings.launcher_config(slot=slot, scratch_dir=scratch, status_file=status_file,
                                      matplotlib_cache=matplotlib_cache, sandboxed=sandboxed)
    install_kernelspec(scratch / "jupyter", config)
    runtime = scratch / "runtime"
    shutil.rmtree(runtime, ignore_errors=True)
    runtime.mkdir(mode=0o700)
    return runtime / "kernel.json"


def probe(settings: SandboxSettings = SandboxSettings()) -> None:
    """Start a tiny sandboxed Python with the grading settings; raise SandboxUnavailable if it fails."""
    with tempfile.TemporaryDirectory(prefix="mytorch-sandbox-probe-") as tmp:
        root = Path(tmp)
        work, conn, private_tmp = root / "work", root / "conn", root / "tmp"
        for folder in (work, conn, private_tmp):
            folder.mkdir()
        os.chmod(root, 0o755)
        config = settings.launcher_config(slot=0, scratch_dir=root, status_file=None, matplotlib_cache=None)
        as_root = os.geteuid() == 0
        if as_root:
            for folder in (work, conn, private_tmp):
                os.chown(folder, config["uid"], config["uid"])
        code = "import os, sys; open('probe', 'w').write('ok'); print(os.getuid())"
        command = sandbox_launcher.bwrap_command(config, str(work), str(private_tmp), str(conn),
                                                 [config["python"], "-I", "-c", code], as_root=as_root)
        rlimits = sandbox_launcher.limits(config, as_root=as_root)

        def apply_limits() -> None:
            for which, value in rlimits.items():
                resource.setrlimit(which, (value, value))

        try:
            result = subprocess.run(command, preexec_fn=apply_limits, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SandboxUnavailable(f"bubblewrap could not start a sandbox: {exc}") from exc
        if result.returncode != 0 or not (work / "probe").exists():
            raise SandboxUnavailable(
                "bubblewrap could not start a sandbox on this machine "
                f"(exit code {result.returncode}): {result.stderr.strip()[-800:]}\n"
                "Unprivileged user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone=1 "
                "or run as root), or bwrap is too old (0.5 or later is needed).")


def sandbox_for_trusted_code(what: str, log: Any = None) -> SandboxSettings | None:
    """The default sandbox if this machine can start one, else None and a line on ``log`` saying so.

    Only for the course's own code (the demo's examples, the baselines' variants): learners'
    submissions are refused without a sandbox unless the instructor opts out.
    """
    try:
        probe()
    except SandboxUnavailable as why:
        print(f"no grading sandbox on this machine ({str(why).splitlines()[0]}): grading {what} without it, "
              "as it is the course's own code. Grade real submissions only where bubblewrap works.",
              file=log or sys.stdout, flush=True)
        return None
    return SandboxSettings()


def run_sandboxed(notebook: Any, workdir: Path, settings: SandboxSettings = SandboxSettings(), *,
                  cell_timeout: int = 60) -> tuple[Any, dict[str, Any]]:
    """Execute ``notebook`` (a NotebookNode) in the sandbox with ``workdir`` as its folder, outside nbgrader.

    For trying a suspicious submission by hand and for the sandbox's own tests.
    Returns ``(executed notebook, launcher status)``; errors stay in the outputs,
    a dead kernel is reported in the status (``reason``), not raised.
    """
    from nbclient import NotebookClient
    from traitlets.config import Config

    workdir = Path(workdir).resolve()
    with tempfile.TemporaryDirectory(prefix="mytorch-sandbox-") as tmp:
        scratch = Path(tmp)
        os.chmod(scratch, 0o755)
        runtime = scratch / "runtime"
        runtime.mkdir(mode=0o700)
        status_file = scratch / "status.json"
        config = settings.launcher_config(slot=0, scratch_dir=scratch, status_file=status_file,
                                          matplotlib_cache=None)
        install_kernelspec(scratch / "jupyter", config)
        c = Config()
        c.KernelManager.transport = "ipc"
        c.KernelManager.connection_file = str(runtime / "kernel.json")
        saved = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = str(scratch / "jupyter")
        client = NotebookClient(notebook, timeout=cell_timeout, kernel_name=KERNEL_NAME, allow_errors=True,
                                interrupt_on_timeout=True, config=c, resources={"metadata": {"path": str(workdir)}})
        error = None
        try:
            client.execute()
        except Exception as exc:  # DeadKernelError and friends: the status says why
            error = f"{exc.__class__.__name__}: {exc}"
        finally:
            if saved is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = saved
        status = json.loads(status_file.read_text(encoding="utf-8")) if status_file.exists() else {}
        status["client_error"] = error
    return notebook, status


def main(argv: list[str] | None = None) -> int:
    """``python -m course_tools.grading.sandbox NOTEBOOK [--memory-mb N] ...``: run one notebook sandboxed, print outputs."""
    import argparse

    import nbformat

    parser = argparse.ArgumentParser(prog="python -m course_tools.grading.sandbox", description=main.__doc__)
    parser.add_argument("notebook", help="notebook to execute; its folder is the only writable one")
    parser.add_argument("--memory-mb", type=int, default=SandboxSettings.memory_mb)
    parser.add_argument("--max-processes", type=int, default=SandboxSettings.max_processes)
    parser.add_argument("--time-limit", type=float, default=SandboxSettings.wall_clock_cap)
    parser.add_argument("--cell-timeout", type=int, default=60)
    parser.add_argument("--json", help="write {'outputs': [...per cell...], 'status': {...}} to this file")
    args = parser.parse_args(argv)
    path = Path(args.notebook).resolve()
    settings = SandboxSettings(memory_mb=args.memory_mb, max_processes=args.max_processes,
                               wall_clock_cap=args.time_limit)
    nb, status = run_sandboxed(nbformat.read(path, as_version=4), path.parent, settings,
                               cell_timeout=args.cell_timeout)
    outputs = [[dict(o) for o in cell.get("outputs", [])] for cell in nb.cells]
    for k, cell_outputs in enumerate(outputs):
        for out in cell_outputs:
            text = out.get("text") or out.get("data", {}).get("text/plain") or f"{out.get('ename')}: {out.get('evalue')}"
            print(f"[{k}] {str(text).rstrip()}")
    print(f"kernel: {status.get('reason', status.get('client_error'))}")
    if args.json:
        Path(args.json).write_text(json.dumps({"outputs": outputs, "status": status}), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
