"""Check primitives for printing (IPP, CUPS): printers listed to the network, and the CUPS
administration pages reachable from it.

Only questions a stranger on the network could ask: CUPS-Get-Printers or
Get-Printer-Attributes (no job is ever submitted, nothing is changed), and a GET of /admin.
"""

from __future__ import annotations

import re
import secrets

from mamori.checks.observation import Observation, ProbeContext, excerpt
from mamori.checks.params import Params
from mamori.checks.primitive import Primitive
from mamori.model import ErrorKind
from mamori.net.stream import ProbeFailure, exchange, insecure_tls_context
from mamori.protocols import http, ipp

_MAX_LISTED = 12  # printers named in the evidence
_REFUSED = (401, 403)
_TITLE = re.compile(rb"<title>([^<]{0,200})</title>", re.IGNORECASE)


async def _post(ctx: ProbeContext, body: bytes,
                path: str = "/") -> tuple[bytes, http.HttpResponse]:
    tls = ctx.service is not None and ctx.service.tls
    host = ctx.hostname or ctx.address
    request = ipp.build_http(body, host, ctx.port, ctx.options.user_agent, path)
    raw = await exchange(ctx.address, ctx.port, request, ctx.options.limits,
                         tls=insecure_tls_context() if tls else None,
                         server_hostname=ctx.hostname, done=ipp.http_reply_complete)
    resp = http.parse_response(raw)
    if resp is None:
        raise ProbeFailure(ErrorKind.GARBAGE, "the reply to an IPP request is not HTTP",
                           partial=raw[:256])
    return request, resp


def _decode(resp: http.HttpResponse) -> ipp.Response:
    if not ipp.is_ipp(resp):
        raise ProbeFailure(ErrorKind.PROTOCOL,
                           f"HTTP {resp.status} without an application/ipp body")
    parsed = ipp.parse_response(resp.body)
    if parsed is None:
        raise ProbeFailure(ErrorKind.PROTOCOL, "malformed IPP response")
    return parsed


def _one(printer: dict[str, tuple[str, ...]], name: str) -> str:
    values = printer.get(name, ())
    return values[0] if values else ""


def _describe(printer: dict[str, tuple[str, ...]]) -> str:
    name = _one(printer, "printer-name") or _one(printer, "printer-uri-supported") or "?"
    model = _one(printer, "printer-make-and-model")
    shared = _one(printer, "printer-is-shared") or "n/a"
    return f"{name} ({model + ', ' if model else ''}shared={shared})"


async def ipp_printers(ctx: ProbeContext, params: Params) -> Observation:
    """Ask for the list of printers (CUPS-Get-Printers); a server that does not know that
    operation (a printer, not CUPS) is asked Get-Printer-Attributes for ipp://.../ipp/print.

    Fields: access ("answered" or "refused: HTTP 403"), printers (name, model, shared),
    printer_count, shared_count (printers with printer-is-shared true, or without that
    attribute: a standalone IPP printer is shared by being on the network), ipp_status.
    Raises ProbeFailure when the peer does not answer IPP.
    """
    request_id = secrets.randbelow(1 << 31) or 1
    body = ipp.build_request(ipp.OP_CUPS_GET_PRINTERS, request_id, limit=64)
    request, resp = await _post(ctx, body)
    fields: dict[str, str] = {}
    shown = [f"CUPS-Get-Printers -> HTTP {resp.status}"]
    if resp.status in _REFUSED:
        fields["access"] = f"refused: HTTP {resp.status}"
    else:
        parsed: ipp.Response | None = _decode(resp)
        if parsed is not None and parsed.status == ipp.STATUS_NOT_SUPPORTED:
            uri = f"ipp://{http.host_header(ctx.hostname or ctx.address, ctx.port, 0)}/ipp/print"
            body = ipp.build_request(ipp.OP_GET_PRINTER_ATTRIBUTES, request_id, printer_uri=uri)
            request, resp = await _post(ctx, body, "/ipp/print")
            shown.append(f"Get-Printer-Attributes {uri} -> HTTP {resp.status}")
            if resp.status in _REFUSED:
                fields["access"] = f"refused: HTTP {resp.status}"
                parsed = None
            else:
                parsed = _decode(resp)
        if parsed is not None:
            printers = parsed.printers if parsed.ok else ()
            shared = [p for p in printers if _one(p, "printer-is-shared") in ("true", "")]
            listed = [_describe(p) for p in printers[:_MAX_LISTED]]
            fields.update(access="answered", ipp_status=f"0x{parsed.status:04x}",
                          printer_count=str(len(printers)), shared_count=str(len(shared)),
                          printers="; ".join(listed)[:600] or "(none)")
            shown.append(f"IPP status 0x{parsed.status:04x}, {len(printers)} printer(s): "
                         + ("; ".join(listed) or "(none)"))
    return Observation(
        test="asked for the printer list over IPP (CUPS-Get-Printers; Get-Printer-Attributes "
             "when that is not supported), without credentials; no job submitted",
        fields=fields,
        request=excerpt(request[: len(request) - len(body)] + b"(IPP body: operation "
                        b"attributes only)"),
        reply=excerpt("\n".join(shown)),
    )


