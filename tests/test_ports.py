"""Port specifications (nmap's -p / --exclude-ports / --top-ports) and the port tables."""

from __future__ import annotations

import itertools
import json
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
    nmap_services_candidates,
    parse_port_list,
    parse_port_spec,
    port_table,
    rank_nmap_services,
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


def _own(proto: str) -> tuple[int, ...]:
    # No candidate paths: the lookup finds no nmap-services and falls back to mamori's table.
    return port_table(proto, ()).ports


def test_own_tables_are_sane() -> None:
    for proto in ("tcp", "udp"):
        table = port_table(proto, ())
        assert "mamori's own table" in table.source
        ranked = table.ports
        assert len(ranked) == len(set(ranked)) >= 1000
        assert all(1 <= p <= 65535 for p in ranked)
    assert _own("tcp")[:3] == (22, 80, 443)
    assert 161 in _own("udp")[:20] and 53 in _own("udp")[:20]


def test_no_nmap_services_means_mamoris_own_table(tmp_path: Path) -> None:
    empty = tmp_path / "share" / "nmap"
    empty.mkdir(parents=True)
    table = port_table("tcp", (str(empty / "nmap-services"),))
    assert table == port_table("tcp", ())
    # A file that is not nmap-services (too few ports) is not taken either.
    (empty / "nmap-services").write_text("http\t80/tcp\t0.48\n", encoding="ascii")
    assert port_table("tcp", (str(empty / "nmap-services"),)).source.startswith("mamori's own")
    # The override: empty means "no nmap"; a path is the only place looked at.
    assert nmap_services_candidates({"MAMORI_NMAP_SERVICES": "", "NMAPDIR": "/x"}) == ()
    assert nmap_services_candidates({"MAMORI_NMAP_SERVICES": "/a/b"}) == ("/a/b",)


def test_nmap_search_order_follows_nmap() -> None:
    found = nmap_services_candidates({"NMAPDIR": "/n", "HOME": "/h", "PATH": ""})
    assert found[:2] == ("/n/nmap-services", "/h/.nmap/nmap-services")
    assert "/usr/share/nmap/nmap-services" in found


def test_own_table_is_not_nmaps() -> None:
    if not NMAP_SERVICES.exists():
        pytest.skip("nmap-services not installed: nothing to compare with")
    text = NMAP_SERVICES.read_text(encoding="utf-8", errors="replace")
    for proto in ("tcp", "udp"):
        own, nmap = _own(proto), rank_nmap_services(text, proto)
        assert own != nmap
        assert own[:1000] != nmap[:1000]
        # No run of nmap's order in the top 1000 longer than a handful of ports (a copy would
        # follow it for hundreds).
        place = {p: i for i, p in enumerate(nmap)}
        longest = run = 1
        for a, b in itertools.pairwise(own[:1000]):
            run = run + 1 if a in place and b in place and place[b] == place[a] + 1 else 1
            longest = max(longest, run)
        assert longest <= 10, (proto, longest)


def test_rank_nmap_services_parses_and_orders() -> None:
    text = (
        "# comment\n"
        "http\t80/tcp\t0.484143\t# World Wide Web HTTP\n"
        "telnet\t23/tcp\t0.221265\n"
        "a\t7/tcp\t0.001\nb\t5/tcp\t0.001\n"  # a tie: the lower port first
        "dns\t53/udp\t0.2\n"
        "junk line\n"
        "x\t99999/tcp\t0.9\ny\tzz/tcp\t0.9\nz\t8/tcp\tnan\nw\t9/tcp\tfast\n"
    )
    assert rank_nmap_services(text, "tcp") == (80, 23, 5, 7)
    assert rank_nmap_services(text, "udp") == (53,)
    assert rank_nmap_services("", "tcp") == ()


@pytest.mark.skipif(not NMAP_SERVICES.exists(), reason="nmap-services not installed")
def test_installed_nmap_services_is_used() -> None:
    table = port_table("tcp")
    assert table.source == f"nmap-services ({NMAP_SERVICES})"
    assert table.ports[:3] == (80, 23, 443)
    assert top_ports_tcp(1000) == tuple(sorted(ranked_ports("tcp")[:1000]))
    assert len(top_ports_udp(100)) == 100
    assert top_ports(10**6) == tuple(sorted(ranked_ports("tcp")))


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
    assert port_table("tcp").source.startswith("nmap-services")
    assert set(top_ports_tcp(n)) - {2024} == _nmap_chosen_ports(n)


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


# ---- the CLI: which table a scan took its ports from -------------------------------------------

CLI_ADDR = "127.0.10.251"  # nothing listens here; the ports only have to be chosen and recorded


def _scan_top10(tmp_path: Path, env: dict[str, str]) -> dict[str, object]:
    from conftest import run_mamori

    proc = run_mamori("scan", CLI_ADDR, "--top-ports", "10", "--no-identify", "-f", "json",
                      "--db", str(tmp_path / "m.db"), env=env)
    assert proc.returncode == 0, proc.stderr
    options = json.loads(proc.stdout)["scan"]["options"]
    assert isinstance(options, dict)
    return options


def test_scan_without_nmap_uses_and_records_mamoris_table(tmp_path: Path) -> None:
    options = _scan_top10(tmp_path, {"MAMORI_NMAP_SERVICES": ""})
    assert options["port_table"] == "mamori's own table (ports-tcp.txt)"
    expected = sorted(_own("tcp")[:10])
    assert parse_port_list(options["probed"]["tcp"]) == tuple(expected)  # type: ignore[index]


@pytest.mark.skipif(not NMAP_SERVICES.exists(), reason="nmap-services not installed")
def test_scan_with_nmap_uses_and_records_nmaps_table(tmp_path: Path) -> None:
    options = _scan_top10(tmp_path, {"MAMORI_NMAP_SERVICES": str(NMAP_SERVICES)})
    assert options["port_table"] == f"nmap-services ({NMAP_SERVICES})"
    text = NMAP_SERVICES.read_text(encoding="utf-8", errors="replace")
    expected = sorted(rank_nmap_services(text, "tcp")[:10])
    assert parse_port_list(options["probed"]["tcp"]) == tuple(expected)  # type: ignore[index]


@given(st.text(alphabet="0123456789/tcpudp.\t #xe-\n", max_size=300))
def test_rank_nmap_services_never_raises(text: str) -> None:
    for proto in ("tcp", "udp"):
        ranked = rank_nmap_services(text, proto)
        assert len(ranked) == len(set(ranked))
        assert all(1 <= p <= 65535 for p in ranked)


def test_scan_with_an_unusable_nmap_services_file_is_bad_input(tmp_path: Path) -> None:
    from conftest import run_mamori

    short = tmp_path / "nmap-services"
    short.write_text("http\t80/tcp\t0.48\n", encoding="ascii")
    for bad in (tmp_path / "none", short):
        db = tmp_path / "m.db"
        proc = run_mamori("scan", CLI_ADDR, "--top-ports", "10", "--no-identify",
                          "--db", str(db), env={"MAMORI_NMAP_SERVICES": str(bad)})
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("mamori: error: MAMORI_NMAP_SERVICES=")
        assert proc.stderr.count("\n") == 1 and not db.exists()
        # -p needs no table: the same environment scans.
        ok = run_mamori("scan", CLI_ADDR, "-p", "4", "--no-identify", "--db", str(db),
                        env={"MAMORI_NMAP_SERVICES": str(bad)})
        assert ok.returncode == 0, ok.stderr
        db.unlink()
