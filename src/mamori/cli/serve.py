"""``mamori serve``: the self-service "check my connection" page (embedded job pool)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mamori.cli.common import EXIT_FAILED, EXIT_USAGE, fail, require_extra, stderr

# What `mamori serve` imports beyond the core install (the "serve" extra).
SERVE_MODULES = ("fastapi", "uvicorn", "jinja2", "python_multipart", "pydantic_settings")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    bind: Annotated[str | None, typer.Option(
        "--bind", help="Address to listen on (default: the settings' bind, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(
        "--port", help="Port to listen on (default: the settings' port, 8080).")] = None,
    public_url: Annotated[str | None, typer.Option(
        "--public-url", help="How visitors reach the page, e.g. https://check.example.net.",
    )] = None,
    db: Annotated[str | None, typer.Option(
        "--db", envvar="MAMORI_DB", help="Database URL or SQLite file.")] = None,
    backend: Annotated[str | None, typer.Option(
        "--backend", help='Who runs the checks: "embedded" (this process; the default) or '
        '"celery" (`mamori worker` processes; this one only enqueues).')] = None,
    broker: Annotated[str | None, typer.Option(
        "--broker", help="Redis URL of the job queue for --backend celery, e.g. "
        "redis://127.0.0.1:6379/0 (default: the settings' broker_url).")] = None,
    settings_file: Annotated[Path | None, typer.Option(
        "--settings", help="Settings file with a serve table (default: MAMORI_SETTINGS or "
        "the user config dir).")] = None,
    hash_password: Annotated[bool, typer.Option(
        "--hash-password", help="Read a password (stdin or prompt), print its scrypt hash for "
        "the settings' admin_users, and exit.")] = False,
) -> None:
    """Serve the "check my connection" page: each visitor's own address is probed (never one
    they name), with the same checks and report as `mamori scan`. Settings: the serve table
    of the settings file and MAMORI_SERVE_* variables; see the README."""
    if hash_password:
        _print_hash()
        return
    require_extra("mamori serve", "serve", SERVE_MODULES)
    from mamori.serve.settings import ServeSettingsError, load_serve_settings

    overrides: dict[str, object] = {}
    for name, value in (("bind", bind), ("port", port), ("public_url", public_url),
                        ("db", db), ("backend", backend), ("broker_url", broker)):
        if value is not None:
            overrides[name] = value
    try:
        settings = load_serve_settings(settings_file, **overrides)
    except ServeSettingsError as exc:
        fail(EXIT_USAGE, str(exc))
    from mamori.ports import PortSpecError, port_table

    try:  # the profiles' port table, read once here: an unusable one stops the start
        port_table("tcp")
    except PortSpecError as exc:
        fail(EXIT_USAGE, str(exc))
    if settings.secret_key is None:
        stderr.print("mamori serve: no secret_key set: using a random one (forms and admin "
                     "sessions end when the server restarts)", markup=False)
    _run(settings)


def _check_ports(spec: str) -> None:
    """Raise ServeSettingsError for an unreadable excluded_ports (the settings validate it
    too; kept for callers such as ``mamori worker``)."""
    from mamori.ports import PortSpecError, parse_port_spec
    from mamori.serve.settings import ServeSettingsError

    if spec.strip():
        try:
            parse_port_spec(spec, default_both=True)
        except PortSpecError as exc:
            raise ServeSettingsError(f"serve setting excluded_ports: {exc}") from None


def _print_hash() -> None:
    from mamori.serve.passwords import hash_password

    if sys.stdin.isatty():
        import getpass

        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            fail(EXIT_USAGE, "the passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 12:
        fail(EXIT_USAGE, "use a password of at least 12 characters")
    sys.stdout.write(hash_password(password) + "\n")


def _run(settings: object) -> None:
    import uvicorn

    from mamori.checks.catalog import CatalogError
    from mamori.serve.app import create_app
    from mamori.serve.settings import ServeSettings
    from mamori.store import StoreError, StoreUsageError

    assert isinstance(settings, ServeSettings)
    try:
        app = create_app(settings)
    except StoreUsageError as exc:
        fail(EXIT_USAGE, str(exc))
    except CatalogError as exc:
        fail(EXIT_USAGE, f"serve setting checks: {exc}")
    except StoreError as exc:
        fail(EXIT_FAILED, str(exc))
    stderr.print(f"mamori serve on http://{_hostport(settings.bind, settings.port)}/ "
                 f"(public URL {settings.public_url})", markup=False)
    config = uvicorn.Config(
        app, host=settings.bind, port=settings.port,
        # The peer address is what gets probed: never let the server rewrite it from headers
        # (trusted proxies are handled by mamori itself, from settings).
        proxy_headers=False, forwarded_allow_ips="",
        # No access log: result URLs are secrets (the admin pages list the checks).
        server_header=False, access_log=False, log_level="info",
        limit_concurrency=settings.max_connections, timeout_keep_alive=5,
        h11_max_incomplete_event_size=16 * 1024,
    )
    try:
        uvicorn.Server(config).run()
    except OSError as exc:
        fail(EXIT_FAILED, f"cannot listen on {settings.bind}:{settings.port}: "
                           f"{exc.strerror or exc}")


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
