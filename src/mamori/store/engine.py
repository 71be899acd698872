"""Database URLs and engines: plain paths become SQLite URLs, SQLite gets WAL and friends.

Everything here runs before the first query, so bad input is refused before any file is
touched.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import platformdirs
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.pool import StaticPool

from mamori.store.errors import StoreError, StoreUsageError

_SQLITE_MAGIC = b"SQLite format 3\x00"
_BUSY_TIMEOUT_MS = 10_000


def default_db_url() -> str:
    """Return the database URL to use when none is given.

    ``MAMORI_DB`` wins when set (a URL or a plain file path, returned as given); otherwise
    ``sqlite:///<user data dir>/mamori.db``. Nothing is created here.
    """
    env = os.environ.get("MAMORI_DB", "").strip()
    if env:
        return env
    data_dir = Path(platformdirs.user_data_dir("mamori", appauthor=False))
    return f"sqlite:///{data_dir / 'mamori.db'}"


def normalize_url(url: str) -> URL:
    """Turn a URL or a plain file path into a SQLAlchemy ``URL``.

    A string without ``://`` is a SQLite file path (``~`` expanded, made absolute).
    Raises ``StoreError`` for an empty or unparseable URL.
    """
    url = url.strip()
    if not url:
        raise StoreUsageError("empty database URL")
    if "://" not in url:
        path = Path(url).expanduser().absolute()
        return URL.create("sqlite", database=str(path))
    try:
        return make_url(url)
    except (ArgumentError, ValueError) as exc:
        shown = _redact(url)
        raise StoreUsageError(f"cannot parse database URL {shown!r}: {one_line(exc)}") from exc


def _redact(url: str) -> str:
    """Hide a password in a URL string before it reaches a message."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return url.split("@", 1)[-1] if "@" in url else url


def one_line(exc: BaseException) -> str:
    """Return the first line of an exception's message (the DB-API error's, when wrapped)."""
    msg = str(getattr(exc, "orig", None) or exc).strip()
    return msg.splitlines()[0] if msg else type(exc).__name__


def _sqlite_path(url: URL) -> Path | None:
    """The file behind a SQLite URL, or None for in-memory databases."""
    db = url.database
    if not db or db == ":memory:" or db.startswith("file:") or url.query.get("mode") == "memory":
        return None
    return Path(db)


def missing_sqlite_file(url: str | None) -> Path | None:
    """The SQLite file ``url`` (or the default) names when that file does not exist, else None
    (it exists, it is in memory, or the database is not SQLite). Nothing is created."""
    parsed = normalize_url(url if url is not None else default_db_url())
    if parsed.get_backend_name() != "sqlite":
        return None
    path = _sqlite_path(parsed)
    return path if path is not None and not path.exists() else None


def sqlite_file(engine: Engine) -> Path | None:
    """The file behind a SQLite engine; None for in-memory SQLite and other databases."""
    return _sqlite_path(engine.url) if engine.dialect.name == "sqlite" else None


def _check_sqlite_file(path: Path) -> None:
    """Refuse paths that are not (or cannot become) a SQLite database, before touching them."""
    if path.is_dir():
        raise StoreError(f"database path {path} is a directory, not a file")
    if path.exists():
        try:
            with path.open("rb") as fh:
                head = fh.read(len(_SQLITE_MAGIC))
        except OSError as exc:
            raise StoreError(f"cannot read database file {path}: {exc.strerror}") from exc
        # An empty file is a valid, empty SQLite database.
        if head and head != _SQLITE_MAGIC:
            raise StoreError(f"{path} is not a SQLite database; refusing to touch it")
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise StoreError(f"cannot create directory {path.parent}: {exc.strerror}") from exc


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Per-connection settings only: nothing here writes to the file, so a foreign file opened
    # by mistake stays byte-for-byte untouched. WAL, which is stored in the file, is switched
    # on by enable_wal once the file is known to be ours.
    cur = dbapi_connection.cursor()
    try:
        # NORMAL in WAL mode survives process death (only an OS crash may lose the last
        # commits, never consistency).
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    finally:
        cur.close()


def enable_wal(engine: Engine) -> str:
    """Switch a SQLite database to WAL mode (persistent in the file); return the mode in effect.

    WAL lets readers (``mamori history``) run while a scan writes. Switching needs a moment
    alone with the file, so when other processes hold it the switch is retried for about two
    seconds and then left to the next start; SQLite's rollback journal is crash-safe too.
    Where WAL is impossible (in-memory databases, some network file systems) the old mode
    stays. Returns "" for databases other than SQLite. Raises ``SQLAlchemyError`` for errors
    other than a busy database.
    """
    if engine.dialect.name != "sqlite":
        return ""
    with engine.connect() as conn:
        mode = str(conn.exec_driver_sql("PRAGMA journal_mode").scalar()).lower()
        deadline = time.monotonic() + 2.0
        while mode != "wal":
            try:
                mode = str(conn.exec_driver_sql("PRAGMA journal_mode=WAL").scalar()).lower()
                break
            except OperationalError as exc:
                if "locked" not in str(exc.orig):
                    raise
                if time.monotonic() > deadline:
                    break  # still busy: the next start switches
                time.sleep(0.05)
        conn.rollback()
    return mode


def make_engine(url: URL) -> Engine:
    """Return an engine for ``url`` without connecting (SQLite: file checked, dirs created).

    Raises ``StoreError`` when a SQLite path is a directory or a foreign file, the database
    type is unknown, or its driver is not installed.
    """
    try:
        if url.get_backend_name() == "sqlite":
            path = _sqlite_path(url)
            if path is None:
                # One shared connection, or every new connection would see a new empty database.
                engine = create_engine(
                    url, poolclass=StaticPool, connect_args={"check_same_thread": False}
                )
            else:
                _check_sqlite_file(path)
                engine = create_engine(url, connect_args={"timeout": _BUSY_TIMEOUT_MS / 1000})
            event.listen(engine, "connect", _on_sqlite_connect)
            return engine
        return create_engine(url, pool_pre_ping=True)
    except NoSuchModuleError as exc:
        raise StoreUsageError(f"unsupported database type {url.drivername!r}") from exc
    except ImportError as exc:
        raise StoreError(
            f"database driver for {url.drivername!r} is not installed ({exc.name or exc})"
        ) from exc
    except ArgumentError as exc:
        raise StoreUsageError(f"bad database URL: {one_line(exc)}") from exc
