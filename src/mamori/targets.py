"""Target specifications: what the user typed, turned into addresses to probe.

Accepted forms, as nmap users expect them:

* an IPv4 or IPv6 address: ``127.0.0.1``, ``::1``, ``[::1]``
* a CIDR block: ``127.0.3.0/26``, ``fd00::/120``
* an octet range: ``127.0.1.1-20``, ``127.0.1-2.1-5``, or a full range ``127.0.0.1-127.0.0.9``
* a host name, resolved once (``localhost``)

Everything here is pure except :func:`resolve_name`, which asks the system resolver and is
passed in as a parameter so tests can replace it.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Iterator, Sequence

from mamori.model import Target

MAX_HOSTS = 65_536  # one /16: beyond that a typo (/8 for /28) is likelier than intent


class TargetSpecError(ValueError):
    """A target or exclusion the user typed cannot be understood; the message is one line."""


Resolver = Callable[[str], list[str]]


def resolve_name(name: str) -> list[str]:
    """Return the addresses ``name`` resolves to (IPv4 first), or raise TargetSpecError."""
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetSpecError(f"cannot resolve host name {name!r}: {exc}") from None
    v4 = [str(i[4][0]) for i in infos if i[0] == socket.AF_INET]
    v6 = [str(i[4][0]).split("%", 1)[0] for i in infos if i[0] == socket.AF_INET6]
    addresses = list(dict.fromkeys(v4 + v6))
    if not addresses:
        raise TargetSpecError(f"host name {name!r} has no IPv4 or IPv6 address")
    return addresses


def _octet_values(part: str, spec: str) -> list[int]:
    values: list[int] = []
    for piece in part.split(","):
        lo_s, sep, hi_s = piece.partition("-")
        if not lo_s.isdigit() or (sep and not hi_s.isdigit()):
            raise TargetSpecError(f"bad octet {piece!r} in target {spec!r}")
        lo, hi = int(lo_s), int(hi_s) if sep else int(lo_s)
        if lo > 255 or hi > 255 or lo > hi:
            raise TargetSpecError(f"bad octet range {piece!r} in target {spec!r}")
        values.extend(range(lo, hi + 1))
    return values


def _expand_octets(spec: str) -> Iterator[str]:
    parts = spec.split(".")
    if len(parts) != 4:
        raise TargetSpecError(f"not an address, range or name: {spec!r}")
    octets = [_octet_values(p, spec) for p in parts]
    count = len(octets[0]) * len(octets[1]) * len(octets[2]) * len(octets[3])
    if count > MAX_HOSTS:
        raise TargetSpecError(f"target {spec!r} has {count} addresses (limit {MAX_HOSTS})")
    for a in octets[0]:
        for b in octets[1]:
            for c in octets[2]:
                for d in octets[3]:
                    yield f"{a}.{b}.{c}.{d}"


def _expand_full_range(spec: str) -> list[str] | None:
    """``A-B`` where both ends are whole addresses of the same family, or None."""
    left, sep, right = spec.partition("-")
    if not sep:
        return None
    try:
        lo, hi = ipaddress.ip_address(left), ipaddress.ip_address(right)
    except ValueError:
        return None
    if lo.version != hi.version or int(lo) > int(hi):
        raise TargetSpecError(f"bad address range {spec!r}")
    count = int(hi) - int(lo) + 1
    if count > MAX_HOSTS:
        raise TargetSpecError(f"target {spec!r} has {count} addresses (limit {MAX_HOSTS})")
    return [str(ipaddress.ip_address(int(lo) + i) if lo.version == 4 else
                ipaddress.IPv6Address(int(lo) + i)) for i in range(count)]


def _looks_numeric_v4(spec: str) -> bool:
    return all(ch.isdigit() or ch in ".-," for ch in spec) and spec.count(".") >= 1


def normalise_address(text: str) -> str:
    """Return the canonical spelling of one address (IPv4-mapped IPv6 → IPv4, no brackets)."""
    raw = text.strip()
    if raw.startswith("[") and raw.endswith("]"):
        raw = raw[1:-1]
    addr = ipaddress.ip_address(raw.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def expand_spec(spec: str, resolver: Resolver = resolve_name) -> list[Target]:
    """Return the targets one spec stands for, in order; raise TargetSpecError when it is bad."""
    text = spec.strip()
    if not text:
        raise TargetSpecError("empty target")
    try:
        return [Target(normalise_address(text))]
    except ValueError:
        pass
    if "/" in text:
        try:
            net = ipaddress.ip_network(text.strip("[]"), strict=False)
        except ValueError:
            raise TargetSpecError(f"bad network {spec!r}") from None
        if net.num_addresses > MAX_HOSTS:
            raise TargetSpecError(
                f"network {spec!r} has {net.num_addresses} addresses (limit {MAX_HOSTS})"
            )
        return [Target(str(a)) for a in net]
    full = _expand_full_range(text)
    if full is not None:
        return [Target(a) for a in full]
    if _looks_numeric_v4(text):
        return [Target(a) for a in _expand_octets(text)]
    if any(ch in text for ch in " /\\@") or text.startswith("-"):
        raise TargetSpecError(f"not an address, range or name: {spec!r}")
    # A host name: probe its first address, as nmap does, and keep the name for reports
    # (TLS SNI, HTTP Host).
    return [Target(resolver(text)[0], hostname=text)]


def expand_targets(
    specs: Sequence[str],
    excludes: Iterable[str] = (),
    resolver: Resolver = resolve_name,
) -> list[Target]:
    """Return the unique targets of ``specs`` minus ``excludes``, first-seen order.

    Raises TargetSpecError on any bad spec, when nothing is left, or when there are more
    than MAX_HOSTS addresses.
    """
    seen: dict[str, Target] = {}
    for spec in specs:
        for target in expand_spec(spec, resolver):
            seen.setdefault(target.address, target)
            if len(seen) > MAX_HOSTS:
                raise TargetSpecError(f"more than {MAX_HOSTS} target addresses")
    excluded: set[str] = set()
    # --exclude takes a comma-separated list, as nmap's does.
    for spec in excludes:
        for piece in spec.split(","):
            if piece.strip():
                excluded.update(t.address for t in expand_spec(piece, resolver))
    result = [t for a, t in seen.items() if a not in excluded]
    if not result:
        raise TargetSpecError("no targets left to scan")
    return result
