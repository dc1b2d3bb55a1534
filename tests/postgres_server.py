"""A PostgreSQL server of the tests' own, in a temporary folder, for gradebook tests.

Debian's ``postgresql`` package (``scripts/install_system_packages.sh``) provides
the binaries; the server listens on 127.0.0.1 only and is stopped afterwards.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        pytest.fail("PostgreSQL is not installed: run scripts/install_system_packages.sh "
                    "(Debian package postgresql)")
    return Path(found[-1]).parent


def _server_user() -> list[str]:
    """Command prefix that runs PostgreSQL's tools as a non-root user (initdb refuses root)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
    return [shutil.which("runuser") or "/usr/sbin/runuser", "-u", "postgres", "--"]


@contextmanager
def running_postgres() -> Iterator[str]:
    """URL of a fresh database on a PostgreSQL server of our own, stopped afterwards."""
    bin_dir, as_user = _pg_bin(), _server_user()
    base = Path(tempfile.mkdtemp(prefix="mytorch-postgres-"))
    os.chmod(base, 0o755)
    data, sockets, log = base / "data", base / "sockets", base / "server.log"
    for folder in (data, sockets):
        folder.mkdir()
    if as_user:
        for path in (data, sockets, base):
            shutil.chown(path, "postgres")
    port = free_port()

    def run(*command: str) -> None:
        result = subprocess.run([*as_user, *command], capture_output=True, text=True, cwd=base)
        assert result.returncode == 0, f"{command[0]} failed:\n{result.stdout}\n{result.stderr}\n" + (
            log.read_text() if log.exists() else "")

    run(str(bin_dir / "initdb"), "-D", str(data), "--auth=trust", "--username=grader", "--encoding=UTF8")
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
        f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100", "start")
    try:
        run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "grader", "gradebook")
        yield f"postgresql://grader@127.0.0.1:{port}/gradebook"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, cwd=base)
        shutil.rmtree(base, ignore_errors=True)
