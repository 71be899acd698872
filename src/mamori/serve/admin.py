"""Admin pages: history, statistics, blocked sources. Behind a login (scrypt hashes,
constant-time comparison, rate-limited), a signed session cookie (HttpOnly, SameSite=Strict,
path /admin), and CSRF tokens on every form. Nothing secret ever travels in a query string.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from mamori.serve import ratelimit
from mamori.serve.pages import FORM_FIELDS, origin_ok, state_of, visitor_of, with_visitor
from mamori.serve.passwords import verify_password
from mamori.serve.state import ServeState, now_ts
from mamori.store import serve as db

router = APIRouter(prefix="/admin")


def _user(request: Request, st: ServeState) -> str | None:
    user = st.signer.session_user(request.cookies.get(st.admin_cookie), now_ts())
    return user if user is not None and user in st.settings.admin_users else None


def _login_redirect() -> Response:
    return RedirectResponse("/admin/login", status_code=303)


async def _form(request: Request, st: ServeState) -> dict[str, str] | None:
    """The form's fields when its CSRF token and origin are right, else None."""
    form = await request.form(max_files=0, max_fields=FORM_FIELDS)
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    visitor = request.cookies.get(st.visitor_cookie)
    if not st.signer.csrf_valid(fields.get("csrf"), visitor, now_ts()) or not origin_ok(
            request, st):
        return None
    return fields


def _peer(request: Request) -> str:
    client = request.scope.get("client")
    return str(client[0]) if client else "?"


@router.get("/login")
async def login_page(request: Request) -> Response:
    st = state_of(request)
    visitor, new = visitor_of(request, st)
    page = st.page("admin_login.html", csrf=st.signer.csrf_token(visitor, now_ts()), error=None,
                   configured=bool(st.settings.admin_users))
    return with_visitor(page, st, visitor, new)


@router.post("/login")
async def login(request: Request) -> Response:
    st = state_of(request)
    visitor, new = visitor_of(request, st)

    def again(status: int, error: str, retry: int | None = None) -> Response:
        page = st.page("admin_login.html", status=status,
                       headers={"retry-after": str(retry)} if retry else None,
                       csrf=st.signer.csrf_token(visitor, now_ts()), error=error,
                       configured=bool(st.settings.admin_users))
        return with_visitor(page, st, visitor, new)

    fields = await _form(request, st)
    if fields is None:
        st.refusals.add(_peer(request), "admin csrf")
        return again(403, "The form expired; try again.")
    key = str(st.rate_key(request.scope) or _peer(request))
    wait = ratelimit.acquire([(st.login_rate, key)])
    if wait is not None:
        st.refusals.add(key, "admin login rate")
        return again(429, f"Too many attempts; wait {wait} s.", wait)
    user = fields.get("user", "")[:64]
    password = fields.get("password", "")[:1024]
    stored = st.settings.admin_users.get(user)
    if not await run_in_threadpool(verify_password, password, stored):
        st.refusals.add(key, "admin login failed")
        return again(401, "Wrong user name or password.")
    ratelimit.release([(st.login_rate, key)])
    response = RedirectResponse("/admin", status_code=303)
    lifetime = st.settings.session_hours * 3600
    response.set_cookie(st.admin_cookie, st.signer.session(user, now_ts(), lifetime),
                        **st.cookie_args(same_site="strict", max_age=int(lifetime),
                                         path="/admin"))
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    st = state_of(request)
    response = RedirectResponse("/admin/login", status_code=303)
    if await _form(request, st) is not None:
        response.delete_cookie(st.admin_cookie, path="/admin")
    return response


def _admin_page(st: ServeState, request: Request, name: str, **ctx: Any) -> Response:
    visitor, new = visitor_of(request, st)
    page = st.page(name, csrf=st.signer.csrf_token(visitor, now_ts()),
                   user=_user(request, st), **ctx)
    return with_visitor(page, st, visitor, new)


@router.get("")
async def history(request: Request) -> Response:
    st = state_of(request)
    if _user(request, st) is None:
        return _login_redirect()
    checks = await run_in_threadpool(db.recent, st.store, 200)
    return _admin_page(st, request, "admin_history.html", checks=checks)


@router.get("/stats")
async def stats(request: Request) -> Response:
    st = state_of(request)
    if _user(request, st) is None:
        return _login_redirect()
    numbers = await run_in_threadpool(db.stats, st.store, datetime.now(UTC))
    return _admin_page(st, request, "admin_stats.html", stats=numbers,
                       refused=sum(r.count for r in st.refusals.top(10_000)))


@router.get("/blocked")
async def blocked(request: Request) -> Response:
    st = state_of(request)
    if _user(request, st) is None:
        return _login_redirect()
    blocks = await run_in_threadpool(db.list_blocks, st.store)
    return _admin_page(st, request, "admin_blocked.html", blocks=blocks,
                       refusals=st.refusals.top(200), error=None)


@router.post("/blocked")
async def add_block(request: Request) -> Response:
    st = state_of(request)
    user = _user(request, st)
    if user is None:
        return Response("Forbidden\n", status_code=403, media_type="text/plain")
    fields = await _form(request, st)
    if fields is None:
        return Response("Forbidden\n", status_code=403, media_type="text/plain")
    try:
        network = str(ipaddress.ip_network(fields.get("network", "").strip(), strict=False))
    except ValueError:
        blocks = await run_in_threadpool(db.list_blocks, st.store)
        return _admin_page(st, request, "admin_blocked.html", blocks=blocks,
                           refusals=st.refusals.top(200),
                           error="Give an address or a CIDR block.")
    await run_in_threadpool(db.add_block, st.store, network, fields.get("reason", ""), user,
                            datetime.now(UTC))
    return RedirectResponse("/admin/blocked", status_code=303)


@router.post("/blocked/{block_id}/delete")
async def remove_block(request: Request, block_id: int) -> Response:
    st = state_of(request)
    if _user(request, st) is None or await _form(request, st) is None:
        return Response("Forbidden\n", status_code=403, media_type="text/plain")
    await run_in_threadpool(db.remove_block, st.store, block_id)
    return RedirectResponse("/admin/blocked", status_code=303)
