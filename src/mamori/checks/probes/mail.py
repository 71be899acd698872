"""IMAP/POP3: does the server let a client send its password over this cleartext connection?

One connection, no login: the greeting, then CAPABILITY (IMAP) or CAPA (POP3), then LOGOUT /
QUIT. The verdict is the server's own statement (protocols/mailcaps.py): IMAP without
LOGINDISABLED accepts LOGIN, AUTH=PLAIN/LOGIN carry the password as it is, POP3 lists USER
only when USER/PASS may be used.
"""

from __future__ import annotations

import contextlib

from mamori.checks.observation import Observation, ProbeContext, excerpt
from mamori.checks.params import Params
from mamori.checks.primitive import Primitive
from mamori.model import ErrorKind
from mamori.net.stream import BoundedStream, ProbeFailure
from mamori.protocols import mailcaps


def _one_line(buf: bytes, what: str) -> None:
    if buf.count(b"\n") != 1 or not buf.endswith(b"\n"):
        raise ProbeFailure(ErrorKind.PROTOCOL,
                           f"{what}: not exactly one line: {excerpt(buf, 80)!r}", partial=buf)


async def _imap(stream: BoundedStream, replies: list[bytes]) -> tuple[str, mailcaps.CapsVerdict]:
    buf = await stream.read_line()
    replies.append(buf)
    greeting = mailcaps.parse_imap_greeting(buf)
    if greeting is None:
        raise ProbeFailure(ErrorKind.PROTOCOL,
                           f"not an IMAP greeting: {excerpt(buf, 80)!r}", partial=buf)
    _one_line(buf, "IMAP greeting")
    if greeting.status != "OK":
        raise ProbeFailure(ErrorKind.PROTOCOL, f"IMAP greeting {greeting.status}: "
                           "the server does not offer a login on this connection")
    await stream.send(mailcaps.imap_capability_command())
    stream.rearm()
    buf = await stream.read_until(mailcaps.imap_tagged_done)
    replies.append(buf)
    caps = mailcaps.parse_imap_capability(buf)
    if caps is None or not mailcaps.is_imap_capability_list(caps):
        raise ProbeFailure(ErrorKind.PROTOCOL,
                           f"no IMAP capability list: {excerpt(buf, 120)!r}", partial=buf)
    with contextlib.suppress(ProbeFailure):
        await stream.send(mailcaps.imap_logout_command())
    return " ".join(caps), mailcaps.judge_imap(caps)


async def _pop3(stream: BoundedStream, replies: list[bytes]) -> tuple[str, mailcaps.CapsVerdict]:
    buf = await stream.read_line()
    replies.append(buf)
    if mailcaps.parse_pop3_greeting(buf) is None:
        raise ProbeFailure(ErrorKind.PROTOCOL,
                           f"not a POP3 greeting: {excerpt(buf, 80)!r}", partial=buf)
    _one_line(buf, "POP3 greeting")
    await stream.send(mailcaps.pop3_capa_command())
    stream.rearm()
    buf = await stream.read_until(mailcaps.pop3_capa_done)
    replies.append(buf)
    caps = mailcaps.parse_pop3_capa(buf)
    if caps is None:
        raise ProbeFailure(ErrorKind.PROTOCOL,
                           f"no POP3 CAPA list (RFC 2449): {excerpt(buf, 120)!r}", partial=buf)
    with contextlib.suppress(ProbeFailure):
        await stream.send(mailcaps.pop3_quit_command())
    return " | ".join(caps), mailcaps.judge_pop3(caps)


async def mail_cleartext_login(ctx: ProbeContext, params: Params) -> Observation:
    """Read the IMAP or POP3 capability list on a cleartext connection.

    Returns fields: grade (cleartext-only / cleartext-allowed / none), protocol,
    clear_methods, starttls (yes/no), capabilities. Raises ProbeFailure when the peer is not
    IMAP/POP3 in lockstep, or the connection is already TLS (nothing to judge then).
    """
    if ctx.service is not None and ctx.service.tls:
        raise ProbeFailure(ErrorKind.PROTOCOL, "the connection is TLS from the start")
    imap = ctx.service is None or ctx.service.name != "pop3"
    sent = "a CAPABILITY" if imap else "CAPA"
    stream = await BoundedStream.open(ctx.address, ctx.port, ctx.options.limits)
    replies: list[bytes] = []
    try:
        caps, verdict = await (_imap(stream, replies) if imap else _pop3(stream, replies))
    finally:
        await stream.close()
    fields = {
        "grade": verdict.grade,
        "protocol": "IMAP" if imap else "POP3",
        "clear_methods": ", ".join(verdict.clear_methods) or "none",
        "starttls": "yes" if verdict.starttls else "no",
        "capabilities": caps[:400],
    }
    request = (mailcaps.imap_capability_command() + mailcaps.imap_logout_command() if imap
               else mailcaps.pop3_capa_command() + mailcaps.pop3_quit_command())
    return Observation(
        test=(f"read the greeting, sent {sent} command on the cleartext connection and read "
              "which login methods it offers before TLS; no login attempted"),
        fields=fields, request=excerpt(request), reply=excerpt(b"".join(replies)))


PRIMITIVES: dict[str, Primitive] = {"mail_cleartext_login": mail_cleartext_login}
