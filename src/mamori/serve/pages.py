"""The visitor's pages: landing, Proceed (POST /checks), progress, result, delete.

Every refusal happens before anything is stored or queued, in this order: proxy header,
CSRF (token bound to the visitor cookie, Origin / Sec-Fetch-Site), scope policy, admin
blocks, the profile, per-address and per-/64 rates, one active check per address, the global
cap. Nothing in a request names what is probed except the connection itself.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from mamori.serve import ratelimit
from mamori.serve.peer import ProxyHeaderError
from mamori.serve.profiles import PROFILES, Choice, ProfileError, choose, estimate_seconds
from mamori.serve.render import report_context, report_lang
from mamori.serve.scope import AddressError, IPAddress, Verdict, in_any, judge, rate_keys
from mamori.serve.state import ServeState, now_ts
from mamori.serve.tokens import new_visitor_id, visitor_hash
from mamori.store import serve as db

router = APIRouter()
FORM_FIELDS = 8


def state_of(request: Request) -> ServeState:
    state: ServeState = request.app.state.serve
    return state


def visitor_of(request: Request, st: ServeState) -> tuple[str, bool]:
    """(visitor id from the cookie, or a new one; True when new)."""
    value = request.cookies.get(st.visitor_cookie, "")
    if 20 <= len(value) <= 64 and value.replace("-", "").replace("_", "").isalnum():
        return value, False
    return new_visitor_id(), True


def with_visitor(response: Response, st: ServeState, visitor: str, new: bool) -> Response:
    if new:
        response.set_cookie(st.visitor_cookie, visitor, **st.cookie_args(
            same_site="lax", max_age=st.settings.result_days * 86400))
    return response


def blocked_address(st: ServeState, ip: IPAddress) -> bool:
    from mamori.serve.scope import parse_networks

    blocks = db.list_blocks(st.store)
    return in_any(ip, parse_networks([b.network for b in blocks])) if blocks else False


def _profiles(st: ServeState) -> list[dict[str, Any]]:
    out = []
    for name in PROFILES:
        if name == "custom":
            out.append({"name": name, "tcp": st.settings.custom_max_ports, "udp": 0,
                        "typical": None, "worst": None, "median": None})
            continue
        choice = choose(name, None, st.settings)
        typical, worst = estimate_seconds(choice, st.settings)
        out.append({"name": name, "tcp": len(choice.tcp_ports), "udp": len(choice.udp_ports),
                    "typical": typical, "worst": worst,
                    "median": db.median_seconds(st.store, name)})
    return out


def _landing(st: ServeState, *, address: str | None, verdict: Verdict | None,
             visitor: str, error: str | None = None, blocked: bool = False,
             chosen: str = "common", custom: str = "") -> dict[str, Any]:
    return {
        "address": address, "verdict": verdict, "blocked": blocked, "error": error,
        "csrf": st.signer.csrf_token(visitor, now_ts()),
        "profiles": _profiles(st), "chosen": chosen, "custom": custom[:200],
        "checks": st.check_titles, "excluded": st.settings.excluded_ports,
        "custom_max": st.settings.custom_max_ports, "result_days": st.settings.result_days,
    }


@router.get("/")
async def landing(request: Request) -> Response:
    st = state_of(request)
    visitor, new = visitor_of(request, st)
    address: str | None = None
    verdict: Verdict | None = None
    error = None
    blocked = False
    try:
        ip = st.visitor_address(request)
        address = str(ip)
        verdict = judge(ip, st.policy)
        blocked = verdict.allowed and await run_in_threadpool(blocked_address, st, ip)
    except (AddressError, ProxyHeaderError) as exc:
        error = f"Your address could not be determined: {exc}"
    ctx = await run_in_threadpool(_landing, st, address=address, verdict=verdict,
                                  visitor=visitor, error=error, blocked=blocked)
    return with_visitor(st.page("landing.html", **ctx), st, visitor, new)


def origin_ok(request: Request, st: ServeState) -> bool:
    """Browsers say where a form came from; a foreign origin is a cross-site forgery."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = urlsplit(origin).hostname
    return host is not None and host.lower() in {h.lower() for h in st.settings.hosts}


