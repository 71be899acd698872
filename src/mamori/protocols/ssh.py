"""SSH (RFC 4253 section 4.2): the identification string a server sends first."""

from __future__ import annotations

import re
from dataclasses import dataclass

_IDENT = re.compile(rb"^SSH-(\d\.\d+)-([\x21-\x7e]+)(?: ([\x20-\x7e]*))?\r?\n", re.M)


@dataclass(frozen=True, slots=True)
class Ident:
    protocol: str  # "2.0" (or "1.99" for servers that still offer SSH-1)
    software: str  # "OpenSSH_9.2p1"
    comments: str  # "Debian-2+deb12u3"


def parse_ident(data: bytes) -> Ident | None:
    """Find the identification line (servers may send other lines before it, RFC 4253).

    Returns None when no well-formed ``SSH-x.y-software`` line is within the first 8 KiB.
    Never raises.
    """
    m = _IDENT.search(data[:8192])
    if m is None:
        return None
    return Ident(m.group(1).decode(), m.group(2).decode(), (m.group(3) or b"").decode())
