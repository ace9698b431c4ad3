"""A real PostgreSQL with pgvector on 127.0.0.1 for the tests, from the ``pgserver`` package's
binaries (Debian's postgresql has no pgvector): ``initdb`` once per test session, ``postgres
-h 127.0.0.1 -p <free port>``, trust authentication (a password in a URL is accepted and
ignored, so the tests can check it is never printed). Each test gets its own database.

``PgCluster.without_pgvector`` starts a second server from a copy of the binaries whose
extension folder lacks pgvector: a real server without it, for the "no pgvector" message.
Skips (never fails) where pgserver is not installed.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

_counter = itertools.count()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _install() -> Path:
    pgserver = pytest.importorskip("pgserver", reason="pgserver (pocketpack[postgres]) is not installed")
    return Path(pgserver.__file__).parent / "pginstall"


class PgCluster:
    """One PostgreSQL server on 127.0.0.1:``port`` with its data in a temporary folder."""

    def __init__(self, install: Path | None = None):
        self.install = install or _install()
        self.bin = self.install / "bin"
        self.root = Path(tempfile.mkdtemp(prefix="pp-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.user = None
        if os.geteuid() == 0:  # postgres refuses to run as root: pgserver's own system user
            import stat

            from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

            ensure_user_exists("pgserver")
            self.user = "pgserver"
            ensure_prefix_permissions(self.bin)
            ensure_folder_permissions(self.bin, stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH)
            ensure_folder_permissions(self.install / "lib", stat.S_IRGRP | stat.S_IROTH)
            shutil.chown(self.root, "pgserver", "pgserver")

    def _run(self, *args: str, timeout: float = 60) -> None:
        subprocess.run([str(self.bin / args[0]), *args[1:]], check=True, user=self.user, timeout=timeout,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.root)

    def start(self) -> "PgCluster":
        if not (self.data / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data), "--auth=trust", "-U", "postgres", "--encoding=utf8",
                      "--no-sync")
            with open(self.data / "postgresql.conf", "a") as conf:
                # a test server: small, quiet, quick to stop; commits stay durable (fsync on)
                conf.write("\nshared_buffers = 64MB\nmax_connections = 60\nlogging_collector = off\n")
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-l", str(self.root / "log"),
                  "-o", f"-h 127.0.0.1 -p {self.port} -k {self.root}", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-w", "-m", mode, "stop")
        except subprocess.CalledProcessError:
            pass

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
        if getattr(self, "copy_root", None):
            shutil.rmtree(self.copy_root, ignore_errors=True)

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        auth = "postgres" + (f":{password}" if password else "")
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def new_database(self, password: str | None = None) -> str:
        """A fresh database's URL (the store makes its extension and tables itself)."""
        import psycopg

        name = f"t{os.getpid()}_{next(_counter)}_{int(time.time() * 1000) % 100000}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name, password)

    @classmethod
    def without_pgvector(cls) -> "PgCluster":
        """A server from a copy of the binaries with pgvector's files left out of its share folder."""
        install = _install()
        top = Path(tempfile.mkdtemp(prefix="pp-pg-novector-"))
        copy = top / "pgserver" / "pginstall"  # the binaries' RPATH is $ORIGIN/../../../pgserver.libs
        (copy / "bin").mkdir(parents=True)
        libs = install.parent.parent / "pgserver.libs"
        if libs.is_dir():
            (top / "pgserver.libs").symlink_to(libs)
        for exe in ("postgres", "initdb", "pg_ctl"):  # copied: postgres finds share/ next to its real path
            shutil.copy2(install / "bin" / exe, copy / "bin" / exe)
        (copy / "lib").symlink_to(install / "lib")
        share = copy / "share" / "postgresql"
        share.mkdir(parents=True)
        for entry in (install / "share" / "postgresql").iterdir():
            if entry.name != "extension":
                (share / entry.name).symlink_to(entry)
        (share / "extension").mkdir()
        for entry in (install / "share" / "postgresql" / "extension").iterdir():
            if not entry.name.startswith("vector"):
                (share / "extension" / entry.name).symlink_to(entry)
        if os.geteuid() == 0:
            for path in [top, *top.rglob("*")]:
                if not path.is_symlink():
                    path.chmod(path.stat().st_mode | 0o755)
        cluster = cls(copy)
        cluster.copy_root = top
        return cluster.start()


@pytest.fixture(scope="session")
def pg_cluster():
    """One real PostgreSQL (with pgvector) on 127.0.0.1 for the whole test session."""
    cluster = PgCluster().start()
    yield cluster
    cluster.remove()


@pytest.fixture
def pg_url(pg_cluster) -> str:
    """A fresh, empty database on the session's server, as a TCP ``postgresql://`` URL."""
    return pg_cluster.new_database()