def _refuse(st: ServeState, request: Request, status: int, message: str, *,
            address: str | None, reason: str, verdict: Verdict | None = None,
            retry_after: int | None = None,
            chosen: str = "common", custom: str = "", blocked: bool = False) -> Response:
    """The landing page again with ``message`` (and a fresh form token, bound to a cookie the
    browser has, so that a corrected form can be sent)."""
    st.refusals.add(address or str((request.scope.get("client") or ("?",))[0]), reason)
    v, new = visitor_of(request, st)
    ctx = _landing(st, address=address, verdict=verdict, visitor=v, error=message,
                   chosen=chosen, custom=custom, blocked=blocked)
    headers = {"retry-after": str(retry_after)} if retry_after is not None else None
    return with_visitor(st.page("landing.html", status=status, headers=headers, **ctx),
                        st, v, new)


@router.post("/checks")
async def create(request: Request) -> Response:
    st = state_of(request)
    return await _create(request, st)


async def _create(request: Request, st: ServeState) -> Response:
    form = await request.form(max_files=0, max_fields=FORM_FIELDS)
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    visitor = request.cookies.get(st.visitor_cookie)
    profile = fields.get("profile", "common")
    custom = fields.get("ports", "")
    try:
        ip = st.visitor_address(request)
    except (AddressError, ProxyHeaderError) as exc:
        return await run_in_threadpool(
            _refuse, st, request, 400, f"Your address could not be determined: {exc}",
            address=None, reason="proxy header")
    address = str(ip)
    if not st.signer.csrf_valid(fields.get("csrf"), visitor, now_ts()) or not origin_ok(
            request, st):
        return await run_in_threadpool(
            _refuse, st, request, 403,
            "This form has expired or did not come from this page. Reload and try again.",
            address=address, reason="csrf")
    verdict = judge(ip, st.policy)
    if not verdict.allowed:
        return await run_in_threadpool(
            _refuse, st, request, 403, verdict.reason, address=address,
            reason=f"scope: {verdict.category}", verdict=verdict)
    assert visitor is not None  # csrf_valid needs the cookie
    return await run_in_threadpool(_submit, st, request, ip, verdict, visitor, profile, custom,
                                   fields.get("consent") == "yes")


def _submit(st: ServeState, request: Request, ip: IPAddress, verdict: Verdict, visitor: str,
            profile: str, custom: str, consent: bool) -> Response:
    address = str(ip)
    common: dict[str, Any] = {"address": address, "verdict": verdict,
                              "chosen": profile, "custom": custom}
    if blocked_address(st, ip):
        return _refuse(st, request, 403, "This service does not check your network.",
                       reason="blocked", blocked=True, **common)
    if not consent:
        return _refuse(st, request, 400, "Confirm that this is your connection (or that you "
                       "may have it checked) to proceed.", reason="no consent", **common)
    try:
        choice = choose(profile, custom, st.settings)
    except ProfileError as exc:
        return _refuse(st, request, 400, str(exc), reason="profile", **common)
    per_address, per_prefix = rate_keys(address)
    pairs = [(st.check_rate, per_address), (st.prefix_rate, per_prefix)]
    wait = ratelimit.acquire(pairs)
    if wait is not None:
        return _refuse(st, request, 429, f"You have started too many checks; try again in "
                       f"{wait} s.", reason="check rate", retry_after=wait, **common)
    try:
        token = store_check(st, address, per_prefix or address, choice, visitor)
    except db.Busy as busy:
        ratelimit.release(pairs)
        if busy.why == "address" and busy.token is not None:
            mine = db.get_by_token(st.store, busy.token)
            if mine is not None and hmac.compare_digest(mine.owner_hash, visitor_hash(visitor)):
                return RedirectResponse(f"/checks/{busy.token}", status_code=303)
            return _refuse(st, request, 429, "A check of your address is already running; "
                           "wait for it to finish.", reason="one at a time",
                           retry_after=30, **common)
        return _refuse(st, request, 429, "The service is busy with other checks; try again "
                       "in a minute.", reason="busy", retry_after=60, **common)
    return RedirectResponse(f"/checks/{token}", status_code=303)


def store_check(st: ServeState, address: str, prefix: str, choice: Choice,
                visitor: str, checks: tuple[str, ...] | None = None) -> str:
    """Store a queued check of ``address`` and hand it to the backend; its token.
    ``checks``: the catalog checks to run (None: the service's own list). Raises db.Busy."""
    now = datetime.now(UTC)
    token = secrets.token_urlsafe(32)
    with st.submit_lock:
        check_id = db.create_check(
            st.store, token=token, peer=address, prefix=prefix, profile=choice.profile,
            tcp_ports=choice.tcp_ports, udp_ports=choice.udp_ports,
            checks=st.check_ids if checks is None else checks,
            owner_hash=visitor_hash(visitor), now=now,
            expires_at=now + timedelta(days=st.settings.result_days),
            max_active=st.settings.max_active_checks)
    st.backend.submit(check_id)
    return token


