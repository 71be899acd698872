"""Redis: does it hand out INFO without authentication?"""

from __future__ import annotations

from mamori.checks.observation import Observation, ProbeContext, excerpt
from mamori.checks.params import Params
from mamori.checks.primitive import Primitive
from mamori.model import ErrorKind
from mamori.net.stream import ProbeFailure, exchange
from mamori.protocols import redis as resp

_FIELDS = ("redis_version", "role", "os", "connected_clients", "redis_mode", "executable")


async def redis_info(ctx: ProbeContext, params: Params) -> Observation:
    """Send INFO; report the server's INFO fields, or its error line (NOAUTH when protected)."""
    request = resp.build_command("INFO")
    reply = await exchange(ctx.address, ctx.port, request, ctx.options.limits,
                           done=resp.reply_complete)
    # Silence and non-RESP bytes prove nothing either way: "not tested", never "passed".
    if not reply:
        raise ProbeFailure(ErrorKind.CLOSED, "the server closed without answering INFO")
    parsed = resp.parse_reply(reply)
    if parsed is None:
        raise ProbeFailure(ErrorKind.PROTOCOL, "the reply to INFO is not a Redis (RESP) reply",
                           partial=reply[:256])
    fields: dict[str, str] = {}
    if parsed is not None:
        value = parsed[0]
        if isinstance(value, bytes):
            info = resp.info_fields(value)
            fields.update({k: info[k] for k in _FIELDS if k in info})
        elif isinstance(value, resp.RespError):
            fields["error"] = str(value)[:256]
    return Observation(
        test="sent the Redis command INFO without authenticating",
        fields=fields,
        request=excerpt(request),
        reply=excerpt(reply),
    )


PRIMITIVES: dict[str, Primitive] = {"redis_info": redis_info}
