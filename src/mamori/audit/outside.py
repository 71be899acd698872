"""The outside view: ask a ``mamori serve`` instance to probe this host's own address.

``probe_from_outside`` sends one request per address family (over IPv4 for the IPv4 check,
over IPv6 for the IPv6 one, so that the service sees this host's address of that family),
polls each check with backoff until it ends or a deadline passes, and returns one
``OutsideResult`` per family asked. Nothing raises: why a family has no result (no address
of that family, refused, rate-limited with the service's Retry-After, out of the service's
scope, timeout, an answer that is not the API's JSON, a redirect) is its ``error``.
The wire format is ``protocols/serve_api.py``; the sockets are ``net/family_http.py``.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Mapping, Sequence

from mamori.model.base import Proto
from mamori.model.path import OutsideResult
from mamori.net.family_http import (
    HttpError,
    Reply,
    Service,
    parse_service_url,
    request,
    resolve,
    source_address,
)
from mamori.protocols.serve_api import (
    CHECKS_PATH,
    ApiFormatError,
    error_message,
    merge_ports,
    parse_created,
    parse_status,
    refusal_seen_address,
)
from mamori.protocols.serve_api import check_body as _check_body

DEADLINE = 300.0  # seconds a family may take, creation to the last poll
FIRST_POLL = 0.5
MAX_POLL = 5.0
MAX_RETRY_AFTER = 60
_GLOBAL_V6 = ipaddress.IPv6Network("2000::/3")

Sleep = Callable[[float], None]


def probe_from_outside(
    url: str,
    ports: Sequence[tuple[Proto, int]],
    families: Sequence[int],
    *,
    deadline: float = DEADLINE,
    timeout: float = 10.0,
    sleep: Sleep = time.sleep,
    sources: Mapping[int, str] | None = None,
) -> tuple[OutsideResult, ...]:
    """One ``OutsideResult`` per family in ``families`` (4, 6), in that order.
    ``sources``: the local address to send from, per family (default: the kernel's choice,
    which is the address the internet sees on a single-homed host)."""
    try:
        service = parse_service_url(url)
    except ValueError as exc:
        return tuple(OutsideResult(url, f, None, error=str(exc)) for f in families)
    return tuple(_one_family(url, service, list(ports), f, deadline, timeout, sleep,
                             (sources or {}).get(f)) for f in families)


def _one_family(url: str, service: Service, ports: list[tuple[Proto, int]], family: int,
                deadline: float, timeout: float, sleep: Sleep,
                source: str | None) -> OutsideResult:
    def failed(error: str, seen: str | None = None, check_id: str = "") -> OutsideResult:
        return OutsideResult(url, family, seen, error=error, check_id=check_id)

    if family not in (4, 6):
        return failed(f"address family {family} is neither 4 nor 6")
    if not ports:
        return failed("no ports to check: this host has no listener reachable from outside")
    try:
        address = resolve(service, family)[0]
    except HttpError as exc:
        return failed(f"not tested over IPv{family}: {exc}")
    if family == 6:
        why = _no_global_v6(address, service.port)
        if why is not None:
            return failed(f"not tested over IPv6: {why}")
    end = time.monotonic() + deadline

    def call(method: str, path: str, body: bytes | None = None) -> Reply:
        left = max(0.5, end - time.monotonic())
        return request(service, address, method, path, body=body,
                       content_type="application/json" if body is not None else None,
                       timeout=min(timeout, left), deadline=min(timeout * 3, left),
                       source=source)

    try:
        reply = call("POST", CHECKS_PATH, _check_body(ports))
    except HttpError as exc:
        return failed(str(exc))
    if reply.status != 202:
        return failed(_refusal(reply, address), refusal_seen_address(reply.body))
    try:
        created = parse_created(reply.body)
    except ApiFormatError as exc:
        return failed(f"the service's answer is not the API's: {exc}")
    seen, check_id = created.seen_address, created.check_id
    wait = FIRST_POLL
    while True:
        if time.monotonic() + wait > end:
            return failed(f"the check did not finish within {deadline:g} s", seen, check_id)
        sleep(wait)
        try:
            reply = call("GET", f"{CHECKS_PATH}/{check_id}")
        except HttpError as exc:
            return failed(str(exc), seen, check_id)
        if reply.status == 429:
            wait = float(_retry_after(reply) or MAX_POLL)
            continue
        if reply.status != 200:
            return failed(_refusal(reply, address), seen, check_id)
        try:
            status = parse_status(reply.body)
        except ApiFormatError as exc:
            return failed(f"the service's answer is not the API's: {exc}", seen, check_id)
        if status.check_id != check_id:
            return failed("the service answered about another check", seen, check_id)
        if status.status in ("done", "failed"):
            return OutsideResult(url, family, status.seen_address,
                                 merge_ports(created.not_tested, status.ports),
                                 error=status.error if status.status == "failed" else None,
                                 check_id=check_id)
        wait = min(MAX_POLL, wait * 2)


def _no_global_v6(address: str, port: int) -> str | None:
    """Why an IPv6 request would not show the internet this host's IPv6 address, or None."""
    target = ipaddress.IPv6Address(address.split("%", 1)[0])
    source = source_address(address, port)
    if source is None:
        return "this host has no IPv6 route to the service"
    if target.is_loopback:
        return None  # a service on this very host (a test, a local check)
    if ipaddress.IPv6Address(source) not in _GLOBAL_V6:
        return f"this host has no global IPv6 address (it would send from {source})"
    return None


def _retry_after(reply: Reply) -> int | None:
    value = reply.headers.get("retry-after", "").strip()
    if value.isdigit():
        return min(MAX_RETRY_AFTER, max(1, int(value)))
    return None


def _refusal(reply: Reply, address: str) -> str:
    message = error_message(reply.body)
    said = f": {message}" if message else ""
    if 300 <= reply.status < 400:
        location = " ".join(reply.headers.get("location", "").split())[:120]
        return (f"the service ({address}) answered with a redirect (HTTP {reply.status}) to "
                f"{location or 'nowhere'}; redirects are not followed")
    if reply.status == 429:
        after = _retry_after(reply)
        return ("rate-limited by the service (HTTP 429)"
                + (f"; retry after {after} s" if after is not None else "") + said)
    if reply.status == 403:
        return f"the service refused to check this address (HTTP 403){said}"
    return f"the service ({address}) answered HTTP {reply.status}{said}"