def load_check(st: ServeState, token: str) -> tuple[db.WebCheck | None, bool]:
    """(check, expired). A running check whose heartbeat went stale is failed first."""
    check = db.get_by_token(st.store, token)
    if check is None:
        return None, False
    now = datetime.now(UTC)
    if check.expires_at <= now and not check.active:
        return check, True
    hb = check.heartbeat_at
    if check.status == db.RUNNING and hb is not None and (
            now - hb).total_seconds() > st.settings.stale_after:
        db.fail_stale(st.store, now, st.settings.stale_after)
        check = db.get(st.store, check.id) or check
    return check, False


def _gone(st: ServeState, expired: bool) -> Response:
    if expired:
        return st.page("gone.html", status=410, expired=True)
    return st.page("gone.html", status=404, expired=False)


def _result_page(st: ServeState, request: Request, token: str) -> Response:
    check, expired = load_check(st, token)
    if check is None or expired:
        return _gone(st, expired)
    visitor, new = visitor_of(request, st)
    owner = hmac.compare_digest(check.owner_hash, visitor_hash(visitor)) and not new
    ctx: dict[str, Any] = {"check": check, "owner": owner,
                           "csrf": st.signer.csrf_token(visitor, now_ts()),
                           "percent": _percent(check)}
    if check.active:
        response = st.page("progress.html", **ctx)
    else:
        record = st.store.get_scan(check.scan_id) if check.scan_id is not None else None
        ctx.update(report_context(record, check,
                                  report_lang(request.headers.get("accept-language"))))
        ctx["excluded"] = st.settings.excluded_ports
        response = st.page("result.html", **ctx)
    response.headers["x-robots-tag"] = "noindex, nofollow"
    return with_visitor(response, st, visitor, new)


def _percent(check: db.WebCheck) -> int:
    if check.status in (db.DONE, db.FAILED):
        return 100
    if check.total <= 0:
        return 0
    return max(0, min(99, int(100 * check.done / check.total)))


@router.get("/checks/{token}")
async def result(request: Request, token: str) -> Response:
    st = state_of(request)
    return await run_in_threadpool(_result_page, st, request, token)


def _status(st: ServeState, token: str) -> Response:
    check, expired = load_check(st, token)
    if check is None or expired:
        return JSONResponse({"status": "gone"}, status_code=410 if expired else 404,
                            headers={"cache-control": "no-store"})
    return JSONResponse({"status": check.status, "done": check.done, "total": check.total,
                         "stage": check.stage, "percent": _percent(check)},
                        headers={"cache-control": "no-store"})


@router.get("/checks/{token}/status")
async def status(request: Request, token: str) -> Response:
    st = state_of(request)
    return await run_in_threadpool(_status, st, token)


@router.post("/checks/{token}/delete")
async def delete(request: Request, token: str) -> Response:
    st = state_of(request)
    form = await request.form(max_files=0, max_fields=FORM_FIELDS)
    csrf = form.get("csrf")
    visitor = request.cookies.get(st.visitor_cookie)
    if not isinstance(csrf, str) or not st.signer.csrf_valid(csrf, visitor, now_ts()) \
            or not origin_ok(request, st):
        return st.page("gone.html", status=403, expired=False,
                       message="This form has expired or did not come from this page.")
    assert visitor is not None
    return await run_in_threadpool(_delete, st, token, visitor)


def _delete(st: ServeState, token: str, visitor: str) -> Response:
    check = db.get_by_token(st.store, token)
    if check is None:
        return st.page("gone.html", status=404, expired=False)
    if not hmac.compare_digest(check.owner_hash, visitor_hash(visitor)):
        return st.page("gone.html", status=403, expired=False,
                       message="Only the browser that started this check can delete it.")
    if check.active:
        st.backend.cancel(check.id)
    db.delete_check(st.store, check.id)
    return st.page("deleted.html")


@router.get("/report.css")
async def report_css() -> Response:
    from mamori.report.html import REPORT_CSS

    return Response(REPORT_CSS, media_type="text/css",
                    headers={"cache-control": "public, max-age=3600"})


@router.get("/report.js")
async def report_js() -> Response:
    from mamori.report.html import REPORT_SCRIPT

    return Response(REPORT_SCRIPT, media_type="text/javascript",
                    headers={"cache-control": "public, max-age=3600"})


@router.get("/healthz")
async def healthz() -> Response:
    return JSONResponse({"ok": True}, headers={"cache-control": "no-store"})
