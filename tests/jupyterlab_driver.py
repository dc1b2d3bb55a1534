"""Drive a real JupyterLab in headless Chromium, as a learner would (used by test_browser.py).

- :class:`JupyterLab` starts ``jupyter lab`` on a folder with a random token
  on a free loopback port, in throwaway settings, runtime and workspace
  folders, and always stops it and every process it started (kernels
  included, which jupyter_client starts in their own session).
- :func:`open_browser` launches Debian's Chromium (``/usr/bin/chromium``)
  through Playwright with a fresh profile and no network chatter.
- :class:`NotebookPage` opens a notebook, runs its cells one by one with
  Shift+Enter (so a failing check does not stop the cells after it, as
  *Run All* would), and reads every cell back from the page.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

CHROMIUM = Path("/usr/bin/chromium")
#: Chromium on a machine without outside network and without a GPU.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: JupyterLab user settings: every cell in the page (no windowing), no news or update checks, no
#: autosave (the tests type into cells and must leave the files as they were).
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                         "checkForUpdates": False},
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLab:
    """``jupyter lab`` serving ``root`` on 127.0.0.1; use as a context manager.

    Args:
        root: the folder learners open (the server's root_dir and working directory).
        state: an empty folder for settings, runtime files, workspaces and the server log.
        python_path: the only folders on the kernels' PYTHONPATH (the instructors' settings are
            dropped, so kernels see what a learner has: for the bundle, its own mytorch_lib, as
            ``pip install -e .`` in the bundle gives).
    """

    def __init__(self, root: Path, state: Path, *, python_path: tuple[Path, ...] = (),
                 startup_timeout: float = 90.0) -> None:
        self.root, self.state = Path(root), Path(state)
        self.python_path = python_path
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.state / "jupyterlab.log"
        self.started_in: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "JUPYTER_PATH")}
        settings = self.state / "settings"
        for name, value in LAB_SETTINGS.items():
            path = settings / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value), encoding="utf-8")
        config = self.state / "config"
        # A learner's environment has no nbgrader (requirements.txt of the bundle): switch off its
        # server and JupyterLab extensions, which the instructors' environment has installed.
        (config / "labconfig").mkdir(parents=True, exist_ok=True)
        (config / "labconfig" / "page_config.json").write_text(
            json.dumps({"disabledExtensions": {"@jupyter/nbgrader": True}}), encoding="utf-8")
        (config / "jupyter_server_config.json").write_text(json.dumps({"ServerApp": {"jpserver_extensions": {
            f"nbgrader.server_extensions.{name}": False
            for name in ("assignment_list", "course_list", "formgrader", "validate_assignment")}}}), encoding="utf-8")
        env.update({
            "JUPYTERLAB_SETTINGS_DIR": str(settings),
            "JUPYTERLAB_WORKSPACES_DIR": str(self.state / "workspaces"),
            "JUPYTER_CONFIG_DIR": str(config),
            "JUPYTER_RUNTIME_DIR": str(self.state / "runtime"),
            "IPYTHONDIR": str(self.state / "ipython"),
            "PYTHONPATH": os.pathsep.join(str(p) for p in self.python_path),
            "PATH": str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
        })
        return env

    def __enter__(self) -> "JupyterLab":
        started = time.perf_counter()
        command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={self.port}",
                   "--ip=127.0.0.1", f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
                   "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        if os.geteuid() == 0:  # CI containers run as root
            command.append("--allow-root")
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(command, cwd=self.root, env=self._environment(), stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        self.started_in = time.perf_counter() - started
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"jupyter lab did not answer within {self.startup_timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        """Stop the server and every process it started (kernels run in sessions of their own)."""
        import psutil

        if self.process is None:
            return
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        for proc in [self.process, *children]:
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        _, alive = psutil.wait_procs([psutil.Process(p.pid) for p in children if p.is_running()], timeout=5)
        for proc in alive:
            proc.kill()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def notebook_url(self, relative: str) -> str:
        return f"{self.url}/lab/tree/{relative}?token={self.token}"


@contextmanager
def open_browser(profile: Path, *, viewport: tuple[int, int] = (1400, 1000)) -> Iterator[Any]:
    """A Playwright browser context on Debian's Chromium with a fresh profile folder."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: run scripts/install_system_packages.sh (Debian's chromium)")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": viewport[0], "height": viewport[1]})
        try:
            yield context
        finally:
            context.close()


@dataclass
class Cell:
    """A notebook cell as the page shows it after running."""

    index: int
    kind: str  # "code" | "markdown" | "raw"
    source: str
    prompt: str
    outputs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # error and stderr outputs, as shown

    @property
    def executed(self) -> bool:
        return bool(re.search(r"\[\d+\]", self.prompt))


