"""SMTP: does the server relay mail for anyone (an open relay, a spammer's stepping stone)?

One session, in lockstep: greeting, EHLO (HELO if refused), a control transaction whose
recipient is at a domain that cannot exist, then the relay forms one by one until one is
accepted; when one is, DATA with a message that says what it is and carries a token; with a
canary configured, the token is then looked for at the canary's inbox for a bounded time.
The grade says how far the proof went (see ``relay_grade``).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

from mamori.checks.canary import find_token
from mamori.checks.observation import Observation, ProbeContext, excerpt
from mamori.checks.params import Params
from mamori.checks.primitive import Primitive
from mamori.model import ErrorKind
from mamori.net.stream import BoundedStream, ProbeFailure
from mamori.protocols import smtp

_USER = "mamori-relay-test"
_POLL_EVERY = 0.25
_MAX_FORMS = 9  # postfix delays every reply after 10 errors in one session: stay below


def relay_grade(*, rcpt_ok: bool, control_ok: bool, data_ok: bool, delivered: bool) -> str:
    """How far the relay proof went.

    "delivered": the token arrived at the canary inbox (nothing that only says 250 can fake
    that); "accepts-everything": the relay recipient was accepted, but so was the control at
    a domain that cannot exist, so the 250s prove nothing; "accepted": 250 to DATA for an
    outside recipient; "likely": only RCPT accepted; "none": no relay recipient accepted.
    """
    if delivered:
        return "delivered"
    if not rcpt_ok:
        return "none"
    if control_ok:
        return "accepts-everything"
    return "accepted" if data_ok else "likely"


@dataclass
class _Session:
    stream: BoundedStream
    sent: list[str] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)

    async def read_reply(self) -> smtp.SmtpReply:
        """The next reply. Raises ProbeFailure (PROTOCOL) for bytes that are not exactly one
        SMTP reply, and as ``read_until`` does."""
        self.stream.rearm()
        buf = await self.stream.read_until(smtp.reply_complete)
        parsed = smtp.parse_reply(buf)
        if parsed is None:
            detail = "not an SMTP reply" if buf else "closed the connection"
            raise ProbeFailure(ErrorKind.PROTOCOL if buf else ErrorKind.CLOSED,
                               f"{detail}: {excerpt(buf, 80)!r}", partial=buf)
        reply, used = parsed
        if buf[used:]:
            # Lockstep: one reply per command. Extra lines mean a peer that talks out of turn
            # (or says yes in several protocols at once); its replies cannot be paired.
            raise ProbeFailure(ErrorKind.PROTOCOL, "sent more than one reply per command",
                               partial=buf)
        self.replies.append(f"{reply.code} {reply.text}"[:300])
        return reply

    async def ask(self, line: bytes, shown: str | None = None) -> smtp.SmtpReply:
        self.sent.append(shown or line.decode("utf-8", "replace").strip())
        await self.stream.send(line)
        return await self.read_reply()


@dataclass
class _Outcome:
    fields: dict[str, str] = field(default_factory=dict)
    rcpt_ok: bool = False
    control_ok: bool = False
    data_ok: bool = False


async def _converse(s: _Session, ctx: ProbeContext, *, domain: str, control: str,
                    max_forms: int, token: str) -> _Outcome:
    out = _Outcome()
    f = out.fields
    banner = await s.read_reply()
    f["banner"] = banner.text[:200]
    if banner.code != 220:
        f["stopped"] = f"greeting {banner.code}: the server refuses to talk to us"
        return out
    helo = ctx.options.helo_name
    hello = await s.ask(smtp.command("EHLO", helo))
    if not hello.positive:
        hello = await s.ask(smtp.command("HELO", helo))
    if not hello.positive:
        f["stopped"] = f"HELO refused ({hello.code})"
        return out
    if hello.lines and "AUTH" in smtp.ehlo_keywords(hello):
        f["auth_offered"] = "yes"
    sender = f"{_USER}@{helo}"
    mail = await s.ask(smtp.mail_from(sender))
    f["mail_reply"] = f"{mail.code} {mail.text}"[:200]
    if not mail.positive:
        f["stopped"] = f"MAIL FROM refused ({mail.code})"
        return out
    ctl = await s.ask(smtp.rcpt_to(control))
    out.control_ok = ctl.positive
    f["control_address"], f["control_reply"] = control, f"{ctl.code} {ctl.text}"[:200]
    await s.ask(smtp.command("RSET"))
    mail = await s.ask(smtp.mail_from(sender))
    if not mail.positive:
        f["stopped"] = f"MAIL FROM refused after RSET ({mail.code})"
        return out
    forms = smtp.relay_forms(_USER, domain, ctx.address)[:max_forms]
    tried = []
    for form in forms:
        reply = await s.ask(smtp.rcpt_to(form.address))
        tried.append(f"{form.name}={reply.code}")
        if reply.positive:
            out.rcpt_ok = True
            f["relay_form"], f["relay_address"] = form.name, form.address
            f["rcpt_reply"] = f"{reply.code} {reply.text}"[:200]
            break
    f["forms_tried"] = " ".join(tried)
    if not out.rcpt_ok:
        return out
    data = await s.ask(smtp.command("DATA"))
    f["data_reply"] = f"{data.code} {data.text}"[:200]
    if data.code != 354:
        return out
    message = smtp.build_message(sender=sender, recipient=f"{_USER}@{domain}", token=token,
                                 helo_name=helo, date=formatdate(usegmt=True))
    done = await s.ask(message, shown=f"<test message carrying token {token}, "
                                      f"{len(message)} bytes>")
    out.data_ok = done.positive
    f["data_reply"] = f"{done.code} {done.text}"[:200]
    return out


async def _await_delivery(inbox: Path, token: str, wait: float) -> Path | None:
    """Poll ``inbox`` for the token until it shows up or ``wait`` seconds pass."""
    loop = asyncio.get_running_loop()
    end = loop.time() + wait
    while True:
        found = await asyncio.to_thread(find_token, inbox, token)
        if found is not None or loop.time() >= end:
            return found
        await asyncio.sleep(_POLL_EVERY)


async def smtp_relay(ctx: ProbeContext, params: Params) -> Observation:
    """Try to relay a marked test message through the target.

    Returns fields: grade (delivered / accepted / likely / accepts-everything / none),
    banner, control_reply, relay_form, relay_address, rcpt_reply, data_reply, forms_tried,
    token, stopped (why it ended early). Raises ProbeFailure when the server cannot be
    reached or does not speak SMTP in lockstep.
    """
    opts = ctx.options
    canary = opts.smtp_canary_domain if opts.smtp_canary_inbox else None
    domain = canary or params.text("relay_domain", "example.net")
    token = "mamori-" + secrets.token_hex(10)
    control = f"{_USER}@no-such-domain-{secrets.token_hex(4)}.invalid"
    max_forms = max(1, min(_MAX_FORMS, int(params.number("max_forms", _MAX_FORMS))))
    stream = await BoundedStream.open(ctx.address, ctx.port, opts.limits)
    session = _Session(stream)
    try:
        out = await _converse(session, ctx, domain=domain, control=control,
                              max_forms=max_forms, token=token)
        # QUIT is courtesy: the verdict is already in hand.
        with contextlib.suppress(ProbeFailure):
            await session.ask(smtp.command("QUIT"))
    finally:
        await stream.close()
    delivered = None
    if canary and opts.smtp_canary_inbox and out.data_ok:
        wait = params.number("delivery_wait", 15.0)
        delivered = await _await_delivery(Path(opts.smtp_canary_inbox), token, wait)
        out.fields["delivered"] = "yes" if delivered else f"not within {wait:.0f} s"
    out.fields["grade"] = relay_grade(rcpt_ok=out.rcpt_ok, control_ok=out.control_ok,
                                      data_ok=out.data_ok, delivered=delivered is not None)
    out.fields["token"] = token
    out.fields["relay_domain"] = domain
    test = (f"EHLO {opts.helo_name}; RCPT TO a control address at a domain that cannot exist; "
            f"RCPT TO {_USER}@{domain} in up to {max_forms} relay forms (plain, percent hack, "
            "quoted, source route, bang path...); DATA with a marked test message if one was "
            "accepted" + ("; then waited for it at the canary inbox" if canary else ""))
    return Observation(test=test, fields=out.fields,
                       request=excerpt("\r\n".join(session.sent)),
                       reply=excerpt("\r\n".join(session.replies)))


PRIMITIVES: dict[str, Primitive] = {"smtp_relay": smtp_relay}
