"""UDP amplifiers: does one small datagram draw a much larger answer?

An attacker who spoofs the victim's address as the source turns such a service into a
*stepping stone* (踏み台) for reflection floods. Each primitive sends the classic small
request, keeps every reply datagram from the probed address:port (bounded, see
``mamori.net.datagram``) and reports the MEASURED amplification factor: reply payload bytes per
request payload byte (all tries counted). A finding needs a semantically valid reply as well,
so a server echoing a few bytes to anything is not an amplifier here.

An ICMP port-unreachable proves nothing listens on that UDP port, and nothing that does not
listen can amplify: these primitives report that as an observation (``udp: closed``), which the
checks judge as passed. Replies that are not the protocol at all raise ``ProbeFailure``
(not tested), as does any other socket error.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable

from mamori.checks.observation import Observation, ProbeContext, excerpt
from mamori.checks.params import Params
from mamori.checks.primitive import Primitive
from mamori.model import ErrorKind
from mamori.net.datagram import DatagramLimits, DatagramReplies, ask
from mamori.net.stream import ProbeFailure
from mamori.protocols import dns, http, memcached, snmp, ssdp
from mamori.protocols import ntp_control as ntpc
from mamori.protocols.dns_edns import QTYPES, RCODES, build_edns_query, header_flags
from mamori.protocols.snmp_bulk import MIB_2, build_getbulk

# Bytes of reply kept as evidence from multi-datagram answers (each datagram shown in turn).
_REPLY_EXCERPT = 1024


def _factor(got: DatagramReplies) -> str:
    return f"{got.factor:.1f}"


def _sizes(got: DatagramReplies) -> dict[str, str]:
    return {
        "bytes_out": str(got.bytes_out),
        "bytes_in": str(got.bytes_in),
        "datagrams": str(len(got.replies)),
        "factor": _factor(got),
        "capped": "yes" if got.truncated else "no",
    }


def _reply_excerpt(got: DatagramReplies) -> str | None:
    if not got.replies:
        return None
    joined = b"".join(got.replies)
    more = f" ({len(got.replies)} datagrams, {got.bytes_in} bytes)" if len(got.replies) > 1 else ""
    return excerpt(joined, _REPLY_EXCERPT) + more


async def _ask_or_closed(ctx: ProbeContext, request: bytes, *, settle: float = 0.4,
                         tries: int = 2) -> DatagramReplies | None:
    """The exchange, or None when ICMP says the UDP port is closed."""
    limits = DatagramLimits.from_limits(ctx.options.limits, settle=settle, tries=tries)
    try:
        return await ask(ctx.address, ctx.port, request, limits)
    except ProbeFailure as exc:
        if exc.kind is ErrorKind.REFUSED:
            return None
        raise


def _closed(test: str, request: bytes) -> Observation:
    return Observation(test=test + "; ICMP port unreachable: nothing listens on this UDP port",
                       fields={"udp": "closed"}, request=excerpt(request))


def _not_protocol(got: DatagramReplies, what: str) -> ProbeFailure:
    return ProbeFailure(ErrorKind.GARBAGE,
                        f"{len(got.replies)} reply datagram(s), none a valid {what} reply",
                        partial=got.replies[0][:256])


def _observe(test: str, request: bytes, got: DatagramReplies, what: str,
             judge: Callable[[DatagramReplies], dict[str, str] | None]) -> Observation:
    """Fields from ``judge`` (None: no reply is the protocol) plus the measured sizes."""
    fields = _sizes(got)
    if not got.replies:
        fields["valid"] = "no"
        return Observation(test=test + "; no answer", fields=fields, request=excerpt(request))
    facts = judge(got)
    if facts is None:
        raise _not_protocol(got, what)
    fields.update(facts)
    return Observation(test=test, fields=fields, request=excerpt(request),
                       reply=_reply_excerpt(got))


# --- NTP --------------------------------------------------------------------------------------


def _judge_readvar(got: DatagramReplies, sequence: int) -> dict[str, str] | None:
    data = b""
    for raw in got.replies:
        frag = ntpc.parse_control(raw)
        if frag is None or frag.opcode != ntpc.OP_READVAR or frag.sequence != sequence:
            continue
        if frag.error:
            return {"valid": "no", "mode6_error": str(frag.status >> 8)}
        data += frag.data
    if not data:
        return None
    variables = ntpc.parse_variables(data)
    known = {"version", "stratum", "precision", "rootdelay", "refid", "leap", "system"}
    if len(variables) < 3 or not known & variables.keys():
        return None
    facts = {"valid": "yes", "variables": str(len(variables))}
    for key in ("version", "system", "processor", "refid", "stratum"):
        if key in variables:
            facts[f"ntp_{key}"] = variables[key][:120]
    return facts


def _judge_monlist(got: DatagramReplies) -> dict[str, str] | None:
    items: list[bytes] = []
    seen = False
    for raw in got.replies:
        reply = ntpc.parse_private(raw)
        if reply is None or reply.request not in (ntpc.REQ_MON_GETLIST_1, ntpc.REQ_MON_GETLIST):
            continue
        seen = True
        if reply.error:
            return {"valid": "no", "mode7_error": str(reply.error)}
        if reply.items and reply.item_size != ntpc.item_size(reply.request):
            return None
        items.extend(reply.items)
    if not seen:
        return None
    if not items:
        return {"valid": "no", "monlist_entries": "0"}
    clients = [a for a in (ntpc.monitor_item_address(i) for i in items[:3]) if a]
    return {"valid": "yes", "monlist_entries": str(len(items)),
            "monlist_clients": ", ".join(clients)}


async def ntp_amplification(ctx: ProbeContext, params: Params) -> Observation:
    """Send a mode 7 ``monlist`` request and a mode 6 READVAR request (at the same time, each
    on its own socket); report each factor and, as ``grade``, the worse valid one
    (``monlist`` before ``readvar``). Fields: ``factor``, ``valid``, ``grade``,
    ``mode7_factor``, ``mode6_factor``, ``monlist_entries``, ``ntp_version``, sizes.
    Raises ``ProbeFailure`` when both exchanges fail or answer with something else than NTP.
    """
    sequence = 1 + secrets.randbelow(0xFFFE)
    readvar = ntpc.build_readvar(sequence=sequence)
    monlist = ntpc.build_monlist()
    test = ("sent an NTP mode 7 monlist request (48 bytes) and a mode 6 READVAR request "
            "(12 bytes), measured the answers")
    tries = 1 if params.flag("single_try") else 2
    results = await asyncio.gather(
        _ask_or_closed(ctx, monlist, settle=0.5, tries=tries),
        _ask_or_closed(ctx, readvar, settle=0.3, tries=tries),
        return_exceptions=True,
    )
    failures = [r for r in results if isinstance(r, BaseException)]
    for r in failures:
        if not isinstance(r, ProbeFailure):
            raise r
    got7, got6 = (r if isinstance(r, DatagramReplies) else None for r in results)
    if got7 is None and got6 is None:
        if failures:
            raise failures[0]
        return _closed(test, monlist)
    fields: dict[str, str] = {}
    judged7 = _judge_monlist(got7) if got7 and got7.replies else None
    judged6 = _judge_readvar(got6, sequence) if got6 and got6.replies else None
    replies7 = bool(got7 and got7.replies)
    replies6 = bool(got6 and got6.replies)
    if (replies7 or replies6) and judged7 is None and judged6 is None:
        bad = got7 if got7 and got7.replies else got6
        assert bad is not None
        raise _not_protocol(bad, "NTP mode 6/7")
    for tag, got, judged in (("mode7", got7, judged7), ("mode6", got6, judged6)):
        if got is not None:
            fields[f"{tag}_factor"] = _factor(got)
            fields[f"{tag}_bytes_in"] = str(got.bytes_in)
        for key, value in (judged or {}).items():
            if key != "valid":
                fields[key] = value
    chosen: tuple[str, DatagramReplies, bytes] | None = None
    if judged7 and judged7.get("valid") == "yes" and got7:
        chosen = ("monlist", got7, monlist)
    elif judged6 and judged6.get("valid") == "yes" and got6:
        chosen = ("readvar", got6, readvar)
    if chosen is None:
        fields["valid"] = "no"
        fields["factor"] = max((fields.get(f"{t}_factor", "0") for t in ("mode7", "mode6")),
                               key=float)
        return Observation(test=test + ("; no query answered" if not (replies6 or replies7)
                                        else "; queries refused"),
                           fields=fields, request=excerpt(monlist + b" | " + readvar))
    grade, got, request = chosen
    fields.update(_sizes(got))
    fields.update(valid="yes", grade=grade)
    return Observation(test=test, fields=fields, request=excerpt(request),
                       reply=_reply_excerpt(got))


# --- memcached ---------------------------------------------------------------------------------


def _judge_memcached(got: DatagramReplies, request_id: int) -> dict[str, str] | None:
    parts: dict[int, bytes] = {}
    for raw in got.replies:
        if len(raw) < 8:
            continue
        rid, seq, total = (int.from_bytes(raw[i : i + 2], "big") for i in (0, 2, 4))
        if rid == request_id and seq < max(total, 1):
            parts[seq] = raw[8:]
    if not parts:
        return None
    body = b"".join(parts[k] for k in sorted(parts))
    stats: dict[str, str] = {}
    for line in body.split(b"\r\n")[:400]:
        bits = line.split(b" ", 2)
        if len(bits) == 3 and bits[0] == b"STAT":
            stats[bits[1].decode("ascii", "replace")] = bits[2][:64].decode("ascii", "replace")
    if not {"pid", "uptime", "version"} <= stats.keys():
        return None
    return {"valid": "yes", "memcached_version": stats["version"], "stats": str(len(stats)),
            "curr_items": stats.get("curr_items", "?")}


async def memcached_udp_stats(ctx: ProbeContext, params: Params) -> Observation:
    """Send ``stats`` in memcached's UDP frame; fields: sizes, ``factor``, ``valid`` (the
    reply holds real STAT lines: pid, uptime, version), ``memcached_version``.
    Raises ``ProbeFailure`` for socket errors other than a closed port, or non-memcached
    replies."""
    request_id = secrets.randbelow(0x10000)
    request = memcached.build_udp(b"stats\r\n", request_id=request_id)
    test = f"sent the memcached command stats over UDP ({len(request)} bytes)"
    got = await _ask_or_closed(ctx, request)
    if got is None:
        return _closed(test, request)
    return _observe(test, request, got, "memcached",
                    lambda g: _judge_memcached(g, request_id))


# --- SSDP --------------------------------------------------------------------------------------


def _judge_ssdp(got: DatagramReplies) -> dict[str, str] | None:
    valid = []
    for raw in got.replies:
        resp = http.parse_response(raw)
        if resp is None or resp.status != 200:
            continue
        if resp.header("ST") is not None and resp.header("USN") and resp.header("LOCATION"):
            valid.append(resp)
    if not valid:
        return None
    first = valid[0]
    return {"valid": "yes", "answers": str(len(valid)), "server": first.header("SERVER") or "?",
            "location": (first.header("LOCATION") or "")[:200],
            "usn": (first.header("USN") or "")[:200]}


async def ssdp_msearch(ctx: ProbeContext, params: Params) -> Observation:
    """Send one unicast M-SEARCH for ``ssdp:all`` (MX 1) and keep every answer for a little
    over MX seconds. Fields: sizes, ``factor``, ``valid`` (answers are ``200 OK`` with ST, USN
    and LOCATION), ``answers``, ``server``, ``location``."""
    request = ssdp.build_msearch(params.text("target", "ssdp:all"), mx=1)
    test = f"sent one unicast SSDP M-SEARCH ssdp:all ({len(request)} bytes)"
    got = await _ask_or_closed(ctx, request, settle=1.2)
    if got is None:
        return _closed(test, request)
    return _observe(test, request, got, "SSDP", _judge_ssdp)


# --- mDNS --------------------------------------------------------------------------------------


def _judge_mdns(got: DatagramReplies, txid: int) -> dict[str, str] | None:
    answers: list[dns.Record] = []
    valid = False
    for raw in got.replies:
        msg = dns.parse_message(raw)
        # Legacy unicast replies echo our id; RFC 6762 multicast-style ones use 0.
        if msg is None or not msg.is_response or msg.txid not in (txid, 0):
            continue
        if msg.rcode == 0 and msg.answers:
            valid = True
            answers.extend(msg.answers)
    if not valid:
        return None
    services = sorted({r.text[0] for r in answers if r.rtype == dns.TYPE_PTR and r.text})
    return {"valid": "yes", "answer_records": str(len(answers)),
            "services": ", ".join(services[:8])[:300]}


async def mdns_unicast(ctx: ProbeContext, params: Params) -> Observation:
    """Send a unicast mDNS query (from an ordinary port, QU bit set) for the PTR records of
    ``_services._dns-sd._udp.local``; fields: sizes, ``factor``, ``valid`` (a DNS response
    with answers), ``services``."""
    txid = secrets.randbelow(0x10000)
    name = params.text("name", "_services._dns-sd._udp.local")
    request = dns.build_query(name, dns.TYPE_PTR, txid=txid, recursion=False,
                              unicast_response=True)
    test = f"sent a unicast mDNS query for {name} PTR ({len(request)} bytes) from port != 5353"
    got = await _ask_or_closed(ctx, request)
    if got is None:
        return _closed(test, request)
    return _observe(test, request, got, "mDNS", lambda g: _judge_mdns(g, txid))


# --- SNMP --------------------------------------------------------------------------------------


def _judge_snmp(got: DatagramReplies, request_id: int, community: str) -> dict[str, str] | None:
    for raw in got.replies:
        resp = snmp.parse_response(raw)
        if resp is None or resp.request_id != request_id:
            continue
        if resp.error_status != 0 or not resp.varbinds:
            return {"valid": "no", "error_status": str(resp.error_status)}
        first_oid, first_value = resp.varbinds[0]
        return {"valid": "yes", "community": community,
                "varbinds": str(len(resp.varbinds)) + ("+" if len(resp.varbinds) >= 32 else ""),
                "first_oid": first_oid, "first_value": first_value[:160]}
    return None


async def snmp_getbulk(ctx: ProbeContext, params: Params) -> Observation:
    """Send an SNMPv2c GetBulkRequest (the community identification heard, else ``community``;
    ``max_repetitions`` rows from
    mib-2); fields: sizes, ``factor``, ``valid`` (a Response to our request id without
    error, with variable bindings), ``varbinds``, ``first_value`` (usually sysDescr)."""
    # The community identification heard back (an agent that knows only "private") first.
    heard = ctx.service.extra.get("community") if ctx.service is not None else None
    community = heard or params.text("community", "public")
    request_id = 1 + secrets.randbelow(0x7FFFFFFE)
    request = build_getbulk((MIB_2,), community=community,
                            max_repetitions=int(params.number("max_repetitions", 50)),
                            request_id=request_id)
    test = (f"sent an SNMPv2c GetBulkRequest with community {community!r} "
            f"({len(request)} bytes)")
    got = await _ask_or_closed(ctx, request)
    if got is None:
        return _closed(test, request)
    return _observe(test, request, got, "SNMP",
                    lambda g: _judge_snmp(g, request_id, community))


# --- DNS ---------------------------------------------------------------------------------------


def _judge_dns(got: DatagramReplies, txid: int, name: str) -> dict[str, str] | None:
    for raw in got.replies:
        msg = dns.parse_message(raw)
        flags = header_flags(raw)
        if msg is None or flags is None or not msg.is_response or msg.txid != txid:
            continue
        # A refusal may be a bare header (no question); an answer must echo our question.
        question = msg.questions[0][0] if msg.questions else None
        if question is not None and question.rstrip(".").lower() != name.rstrip(".").lower():
            continue
        return {"valid": "yes" if msg.rcode == 0 and msg.answers else "no",
                "rcode": RCODES.get(msg.rcode, str(msg.rcode)),
                "answer_records": str(len(msg.answers)),
                "truncated": "yes" if flags.truncated else "no"}
    return None


async def dns_amplification(ctx: ProbeContext, params: Params) -> Observation:
    """Send a small EDNS query (``name`` / ``qtype``, default ``. NS`` with a 4096-byte
    buffer and the DO bit) and measure the answer; fields: sizes, ``factor``, ``valid`` (a
    NOERROR answer to our question with records), ``rcode``, ``answer_records``."""
    name = params.text("name", ".")
    qtype_name = params.text("qtype", "NS").upper()
    if qtype_name not in QTYPES:
        raise ProbeFailure(ErrorKind.INTERNAL, f"check file error: unknown qtype {qtype_name}")
    txid = secrets.randbelow(0x10000)
    request = build_edns_query(name, QTYPES[qtype_name], txid=txid,
                               bufsize=int(params.number("bufsize", 4096)),
                               dnssec_ok=params.flag("dnssec_ok", True))
    shown = name if name != "." else ". (the root)"
    test = f"sent a DNS query for {shown} {qtype_name} with EDNS ({len(request)} bytes)"
    got = await _ask_or_closed(ctx, request, settle=0.2)
    if got is None:
        return _closed(test, request)
    return _observe(test, request, got, "DNS", lambda g: _judge_dns(g, txid, name))


PRIMITIVES: dict[str, Primitive] = {
    "ntp_amplification": ntp_amplification,
    "memcached_udp_stats": memcached_udp_stats,
    "ssdp_msearch": ssdp_msearch,
    "mdns_unicast": mdns_unicast,
    "snmp_getbulk": snmp_getbulk,
    "dns_amplification": dns_amplification,
}
