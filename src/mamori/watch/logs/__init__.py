"""Log sources for ``mamori watch``: sshd/auth logs, nginx/Apache access logs, firewall
(nftables/iptables) kernel lines, journald, macOS pf and unified-log sshd lines.

``LogSpec`` says what to read, ``LogFollower`` reads it (followed live and rotation-safe, or
once) and emits events, ``parse_line`` is the pure parser behind it (one module per format).
"""

from mamori.watch.logs.follow import FollowLimits, FollowStats, LineSplitter, LogFollower
from mamori.watch.logs.parse import line_parser, parse_line
from mamori.watch.logs.spec import LOG_KINDS, LogSpec

__all__ = [
    "LOG_KINDS",
    "FollowLimits",
    "FollowStats",
    "LineSplitter",
    "LogFollower",
    "LogSpec",
    "line_parser",
    "parse_line",
]
