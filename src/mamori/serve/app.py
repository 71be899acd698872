"""The FastAPI application of ``mamori serve``: pages, middleware, the job backend's life.

``create_app`` takes everything it uses (settings, store, scanner, backend), so tests and the
Celery deployment put in their own parts. Middleware order, outermost first: security
headers, Host allowlist, body cap, request rate; then the routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from mamori.serve import admin, api, pages
from mamori.serve.backend import EmbeddedBackend, JobBackend
from mamori.serve.middleware import BodyLimit, HostAllowlist, RequestRate, SecurityHeaders
from mamori.serve.scanner import Scanner
from mamori.serve.settings import ServeSettings
from mamori.serve.state import HERE, ServeState, make_state
from mamori.store import Store, StoreError
from mamori.store import serve as db

log = logging.getLogger("mamori.serve")
MAINTENANCE_EVERY = 30.0


def maintain(st: ServeState) -> None:
    """Fail checks whose worker stopped answering; delete expired results."""
    now = datetime.now(UTC)
    try:
        failed = db.fail_stale(st.store, now, st.settings.stale_after)
        purged = db.purge_expired(st.store, now)
    except StoreError as exc:
        log.warning("maintenance failed: %s", exc)
        return
    if failed or purged:
        log.info("maintenance: %d stale checks failed, %d expired results deleted",
                 len(failed), purged)


def create_app(
    settings: ServeSettings,
    *,
    store: Store | None = None,
    scanner: Scanner | None = None,
    backend: JobBackend | None = None,
    maintenance_every: float = MAINTENANCE_EVERY,
) -> FastAPI:
    """The app. ``store``: opened from ``settings.db`` (or MAMORI_DB / the default) when None;
    ``backend``: an ``EmbeddedBackend`` running ``scanner`` (default: mamori's pipeline)."""
    own_store = store is None
    the_store = store if store is not None else Store.open(settings.db)
    if backend is None and settings.backend == "celery":  # web process: enqueue and read only
        from mamori.serve.celery_app import CeleryBackend

        backend = CeleryBackend(settings, the_store)
    the_backend = backend if backend is not None else EmbeddedBackend(
        settings, the_store, scanner)
    st = make_state(settings, the_store, the_backend)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(the_backend.start)

        async def housekeeping() -> None:
            while True:
                await asyncio.to_thread(maintain, st)
                await asyncio.sleep(maintenance_every)

        task = asyncio.create_task(housekeeping())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await asyncio.to_thread(the_backend.stop)
            if own_store:
                the_store.close()

    app = FastAPI(title=settings.service_name, docs_url=None, redoc_url=None,
                  openapi_url=None, lifespan=lifespan)
    app.state.serve = st
    app.include_router(pages.router)
    app.include_router(admin.router)
    app.include_router(api.router)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.exception_handler(StoreError)
    async def store_down(request: Request, exc: StoreError) -> Response:
        log.error("store error: %s", exc)
        return st.page("gone.html", status=503, expired=False,
                       message="The service cannot reach its database right now.")

    app.add_middleware(RequestRate, window=st.page_rate, key=st.rate_key,
                       on_refused=lambda key: st.refusals.add(key, "request rate"),
                       exempt=("/static/", "/report.css", "/report.js"))
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes,
                       deadline=settings.body_timeout)
    app.add_middleware(HostAllowlist, hosts=settings.hosts)
    app.add_middleware(SecurityHeaders, hsts=settings.secure_cookies)
    return app
