"""Check primitives for directory data handed to strangers: LDAP anonymous reads and DNS zone
transfers.

Both read just enough to prove the point and summarise it: naming contexts, an entry count and
attribute *names* (asked with typesOnly, so no value, and never a password, crosses the wire);
a record count and the first few owner names of a zone, never the zone itself.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable

from mamori.checks.observation import Observation, ProbeContext, excerpt
from mamori.checks.params import Params
from mamori.checks.primitive import Primitive
from mamori.model import ErrorKind
from mamori.net.stream import BoundedStream, ProbeFailure, exchange
from mamori.protocols import dns_xfr, ldap
from mamori.protocols.dns_edns import RCODES

_RCODES = {**RCODES, 9: "NOTAUTH"}
_ROOT_DSE_ATTRS = ["namingContexts", "supportedLDAPVersion", "vendorName", "vendorVersion"]
# Attribute names that hold secrets; only ever reported as names (values are never asked for).
SECRET_ATTRIBUTES = frozenset({"userpassword", "sambantpassword", "sambalmpassword",
                               "unicodepwd", "authpassword", "krbprincipalkey",
                               "ntpassword", "lmpassword", "olcrootpw"})


class _Ldap:
    """One LDAP connection: numbered requests, whole messages read within the limits."""

    def __init__(self, stream: BoundedStream) -> None:
        self.stream = stream
        self.buf = b""
        self.msgid = 0

    async def request(self, build: Callable[[int], bytes], last_op: int,
                      cap: int = 512) -> list[ldap.Message]:
        """Send ``build(msgid)``; return the messages answering it up to the one of type
        ``last_op`` (at most ``cap``). Raises ProbeFailure when the answer is not LDAP."""
        self.msgid += 1
        mid = self.msgid
        await self.stream.send(build(mid))
        self.stream.rearm()
        out: list[ldap.Message] = []
        while True:
            split = ldap.split_messages(self.buf)
            if split is None:
                raise ProbeFailure(ErrorKind.GARBAGE,
                                   f"not an LDAP answer: {excerpt(self.buf[:40], 40)}")
            messages, used = split
            self.buf = self.buf[used:]
            for msg in messages:
                if msg.msgid == mid:
                    out.append(msg)
                if msg.op == last_op or len(out) >= cap:
                    return out
            chunk = await self.stream.read_some()
            if not chunk:
                raise ProbeFailure(ErrorKind.CLOSED, "server closed the LDAP connection",
                                   partial=self.buf[:256])
            self.buf += chunk


def _done(messages: list[ldap.Message]) -> ldap.Result | None:
    last = messages[-1] if messages else None
    if last is None or last.op not in (ldap.OP_SEARCH_DONE, ldap.OP_BIND_RESPONSE):
        return None
    return ldap.parse_result(last.body)


def _entries(messages: list[ldap.Message]) -> list[ldap.Entry]:
    found = [ldap.parse_entry(m.body) for m in messages if m.op == ldap.OP_SEARCH_ENTRY]
    return [e for e in found if e is not None]


def _subtree_search(msgid: int, *, base: str, size: int) -> bytes:
    return ldap.build_search(msgid, base, ldap.SCOPE_SUB, [], size_limit=size, types_only=True)


async def _read_tree(client: _Ldap, fields: dict[str, str], log: list[str],
                     size: int) -> None:
    root = await client.request(lambda m: ldap.build_search(
        m, "", ldap.SCOPE_BASE, _ROOT_DSE_ATTRS, size_limit=1, types_only=False),
        ldap.OP_SEARCH_DONE)
    dse = _entries(root)
    attrs = dict(dse[0].attributes) if dse else {}
    contexts = [c for c in attrs.get("namingContexts", ()) if c][:8]
    done = _done(root)
    log.append("RootDSE: " + (f"namingContexts {contexts}, supportedLDAPVersion "
                              f"{list(attrs.get('supportedLDAPVersion', ()))}" if dse else
                              f"no entry ({done.name if done else 'no result'})"))
    if contexts:
        fields["naming_contexts"] = "; ".join(contexts)[:300]
    vendor = " ".join(attrs.get("vendorName", ()) + attrs.get("vendorVersion", ()))
    if vendor:
        fields["vendor"] = vendor[:120]
    seen_names: list[str] = []
    count = 0
    more = False
    for base in contexts[:4]:
        found = await client.request(functools.partial(
            _subtree_search, base=base, size=size), ldap.OP_SEARCH_DONE, cap=size + 1)
        every = _entries(found)
        entries = every[:size]  # a server that ignores the size limit gets no extra credit
        result = _done(found)
        count += len(entries)
        more = (more or len(every) > size or result is None
                or (result is not None and result.code == 4))
        for entry in entries:
            for name, _ in entry.attributes:
                if name not in seen_names and len(seen_names) < 40:
                    seen_names.append(name)
        log.append(f"subtree search of {base!r} (typesOnly, size limit {size}): "
                   f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}, "
                   f"{result.name if result else 'cut at the cap'}"
                   + (f"; first DN {entries[0].dn!r}" if entries else ""))
        if entries and "first_dn" not in fields:
            fields["first_dn"] = entries[0].dn[:200]
    if count:
        fields["entry_count"] = f"{count}{'+' if more else ''}"
        fields["attributes"] = ", ".join(seen_names)[:400]
        secret = [n for n in seen_names if n.lower() in SECRET_ATTRIBUTES]
        if secret:
            fields["secret_attributes"] = ", ".join(secret)
        fields["grade"] = "secrets" if secret else "entries"


async def ldap_anonymous(ctx: ProbeContext, params: Params) -> Observation:
    """Bind anonymously (simple, empty name and password), read the RootDSE, then search
    each naming context's subtree for (objectClass=*) with typesOnly and a size limit.

    Fields: bind (the bind result), naming_contexts, vendor, entry_count ("N" or "N+" when
    the size limit cut it), first_dn, attributes (names seen), secret_attributes (password
    attribute names seen, never their values), grade (entries / secrets).
    Raises ProbeFailure when the peer does not answer like an LDAP server.
    """
    size = int(params.number("size_limit", 25))
    stream = await BoundedStream.open(ctx.address, ctx.port, ctx.options.limits)
    client = _Ldap(stream)
    fields: dict[str, str] = {}
    log: list[str] = []
    try:
        bound = _done(await client.request(ldap.build_anonymous_bind, ldap.OP_BIND_RESPONSE, 1))
        if bound is None:
            raise ProbeFailure(ErrorKind.PROTOCOL, "no BindResponse to an anonymous bind")
        fields["bind"] = bound.name
        log.append(f"anonymous bind: {bound.name}"
                   + (f" ({bound.diagnostic})" if bound.diagnostic else ""))
        if bound.code == 0:
            await _read_tree(client, fields, log, size)
        await stream.send(ldap.build_unbind(client.msgid + 1))
    finally:
        await stream.close()
    return Observation(
        test="bound anonymously (LDAPv3 simple bind, empty name and password), read the "
             f"RootDSE, then searched each naming context's subtree for (objectClass=*) "
             f"asking for attribute names only (typesOnly), size limit {size}",
        fields=fields,
        request=excerpt("BindRequest v3 name='' simple ''; SearchRequest base='' scope=base "
                        f"attrs={_ROOT_DSE_ATTRS}; SearchRequest base=<each naming context> "
                        f"scope=sub (objectClass=*) typesOnly sizeLimit={size}; UnbindRequest"),
        reply=excerpt("\n".join(log)),
    )


# --- DNS zone transfer -----------------------------------------------------------------------


def _parents(name: str, keep: int = 2) -> list[str]:
    """``name`` and its parents with at least ``keep`` labels (a.b.example.org -> itself,
    b.example.org, example.org)."""
    labels = [x for x in name.strip(".").lower().split(".") if x]
    return [".".join(labels[i:]) for i in range(0, max(0, len(labels) - keep + 1))]


async def _lookup(ctx: ProbeContext, name: str, qtype: int, *, chaos: bool = False
                  ) -> dns_xfr.Reply | None:
    txid = secrets.randbelow(0x10000)
    query = dns_xfr.build_lookup(name, qtype, txid, chaos=chaos)
    raw = await exchange(ctx.address, ctx.port, len(query).to_bytes(2, "big") + query,
                         ctx.options.limits, done=lambda b: bool(dns_xfr.split_tcp(b)[0]))
    messages, _ = dns_xfr.split_tcp(raw)
    reply = dns_xfr.parse_reply(messages[0]) if messages else None
    return reply if reply is not None and reply.txid == txid else None


async def _zone_candidates(ctx: ProbeContext, params: Params, log: list[str]) -> list[str]:
    """Zone names worth asking for, in order: the user's (--dns-zone), the check file's, the
    hostname's, then what the server itself says about the scanned address and about itself."""
    out: list[str] = []

    def add(names: list[str]) -> None:
        for n in names:
            if n and n not in out:
                out.append(n)

    add(list(ctx.options.dns_zones))
    add([z.strip(".").lower() for z in params.texts("zones", [])])
    if ctx.hostname:
        add(_parents(ctx.hostname))
    reverse = dns_xfr.reverse_name(ctx.address)
    failures: list[ProbeFailure] = []
    answered = False
    for name, qtype, chaos in ((reverse, dns_xfr.TYPE_PTR, False),
                               ("hostname.bind", 16, True), ("id.server", 16, True)):
        try:
            reply = await _lookup(ctx, name, qtype, chaos=chaos)
        except ProbeFailure as exc:
            if exc.stage == "connect":
                raise
            failures.append(exc)
            reply = None
        answered = answered or reply is not None
        if reply is None:
            log.append(f"{name} {'CH TXT' if chaos else 'PTR'}: no answer")
            continue
        found = [r.target for r in reply.records if r.target and r.rtype != 16] if not chaos \
            else [r.target for r in reply.records if r.section == "answer" and r.target]
        zones = [r.owner for r in reply.records if r.rtype == dns_xfr.TYPE_SOA and r.owner]
        log.append(f"{name} {'CH TXT' if chaos else 'PTR'}: rcode {reply.rcode}, "
                   f"names {found[:4]}, SOA owner {zones[:1]}")
        add(zones)
        for target in found[:4]:
            add(_parents(target))
    if not out and not answered and failures:
        raise failures[-1]  # the server never answered a DNS question over TCP
    if not out:
        raise ProbeFailure(ErrorKind.PROTOCOL, "no zone name known: the server named none "
                           "(PTR of the address, hostname.bind, id.server) and none was given "
                           "(--dns-zone, a host name)")
    return out[:10]


