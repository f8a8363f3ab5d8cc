"""Connections from the one `database_url` setting, for both psycopg2 and SQLAlchemy.

The setting is a libpq URL (`postgresql://user@host:port/db`). SQLAlchemy 2.1 maps a bare
`postgresql://` to psycopg 3, which is not a dependency, so the driver is named explicitly here.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

import psycopg2
from psycopg2.extensions import connection as PGConnection
from psycopg2.extensions import make_dsn
from sqlalchemy import Engine, create_engine, make_url, pool
from sqlalchemy.engine import URL


def libpq_url(url: str) -> str:
    """`url` as libpq takes it: without a SQLAlchemy `+driver` part."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url  # a key=value DSN
    return f"{scheme.split('+', 1)[0]}://{rest}"


def sqlalchemy_url(url: str) -> URL:
    """`url` as SQLAlchemy takes it, on the psycopg2 driver."""
    parsed = make_url(libpq_url(url).replace("postgres://", "postgresql://", 1))
    return parsed.set(drivername="postgresql+psycopg2")


def with_database(url: str, dbname: str) -> str:
    """`url` (a URL or a key=value DSN) naming the database `dbname` instead."""
    if "://" not in url:
        return make_dsn(url, dbname=dbname)
    return urlunsplit(urlsplit(url)._replace(path="/" + quote(dbname)))


def connect(url: str, *, application_name: str = "alphaplus") -> PGConnection:
    """A psycopg2 connection, what the writer functions take."""
    return psycopg2.connect(libpq_url(url), application_name=application_name)


def engine(url: str, *, pooled: bool = True) -> Engine:
    """A SQLAlchemy engine on psycopg2, for a URL or a key=value DSN; `pooled=False` for
    one-off jobs (migrations, tests), whose connections must not outlive them."""
    dsn = libpq_url(url)

    def creator() -> PGConnection:
        # libpq parses the URL, so anything psql accepts works here, DSNs and all.
        return psycopg2.connect(dsn, application_name="alphaplus")

    if pooled:
        return create_engine("postgresql+psycopg2://", creator=creator, pool_pre_ping=True)
    return create_engine("postgresql+psycopg2://", creator=creator, poolclass=pool.NullPool)
