"""SNMPv2c GetBulkRequest (RFC 3416): the request an SNMP amplifier answers with many
variable bindings. Replies are ordinary Response PDUs: parse them with ``snmp.parse_response``.
"""

from __future__ import annotations

from mamori.protocols.snmp import _int, _oid, _tlv

MIB_2 = "1.3.6.1.2.1"
_GETBULK = 0xA5
_V2C = 1


def build_getbulk(oids: tuple[str, ...] = (MIB_2,), community: str = "public",
                  max_repetitions: int = 50, non_repeaters: int = 0,
                  request_id: int = 0x4D4D) -> bytes:
    """A v2c GetBulkRequest walking from each of ``oids`` (next objects, not the OIDs
    themselves) for up to ``max_repetitions`` rows. Raises ValueError for values the PDU
    cannot carry (repetitions outside 0..2147483647, a malformed OID)."""
    if not 0 <= max_repetitions <= 2**31 - 1 or not 0 <= non_repeaters <= 2**31 - 1:
        raise ValueError("repetitions and non-repeaters are 0..2147483647")
    try:
        varbinds = b"".join(_tlv(0x30, _oid(o) + b"\x05\x00") for o in oids)
    except (ValueError, IndexError):
        raise ValueError(f"malformed OID in {oids!r}") from None
    pdu = _tlv(_GETBULK, _int(request_id) + _int(non_repeaters) + _int(max_repetitions)
               + _tlv(0x30, varbinds))
    return _tlv(0x30, _int(_V2C) + _tlv(0x04, community.encode()) + pdu)
