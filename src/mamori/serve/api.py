"""The JSON API for programs (version 1): ``/api/v1``, ``/api/v1/checks[/{id}]``.

What ``mamori check --outside`` calls. The same rules as the page, in the same order, and
the same code (``pages.py``, ``scope.py``, ``peer.py``, ``ratelimit.py``): what is probed is
the address the request comes from (or what a configured trusted proxy says it is), never
anything a request names. A body field other than ``ports`` is refused (400, nothing
stored), so is a query string. Cross-site use from a browser is refused: a check is created
only with ``Content-Type: application/json`` (a cross-site form cannot send that, and a
script needs a CORS preflight, which this service never grants), no cookie or other ambient
credential is read, and a foreign ``Origin`` / ``Sec-Fetch-Site`` is 403. The check id is
the capability: whoever has it may read or delete the check. docs/serve-api.md has the
schema.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from mamori.model import Endpoint, PortState, ScanRecord
from mamori.model.base import Proto
from mamori.model.path import OutsidePort, OutsideState
from mamori.protocols.serve_api import (
    API_ROOT,
    API_VERSION,
    CHECKS_PATH,
    ID_PATTERN,
    ApiFormatError,
    parse_ports,
    port_json,
)
from mamori.serve import ratelimit
from mamori.serve.pages import blocked_address, load_check, origin_ok, state_of, store_check
from mamori.serve.peer import ProxyHeaderError
from mamori.serve.profiles import Choice, excluded
from mamori.serve.scanner import API_PROFILE
from mamori.serve.scope import AddressError, IPAddress, judge, rate_keys
from mamori.serve.state import ServeState
from mamori.store import serve as db

router = APIRouter()
EXCLUDED = "excluded by the operator of the service"
_STATE = {PortState.OPEN: OutsideState.OPEN, PortState.CLOSED: OutsideState.CLOSED,
          PortState.FILTERED: OutsideState.FILTERED,
          PortState.OPEN_FILTERED: OutsideState.FILTERED}


def _json(status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None,
          ) -> Response:
    return JSONResponse({"api": API_VERSION, **body}, status_code=status,
                        headers={"cache-control": "no-store", **(headers or {})})


def _refuse(st: ServeState, request: Request, status: int, message: str, *,
            address: str | None, reason: str, retry_after: int | None = None,
            **extra: Any) -> Response:
    st.refusals.add(address or str((request.scope.get("client") or ("?",))[0]),
                    f"api: {reason}")
    headers = {"retry-after": str(retry_after)} if retry_after is not None else None
    return _json(status, {"error": message, **extra}, headers)


def _no_query_no_cross_site(st: ServeState, request: Request) -> Response | None:
    if request.url.query:
        return _refuse(st, request, 400, "query parameters are not accepted: the service "
                       "probes the address the request comes from", address=None,
                       reason="query")
    if not origin_ok(request, st):
        return _refuse(st, request, 403, "cross-site requests are refused", address=None,
                       reason="cross-site")
    return None


def _cap_over(cap: int) -> str:
    return f"over the service's cap of {cap} ports a check"


@router.get(API_ROOT)
async def describe(request: Request) -> Response:
    st = state_of(request)
    refused = _no_query_no_cross_site(st, request)
    if refused is not None:
        return refused
    s = st.settings
    seen: str | None = None
    allowed, why = False, "your address could not be determined"
    try:
        ip = st.visitor_address(request)
        verdict = judge(ip, st.policy)
        seen, allowed, why = str(ip), verdict.allowed, verdict.reason
    except (AddressError, ProxyHeaderError) as exc:
        why = f"your address could not be determined: {exc}"
    return _json(200, {
        "service": s.service_name, "contact": s.contact, "checks": CHECKS_PATH,
        "seen_address": seen, "allowed": allowed, "reason": why,
        "limits": {
            "max_ports": s.api_max_ports, "protocols": ["tcp", "udp"],
            "excluded_ports": s.excluded_ports, "checks_per_hour": s.checks_per_hour,
            "checks_per_hour_per_prefix": s.checks_per_hour_per_prefix,
            "requests_per_minute": s.requests_per_minute, "active_checks_per_address": 1,
            "result_days": s.result_days, "max_body_bytes": s.max_body_bytes,
        },
    })


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


@router.post(CHECKS_PATH)
async def create(request: Request) -> Response:
    st = state_of(request)
    refused = _no_query_no_cross_site(st, request)
    if refused is not None:
        return refused
    if _media_type(request) != "application/json":
        return _refuse(st, request, 415, "the body must be sent as application/json",
                       address=None, reason="content type")
    try:
        wanted = parse_ports(await request.body())
    except ApiFormatError as exc:
        return _refuse(st, request, 400, str(exc), address=None, reason="bad body")
    try:
        ip = st.visitor_address(request)
    except (AddressError, ProxyHeaderError) as exc:
        return _refuse(st, request, 400, f"your address could not be determined: {exc}",
                       address=None, reason="proxy header")
    verdict = judge(ip, st.policy)
    if not verdict.allowed:
        return _refuse(st, request, 403, verdict.reason, address=str(ip),
                       reason=f"scope: {verdict.category}", seen_address=str(ip))
    return await run_in_threadpool(_submit, st, request, ip, wanted)


def _split(st: ServeState, wanted: tuple[tuple[Proto, int], ...]) -> tuple[
        list[tuple[Proto, int]], list[tuple[Proto, int]], list[OutsidePort]]:
    """(ports to probe, excluded ports, over-cap ports as not tested)."""
    ex_tcp, ex_udp = excluded(st.settings)
    cap = st.settings.api_max_ports
    probe: list[tuple[Proto, int]] = []
    out: list[tuple[Proto, int]] = []
    over: list[OutsidePort] = []
    for proto, port in wanted:
        if port in (ex_tcp if proto is Proto.TCP else ex_udp):
            out.append((proto, port))
        elif len(probe) < cap:
            probe.append((proto, port))
        else:
            over.append(OutsidePort(proto, port, OutsideState.NOT_TESTED, _cap_over(cap)))
    return probe, out, over


def _submit(st: ServeState, request: Request, ip: IPAddress,
            wanted: tuple[tuple[Proto, int], ...]) -> Response:
    address = str(ip)
    if blocked_address(st, ip):
        return _refuse(st, request, 403, "This service does not check your network.",
                       address=address, reason="blocked", seen_address=address)
    probe, out, over = _split(st, wanted)
    not_tested = [OutsidePort(p, n, OutsideState.NOT_TESTED, EXCLUDED) for p, n in out]
    not_tested += over
    if not probe:
        return _refuse(st, request, 422, "none of these ports is probed by this service",
                       address=address, reason="nothing to probe", seen_address=address,
                       not_tested=[port_json(p) for p in not_tested])
    per_address, per_prefix = rate_keys(address)
    pairs = [(st.check_rate, per_address), (st.prefix_rate, per_prefix)]
    wait = ratelimit.acquire(pairs)
    if wait is not None:
        return _refuse(st, request, 429, f"too many checks from {address}; try again in "
                       f"{wait} s", address=address, reason="check rate", retry_after=wait)
    stored = probe + out  # excluded ones are stored to be reported; the worker skips them
    choice = Choice(API_PROFILE, tuple(n for p, n in stored if p is Proto.TCP),
                    tuple(n for p, n in stored if p is Proto.UDP))
    try:
        token = store_check(st, address, per_prefix or address, choice,
                            secrets.token_urlsafe(24), checks=())
    except db.Busy as busy:
        ratelimit.release(pairs)
        if busy.why == "address":
            return _refuse(st, request, 429, f"a check of {address} is already running; "
                           "wait for it to finish", address=address, reason="one at a time",
                           retry_after=30)
        return _refuse(st, request, 429, "the service is busy with other checks; try again "
                       "in a minute", address=address, reason="busy", retry_after=60)
    poll = f"{CHECKS_PATH}/{token}"
    return _json(202, {"id": token, "status": db.QUEUED, "poll": poll,
                       "seen_address": address,
                       "not_tested": [port_json(p) for p in over]},
                 {"location": poll})


def _endpoints(record: ScanRecord | None) -> dict[tuple[Proto, int], Endpoint]:
    if record is None:
        return {}
    return {(e.proto, e.port): e for h in record.hosts for e in h.endpoints}


def _errors(record: ScanRecord | None) -> dict[tuple[Proto | None, int | None], str]:
    out: dict[tuple[Proto | None, int | None], str] = {}
    for err in record.errors if record is not None else ():
        out.setdefault((err.proto, err.port), " ".join(err.detail.split())[:200])
    return out


def port_states(st: ServeState, check: db.WebCheck, record: ScanRecord | None,
                ) -> list[OutsidePort]:
    """Every stored port of a finished check, with its state (a port the sweep did not list
    was refused: the pipeline counts closed ports without listing them)."""
    ex_tcp, ex_udp = excluded(st.settings)
    endpoints, errors = _endpoints(record), _errors(record)
    failed = check.status == db.FAILED
    out: list[OutsidePort] = []
    for proto, ports, ex in ((Proto.TCP, check.tcp_ports, ex_tcp),
                             (Proto.UDP, check.udp_ports, ex_udp)):
        for port in ports:
            out.append(_one(proto, port, port in ex, endpoints.get((proto, port)),
                            errors.get((proto, port)) or errors.get((proto, None))
                            or errors.get((None, None)),
                            (check.failure or "the check failed") if failed else None))
    return out


def _one(proto: Proto, port: int, is_excluded: bool, endpoint: Endpoint | None,
         error: str | None, failure: str | None) -> OutsidePort:
    if is_excluded:
        return OutsidePort(proto, port, OutsideState.NOT_TESTED, EXCLUDED)
    if endpoint is not None:
        state = _STATE[endpoint.state]
        reason = ("no UDP answer: open or dropped on the way"
                  if endpoint.state is PortState.OPEN_FILTERED else "")
        return OutsidePort(proto, port, state, reason)
    if error is not None:
        return OutsidePort(proto, port, OutsideState.NOT_TESTED, error)
    if failure is not None:
        return OutsidePort(proto, port, OutsideState.NOT_TESTED, failure[:200])
    return OutsidePort(proto, port, OutsideState.CLOSED)


def _read(st: ServeState, token: str) -> Response:
    if not ID_PATTERN.match(token):
        return _json(404, {"error": "no such check"})
    check, expired = load_check(st, token)
    if check is None or expired:
        return _json(410 if expired else 404,
                     {"error": "this check has expired" if expired else "no such check"})
    body: dict[str, Any] = {
        "id": token, "status": check.status, "seen_address": check.peer,
        "percent": 100 if not check.active else (
            0 if check.total <= 0 else max(0, min(99, int(100 * check.done / check.total)))),
        "stage": check.stage, "error": check.failure,
    }
    if not check.active:
        record = st.store.get_scan(check.scan_id) if check.scan_id is not None else None
        body["ports"] = [port_json(p) for p in port_states(st, check, record)]
    return _json(200, body)


@router.get(CHECKS_PATH + "/{token}")
async def read(request: Request, token: str) -> Response:
    st = state_of(request)
    refused = _no_query_no_cross_site(st, request)
    if refused is not None:
        return refused
    return await run_in_threadpool(_read, st, token)


def _delete(st: ServeState, token: str) -> Response:
    check = db.get_by_token(st.store, token) if ID_PATTERN.match(token) else None
    if check is None:
        return _json(404, {"error": "no such check"})
    if check.active:
        st.backend.cancel(check.id)
    db.delete_check(st.store, check.id)
    return Response(status_code=204, headers={"cache-control": "no-store"})


@router.delete(CHECKS_PATH + "/{token}")
async def delete(request: Request, token: str) -> Response:
    st = state_of(request)
    refused = _no_query_no_cross_site(st, request)
    if refused is not None:
        return refused
    return await run_in_threadpool(_delete, st, token)
