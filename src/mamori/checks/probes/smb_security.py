"""SMB2/3 session security as the NEGOTIATE reply states it: is signing required, can the
session be encrypted, which dialect up to 3.1.1 the server picks. One request, no logon."""

from __future__ import annotations

import os

from mamori.checks.observation import Observation, ProbeContext, excerpt
from mamori.checks.params import Params
from mamori.checks.primitive import Primitive
from mamori.model import ErrorKind
from mamori.net.stream import ProbeFailure, exchange
from mamori.protocols import smb2, smb_security


def _one_frame(buf: bytes) -> bool:
    n = smb2.frame_length(buf)
    return n is not None and len(buf) >= n


async def smb_negotiate_security(ctx: ProbeContext, params: Params) -> Observation:
    """Send one NEGOTIATE offering SMB 2.0.2 to 3.1.1 (with preauth and encryption contexts).

    Fields: dialect, signing (required / enabled / off), encryption (yes / no), cipher,
    preauth, encryption_reason. Raises ProbeFailure when the reply is not an SMB2 NEGOTIATE
    answer (an SMB1-only server, a stranger) or the server cannot be reached.
    """
    request = smb_security.build_negotiate(0, os.urandom(16), os.urandom(32))
    raw = await exchange(ctx.address, ctx.port, request, ctx.options.limits, done=_one_frame)
    reply = smb2.parse_reply(raw[: smb2.frame_length(raw) or 0])
    facts = smb_security.parse_negotiate(reply) if reply is not None else None
    if facts is None:
        detail = (f"NEGOTIATE refused ({smb2.status_name(reply.status)})" if reply is not None
                  and reply.status else "reply is not an SMB2 NEGOTIATE answer")
        raise ProbeFailure(ErrorKind.PROTOCOL, detail, partial=raw[:1024])
    signing = ("required" if facts.signing_required
               else "enabled" if facts.signing_enabled else "off")
    if facts.encryption:
        reason = f"{facts.cipher or 'SMB3 encryption capability'} offered"
    elif not facts.dialect.startswith("3."):
        reason = f"the server chose SMB {facts.dialect}, which has no encryption"
    else:
        reason = f"SMB {facts.dialect} chosen but no cipher offered"
    fields = {
        "dialect": facts.dialect,
        "signing": signing,
        "encryption": "yes" if facts.encryption else "no",
        "encryption_reason": reason,
        "cipher": facts.cipher or "none",
        "preauth": facts.preauth or "none",
    }
    return Observation(
        test=("sent one SMB2 NEGOTIATE offering dialects 2.0.2 to 3.1.1 with the preauth "
              "integrity (SHA-512) and encryption (AES-128/256 GCM/CCM) contexts; read the "
              "security mode, dialect and cipher the server chose; no logon"),
        fields=fields, request=excerpt(request, 256), reply=excerpt(raw, 512))


PRIMITIVES: dict[str, Primitive] = {"smb_negotiate_security": smb_negotiate_security}