async def cups_admin_page(ctx: ProbeContext, params: Params) -> Observation:
    """Check that the peer speaks IPP, then GET /admin (the CUPS web administration page).

    From another machine, HTTP 200 is the proof. CUPS lets a client on a loopback address
    in whatever its policy says, so when the target is a loopback address the page's own
    server settings decide: the REMOTE_ADMIN box ticked (``<Location /admin>`` allows
    others) or not.

    Fields: ipp (the IPP answer's HTTP status), admin_status, admin_title, remote_admin
    (the page's setting, when shown), admin ("open", "open-by-settings", "local-only",
    "password", "forbidden", "absent", "unknown-from-loopback"), grade.
    Raises ProbeFailure when the peer does not answer IPP (nor refuse it with 401/403).
    """
    body = ipp.build_request(ipp.OP_CUPS_GET_PRINTERS, 1, requested=("printer-name",))
    _, first = await _post(ctx, body)
    if first.status not in _REFUSED:
        _decode(first)
    tls = ctx.service is not None and ctx.service.tls
    host = ipp.http_host(ctx.hostname or ctx.address, ctx.port)
    request = http.build_request("GET", "/admin", host, ctx.options.user_agent)
    raw = await exchange(ctx.address, ctx.port, request, ctx.options.limits,
                         tls=insecure_tls_context() if tls else None,
                         server_hostname=ctx.hostname, done=ipp.http_reply_complete)
    resp = http.parse_response(raw)
    if resp is None:
        raise ProbeFailure(ErrorKind.PROTOCOL, "GET /admin: the reply is not HTTP/1.x",
                           partial=raw[:256])
    if resp.status >= 500:
        # The page broke (a CGI that failed): it says nothing about who may administer.
        raise ProbeFailure(ErrorKind.PROTOCOL, f"GET /admin answered HTTP {resp.status}",
                           partial=raw[:256])
    fields = {"ipp": f"HTTP {first.status}", "admin_status": str(resp.status)}
    title = _TITLE.search(resp.body[:16384])
    if title:
        fields["admin_title"] = title.group(1).decode("utf-8", "replace").strip()[:120]
    admin = {200: "open", 401: "password", 403: "forbidden"}.get(resp.status, "absent")
    settings = ipp.admin_settings(resp.body) if resp.status == 200 else {}
    if "REMOTE_ADMIN" in settings:
        fields["remote_admin"] = "on" if settings["REMOTE_ADMIN"] else "off"
    if admin == "open" and ipp.is_loopback(ctx.address):
        admin = {"on": "open-by-settings", "off": "local-only"}.get(
            fields.get("remote_admin", ""), "unknown-from-loopback")
    fields.update(admin=admin, grade=admin)
    head = raw[: len(raw) - len(resp.body)]
    marker = b'NAME="REMOTE_ADMIN"'
    at = resp.body.find(marker)
    shown = resp.body[max(0, at - 60): at + 80] if at >= 0 else resp.body[:200]
    return Observation(
        test="sent an IPP request (to see an IPP server), then GET /admin without credentials"
             + ("; the target is a loopback address, which CUPS always lets in, so the page's "
                "own REMOTE_ADMIN setting decides" if ipp.is_loopback(ctx.address) else ""),
        fields=fields,
        request=excerpt(request),
        reply=excerpt(head + shown),
    )


PRIMITIVES: dict[str, Primitive] = {"ipp_printers": ipp_printers,
                                    "cups_admin_page": cups_admin_page}
