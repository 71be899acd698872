"""NAT-PMP (RFC 6886) external-address request and PCP (RFC 6887) ANNOUNCE (pure).

NAT-PMP opcode 0 asks the gateway's external IPv4 address and changes nothing. PCP has no
read-only "what is my external address" (only a MAP would tell, and a MAP creates state),
so mamori sends ANNOUNCE, which only says whether a PCP server is there.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

NATPMP_PORT = 5351
NATPMP_NETWORK_FAILURE = 3  # RFC 6886: e.g. the gateway has no usable external address
NATPMP_RESULTS = {0: "success", 1: "unsupported version", 2: "not authorized/refused",
                  3: "network failure", 4: "out of resources", 5: "unsupported opcode"}
PCP_RESULTS = {0: "success", 1: "unsupported version", 2: "not authorized",
               3: "malformed request", 4: "unsupported opcode"}


class NatPmpFormatError(ValueError):
    """Not a NAT-PMP/PCP answer to our request; ``str()`` is one line."""


def build_external_address_request() -> bytes:
    """Version 0, opcode 0."""
    return b"\x00\x00"


@dataclass(frozen=True, slots=True)
class NatPmpAnswer:
    result: int
    epoch: int
    address: str | None  # None when result != 0

    @property
    def result_text(self) -> str:
        return NATPMP_RESULTS.get(self.result, f"result {self.result}")


def parse_external_address(data: bytes) -> NatPmpAnswer:
    """The answer to opcode 0 (12 bytes: 0, 128, result, epoch, address)."""
    if len(data) < 8 or data[0] != 0 or data[1] != 128:
        raise NatPmpFormatError(f"not a NAT-PMP external address answer ({len(data)} bytes)")
    result, epoch = struct.unpack("!HI", data[2:8])
    if result != 0:
        return NatPmpAnswer(result, epoch, None)
    if len(data) < 12:
        raise NatPmpFormatError("NAT-PMP answer too short for an address")
    return NatPmpAnswer(result, epoch, str(ipaddress.IPv4Address(data[8:12])))


def build_pcp_announce(client: str) -> bytes:
    """PCP version 2, ANNOUNCE (opcode 0), lifetime 0, from ``client`` (as IPv6/v4-mapped)."""
    ip = ipaddress.ip_address(client)
    raw = ip.packed if ip.version == 6 else b"\x00" * 10 + b"\xff\xff" + ip.packed
    return struct.pack("!BBHI", 2, 0, 0, 0) + raw


@dataclass(frozen=True, slots=True)
class PcpAnswer:
    version: int  # 2: a PCP server; 0: a NAT-PMP-only gateway said "unsupported version"
    result: int
    epoch: int

    @property
    def result_text(self) -> str:
        return PCP_RESULTS.get(self.result, f"result {self.result}")


def parse_pcp_announce(data: bytes) -> PcpAnswer:
    """A PCP ANNOUNCE response (24 bytes), or a NAT-PMP gateway's version refusal."""
    if len(data) >= 4 and data[0] == 0 and data[1] == 128:
        result = struct.unpack("!H", data[2:4])[0]
        return PcpAnswer(0, result, 0)
    if len(data) < 24 or data[0] != 2 or data[1] != 0x80:
        raise NatPmpFormatError(f"not a PCP ANNOUNCE answer ({len(data)} bytes)")
    result = data[3]
    epoch = struct.unpack("!I", data[8:12])[0]
    return PcpAnswer(2, result, epoch)