# Reads every cell of the active notebook from the page in one round trip.
_READ_CELLS = """
() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  return Array.from(panel.querySelectorAll('.jp-Notebook .jp-Cell')).map((cell, index) => ({
    index,
    kind: cell.classList.contains('jp-CodeCell') ? 'code' : cell.classList.contains('jp-MarkdownCell') ? 'markdown' : 'raw',
    source: Array.from(cell.querySelectorAll('.jp-InputArea-editor .cm-line')).map(l => l.textContent).join('\\n'),
    prompt: (cell.querySelector('.jp-InputPrompt') || {}).textContent || '',
    outputs: Array.from(cell.querySelectorAll('.jp-OutputArea-output'))
      .filter(o => o.getAttribute('data-mime-type') !== 'application/vnd.jupyter.stderr').map(o => o.innerText),
    errors: Array.from(cell.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'))
      .map(o => o.innerText),
  }));
}
"""


class NotebookPage:
    """One notebook open in JupyterLab in a browser page."""

    def __init__(self, context: Any, lab: JupyterLab, relative: str, *, timeout_ms: int = 60_000) -> None:
        self.lab, self.relative = lab, relative
        self.page = context.new_page()
        self.page.set_default_timeout(timeout_ms)
        started = time.perf_counter()
        self.page.goto(lab.notebook_url(relative))
        self.page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell")
        self.wait_idle()
        self.opened_in = time.perf_counter() - started
        self.cell_count = self.cells.count()  # Shift+Enter on the last cell appends an empty one

    def wait_idle(self, timeout_s: float = 60.0) -> None:
        """Wait until the notebook's kernel is started, connected and idle.

        The page says "Idle" before the kernel even starts, so the server's
        session list is asked first, then the toolbar's execution indicator.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            with urllib.request.urlopen(f"{self.lab.url}/api/sessions?token={self.lab.token}", timeout=5) as r:
                sessions = json.load(r)
            kernels = [s["kernel"] for s in sessions if s.get("path") == self.relative and s.get("kernel")]
            if kernels and kernels[0].get("execution_state") == "idle" and kernels[0].get("connections", 0) > 0:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the kernel of {self.relative} was not ready within {timeout_s} s: {sessions}")
            time.sleep(0.2)
        self.page.wait_for_selector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator"
                                    "[data-status='idle']")

    @property
    def cells(self) -> Any:
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell")

    def read(self) -> list[Cell]:
        """The notebook's cells as the page shows them (without the empty cell a run appends)."""
        return [Cell(**c) for c in self.page.evaluate(_READ_CELLS)][:self.cell_count]

    def command_mode_at(self, index: int) -> None:
        """Select cell ``index`` in command mode (click its prompt area, then Escape)."""
        cell = self.cells.nth(index)
        cell.scroll_into_view_if_needed()
        cell.locator(".jp-InputPrompt").first.click()
        self.page.keyboard.press("Escape")

    def run_all_one_by_one(self, *, deadline_s: float = 240.0) -> float:
        """Run every cell with Shift+Enter from the first, waiting for each code cell; returns seconds."""
        started = time.perf_counter()
        self.command_mode_at(0)
        for index in range(self.cell_count):
            if time.perf_counter() - started > deadline_s:
                raise TimeoutError(f"running {self.relative} took more than {deadline_s} s (cell {index})")
            cell = self.cells.nth(index)
            is_code = "jp-CodeCell" in (cell.get_attribute("class") or "")
            self.page.keyboard.press("Shift+Enter")
            if is_code:
                prompt = cell.locator(".jp-InputPrompt")
                self.page.wait_for_function(
                    "el => /\\[\\d+\\]/.test(el.textContent)", arg=prompt.element_handle())
        self.wait_idle()
        return time.perf_counter() - started

    def try_to_type(self, index: int, text: str) -> str:
        """Click into cell ``index``'s editor, type ``text`` at the end, return the editor's text afterwards."""
        cell = self.cells.nth(index)
        cell.scroll_into_view_if_needed()
        editor = cell.locator(".jp-InputArea-editor .cm-content")
        editor.click()
        self.page.keyboard.press("Control+End")
        self.page.keyboard.type(text)
        self.page.keyboard.press("Escape")
        return "\n".join(cell.locator(".jp-InputArea-editor .cm-line").all_text_contents())

    def try_to_delete(self, index: int) -> int:
        """Press D, D on cell ``index`` in command mode (JupyterLab's delete); return the cell count after."""
        self.command_mode_at(index)
        self.page.keyboard.press("d")
        self.page.keyboard.press("d")
        self.page.wait_for_timeout(300)
        return self.cells.count()

    def screenshot(self, path: Path, *, at: int = 0) -> Path:
        """Scroll cell ``at`` to the top of the notebook and save a screenshot of the page."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.cells.nth(at).evaluate("el => el.scrollIntoView({block: 'start'})")
        self.page.wait_for_timeout(200)
        self.page.screenshot(path=str(path))
        return path
