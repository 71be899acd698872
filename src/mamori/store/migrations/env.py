"""Alembic environment for the mamori store.

``Store.open`` builds the Alembic ``Config`` in code and hands over a live connection in
``config.attributes["connection"]``; a developer running the ``alembic`` command instead sets
``sqlalchemy.url``. Offline (SQL script) mode is not supported: the store always migrates live.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from mamori.store.models import Base

target_metadata = Base.metadata


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds tables for later migrations.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if isinstance(connection, Connection):
        _configure_and_run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url or pass a connection in config.attributes")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            _configure_and_run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline migrations are not supported for the mamori store")
run_migrations_online()
