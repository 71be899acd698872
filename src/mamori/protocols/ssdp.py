"""SSDP (UPnP discovery): the M-SEARCH request; replies are HTTP-over-UDP (see http.py)."""

from __future__ import annotations


def build_msearch(target: str = "ssdp:all", mx: int = 1,
                  host: str = "239.255.255.250:1900") -> bytes:
    """An M-SEARCH request. Sent unicast to one address, it still asks the same question."""
    return (
        "M-SEARCH * HTTP/1.1\r\n"
        f"HOST: {host}\r\n"
        'MAN: "ssdp:discover"\r\n'
        f"MX: {mx}\r\n"
        f"ST: {target}\r\n"
        "\r\n"
    ).encode("ascii")
