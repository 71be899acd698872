"""Schema migrations: Alembic, configured in code, scripts shipped inside the package."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, inspect, text

from mamori import __version__
from mamori.store.errors import StoreError

# The newest Alembic revision this code knows. Store.open compares it with the database's
# alembic_version so that an up-to-date database never pays for importing Alembic; a test
# checks that it equals the head of migrations/versions.
SCHEMA_HEAD = "0009"

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Arbitrary but fixed: the PostgreSQL advisory lock that serialises concurrent migrations.
_PG_LOCK_KEY = 0x6D616D6F7269  # "mamori"


def _stored_revision(conn: Connection) -> tuple[bool, str | None]:
    """(has any tables, revision in alembic_version or None)."""
    names = set(inspect(conn).get_table_names())
    if "alembic_version" not in names:
        return bool(names), None
    rev = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one_or_none()
    return True, rev


def migrate(engine: Engine) -> None:
    """Bring the schema to ``SCHEMA_HEAD``; cheap when it is already there.

    Concurrent first starts are serialised (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory
    lock), and the whole upgrade is one transaction, so a crash mid-migration leaves the old
    schema. Raises ``StoreError`` for a database that holds someone else's tables or a schema
    newer than this code.
    """
    with engine.connect() as conn:
        has_tables, rev = _stored_revision(conn)
    if rev == SCHEMA_HEAD:
        return
    _check_upgradable(has_tables, rev)
    with engine.connect() as conn:
        _lock_for_migration(conn)
        # Another process may have migrated while we waited for the lock.
        has_tables, rev = _stored_revision(conn)
        if rev == SCHEMA_HEAD:
            conn.rollback()
            return
        _check_upgradable(has_tables, rev)
        _upgrade(conn)
        conn.commit()


def _check_upgradable(has_tables: bool, rev: str | None) -> None:
    if rev is None and has_tables:
        raise StoreError(
            "the database holds tables but no mamori schema version; refusing to touch it"
        )
    if rev is not None:
        _check_known_revision(rev)


def _lock_for_migration(conn: Connection) -> None:
    """Take a lock, held until the transaction ends, that only one migrating process gets."""
    if conn.dialect.name == "sqlite":
        # pysqlite leaves BEGIN to us; IMMEDIATE takes the write lock now (waiting up to
        # busy_timeout) and makes the DDL that follows one atomic transaction.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})


def alembic_config(connection: Connection | None = None) -> Any:
    """Return an Alembic ``Config`` for the store's migrations, built in code.

    When ``connection`` is given, migrations run on it (env.py picks it up).
    """
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _check_known_revision(rev: str) -> None:
    """Raise ``StoreError`` unless ``rev`` is one of this code's revisions."""
    from alembic.script import ScriptDirectory
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    script = ScriptDirectory.from_config(alembic_config())
    try:
        script.get_revision(rev)
    except (CommandError, RevisionError) as exc:
        raise StoreError(
            f"database schema revision {rev!r} is unknown to mamori {__version__}"
            " (written by a newer version?)"
        ) from exc


def _upgrade(conn: Connection) -> None:
    from alembic import command

    command.upgrade(alembic_config(conn), "head")
