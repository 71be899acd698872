"""Classic BPF programs for the knock sensor's raw sockets, assembled by hand (pure).

The kernel runs a socket filter before it queues a packet for a socket, so a host busy with
ordinary traffic hands the knock sensor only what can be a knock. What the filter sees differs
by family (checked on Linux 6.x):

* a raw IPv4 socket: the packet from the IPv4 header on;
* a raw IPv6 socket: the transport header (the IPv6 header and its extensions are gone; the
  destination address comes from ``IPV6_PKTINFO``).

The programs keep (return ``SNAP`` bytes):

* IPv4: not a later fragment, destination below 224.0.0.0 (no multicast, no broadcast to
  255.255.255.255);
* TCP: no ACK and no RST among the flags (a SYN, or a NULL/FIN/XMAS/other crafted segment);
* and the destination port is not one of ``skip_ports`` (ports with a wildcard listener: their
  connections are the services' business), at most ``MAX_SKIP_PORTS`` of them.

Everything else returns 0 (dropped in the kernel). ``tests/watch/test_watch_knock.py``
runs these programs next to what libpcap compiles from the equivalent ``tcpdump``
expression, packet by packet.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Literal

__all__ = ["MAX_SKIP_PORTS", "SNAP", "Insn", "knock_program", "pack"]

Insn = tuple[int, int, int, int]  # (code, jt, jf, k) as in struct sock_filter

SNAP = 256  # bytes kept: the largest IPv4 header (60) plus the largest TCP header (60) fit
MAX_SKIP_PORTS = 200  # conditional jumps reach at most 255 instructions ahead

# opcodes (linux/filter.h)
_LD_W_ABS, _LD_H_ABS, _LD_B_ABS = 0x20, 0x28, 0x30
_LD_H_IND, _LD_B_IND = 0x48, 0x50
_LDX_B_MSH = 0xB1
_JEQ, _JGE, _JSET = 0x15, 0x35, 0x45
_RET = 0x06

_ACK_RST = 0x14
_FRAGMENT = 0x1FFF
_MULTICAST = 0xE0000000


def knock_program(version: Literal[4, 6], proto: Literal["tcp", "udp"],
                  skip_ports: Iterable[int] = ()) -> list[Insn]:
    """The filter for a raw ``proto`` socket of IP ``version`` (see the module doc). Ports
    beyond ``MAX_SKIP_PORTS`` (lowest first) are left to the reader."""
    skips = sorted({p for p in skip_ports if 0 <= p <= 0xFFFF})[:MAX_SKIP_PORTS]
    # Labels are resolved at the end: ("drop") or ("keep").
    body: list[tuple[int, int | str, int | str, int]] = []
    if version == 4:
        body += [
            (_LD_H_ABS, 0, 0, 6), (_JSET, "drop", 0, _FRAGMENT),
            (_LD_W_ABS, 0, 0, 16), (_JGE, "drop", 0, _MULTICAST),
            (_LDX_B_MSH, 0, 0, 0),  # X = IPv4 header length
        ]
        if proto == "tcp":
            body += [(_LD_B_IND, 0, 0, 13), (_JSET, "drop", 0, _ACK_RST)]
        if skips:
            body.append((_LD_H_IND, 0, 0, 2))  # destination port
    else:
        if proto == "tcp":
            body += [(_LD_B_ABS, 0, 0, 13), (_JSET, "drop", 0, _ACK_RST)]
        if skips:
            body.append((_LD_H_ABS, 0, 0, 2))
    body += [(_JEQ, "drop", 0, port) for port in skips]
    keep, drop = len(body), len(body) + 1
    program: list[Insn] = []
    for pc, (code, jt, jf, k) in enumerate(body):
        targets = {"drop": drop, "keep": keep}
        jt_off = targets[jt] - pc - 1 if isinstance(jt, str) else jt
        jf_off = targets[jf] - pc - 1 if isinstance(jf, str) else jf
        program.append((code, jt_off, jf_off, k))
    program += [(_RET, 0, 0, SNAP), (_RET, 0, 0, 0)]
    return program


def pack(program: list[Insn]) -> bytes:
    """The instructions as the kernel's ``struct sock_filter`` array (native byte order)."""
    return b"".join(struct.pack("=HBBI", *insn) for insn in program)
