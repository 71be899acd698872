"""``mamori worker``: Celery worker processes that run the checks ``mamori serve --backend
celery`` enqueues (see ``mamori.serve.celery_app``)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from mamori.cli.common import EXIT_FAILED, EXIT_USAGE, fail, require_extra

LOG_LEVELS = ("debug", "info", "warning", "error")


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)


def worker(
    concurrency: Annotated[int | None, typer.Option(
        "--concurrency", min=1, max=64,
        help="Checks this worker runs at the same time, one pool process each (default: the "
        "settings' workers, 2).")] = None,
    broker: Annotated[str | None, typer.Option(
        "--broker", help="Redis URL of the job queue, e.g. redis://10.0.0.5:6379/0 (default: "
        "the settings' broker_url).")] = None,
    db: Annotated[str | None, typer.Option(
        "--db", envvar="MAMORI_DB",
        help="Database URL shared with `mamori serve`, e.g. postgresql+psycopg://...")] = None,
    settings_file: Annotated[Path | None, typer.Option(
        "--settings", help="Settings file with a serve table (default: MAMORI_SETTINGS or "
        "the user config dir).")] = None,
    name: Annotated[str | None, typer.Option(
        "--name", help="Celery node name (default: mamori-<pid>@<host name>).")] = None,
    loglevel: Annotated[str, typer.Option(
        "--loglevel", help="debug, info, warning or error.")] = "info",
) -> None:
    """Run checks for `mamori serve --backend celery`: take jobs from the Redis queue, probe,
    write results to the shared database. Start one or more on each machine that probes; a
    worker that dies mid-check has its check run again by another (or failed), never left
    running. Same settings as `mamori serve` (the serve table, MAMORI_SERVE_* variables)."""
    require_extra("mamori worker", "serve", ("celery", "redis", "pydantic_settings"))
    from mamori.serve.settings import ServeSettingsError, load_serve_settings

    if loglevel.lower() not in LOG_LEVELS:
        fail(EXIT_USAGE, f"--loglevel must be one of {', '.join(LOG_LEVELS)}")
    overrides: dict[str, object] = {"backend": "celery"}
    for key, value in (("broker_url", broker), ("db", db), ("workers", concurrency)):
        if value is not None:
            overrides[key] = value
    try:
        settings = load_serve_settings(settings_file, **overrides)
        _check_ports(settings.excluded_ports)
    except ServeSettingsError as exc:
        fail(EXIT_USAGE, str(exc))
    _check_catalog(settings.checks)
    _check_store(settings.db)
    _run(settings, name or f"mamori-{os.getpid()}@{socket.gethostname()}", loglevel.lower())


def _check_ports(spec: str) -> None:
    from mamori.cli.serve import _check_ports as check

    check(spec)


def _check_catalog(checks: list[str] | None) -> None:
    from mamori.checks.catalog import CatalogError, select

    try:
        select(checks)
    except CatalogError as exc:
        fail(EXIT_USAGE, f"serve setting checks: {exc}")


def _check_store(url: str | None) -> None:
    """Open (and migrate) the database once before forking, so bad URLs fail here with one
    line, and the pool processes find the schema ready."""
    from mamori.store import Store, StoreError, StoreUsageError

    try:
        Store.open(url).close()
    except StoreUsageError as exc:
        fail(EXIT_USAGE, str(exc))
    except StoreError as exc:
        fail(EXIT_FAILED, str(exc))


def _run(settings: object, nodename: str, loglevel: str) -> None:
    from mamori.serve.celery_app import make_celery, safe_url
    from mamori.serve.settings import ServeSettings

    assert isinstance(settings, ServeSettings)
    app = make_celery(settings, worker=True)
    sys.stderr.write(f"mamori worker {nodename}: {settings.workers} pool process(es), jobs "
                     f"from {safe_url(settings.broker_url)} queue {settings.celery_queue}\n")
    sys.stderr.flush()
    worker = app.Worker(
        hostname=nodename, concurrency=settings.workers, pool_cls="prefork",
        loglevel=loglevel.upper(), queues=[settings.celery_queue],
        without_gossip=True, without_mingle=True, quiet=True,
    )
    worker.start()
    code = worker.exitcode or 0
    if code:
        raise typer.Exit(EXIT_FAILED)
