"""TFTP named by behaviour: a read request for a random name draws an ERROR packet sent from
another port of the server (its transfer ID). The UDP sweep's connected sockets never see
such answers, so silent UDP ports get this one extra question after the sweep.
"""

from __future__ import annotations

import secrets

from mamori.model import Service
from mamori.net.datagram_tid import ask_any_port
from mamori.net.stream import ProbeFailure
from mamori.protocols import tftp


async def tftp_behaviour(address: str, port: int, *, timeout: float = 1.5) -> Service | None:
    """Service "tftp" when ``address`` answers a read request for a random name sent to
    ``port`` with a TFTP ERROR (or DATA) packet from any of its ports; None otherwise (silence,
    anything else, or a socket error: the port stays as the sweep left it)."""
    name = f"mamori-{secrets.token_hex(6)}"
    stop = tftp.build_error(0, "mamori: identification only")
    try:
        got = await ask_any_port(address, port, tftp.build_read_request(name), timeout=timeout,
                                 tries=1, farewell=stop)
    except ProbeFailure:
        return None
    packet = tftp.parse_packet(got.data) if got.data is not None else None
    if packet is None:
        return None
    answer = (packet.error_text if packet.opcode == tftp.OP_ERROR
              else f"DATA block {packet.number}")
    return Service(name="tftp", method="tftp-read", banner=answer[:200],
                   extra={"answered_from_port": str(got.port)})
