"""Start one Jupyter kernel inside a bubblewrap sandbox and watch it (kernelspec command).

This file is the ``argv`` of the sandbox kernelspec written by
:mod:`course_tools.grading.sandbox`; jupyter_client runs it as
``python -I -S sandbox_launcher.py CONFIG.json CONNECTION_FILE [kernel args]``
with the working directory set to the notebook's folder (the submission's
copy under ``autograded/``). It uses the standard library only, so it starts
in a few milliseconds and needs nothing from the course's environment.

What the kernel sees (``bwrap`` mounts, in this order):

- read-only: ``/usr`` (plus the usual ``/bin``, ``/lib`` links), a few files
  of ``/etc``, the Python installation and virtual environment, and the
  course paths that notebooks and hidden tests import (``mytorch_lib``,
  ``course_tools/__init__.py``, ``course_tools/hidden``);
- read-write: a private, empty ``/tmp`` (a fresh folder on disk, removed
  afterwards), the folder that holds the kernel's connection file and
  sockets, and the notebook's own folder; nothing else of the course (no
  gradebook, no ``source/``, no other submission);
- no network (own network namespace), own PID, IPC and UTS namespaces,
  a clean environment (``--clearenv``: nothing of the grader's environment,
  such as database passwords, reaches student code).

Limits: address space (memory), number of processes (as a dedicated user id
when started by root, so the limit counts only the sandbox), file size and
open files, set with ``setrlimit`` before ``bwrap`` starts and inherited by
everything inside. A wall-clock cap per kernel (one kernel per notebook) kills
the sandbox when it runs too long; the launcher then writes why the kernel
ended to ``CONFIG["status_file"]`` so the grader can report it.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time

#: files of /etc that Python, fontconfig and name lookups read; none holds a secret
ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf",
             "/etc/hosts", "/etc/fonts", "/etc/alternatives", "/etc/mime.types", "/etc/ssl/certs")
SYSTEM_LINKS = (("usr/bin", "/bin"), ("usr/sbin", "/sbin"), ("usr/lib", "/lib"), ("usr/lib64", "/lib64"))
#: environment variables passed from the grader to the kernel (everything else is dropped)
PASS_ENV = ("LANG", "LC_ALL", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
            "NBGRADER_EXECUTION", "PYTHONHASHSEED", "TZ")


def _ancestors(path: str) -> list[str]:
    """``/a/b/c`` -> ``["/a", "/a/b"]`` (not the path itself)."""
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


class _Mounts:
    """Builds bwrap mount arguments, creating parent folders with mode 0755 (bwrap's own are 0700)."""

    def __init__(self) -> None:
        self.args: list[str] = []
        self.made: set[str] = {"/"}

    def _parents(self, target: str) -> None:
        for parent in _ancestors(target):
            if parent not in self.made:
                self.args += ["--perms", "0755", "--dir", parent]
                self.made.add(parent)

    def bind(self, source: str, target: str | None = None, *, writable: bool = False) -> None:
        target = target or source
        self._parents(target)
        self.args += ["--bind" if writable else "--ro-bind", source, target]
        self.made.add(target)

    def add(self, *args: str, target: str) -> None:
        self._parents(target)
        self.args += list(args)
        self.made.add(target)


def bwrap_command(config: dict, workdir: str, private_tmp: str, connection_dir: str, kernel_argv: list[str],
                  *, as_root: bool) -> list[str]:
    """The full ``bwrap ... -- [setpriv ...] python -m ipykernel_launcher ...`` command line.

    Args:
        config: the sandbox settings (see :func:`course_tools.grading.sandbox.SandboxSettings.launcher_config`).
        workdir: the notebook's folder, the only course folder the kernel may write.
        private_tmp: an empty folder mounted as the kernel's ``/tmp`` and ``$HOME``.
        connection_dir: folder of the connection file (ipc sockets are created there).
        kernel_argv: the command inside, e.g. ``[python, -m, ipykernel_launcher, -f, FILE]``.
        as_root: started by root: switch to ``config["uid"]`` inside (a real, dedicated user
            id, so the process limit counts only this sandbox); otherwise use a user namespace.
    """
    m = _Mounts()
    m.add("--ro-bind", "/usr", "/usr", target="/usr")
    for source, link in SYSTEM_LINKS:
        if os.path.islink(link) or os.path.isdir("/" + source):
            m.add("--symlink", source, link, target=link)
    for path in ETC_FILES:
        if os.path.exists(path):
            m.bind(os.path.realpath(path) if os.path.isdir(path) else path, path)
    m.add("--proc", "/proc", target="/proc")
    m.add("--dev", "/dev", target="/dev")
    # /tmp first: it would hide whatever was mounted below it earlier.
    m.bind(private_tmp, "/tmp", writable=True)
    for path in config["read_only"]:
        if os.path.exists(path) and path != "/usr" and not path.startswith("/usr/"):
            m.bind(path)
    m.bind(connection_dir, writable=True)
    m.bind(workdir, writable=True)

    env = {name: os.environ[name] for name in PASS_ENV if name in os.environ}
    env.update({"HOME": "/tmp", "TMPDIR": "/tmp", "MPLCONFIGDIR": "/tmp/.config/matplotlib",
                "IPYTHONDIR": "/tmp/.ipython", "XDG_CACHE_HOME": "/tmp/.cache", "MPLBACKEND": "agg",
                "PATH": os.pathsep.join([os.path.dirname(config["python"]), "/usr/local/bin", "/usr/bin", "/bin"]),
                "PYTHONPATH": os.pathsep.join(config["python_path"]), "PYTHONDONTWRITEBYTECODE": "1"})
    env.update(config.get("env", {}))
    env_args: list[str] = ["--clearenv"]
    for name, value in sorted(env.items()):
        env_args += ["--setenv", name, value]

    namespaces = (["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
                   "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"] if as_root else ["--unshare-all"])
    inner = list(kernel_argv)
    if as_root:
        uid = str(config["uid"])
        inner = [config["setpriv"], f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                 "--inh-caps=-all", "--bounding-set=-all", "--", *inner]
    return [config["bwrap"], "--die-with-parent", "--new-session", *namespaces, *env_args, *m.args,
            "--chdir", workdir, "--", *inner]


def _user_process_count(uid: int) -> int:
    """Processes and threads that ``uid`` owns now (what RLIMIT_NPROC counts)."""
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status", encoding="ascii", errors="replace") as f:
                    text = f.read()
            except OSError:
                continue
            uid_line = next((line for line in text.splitlines() if line.startswith("Uid:")), "Uid: -1")
            threads = next((line for line in text.splitlines() if line.startswith("Threads:")), "Threads: 1")
            if int(uid_line.split()[1]) == uid:
                count += int(threads.split()[1])
    return count


def limits(config: dict, *, as_root: bool) -> dict[int, int]:
    """``{RLIMIT_*: value}`` for the sandbox from the settings (bytes, counts).

    A limit never exceeds the one the grader itself runs under (``ulimit``,
    ``prlimit``): an instructor or a test can always bound the whole grading tree.
    """
    processes = int(config["max_processes"])
    if not as_root:
        # Without a dedicated user id the limit counts all of this user's processes.
        processes += _user_process_count(os.getuid())
    wanted = {
        resource.RLIMIT_AS: int(config["memory_bytes"]),
        resource.RLIMIT_NPROC: processes,
        resource.RLIMIT_FSIZE: int(config["file_size_bytes"]),
        resource.RLIMIT_NOFILE: 1024,
        resource.RLIMIT_CORE: 0,
    }
    for which, value in wanted.items():
        for current in resource.getrlimit(which):
            if current != resource.RLIM_INFINITY:
                value = min(value, current)
        wanted[which] = value
    return wanted


def _prepare_tmp(config: dict, private_tmp: str, owner: int | None) -> None:
    """A fresh private /tmp, with a copy of the prepared matplotlib font cache (saves ~0.3 s)."""
    shutil.rmtree(private_tmp, ignore_errors=True)
    os.makedirs(private_tmp, mode=0o700)
    cache = config.get("matplotlib_cache")
    if cache and os.path.isdir(cache):
        shutil.copytree(cache, os.path.join(private_tmp, ".config", "matplotlib"))
    if owner is not None:
        for folder, dirs, files in os.walk(private_tmp):
            for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
                os.chown(name, owner, owner)


def remove_planted_links(folder: str) -> list[str]:
    """Delete symlinks, pipes, sockets and device files below ``folder``; returns their paths.

    Student code may create them in its working copy; the grader (possibly root)
    writes notebooks there afterwards and must never follow a link out of it.
    """
    removed = []
    for parent, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            path = os.path.join(parent, name)
            mode = os.lstat(path).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                os.unlink(path)
                removed.append(path)
    return removed


def _tail(path: str, size: int = 2000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(os.path.getsize(path) - size, 0))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def describe_exit(returncode: int | None, capped: bool, cap: float) -> str:
    """One line for the grading report on why a kernel ended."""
    if capped:
        return f"stopped after the notebook time limit of {cap:g} s (an endless loop or very slow code)"
    if returncode is None:
        return "kernel ended without a status"
    if returncode == 0:
        return "kernel exited normally"
    signum = returncode - 128 if returncode > 128 else (-returncode if returncode < 0 else 0)
    if signum:
        name = signal.Signals(signum).name if signum in signal.Signals._value2member_map_ else str(signum)
        hint = " (usually: out of memory)" if signum == signal.SIGKILL else ""
        return f"kernel killed by {name}{hint}"
    return f"kernel exited with code {returncode} (the notebook ended its own process, e.g. os._exit or exit())"


def main(argv: list[str]) -> int:
    config_path, connection_file, *kernel_args = argv
    grader = os.getppid()
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    started, wall_started = time.monotonic(), time.time()
    workdir = os.path.realpath(os.getcwd())
    connection_file = os.path.realpath(connection_file)
    connection_dir = os.path.dirname(connection_file)
    kernel_argv = [config["python"], "-m", "ipykernel_launcher", "-f", connection_file, *kernel_args]
    sandboxed = bool(config.get("sandbox", True))
    as_root = os.geteuid() == 0
    uid = int(config["uid"]) if sandboxed and as_root else None
    private_tmp = os.path.join(config["scratch_dir"], f"tmp-{os.getpid()}")
    saved_mode = os.stat(workdir).st_mode & 0o7777
    if sandboxed:
        _prepare_tmp(config, private_tmp, uid)
        if uid is not None:
            # The kernel runs as its own user: let it read its connection file and create
            # files in its folder (sticky: it cannot delete or replace the grader's files there).
            os.chown(connection_dir, uid, uid)
            os.chown(connection_file, uid, uid)
            os.chmod(workdir, 0o1777)
        command = bwrap_command(config, workdir, private_tmp, connection_dir, kernel_argv, as_root=as_root)
        rlimits = limits(config, as_root=as_root)
    else:
        # Opted out of the sandbox: the kernel runs as nbgrader would start it, with the time cap only;
        # its import path still holds only the probes (never the verdicts or the references).
        command, rlimits = kernel_argv, {}
        os.environ["PYTHONPATH"] = os.pathsep.join(config["python_path"])

    def apply_limits() -> None:
        for which, value in rlimits.items():
            resource.setrlimit(which, (value, value))

    # The kernel's own stdout/stderr (not cell output, which travels over its sockets)
    # go to a log file; its last lines explain a kernel that would not start.
    log_path = os.path.join(config["scratch_dir"], "kernel.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, preexec_fn=apply_limits, close_fds=True,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def forward(signum: int, _frame: object) -> None:
        proc.kill()

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGHUP, forward)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts travel as messages (interrupt_mode)
    cap = float(config["wall_clock_cap"])
    capped = False
    try:
        while True:
            try:
                proc.wait(timeout=min(1.0, max(started + cap - time.monotonic(), 0.1)))
                break
            except subprocess.TimeoutExpired:
                # Past the cap, or the grader that started us is gone (killed, its machine
                # lost): nobody will read this kernel, so it must not run on.
                capped = time.monotonic() - started >= cap
                if capped or os.getppid() != grader:
                    proc.kill()
                    proc.wait()
                    break
    finally:
        if uid is not None:
            os.chmod(workdir, saved_mode)
        remove_planted_links(workdir)
        shutil.rmtree(private_tmp, ignore_errors=True)
    status = {"returncode": proc.returncode, "capped": capped, "seconds": round(time.monotonic() - started, 3),
              "started_at": wall_started, "ended_at": time.time(),
              "reason": describe_exit(proc.returncode, capped, cap), "log_tail": _tail(log_path)}
    status_file = config.get("status_file")
    if status_file:
        tmp = f"{status_file}.{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(status, f)
        os.replace(tmp, status_file)
    return 0 if proc.returncode == 0 and not capped else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
