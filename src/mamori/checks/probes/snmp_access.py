"""SNMP: which vendor-default communities an agent answers, and whether one of them may write.

Reading: one SNMPv2c GetRequest (sysDescr, sysObjectID) per community of the check file's
short, documented list (never a word list), all at once. Writing: for each community that
reads, a GetRequest of harmless objects (sysLocation, sysContact, sysName), then a SetRequest
of the first one that has a value, back to exactly that value (same type, same bytes): the
agent's error-status answers the question, and nothing changes on it.
"""

from __future__ import annotations

import asyncio
import secrets

from mamori.checks.observation import Observation, ProbeContext, excerpt
from mamori.checks.params import Params
from mamori.checks.primitive import Primitive
from mamori.model import ErrorKind
from mamori.net.datagram import DatagramLimits, ask
from mamori.net.stream import ProbeFailure
from mamori.protocols import snmp

_HARMLESS = (snmp.SYS_LOCATION, snmp.SYS_CONTACT, snmp.SYS_NAME)
_NAMES = {snmp.SYS_LOCATION: "sysLocation.0", snmp.SYS_CONTACT: "sysContact.0",
          snmp.SYS_NAME: "sysName.0"}
_ERRORS = {1: "tooBig", 2: "noSuchName", 3: "badValue", 4: "readOnly", 5: "genErr",
           6: "noAccess", 7: "wrongType", 10: "wrongValue", 16: "authorizationError",
           17: "notWritable", 18: "inconsistentName"}
_MAX_COMMUNITIES = 8


def _error_name(status: int) -> str:
    return _ERRORS.get(status, f"error {status}")


async def _get(ctx: ProbeContext, community: str, oids: tuple[str, ...],
               log: list[str]) -> snmp.SnmpResponse | None:
    """One GetRequest; the response to it, or None when nothing valid came back."""
    rid = 1 + secrets.randbelow(0x7FFFFFFE)
    request = snmp.build_get(oids, community=community, request_id=rid)
    limits = DatagramLimits.from_limits(ctx.options.limits, settle=0.2)
    got = await ask(ctx.address, ctx.port, request, limits)
    for raw in got.replies:
        resp = snmp.parse_response(raw)
        if resp is not None and resp.request_id == rid and resp.community == community:
            log.append(f"GET {community!r} -> error-status {resp.error_status}, "
                       f"{len(resp.varbinds)} values")
            return resp
    log.append(f"GET {community!r} -> " + ("no answer" if not got.replies
                                            else "not an SNMP answer to it"))
    return None


async def _readable(ctx: ProbeContext, communities: list[str], log: list[str]) -> list[str]:
    answers = await asyncio.gather(
        *(_get(ctx, c, (snmp.SYS_DESCR, snmp.SYS_OBJECT_ID), log) for c in communities))
    return [c for c, r in zip(communities, answers, strict=True)
            if r is not None and r.error_status == 0 and r.varbinds]


async def _try_write(ctx: ProbeContext, community: str, log: list[str],
                     sent: list[bytes]) -> dict[str, str] | None:
    """SET a harmless object to its own value. Fields when the agent answered the SET."""
    current = await _get(ctx, community, _HARMLESS, log)
    if current is None or current.error_status != 0:
        return None
    for (oid, text), (tag, value) in zip(current.varbinds, current.raw, strict=False):
        if tag != snmp.OCTET_STRING:
            continue
        rid = 1 + secrets.randbelow(0x7FFFFFFE)
        request = snmp.build_set(oid, tag, value, community, request_id=rid)
        sent.append(request)
        limits = DatagramLimits.from_limits(ctx.options.limits, settle=0.2)
        got = await ask(ctx.address, ctx.port, request, limits)
        resp = next((r for r in map(snmp.parse_response, got.replies)
                     if r is not None and r.request_id == rid), None)
        name = _NAMES.get(oid, oid)
        if resp is None:
            log.append(f"SET {community!r} {name} -> no answer")
            continue
        answer = "noError" if resp.error_status == 0 else _error_name(resp.error_status)
        log.append(f"SET {community!r} {name} = {text[:60]!r} (its own value) -> {answer}")
        if resp.error_status == 0:
            return {"writable": "yes", "write_community": community, "write_object": name,
                    "write_value": text[:120], "set_reply": answer}
    return None


async def snmp_communities(ctx: ProbeContext, params: Params) -> Observation:
    """Which of the check file's default communities read, and whether one writes.

    Fields: readable (communities that answered, in list order), grade ("private" when a
    default other than "public" reads, else "public"), writable (yes/no), write_community,
    write_object, write_value, set_reply, exchanges; no "readable" when the agent stayed
    silent to every one (it drops wrong communities). Raises ProbeFailure when what came back
    is not an SNMP answer to our requests.
    """
    communities = params.texts("communities", ["public", "private"])[:_MAX_COMMUNITIES]
    identified = ctx.service.extra.get("community") if ctx.service is not None else None
    if identified and identified not in communities:
        communities.append(identified)
    log: list[str] = []
    readable = await _readable(ctx, communities, log)
    if not readable and any("not an SNMP" in e for e in log):
        raise ProbeFailure(ErrorKind.GARBAGE, "replies that are not SNMP answers to our "
                           "requests: " + "; ".join(log)[:300])
    sent: list[bytes] = []
    fields: dict[str, str] = {"writable": "no"}
    if readable:
        fields["readable"] = " ".join(readable)
        fields["grade"] = "public" if readable == ["public"] else "vendor"
    for community in readable:
        found = await _try_write(ctx, community, log, sent)
        if found is not None:
            fields.update(found)
            break
    fields["exchanges"] = "; ".join(log)[:900]
    tried = ", ".join(repr(c) for c in communities)
    return Observation(
        test=(f"SNMPv2c GetRequest (sysDescr, sysObjectID) with each default community "
              f"{tried}; for each that answered, read sysLocation/sysContact/sysName and SET "
              "one of them back to its own current value (no change)"),
        fields=fields,
        request=excerpt(b"".join(sent)) if sent else None,
        reply=excerpt("\n".join(log)))


PRIMITIVES: dict[str, Primitive] = {"snmp_communities": snmp_communities}
