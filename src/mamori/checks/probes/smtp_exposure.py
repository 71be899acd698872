"""SMTP beyond relaying: STARTTLS missing on an MX or submission port, and user enumeration.

Both read the server in lockstep with the relay check's session (one reply per command; a
peer that answers out of turn is not SMTP). Nothing is ever sent as mail: the enumeration
test stops at RCPT, then RSET and QUIT.
"""

from __future__ import annotations

import contextlib
import secrets

from mamori.checks.observation import Observation, ProbeContext, excerpt
from mamori.checks.params import Params
from mamori.checks.primitive import Primitive
from mamori.checks.probes.smtp import _Session
from mamori.model import ErrorKind
from mamori.net.stream import BoundedStream, ProbeFailure
from mamori.protocols import smtp
from mamori.protocols.smtp_policy import ehlo_facts, starttls_grade, tells_users_apart

SUBMISSION_PORTS = frozenset({587})
# Names that exist on every mail system: postmaster must (RFC 5321 4.5.1), root is on every
# Unix. One of them accepted while a random name is refused proves the server tells users apart.
_EVERYWHERE = ("postmaster", "root")


async def _hello(s: _Session, ctx: ProbeContext) -> tuple[smtp.SmtpReply, smtp.SmtpReply]:
    banner = await s.read_reply()
    if banner.code != 220:
        raise ProbeFailure(ErrorKind.PROTOCOL, f"greeting {banner.code}: the server refuses "
                           "to talk to us", partial=banner.text.encode())
    return banner, await s.ask(smtp.command("EHLO", ctx.options.helo_name))


async def _quit(s: _Session) -> None:
    with contextlib.suppress(ProbeFailure):
        await s.ask(smtp.command("QUIT"))


async def smtp_starttls(ctx: ProbeContext, params: Params) -> Observation:
    """EHLO on the cleartext connection: is STARTTLS offered, and AUTH before it?

    Returns fields: grade (see ``starttls_grade``; "no-esmtp" when EHLO is refused),
    role (submission / mx), starttls (yes/no), auth_mechanisms, clear_auth, banner.
    """
    if ctx.service is not None and ctx.service.tls:
        raise ProbeFailure(ErrorKind.PROTOCOL, "the connection is TLS from the start (SMTPS)")
    stream = await BoundedStream.open(ctx.address, ctx.port, ctx.options.limits)
    s = _Session(stream)
    try:
        banner, hello = await _hello(s, ctx)
        await _quit(s)
    finally:
        await stream.close()
    facts = ehlo_facts(hello) if hello.positive else None
    auth = facts.auth_mechanisms if facts else ()
    submission = ctx.port in SUBMISSION_PORTS or bool(auth)
    fields = {
        "grade": starttls_grade(facts) if facts else "no-esmtp",
        "role": "submission" if submission else "mx",
        "starttls": "yes" if facts and facts.starttls else "no",
        "auth_mechanisms": " ".join(auth) or "none",
        "clear_auth": " ".join(facts.clear_auth) if facts and facts.clear_auth else "none",
        "ehlo_reply": f"{hello.code} {hello.text}"[:300],
        "banner": banner.text[:200],
    }
    return Observation(
        test=(f"EHLO {ctx.options.helo_name} on the cleartext connection; read whether "
              "STARTTLS and AUTH are offered; QUIT"),
        fields=fields, request=excerpt("\r\n".join(s.sent)),
        reply=excerpt("\r\n".join(s.replies)))


def _rcpt_domain(banner: smtp.SmtpReply, hello: smtp.SmtpReply) -> str | None:
    return smtp.server_name(hello) or smtp.server_name(banner)


async def _pair(s: _Session, verb: str, existing: str, random_name: str,
                results: dict[str, str]) -> bool:
    """Ask ``verb`` for the name that exists and the random one; True on a difference."""
    known = await s.ask(smtp.command(verb, existing))
    unknown = await s.ask(smtp.command(verb, random_name))
    results[verb] = (f"{verb} {existing} -> {known.code} {known.text}"[:160] + "; "
                     + f"{verb} {random_name} -> {unknown.code} {unknown.text}"[:160])
    return tells_users_apart(known, unknown)


async def smtp_user_enum(ctx: ProbeContext, params: Params) -> Observation:
    """VRFY, EXPN and RCPT TO, each for a name that exists everywhere and a random one.

    Returns fields: grade (vrfy / expn / rcpt: the first command that tells users apart,
    "none"), methods (every command that does), vrfy / expn / rcpt (the exchanges), banner.
    """
    if ctx.service is not None and ctx.service.tls:
        raise ProbeFailure(ErrorKind.PROTOCOL, "the connection is TLS from the start (SMTPS)")
    random_name = "mamori-" + secrets.token_hex(6)
    stream = await BoundedStream.open(ctx.address, ctx.port, ctx.options.limits)
    s = _Session(stream)
    found: list[str] = []
    exchanges: dict[str, str] = {}
    try:
        banner, hello = await _hello(s, ctx)
        if not hello.positive:
            hello = await s.ask(smtp.command("HELO", ctx.options.helo_name))
        for verb, existing in (("VRFY", "root"), ("VRFY", "postmaster"), ("EXPN", "postmaster")):
            if verb.lower() in found:
                continue
            if await _pair(s, verb, existing, random_name, exchanges):
                found.append(verb.lower())
        domain = _rcpt_domain(banner, hello)
        mail = await s.ask(smtp.mail_from(""))
        if domain and mail.positive:
            for existing in _EVERYWHERE:
                known = await s.ask(smtp.rcpt_to(f"{existing}@{domain}"))
                unknown = await s.ask(smtp.rcpt_to(f"{random_name}@{domain}"))
                exchanges["RCPT"] = (
                    f"RCPT TO:<{existing}@{domain}> -> {known.code} {known.text}"[:160] + "; "
                    + f"RCPT TO:<{random_name}@{domain}> -> {unknown.code} {unknown.text}"[:160])
                if tells_users_apart(known, unknown):
                    found.append("rcpt")
                    break
            with contextlib.suppress(ProbeFailure):
                await s.ask(smtp.command("RSET"))
        elif not domain:
            exchanges["RCPT"] = "not tested: the server did not name its own domain"
        else:
            exchanges["RCPT"] = f"not tested: MAIL FROM:<> refused ({mail.code})"
        await _quit(s)
    finally:
        await stream.close()
    fields = {
        "grade": found[0] if found else "none",
        "methods": " ".join(found) or "none",
        "random_name": random_name,
        "banner": banner.text[:200],
    }
    fields.update({verb.lower(): text for verb, text in exchanges.items()})
    return Observation(
        test=("VRFY, EXPN and RCPT TO (after MAIL FROM:<>) for a name that exists on every mail "
              f"system (root, postmaster) and for the random name {random_name}; a difference "
              "proves enumeration; RSET and QUIT, no mail sent"),
        fields=fields, request=excerpt("\r\n".join(s.sent)),
        reply=excerpt("\r\n".join(s.replies)))


PRIMITIVES: dict[str, Primitive] = {
    "smtp_starttls": smtp_starttls,
    "smtp_user_enum": smtp_user_enum,
}
