"""Port specifications as nmap's ``-p``, ``--exclude-ports`` and ``--top-ports`` read them.

Pure parsing plus the frequency table behind ``--top-ports``: nmap's ``nmap-services`` read at
run time when nmap is installed, else mamori's own table (``data/ports-*.txt``, docs/ports.md).
Every function returns sorted tuples of unique port numbers; bad input raises ``PortSpecError`` (a
``ValueError``) with a one-line message that quotes the offending piece.

Syntax (nmap's): comma-separated items, each ``N``, ``N-M``, ``N-`` (to 65535), ``-M`` (from 1)
or ``-`` (1-65535). ``T:`` and ``U:`` switch the protocol for the items that follow; items before
any prefix apply to both TCP and UDP.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import NamedTuple

from mamori.model import Proto

__all__ = [
    "MAX_PORT",
    "PortSpec",
    "PortSpecError",
    "PortTable",
    "exclude_ports",
    "nmap_services_candidates",
    "parse_port_list",
    "parse_port_spec",
    "port_table",
    "rank_nmap_services",
    "ranked_ports",
    "select_ports",
    "top_ports",
    "top_ports_tcp",
    "top_ports_udp",
]

MAX_PORT = 65535
# Longer than any sensible spec ("-" covers everything); bounds the work on hostile input.
MAX_SPEC_LEN = 100_000

_ITEM = re.compile(r"([0-9]*)(-?)([0-9]*)", re.ASCII)
_PREFIX = re.compile(r"([A-Za-z]):", re.ASCII)


class PortSpecError(ValueError):
    """A port specification that cannot be read; the message is one line."""


class PortSpec(NamedTuple):
    """Ports per protocol, each a sorted tuple of unique numbers; unpacks as ``tcp, udp``."""

    tcp: tuple[int, ...] = ()
    udp: tuple[int, ...] = ()

    def for_proto(self, proto: Proto | str) -> tuple[int, ...]:
        """Return the ports of ``proto`` ("tcp" or "udp")."""
        return self.tcp if Proto(proto) is Proto.TCP else self.udp


def _show(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _port(digits: str, item: str) -> int:
    if len(digits) > 6:  # also keeps int() away from huge digit strings
        raise PortSpecError(f"port number too large in {_show(item)} (max {MAX_PORT})")
    value = int(digits)
    if value == 0:
        raise PortSpecError(f"port 0 is not allowed in {_show(item)} (ports are 1-{MAX_PORT})")
    if value > MAX_PORT:
        raise PortSpecError(f"port {value} in {_show(item)} is above {MAX_PORT}")
    return value


def _item_range(item: str) -> range:
    """Return the ports of one item such as ``80``, ``1-1024``, ``1-``, ``-1024`` or ``-``."""
    m = _ITEM.fullmatch(item)
    if m is None or item == "":
        raise PortSpecError(f"not a port or range: {_show(item)}")
    first, dash, last = m.groups()
    if not dash:
        port = _port(first, item)
        return range(port, port + 1)
    low = _port(first, item) if first else 1
    high = _port(last, item) if last else MAX_PORT
    if low > high:
        raise PortSpecError(f"reversed range {_show(item)}: {low} is above {high}")
    return range(low, high + 1)


def _split(text: str) -> list[str]:
    if len(text) > MAX_SPEC_LEN:
        raise PortSpecError(f"port specification longer than {MAX_SPEC_LEN} characters")
    stripped = text.strip()
    if not stripped:
        raise PortSpecError("empty port specification")
    items = [part.strip() for part in stripped.split(",")]
    if any(not part for part in items):
        raise PortSpecError(f"empty item in port specification {_show(stripped)}")
    return items


def _collect(ranges: Iterable[range]) -> tuple[int, ...]:
    seen: set[int] = set()
    for r in ranges:
        seen.update(r)
    return tuple(sorted(seen))


def parse_port_list(text: str) -> tuple[int, ...]:
    """Parse ``"22,80,1000-2000"`` (no protocol prefixes) into sorted unique ports.

    Raises PortSpecError on an empty spec, garbage, port 0, ports above 65535, reversed ranges
    and on ``T:``/``U:`` prefixes (use parse_port_spec for those).
    """
    ranges = []
    for item in _split(text):
        if _PREFIX.match(item):
            raise PortSpecError(f"protocol prefix not allowed here: {_show(item)}")
        ranges.append(_item_range(item))
    return _collect(ranges)


def parse_port_spec(text: str, *, default_both: bool = False) -> PortSpec:
    """Parse a ``-p`` value with optional ``T:``/``U:`` prefixes into a PortSpec (tcp, udp).

    A prefix holds until the next one. Items before the first prefix are TCP ports, or ports
    of both protocols with ``default_both`` (nmap's reading, right for --exclude-ports).
    Raises PortSpecError as parse_port_list does, and for other prefixes (nmap's S: and P:).
    """
    tcp: list[range] = []
    udp: list[range] = []
    current: tuple[list[range], ...] = (tcp, udp) if default_both else (tcp,)
    for raw in _split(text):
        item = raw
        m = _PREFIX.match(item)
        if m is not None:
            letter = m.group(1).upper()
            if letter == "T":
                current = (tcp,)
            elif letter == "U":
                current = (udp,)
            else:
                raise PortSpecError(f"unsupported protocol prefix {letter + ':'!r} in {_show(raw)}")
            item = item[m.end() :].strip()
            if not item:
                raise PortSpecError(f"protocol prefix without ports: {_show(raw)}")
        rng = _item_range(item)
        for bucket in current:
            bucket.append(rng)
    return PortSpec(tcp=_collect(tcp), udp=_collect(udp))


def exclude_ports(ports: Iterable[int], excluded: Iterable[int]) -> tuple[int, ...]:
    """Return ``ports`` minus ``excluded``, sorted and unique."""
    drop = set(excluded)
    return tuple(sorted({p for p in ports if p not in drop}))


def _read_data(name: str) -> str:
    # A plain file next to this module in every normal install; importlib.resources (slow to
    # import: it costs every CLI start-up ~40 ms) only for zipped installs.
    path = os.path.join(os.path.dirname(__file__), "data", name)
    if os.path.exists(path):
        with open(path, encoding="ascii") as fh:
            return fh.read()
    from importlib import resources

    return resources.files("mamori").joinpath("data", name).read_text(encoding="ascii")


# An nmap-services row: name, port/proto, open-frequency, optional comment; tabs or spaces.
_NMAP_ROW = {
    proto: re.compile(
        rf"^[^#\s]\S*[ \t]+([0-9]{{1,5}})/{proto.value}[ \t]+([0-9][0-9.eE+-]*)",
        re.ASCII | re.MULTILINE,
    )
    for proto in Proto
}


def rank_nmap_services(text: str, proto: Proto | str) -> tuple[int, ...]:
    """Return the ports of ``proto`` in an ``nmap-services`` text, most frequently open first.

    nmap's own ``--top-ports`` order: descending open-frequency (third column), ties by
    ascending port. Lines that do not parse are skipped; the result may be empty.
    """
    freq: dict[int, float] = {}
    # One regex pass over the whole file: half the time of splitting 27,000 lines.
    for number, text_ratio in _NMAP_ROW[Proto(proto)].findall(text):
        try:
            ratio = float(text_ratio)
        except ValueError:
            continue
        port = int(number)
        if 1 <= port <= MAX_PORT and math.isfinite(ratio) and ratio > freq.get(port, -1.0):
            freq[port] = ratio
    return tuple(sorted(freq, key=lambda q: (-freq[q], q)))


def nmap_services_candidates(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Return where nmap's ``nmap-services`` may be, in nmap's own search order.

    ``$MAMORI_NMAP_SERVICES`` (a file; empty means "use mamori's own table") overrides the
    search. Otherwise: ``$NMAPDIR``, ``~/.nmap``, ``../share/nmap`` next to the ``nmap`` on
    ``$PATH``, then the usual install prefixes. Nothing is run.
    """
    env = os.environ if env is None else env
    if "MAMORI_NMAP_SERVICES" in env:
        forced = env["MAMORI_NMAP_SERVICES"]
        return (forced,) if forced else ()
    dirs: list[str] = []
    if env.get("NMAPDIR"):
        dirs.append(env["NMAPDIR"])
    if env.get("HOME"):
        dirs.append(os.path.join(env["HOME"], ".nmap"))
    for entry in env.get("PATH", "").split(os.pathsep):
        if entry and os.path.isfile(os.path.join(entry, "nmap")):
            dirs.append(os.path.join(os.path.dirname(entry.rstrip("/")), "share", "nmap"))
            break
    dirs += ["/usr/share/nmap", "/usr/local/share/nmap", "/opt/homebrew/share/nmap"]
    return tuple(dict.fromkeys(os.path.join(d, "nmap-services") for d in dirs))


class PortTable(NamedTuple):
    """A frequency table: ports most often open first, and where it came from."""

    ports: tuple[int, ...]
    source: str


# Fewer ports than this in an nmap-services file: not a usable table (truncated, foreign).
_MIN_NMAP_PORTS = 1000


def _nmap_table(proto: Proto, candidates: Iterable[str]) -> PortTable | None:
    for path in candidates:
        try:
            with open(path, "rb") as fh:
                raw = fh.read(8_000_000)  # nmap 7.9x's file is ~1 MB
        except OSError:
            continue
        ports = rank_nmap_services(raw.decode("utf-8", "replace"), proto)
        if len(ports) >= _MIN_NMAP_PORTS:
            return PortTable(ports, f"nmap-services ({path})")
    return None


def _own_table(proto: Proto) -> PortTable:
    name = f"ports-{proto.value}.txt"
    try:
        text = _read_data(name)
    except (OSError, UnicodeDecodeError) as exc:
        raise RuntimeError(f"bundled port table {name} unreadable: {exc}") from exc
    ports: list[int] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not line.isascii() or not line.isdigit() or not 1 <= int(line) <= MAX_PORT:
            raise RuntimeError(f"bundled port table {name} line {lineno}: {line[:20]!r}")
        ports.append(int(line))
    if len(set(ports)) != len(ports) or not ports:
        raise RuntimeError(f"bundled port table {name} is empty or has duplicates")
    return PortTable(tuple(ports), f"mamori's own table ({name})")


@lru_cache(maxsize=8)
def port_table(
    proto: Proto | str = Proto.TCP, candidates: tuple[str, ...] | None = None
) -> PortTable:
    """Return the frequency table ``--top-ports`` takes its ports from, for ``proto``.

    nmap's ``nmap-services`` when one is installed (so ``--top-ports N`` picks what nmap's
    does), else mamori's own table (data/ports-*.txt, see docs/ports.md). ``candidates``
    defaults to nmap_services_candidates(). Raises PortSpecError when $MAMORI_NMAP_SERVICES
    names a file that is not a usable nmap-services (the user asked for that file), and
    RuntimeError when mamori's own table is missing or malformed (a packaging bug).
    """
    proto = Proto(proto)
    paths = nmap_services_candidates() if candidates is None else candidates
    found = _nmap_table(proto, paths)
    if found is None and candidates is None and os.environ.get("MAMORI_NMAP_SERVICES"):
        raise PortSpecError(
            f"MAMORI_NMAP_SERVICES={_show(os.environ['MAMORI_NMAP_SERVICES'])} is not a readable"
            f" nmap-services file with at least {_MIN_NMAP_PORTS} {proto.value} ports"
        )
    return found or _own_table(proto)


def ranked_ports(proto: Proto | str = Proto.TCP) -> tuple[int, ...]:
    """Return the ports of port_table(proto), most frequently open first."""
    return port_table(proto).ports


def top_ports_tcp(n: int) -> tuple[int, ...]:
    """Return the ``n`` most frequently open TCP ports, sorted (see top_ports)."""
    return top_ports(n, Proto.TCP)


def top_ports_udp(n: int) -> tuple[int, ...]:
    """Return the ``n`` most frequently open UDP ports, sorted (see top_ports)."""
    return top_ports(n, Proto.UDP)


def top_ports(n: int, proto: Proto | str = Proto.TCP) -> tuple[int, ...]:
    """Return the ``n`` most frequently open ports of ``proto`` (as nmap's --top-ports), sorted.

    ``n`` above the table's size returns the whole table. Raises PortSpecError for n < 1.
    """
    if n < 1:
        raise PortSpecError(f"--top-ports needs a number of at least 1, got {n}")
    return tuple(sorted(ranked_ports(proto)[:n]))


def select_ports(
    proto: Proto | str,
    spec: str | None = None,
    top: int | None = None,
    exclude: str | None = None,
) -> tuple[int, ...]:
    """Return the ports to sweep for ``proto`` from the CLI's -p / --top-ports / --exclude-ports.

    ``spec`` and ``top`` are exclusive; with neither, the top 1000 (nmap's default). In
    ``spec`` and ``exclude`` (same syntax), items without a prefix count for every protocol,
    as in nmap. Raises PortSpecError.
    """
    if spec is not None and top is not None:
        raise PortSpecError("give either a port list or --top-ports, not both")
    if spec is not None:
        ports = parse_port_spec(spec, default_both=True).for_proto(proto)
    else:
        ports = top_ports(1000 if top is None else top, proto)
    if exclude:
        ports = exclude_ports(ports, parse_port_spec(exclude, default_both=True).for_proto(proto))
    return ports
