"""The visitor's address: the TCP peer, or what a configured trusted proxy says it is.

Pure. X-Forwarded-For / Forwarded are read only when the immediate peer is a trusted proxy;
the chain is then walked from the right, skipping trusted hops, and the first untrusted hop
is the visitor (anything to its left was written by the visitor and proves nothing). A
trusted proxy that sends no usable header is an error, never "the proxy itself": checking
the proxy's address would probe the operator's own machine.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from mamori.serve.scope import AddressError, IPAddress, IPNetwork, in_any, normalise

MAX_HOPS = 32
X_FORWARDED_FOR = "x-forwarded-for"
FORWARDED = "forwarded"


class ProxyHeaderError(ValueError):
    """A trusted proxy's header is missing or unreadable; the message says which."""


def _strip_port(hop: str) -> str:
    """``1.2.3.4:5678`` -> ``1.2.3.4``; ``[v6]:port`` -> ``[v6]``; bare v6 unchanged."""
    hop = hop.strip().strip('"')
    if hop.startswith("["):
        end = hop.find("]")
        return hop[: end + 1] if end > 0 else hop
    if hop.count(":") == 1:
        return hop.split(":", 1)[0]
    return hop


def _xff_hops(values: Iterable[str]) -> list[str]:
    return [h.strip() for v in values for h in v.split(",") if h.strip()]


def _forwarded_hops(values: Iterable[str]) -> list[str]:
    hops: list[str] = []
    for value in values:
        for element in value.split(","):
            found = None
            for pair in element.split(";"):
                key, sep, val = pair.strip().partition("=")
                if sep and key.strip().lower() == "for":
                    found = val.strip()
            if found is None:
                raise ProxyHeaderError("a Forwarded element has no for= parameter")
            hops.append(found)
    return hops


def _parse_hop(hop: str) -> IPAddress:
    text = _strip_port(hop)
    if text.lower() == "unknown" or text.startswith("_"):
        raise ProxyHeaderError(f"the proxy hides the client address ({hop[:40]!r})")
    try:
        return normalise(text)
    except AddressError:
        raise ProxyHeaderError(f"the forwarded address {hop[:40]!r} is not an IP address") from None


def client_address(
    peer: str,
    headers: Sequence[tuple[bytes, bytes]],
    trusted: Sequence[IPNetwork],
    header: str = X_FORWARDED_FOR,
) -> IPAddress:
    """The address to check for a request from ``peer`` with raw ASGI ``headers``.

    Raises AddressError when the peer itself is not an address, ProxyHeaderError when a
    trusted proxy's header is missing, too long or unreadable.
    """
    ip = normalise(peer)
    if not trusted or not in_any(ip, trusted):
        return ip  # headers from an untrusted peer are the visitor's own words: ignored
    wanted = header.encode("latin-1")
    values = [v.decode("latin-1") for k, v in headers if k.lower() == wanted]
    hops = _forwarded_hops(values) if header == FORWARDED else _xff_hops(values)
    if not hops:
        raise ProxyHeaderError(f"the trusted proxy {ip} sent no {header} header")
    if len(hops) > MAX_HOPS:
        raise ProxyHeaderError(f"{header} has more than {MAX_HOPS} hops")
    for hop in reversed(hops):
        hop_ip = _parse_hop(hop)
        if not in_any(hop_ip, trusted):
            return hop_ip
    return _parse_hop(hops[0])  # every hop is a trusted proxy: the first one is the origin
