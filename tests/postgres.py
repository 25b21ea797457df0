"""A throwaway PostgreSQL server for the tests: Debian's `postgresql` binaries, `initdb` into a temp dir (as the
`postgres` user when run as root: initdb refuses root), started on a unix socket in that dir with fsync off, and
removed afterwards. About a second to start. No TCP port is opened."""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

INSTALL_HINT = "install it with `apt-get install postgresql` (.ci/run does when pg_ctl is missing)"


def binary(name: str) -> str | None:
    """A PostgreSQL program: on PATH, else in Debian's versioned folder (newest first)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]), reverse=True)
    return candidates[0] if candidates else None


class PostgresServer:
    """`start()` it, make databases with `create_database()`, and `stop()` it (data dir removed)."""

    _names = itertools.count()

    def __init__(self, user: str = "postgres") -> None:
        self.pg_ctl, self.initdb = binary("pg_ctl"), binary("initdb")
        if not self.pg_ctl or not self.initdb:
            raise RuntimeError(f"PostgreSQL is not installed: {INSTALL_HINT}")
        self.user = user
        self.base = Path(tempfile.mkdtemp(prefix="imgsearch-pg-"))
        os.chmod(self.base, 0o755)  # the server process (postgres user) must reach its socket and data here
        self.data = self.base / "data"
        self.log = self.base / "server.log"

    def _run(self, *args: str) -> None:
        as_root = os.geteuid() == 0
        command = (["runuser", "-u", "postgres", "--"] if as_root else []) + list(args)
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed: {done.stdout}{done.stderr}{log}")

    def start(self) -> "PostgresServer":
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        self._run(self.initdb, "-D", str(self.data), "-U", self.user, "--auth=trust", "--no-sync", "-E", "UTF8")
        options = (f"-c fsync=off -c full_page_writes=off -c synchronous_commit=off -c listen_addresses='' "
                   f"-c unix_socket_directories={self.base} -c max_connections=300")
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        return self

    def stop(self, mode: str = "fast", remove: bool = True) -> None:
        if self.data.exists():
            try:
                self._run(self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop")
            except RuntimeError:
                pass  # not running
        if remove:
            shutil.rmtree(self.base, ignore_errors=True)

    def restart(self) -> None:
        options = (f"-c fsync=off -c full_page_writes=off -c synchronous_commit=off -c listen_addresses='' "
                   f"-c unix_socket_directories={self.base} -c max_connections=300")
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL (psycopg 3) for a database of this server, over its unix socket."""
        return f"postgresql+psycopg://{self.user}@/{database}?host={self.base}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(host=str(self.base), user=self.user, dbname="postgres", autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; its SQLAlchemy URL."""
        name = name or f"t{next(self._names)}_{os.getpid()}"
        self.admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
