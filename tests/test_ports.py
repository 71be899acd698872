"""Port specifications (nmap's -p / --exclude-ports / --top-ports) and the bundled tables."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mamori.model import Proto
from mamori.ports import (
    PortSpec,
    PortSpecError,
    exclude_ports,
    parse_port_list,
    parse_port_spec,
    ranked_ports,
    select_ports,
    top_ports,
    top_ports_tcp,
    top_ports_udp,
)

NMAP_SERVICES = Path("/usr/share/nmap/nmap-services")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("22", (22,)),
        ("22,80,443", (22, 80, 443)),
        ("80,22,80", (22, 80)),
        ("1000-1003", (1000, 1001, 1002, 1003)),
        ("5-5", (5,)),
        (" 22 , 25 ", (22, 25)),
        ("0022", (22,)),
        ("65530-", (65530, 65531, 65532, 65533, 65534, 65535)),
        ("-3", (1, 2, 3)),
        ("1-3,2-4", (1, 2, 3, 4)),
    ],
)
def test_port_lists(spec: str, expected: tuple[int, ...]) -> None:
    assert parse_port_list(spec) == expected


def test_all_ports() -> None:
    everything = tuple(range(1, 65536))
    assert parse_port_list("-") == everything
    assert parse_port_list("1-") == everything
    assert parse_port_list("-65535") == everything


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("0", "port 0"),
        ("0-10", "port 0"),
        ("65536", "above 65535"),
        ("1-65536", "above 65535"),
        ("80-22", "reversed range"),
        ("http", "not a port"),
        ("22;80", "not a port"),
        ("1-2-3", "not a port"),
        ("", "empty"),
        ("   ", "empty"),
        ("22,,80", "empty item"),
        ("22,", "empty item"),
        ("9" * 50, "too large"),
        ("２２", "not a port"),  # fullwidth digits are not ASCII digits
        ("+22", "not a port"),
    ],
)
def test_bad_specs_raise_one_line_errors(spec: str, fragment: str) -> None:
    with pytest.raises(PortSpecError) as info:
        parse_port_spec(spec)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


def test_protocol_prefixes() -> None:
    assert parse_port_spec("T:22,U:53,161") == PortSpec(tcp=(22,), udp=(53, 161))
    assert parse_port_spec("U:53,T:80-81") == PortSpec(tcp=(80, 81), udp=(53,))
    assert parse_port_spec("t:22,u:53") == PortSpec(tcp=(22,), udp=(53,))
    # Before any prefix: TCP, or both protocols with default_both (nmap's reading).
    assert parse_port_spec("22,U:53") == PortSpec(tcp=(22,), udp=(53,))
    assert parse_port_spec("22,U:53", default_both=True) == PortSpec(tcp=(22,), udp=(22, 53))
    tcp, udp = parse_port_spec("T:1-3")
    assert (tcp, udp) == ((1, 2, 3), ())
    for bad in ("S:22", "T:", "U:,22", "P:6"):
        with pytest.raises(PortSpecError):
            parse_port_spec(bad)
    with pytest.raises(PortSpecError, match="prefix not allowed"):
        parse_port_list("T:22")


def test_exclusions_and_selection() -> None:
    assert exclude_ports([1, 2, 3, 2024], [2024, 9]) == (1, 2, 3)
    full = select_ports("tcp", "-", exclude="2024")
    assert len(full) == 65534 and 2024 not in full
    assert select_ports("udp", "T:22,U:53,161", exclude="161") == (53,)
    assert select_ports("tcp", None, top=10, exclude="80") == tuple(
        p for p in top_ports(10) if p != 80
    )
    assert select_ports(Proto.TCP) == top_ports(1000)
    with pytest.raises(PortSpecError):
        select_ports("tcp", "22", top=10)
    with pytest.raises(PortSpecError):
        top_ports(0)


def test_bundled_tables_are_sane() -> None:
    for proto in ("tcp", "udp"):
        ranked = ranked_ports(proto)
        assert len(ranked) == len(set(ranked)) > 1000
        assert all(1 <= p <= 65535 for p in ranked)
    assert ranked_ports("tcp")[:3] == (80, 23, 443)
    assert top_ports_tcp(1000) == tuple(sorted(ranked_ports("tcp")[:1000]))
    assert len(top_ports_udp(100)) == 100
    assert 161 in top_ports_udp(20) and 53 in top_ports_udp(20)
    assert top_ports(10**6) == tuple(sorted(ranked_ports("tcp")))


@pytest.mark.skipif(not NMAP_SERVICES.exists(), reason="nmap-services not installed")
def test_tables_match_nmap_services() -> None:
    text = NMAP_SERVICES.read_text(encoding="utf-8", errors="replace")
    for proto in ("tcp", "udp"):
        freq: dict[int, float] = {}
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            fields = line.split("\t")
            port, _, p = fields[1].partition("/")
            if p == proto:
                freq[int(port)] = max(freq.get(int(port), 0.0), float(fields[2]))
        expected = tuple(sorted(freq, key=lambda q: (-freq[q], q)))
        assert ranked_ports(proto) == expected


def _nmap_chosen_ports(n: int) -> set[int]:
    # nmap names the ports it chose in its XML header. It does scan them: on a loopback
    # address of this suite's range, never port 2024 (the machine's own).
    out = subprocess.run(
        [
            "nmap",
            "-sT",
            "--top-ports",
            str(n),
            "--exclude-ports",
            "2024",
            "-n",
            "-Pn",
            "-T5",
            "--max-retries",
            "0",
            "-oX",
            "-",
            "127.0.10.250",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout
    m = re.search(r' services="([^"]*)"', out)
    if m is None:
        pytest.skip("this nmap does not name the chosen ports in its XML output")
    return set(parse_port_list(m.group(1)))


@pytest.mark.skipif(shutil.which("nmap") is None, reason="nmap not installed")
@pytest.mark.parametrize("n", [1, 10, 100, 1000, 2000])
def test_top_ports_equal_nmaps_choice(n: int) -> None:
    assert set(top_ports(n)) - {2024} == _nmap_chosen_ports(n)


# ---- hypothesis ---------------------------------------------------------------------------

port = st.integers(min_value=1, max_value=65535)


def _render(ports: set[int]) -> str:
    """Render a set as a compact spec (ranges where consecutive)."""
    items: list[str] = []
    run: list[int] = []
    for p in sorted(ports):
        if run and p == run[-1] + 1:
            run.append(p)
            continue
        if run:
            items.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [p]
    if run:
        items.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(items)


@given(st.sets(port, min_size=1, max_size=300))
def test_render_then_parse_round_trips(ports: set[int]) -> None:
    assert parse_port_list(_render(ports)) == tuple(sorted(ports))


@given(st.lists(st.tuples(port, port), min_size=1, max_size=20))
def test_ranges_cover_exactly_their_span(pairs: list[tuple[int, int]]) -> None:
    spec = ",".join(f"{min(a, b)}-{max(a, b)}" for a, b in pairs)
    expected: set[int] = set()
    for a, b in pairs:
        expected.update(range(min(a, b), max(a, b) + 1))
    result = parse_port_list(spec)
    assert result == tuple(sorted(expected))


@given(port, port)
def test_reversed_ranges_are_rejected(a: int, b: int) -> None:
    lo, hi = min(a, b), max(a, b)
    if lo == hi:
        assert parse_port_list(f"{hi}-{lo}") == (lo,)
    else:
        with pytest.raises(PortSpecError, match="reversed"):
            parse_port_list(f"{hi}-{lo}")


@given(st.text(max_size=60))
def test_arbitrary_text_never_raises_anything_else(text: str) -> None:
    try:
        spec = parse_port_spec(text)
    except PortSpecError as exc:
        assert "\n" not in str(exc)
        return
    for ports in spec:
        assert list(ports) == sorted(set(ports))
        assert all(1 <= p <= 65535 for p in ports)


@given(st.text(alphabet="0123456789-,TU: ", max_size=40))
def test_spec_alphabet_fuzz(text: str) -> None:
    try:
        tcp, udp = parse_port_spec(text, default_both=True)
    except PortSpecError:
        return
    assert all(1 <= p <= 65535 for p in (*tcp, *udp))


@given(st.sets(port, max_size=50), st.sets(port, max_size=50))
def test_exclusion_is_set_difference(a: set[int], b: set[int]) -> None:
    assert exclude_ports(a, b) == tuple(sorted(a - b))
