"""Database backends for the tests: SQLite files and a throw-away PostgreSQL cluster.

``db_url`` runs a test once per backend, each time on a fresh, empty database::

    from tests.db_backends import db_url, pg_cluster  # noqa: F401

    def test_something(db_url: str) -> None: ...

PostgreSQL comes from, in this order:

* ``RECDEMO_TEST_PG_URL`` (any database on a server where that role may ``CREATE DATABASE``);
* else a cluster started for this test session from Debian's server binaries
  (``/usr/lib/postgresql/*/bin``): ``initdb`` in a temp folder (as the ``postgres`` system user
  when we are root: initdb refuses root), trust auth, 127.0.0.1 on a free port, socket in the
  temp folder; stopped and deleted at the end of the session. Nothing of the machine's own
  PostgreSQL service is used or started.

Without server binaries the PostgreSQL cases are skipped with the reason; ``make test``
installs Debian's ``postgresql`` package first when it runs as root.

The cluster helpers (:func:`find_pg_bindir`, :class:`TempCluster`) are also used by
``bench/db.py``.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

PG_URL_ENV = "RECDEMO_TEST_PG_URL"
PG_BINDIR_ENV = "RECDEMO_PG_BINDIR"
PG_SYSTEM_USER = "postgres"
NO_PG_REASON = (
    "PostgreSQL server binaries not found; `make test` installs Debian's postgresql when run as "
    f"root (or set {PG_URL_ENV} to a server where the role may CREATE DATABASE)"
)
# Throw-away test data: no fsync, no waiting for the WAL to reach the disk.
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def find_pg_bindir() -> Path | None:
    """The newest folder holding both ``initdb`` and ``pg_ctl`` (Debian keeps them off PATH)."""
    candidates: list[Path] = []
    if os.environ.get(PG_BINDIR_ENV):
        candidates.append(Path(os.environ[PG_BINDIR_ENV]))

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.parent.name  # /usr/lib/postgresql/<version>/bin/initdb
        return tuple(int(p) for p in name.split(".") if p.isdigit())

    for initdb in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version, reverse=True):
        candidates.append(Path(initdb).parent)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def psycopg_url(url: str | URL) -> URL:
    """The URL with the psycopg (3) driver that requirements.txt pins."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


class ClusterError(RuntimeError):
    """The temporary cluster could not be made or started; the message has the server log."""


@dataclass
class TempCluster:
    """A PostgreSQL cluster in a temp folder, owned by this process; ``stop()`` deletes it."""

    bindir: Path
    settings: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 0
    root: Path | None = None

    @property
    def datadir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        assert self.root is not None
        return self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/{database}"

    def _as_owner(self, args: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return args  # an ordinary user may run the server as itself
        try:
            pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            raise ClusterError(
                f"Running as root, but there is no {PG_SYSTEM_USER!r} system user to own the "
                "test cluster (Debian's postgresql package creates it)"
            ) from None
        runuser = shutil.which("runuser")
        if runuser:
            return [runuser, "-u", PG_SYSTEM_USER, "--", *args]
        return ["su", PG_SYSTEM_USER, "-s", "/bin/sh", "-c", " ".join(map(_shell_quote, args))]

    def _run(self, args: list[str], what: str) -> None:
        done = subprocess.run(
            self._as_owner(args), capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            log = self.logfile.read_text()[-3000:] if self.logfile.exists() else ""
            raise ClusterError(
                f"{what} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
                + (f"\nserver log:\n{log}" if log else "")
            )

    def start(self, attempts: int = 3) -> TempCluster:
        # Not under pytest's tmp dirs: those are mode 700 and root's, the server user's is not.
        self.root = Path(tempfile.mkdtemp(prefix="recdemo-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.root, user=PG_SYSTEM_USER)
        initdb = [str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", "postgres"]
        initdb += ["-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync"]
        self._run(initdb, "initdb")
        for attempt in range(attempts):
            self.port = free_port()  # another process may take it first: then try again
            options = [
                f"-p {self.port}",
                f"-k {self.root}",
                f"-c listen_addresses={self.host}",
                *(f"-c {key}={value}" for key, value in self.settings.items()),
            ]
            try:
                self._run(
                    [
                        str(self.bindir / "pg_ctl"),
                        "-D",
                        str(self.datadir),
                        "-l",
                        str(self.logfile),
                        "-o",
                        " ".join(options),
                        "-w",
                        "-t",
                        "60",
                        "start",
                    ],
                    "pg_ctl start",
                )
                return self
            except ClusterError:
                if attempt == attempts - 1:
                    self.stop()
                    raise
                time.sleep(0.5)
        raise AssertionError("unreachable")

    def stop(self) -> None:
        if self.root is None:
            return
        if (self.datadir / "postmaster.pid").exists():
            stop = [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate"]
            subprocess.run(
                self._as_owner([*stop, "-w", "stop"]), capture_output=True, timeout=60, check=False
            )
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None


def _shell_quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


@dataclass
class PgServer:
    """Where test databases are made: a temp cluster, or the server of RECDEMO_TEST_PG_URL."""

    admin_url: URL
    _counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def url(self, database: str) -> str:
        return self.admin_url.set(database=database).render_as_string(hide_password=False)

    def _admin(self, sql: str) -> None:
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(sql))
        finally:
            engine.dispose()

    def create_database(self) -> str:
        # The pid keeps parallel runs against one shared server (RECDEMO_TEST_PG_URL) apart.
        name = f"test_{os.getpid()}_{next(self._counter)}"
        self._admin(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        # FORCE (PostgreSQL 13+): connections a test left open must not keep the database.
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgServer]:
    """A PostgreSQL server for this test session (see the module docstring)."""
    external = os.environ.get(PG_URL_ENV)
    if external:
        yield PgServer(psycopg_url(external))
        return
    bindir = find_pg_bindir()
    if bindir is None:
        pytest.skip(NO_PG_REASON)
    cluster = TempCluster(bindir, settings=dict(FAST_SETTINGS)).start()
    try:
        yield PgServer(make_url(cluster.url()))
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database on each backend (no schema yet: tests call create_schema)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'app.db'}"
        return
    server: PgServer = request.getfixturevalue("pg_cluster")
    name = server.create_database()
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)