async def _transfer(ctx: ProbeContext, zone: str, ixfr: bool) -> dns_xfr.Transfer | None:
    txid = secrets.randbelow(0x10000)
    query = (dns_xfr.build_ixfr(zone, txid) if ixfr else dns_xfr.build_axfr(zone, txid))
    try:
        raw = await exchange(ctx.address, ctx.port, len(query).to_bytes(2, "big") + query,
                             ctx.options.limits, done=dns_xfr.transfer_done(txid))
    except ProbeFailure as exc:
        if exc.stage == "connect":
            raise
        raw = exc.partial  # a zone larger than the read cap: what came is proof enough
    return dns_xfr.read_transfer(raw, txid)


async def dns_zone_transfer(ctx: ProbeContext, params: Params) -> Observation:
    """Find zone names (--dns-zone, check file ``zones``, the hostname given, the PTR of the scanned
    address and its SOA, hostname.bind / id.server) and ask for each zone by AXFR, then IXFR
    (serial 0) when AXFR is refused, over TCP, without a key.

    Fields: zones_tried, zone, method (AXFR/IXFR), records ("N", or "N+" when cut at the read
    cap), names (first few owner names), types, refused (zone, method and rcode of refusals).
    Raises ProbeFailure when the TCP connection cannot be made, the server answers no DNS
    question, or no zone name is known (nothing to ask for: not tested, never passed).
    """
    log: list[str] = []
    zones = await _zone_candidates(ctx, params, log)
    fields: dict[str, str] = {"zones_tried": ", ".join(zones) or "(none found)"}
    tried: list[str] = []
    refused: list[str] = []
    for zone in zones:
        for method, ixfr in (("AXFR", False), ("IXFR", True)):
            tried.append(f"{zone} {method}")
            got = await _transfer(ctx, zone, ixfr)
            if got is None:
                log.append(f"{method} {zone}: no DNS answer")
                break
            if got.rcode or not got.records:
                rcode = _RCODES.get(got.rcode, f"rcode {got.rcode}")
                log.append(f"{method} {zone}: {rcode}, {got.records} record(s)")
                refused.append(f"{zone} {method} {rcode}")
                continue
            log.append(f"{method} {zone}: {got.records} record(s) in {got.messages} "
                       f"message(s){'' if got.complete else ' (cut before the closing SOA)'}"
                       f"; first names {list(got.names[:5])}")
            fields.update(zone=got.soa_serial_zone or zone, method=method,
                          records=f"{got.records}{'' if got.complete else '+'}",
                          names=", ".join(got.names[:5])[:300], types=", ".join(got.types),
                          grade="transfer")
            # A real server has no zone by a random name; one that "transfers" it too says
            # yes to anything, which proves nothing about real zones.
            bogus = f"mamori-{secrets.token_hex(6)}.invalid"
            fake = await _transfer(ctx, bogus, ixfr)
            if fake is not None and not fake.rcode and fake.records:
                log.append(f"{method} {bogus} (random zone): {fake.records} record(s) too")
                fields["grade"] = "any-zone"
            break
        if "zone" in fields:
            break
    if refused:
        fields["refused"] = ", ".join(refused)[:300]
    return Observation(
        test="looked for zone names the server serves (PTR and SOA of the scanned address, "
             "hostname.bind, id.server, the hostname given), then asked for each zone by "
             "AXFR over TCP and, when refused, IXFR from serial 0, without a TSIG key: "
             + (", ".join(tried)),
        fields=fields,
        request=excerpt("; ".join(tried) or "(no transfer asked)"),
        reply=excerpt("\n".join(log)),
    )


PRIMITIVES: dict[str, Primitive] = {
    "ldap_anonymous": ldap_anonymous,
    "dns_zone_transfer": dns_zone_transfer,
}
