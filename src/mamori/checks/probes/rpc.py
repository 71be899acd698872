"""Check primitive for the portmapper (rpcbind): does it list its registrations to anyone?

One PMAPPROC_DUMP call over TCP, AUTH_NULL, as ``rpcinfo -p`` sends it; the reply is parsed
(program numbers, versions, protocols, ports), or the server's refusal is recorded.
"""

from __future__ import annotations

import os
from collections import defaultdict

from mamori.checks.observation import Observation, ProbeContext, excerpt
from mamori.checks.params import Params
from mamori.checks.primitive import Primitive
from mamori.model import ErrorKind
from mamori.net.stream import ProbeFailure, exchange
from mamori.protocols import sunrpc

_PROTOCOLS = {sunrpc.IPPROTO_TCP: "tcp", sunrpc.IPPROTO_UDP: "udp"}


def describe(mappings: list[sunrpc.Mapping]) -> list[str]:
    """One "name (number) v2,3 tcp/111 udp/111" line per program, in first-seen order."""
    versions: dict[int, list[int]] = defaultdict(list)
    ports: dict[int, list[str]] = defaultdict(list)
    for m in mappings:
        if m.version not in versions[m.program]:
            versions[m.program].append(m.version)
        where = f"{_PROTOCOLS.get(m.protocol, str(m.protocol))}/{m.port}"
        if where not in ports[m.program]:
            ports[m.program].append(where)
    return [
        f"{sunrpc.PROGRAM_NAMES.get(p, 'program')} ({p}) "
        f"v{','.join(str(v) for v in sorted(versions[p]))} {' '.join(ports[p])}"
        for p in versions
    ]


async def rpcbind_dump(ctx: ProbeContext, params: Params) -> Observation:
    """Ask the portmapper on this port for every registration (PMAPPROC_DUMP, v2, TCP).

    Fields: dump ("answered" or "refused: <the server's reason>"), registrations, programs
    (one line per program: name, number, versions, protocol/port), other_programs (programs
    besides the portmapper itself), grade ("services" or "portmapper-only").
    Raises ProbeFailure when the peer does not answer ONC RPC.
    """
    xid = int.from_bytes(os.urandom(4), "big")
    request = sunrpc.build_dump(xid)
    reply = await exchange(ctx.address, ctx.port, request, ctx.options.limits,
                           done=sunrpc.record_complete)
    fields: dict[str, str] = {}
    result = sunrpc.parse_reply(reply, xid)
    if result is None:
        refusal = sunrpc.parse_refusal(reply, xid)
        if refusal is None:
            raise ProbeFailure(ErrorKind.PROTOCOL, "not an ONC RPC reply to PMAPPROC_DUMP",
                               partial=reply[:1024])
        fields["dump"] = f"refused: {refusal}"
        shown = f"PMAPPROC_DUMP -> {refusal}"
    else:
        mappings = sunrpc.parse_dump(result)
        if mappings is None:
            raise ProbeFailure(ErrorKind.PROTOCOL, "malformed PMAPPROC_DUMP result",
                               partial=reply[:1024])
        lines = describe(mappings)
        others = {m.program for m in mappings} - {sunrpc.PORTMAP}
        fields.update(dump="answered", registrations=str(len(mappings)),
                      programs="; ".join(lines)[:600] or "(none)",
                      other_programs=str(len(others)),
                      grade="services" if others else "portmapper-only")
        shown = "PMAPPROC_DUMP -> " + ("; ".join(lines) or "(empty list)")
    return Observation(
        test="asked the portmapper for its whole registration list (PMAPPROC_DUMP, program "
             "100000 v2, over TCP, AUTH_NULL), as rpcinfo -p does",
        fields=fields,
        request=excerpt(f"ONC RPC CALL xid={xid:#010x} to {ctx.address}:{ctx.port} program "
                        "100000 v2 procedure 4 (DUMP), AUTH_NULL"),
        reply=excerpt(shown),
    )


PRIMITIVES: dict[str, Primitive] = {"rpcbind_dump": rpcbind_dump}
