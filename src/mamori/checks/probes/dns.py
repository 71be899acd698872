"""DNS: does the server resolve names it is not authoritative for, for anyone who asks?

Judged from the answer itself, not from the RA bit: many servers set RA and then answer
REFUSED or SERVFAIL. Recursion is shown by an answer (NOERROR, not authoritative) that carries
addresses for the asked name; it is *verified* when those addresses are the name's known true
ones, which a server answering everything with one made-up address cannot fake.
"""

from __future__ import annotations

import secrets

from mamori.checks.observation import Observation, ProbeContext, excerpt
from mamori.checks.params import Params
from mamori.checks.primitive import Primitive
from mamori.model import ErrorKind
from mamori.net.datagram import DatagramLimits, ask
from mamori.net.stream import ProbeFailure
from mamori.protocols import dns
from mamori.protocols.dns_edns import RCODES, answer_addresses, header_flags, question_matches

DEFAULT_NAME = "a.root-servers.net"  # stable for decades, answered by any working resolver
DEFAULT_ADDRESSES = ["198.41.0.4"]


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


async def dns_recursion(ctx: ProbeContext, params: Params) -> Observation:
    """Ask for the A record of a name the target does not serve, with RD set.

    The name and its true addresses come from the check file (``name``, ``expect``) unless
    the run's options override them (``resolver_check_name`` / ``resolver_check_addresses``).
    Fields: ``query``, ``reply`` (none/dns), ``rcode``, ``ra``, ``aa``, ``answers``,
    ``recursed`` (yes when a non-authoritative NOERROR answer carries addresses for the
    name), ``grade`` (verified / answered). Raises ``ProbeFailure`` when the port refuses or
    every reply is something other than a DNS answer to our query.
    """
    if ctx.options.resolver_check_name:
        name = ctx.options.resolver_check_name
        expected = list(ctx.options.resolver_check_addresses)
    else:
        name = params.text("name", DEFAULT_NAME)
        expected = params.texts("expect", DEFAULT_ADDRESSES)
    txid = secrets.randbelow(0x10000)
    query = dns.build_query(name, dns.TYPE_A, txid=txid, recursion=True)
    limits = DatagramLimits.from_limits(ctx.options.limits, settle=0.2)
    got = await ask(ctx.address, ctx.port, query, limits)
    test = f"asked for the A record of {name} (recursion desired), a name it does not serve"
    fields = {"query": f"{name} A", "expected": ", ".join(expected) or "(any)"}
    if not got.replies:
        fields["reply"] = "none"
        return Observation(test=test + "; no answer", fields=fields, request=excerpt(query))
    for raw in got.replies:
        msg = dns.parse_message(raw)
        flags = header_flags(raw)
        if msg is None or flags is None or not msg.is_response or msg.txid != txid:
            continue
        # Refusals often carry no question section (unbound's REFUSED is a bare header).
        if msg.questions and not question_matches(msg, name, dns.TYPE_A):
            continue
        addresses = answer_addresses(msg, name)
        recursed = msg.rcode == 0 and bool(addresses) and not msg.authoritative
        fields.update(
            reply="dns",
            rcode=RCODES.get(msg.rcode, str(msg.rcode)),
            ra=_yes(flags.recursion_available),
            aa=_yes(msg.authoritative),
            answers=", ".join(addresses[:8]) or "(none)",
            recursed=_yes(recursed),
        )
        if recursed:
            verified = any(a in expected for a in addresses)
            fields["grade"] = "verified" if verified else "answered"
        return Observation(test=test, fields=fields, request=excerpt(query), reply=excerpt(raw))
    raise ProbeFailure(
        ErrorKind.GARBAGE,
        f"{len(got.replies)} reply datagram(s), none a DNS answer to our query",
        partial=got.replies[0][:256],
    )


PRIMITIVES: dict[str, Primitive] = {"dns_recursion": dns_recursion}
