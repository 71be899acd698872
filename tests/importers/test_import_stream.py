"""`mamori import` streams: a 20,000-host nmap XML file imports with bounded memory and in
reasonable time; host addresses that are not IP addresses are refused (never resolved) and
bad ports reported, not dropped silently; a file broken half-way stores nothing."""

from __future__ import annotations

import ipaddress
import itertools
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ROOT, run_mamori
from mamori.importers import ImportProblem, NmapHeader, NmapImportError, iter_nmap_xml
from mamori.model import HostResult
from mamori.store import Store

HEAD = (b'<?xml version="1.0"?>\n<!DOCTYPE nmaprun>\n<nmaprun scanner="nmap" args="nmap -sT" '
        b'start="1700000000" version="7.93" xmloutputversion="1.05">\n'
        b'<scaninfo type="connect" protocol="tcp" numservices="3" services="22,80,443"/>\n'
        b'<verbose level="0"/><debugging level="0"/>\n')
TAIL = b'<runstats><finished time="1" elapsed="1"/><hosts total="1"/></runstats></nmaprun>\n'
FILLER = "x" * 900  # an ssh-hostkey script's output: what makes real files large


def _host(addr: str, ports: str, addrtype: str = "ipv4", name: str | None = None) -> bytes:
    names = f'<hostname name="{name}" type="user"/>' if name else ""
    return (f'<host><status state="up" reason="user-set" reason_ttl="0"/>'
            f'<address addr="{addr}" addrtype="{addrtype}"/><hostnames>{names}</hostnames>'
            f"<ports>{ports}</ports></host>\n").encode()


def _port(portid: str, state: str = "open", service: str = "ssh") -> str:
    return (f'<port protocol="tcp" portid="{portid}"><state state="{state}" reason="syn-ack" '
            f'reason_ttl="0"/><service name="{service}" method="probed" conf="10"/></port>')


def _write_big(path: Path, hosts: int) -> None:
    with path.open("wb") as f:
        f.write(HEAD)
        for i in range(hosts):
            addr = f"127.0.{64 + i // 256}.{i % 256}"
            ports = (
                '<extraports state="closed" count="997"><extrareasons reason="conn-refused" '
                'count="997" proto="tcp"/></extraports>'
                '<port protocol="tcp" portid="22"><state state="open" reason="syn-ack" '
                'reason_ttl="0"/><service name="ssh" product="OpenSSH" version="9.2p1" '
                'method="probed" conf="10"><cpe>cpe:/a:openbsd:openssh:9.2p1</cpe></service>'
                f'<script id="ssh-hostkey" output="{FILLER}"><table><elem key="type">ssh-rsa'
                "</elem></table></script></port>"
                + _port("80", service="http") + _port("443", "filtered", "https")
            )
            f.write(_host(addr, ports, name=f"h{i}.lab"))
        f.write(TAIL)


# The peak resident size of this process's own memory: VmHWM, not getrusage's ru_maxrss, which
# keeps the high-water mark of the process before exec (subprocess forks pytest, whose resident
# size late in a full run is already past the bound).
_MEASURE = """
import atexit, json, sys, time
start, out = time.monotonic(), sys.argv[1]
def report():
    with open("/proc/self/status") as status:
        hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    with open(out, "w") as f:
        json.dump({"maxrss_kb": hwm, "seconds": time.monotonic() - start}, f)
atexit.register(report)
sys.argv = ["mamori", *sys.argv[2:]]
from mamori.cli.app import main
main()
"""

HOSTS = 20_000
MAX_RSS_MB = 200  # the whole-file parser took ~500 MB for this file (800 MB for 63 MB)
MAX_SECONDS = 150  # the whole-file import took minutes; this one takes ~25 s


@pytest.mark.timeout(400)
def test_a_20k_host_file_imports_with_bounded_memory_and_in_reasonable_time(
    tmp_path: Path,
) -> None:
    big = tmp_path / "big.xml"
    _write_big(big, HOSTS)
    assert big.stat().st_size > 30 * 1024 * 1024
    (tmp_path / "measure.py").write_text(_MEASURE)
    stats, db = tmp_path / "stats.json", tmp_path / "m.db"
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "measure.py"), str(stats), "import", str(big),
         "-f", "json", "--db", str(db)],
        capture_output=True, text=True, timeout=380, cwd=ROOT, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    measured = json.loads(stats.read_text())
    assert measured["maxrss_kb"] < MAX_RSS_MB * 1024, measured
    assert measured["seconds"] < MAX_SECONDS, measured
    assert f"{HOSTS} hosts: too many to print" in proc.stderr and proc.stdout == ""
    with Store.open(str(db)) as store:
        (summary,) = store.list_scans()
        assert summary.open_ports == 2 * HOSTS and len(summary.targets) == HOSTS
        record = store.get_scan(summary.id)
    assert record is not None and record.status.value == "done" and not record.errors
    last = record.hosts[-1]
    assert last.address == f"127.0.{64 + (HOSTS - 1) // 256}.{(HOSTS - 1) % 256}"
    assert last.hostname == f"h{HOSTS - 1}.lab" and last.not_shown == {"tcp": {"closed": 997}}
    ssh = last.endpoints[0].service
    assert ssh is not None and ssh.product == "OpenSSH" and ssh.version == "9.2p1"


def test_hosts_are_yielded_while_the_document_is_still_being_read() -> None:
    first = HEAD + _host("127.0.94.1", _port("22"))
    fed: list[int] = []

    def chunks() -> Iterator[bytes]:
        for i, chunk in enumerate((first, _host("127.0.94.2", _port("22")), TAIL)):
            fed.append(i)
            yield chunk

    items = iter_nmap_xml(chunks())
    header = next(items)
    assert isinstance(header, NmapHeader) and header.args == "nmap -sT"
    assert header.info["scaninfo"][0]["services"] == "22,80,443"
    host = next(items)
    assert isinstance(host, HostResult) and host.address == "127.0.94.1"
    assert fed == [0]  # the second host has not been read yet
    assert [h.address for h in items if isinstance(h, HostResult)] == ["127.0.94.2"]


_SPY = """
import json, os, socket
def _spy(host, *a, **k):
    with open(os.environ["MAMORI_TEST_LOOKUP_LOG"], "a") as f:
        f.write(json.dumps(str(host)) + "\\n")
    raise socket.gaierror(socket.EAI_NONAME, "lookups are refused in this test")
socket.getaddrinfo = _spy
socket.gethostbyname = _spy
"""


def test_host_addresses_that_are_not_ip_addresses_are_refused_and_never_resolved(
    tmp_path: Path,
) -> None:
    doc = (HEAD + _host("evil.example", _port("22")) + _host("not-an-ip", _port("80"), "ipv6")
           + _host("127.0.94.7", _port("1", "closed")) + TAIL)
    path = tmp_path / "names.xml"
    path.write_bytes(doc)
    spy = tmp_path / "spy"
    spy.mkdir()
    (spy / "sitecustomize.py").write_text(_SPY)
    log, db = tmp_path / "lookups", tmp_path / "m.db"
    proc = run_mamori("import", str(path), "--checks", "all", "-f", "json", "--db", str(db),
                      env={"PYTHONPATH": str(spy), "MAMORI_TEST_LOOKUP_LOG": str(log)})
    assert proc.returncode == 0, proc.stderr
    assert "2 entries not imported" in proc.stderr
    assert "'evil.example' is not an IP address" in proc.stderr
    out = json.loads(proc.stdout)
    assert out["scan"]["targets"] == ["127.0.94.7"]
    assert [h["address"] for h in out["hosts"]] == ["127.0.94.7"]
    assert not log.exists(), log.read_text()
    with Store.open(str(db)) as store:
        record = store.get_scan(out["scan"]["id"])
    assert record is not None
    details = sorted(e.detail for e in record.errors)
    assert details == ["host address 'evil.example' is not an IP address: refused",
                       "host address 'not-an-ip' is not an IP address: refused"]
    assert {e.probe for e in record.errors} == {"import:nmap-xml"}


def test_bad_ports_are_counted_named_and_stored_as_errors(tmp_path: Path) -> None:
    ports = "".join(_port(p) for p in ("22", "0", "70000", "abc", "-5"))
    path = tmp_path / "ports.xml"
    path.write_bytes(HEAD + _host("127.0.94.8", ports) + TAIL)
    db = tmp_path / "m.db"
    proc = run_mamori("import", str(path), "-f", "json", "--db", str(db))
    assert proc.returncode == 0, proc.stderr
    (note,) = [ln for ln in proc.stderr.splitlines() if "not imported" in ln]
    assert "4 entries not imported" in note
    assert "bad port '0'/tcp" in note and "bad port '70000'/tcp" in note and "'abc'" in note
    out = json.loads(proc.stdout)
    (host,) = out["hosts"]
    assert [ep["port"] for ep in host["endpoints"]] == [22]
    with Store.open(str(db)) as store:
        record = store.get_scan(out["scan"]["id"])
    assert record is not None and len(record.errors) == 4
    assert all(e.address == "127.0.94.8" and e.port is None for e in record.errors)


def test_a_flood_of_bad_entries_is_counted_but_stored_only_up_to_a_bound(tmp_path: Path) -> None:
    ports = "".join(_port(str(70000 + i)) for i in range(150))
    path = tmp_path / "flood.xml"
    path.write_bytes(HEAD + _host("127.0.94.9", ports + _port("22")) + TAIL)
    db = tmp_path / "m.db"
    proc = run_mamori("import", str(path), "-f", "json", "--db", str(db))
    assert proc.returncode == 0, proc.stderr
    assert "150 entries not imported" in proc.stderr
    with Store.open(str(db)) as store:
        (summary,) = store.list_scans()
        record = store.get_scan(summary.id)
    assert record is not None and len(record.errors) == 101
    assert record.errors[-1].detail.startswith("50 more problems in the file not stored")


def test_a_file_broken_half_way_stores_nothing(tmp_path: Path) -> None:
    path = tmp_path / "cut.xml"
    path.write_bytes(HEAD + _host("127.0.94.10", _port("22")) + b'<host><status state="up"')
    db = tmp_path / "m.db"
    proc = run_mamori("import", str(path), "--db", str(db))
    assert proc.returncode == 2 and "well-formed" in proc.stderr
    with Store.open(str(db)) as store:
        assert store.list_scans() == []


def test_the_parser_names_each_problem() -> None:
    items = list(iter_nmap_xml([HEAD, _host("127.0.94.11", _port("99999") + _port("22")),
                                _host("127.0.94.11", _port("23")), TAIL]))
    problems = [i.detail for i in items if isinstance(i, ImportProblem)]
    assert problems == ["127.0.94.11: bad port '99999'/tcp: not 1-65535",
                        "127.0.94.11: listed again: only its first <host> is kept"]


_DOC = (HEAD + _host("127.0.94.12", _port("22") + _port("0"), name="a.lab")
        + _host("::1", _port("80", "closed", "http"), "ipv6") + TAIL)


@given(cuts=st.lists(st.integers(min_value=1, max_value=len(_DOC) - 1), max_size=12))
@settings(max_examples=200, deadline=None)
def test_where_the_chunks_are_cut_changes_nothing(cuts: list[int]) -> None:
    bounds = [0, *sorted(set(cuts)), len(_DOC)]
    chunks = [_DOC[a:b] for a, b in itertools.pairwise(bounds)]
    assert list(iter_nmap_xml(chunks)) == list(iter_nmap_xml([_DOC]))


@given(at=st.integers(min_value=0, max_value=len(_DOC) - 1), byte=st.binary(min_size=1,
       max_size=3))
@settings(max_examples=300, deadline=None)
def test_a_mutated_document_is_read_or_refused_never_a_crash(at: int, byte: bytes) -> None:
    mutated = _DOC[:at] + byte + _DOC[at + 1:]
    try:
        items = list(iter_nmap_xml([mutated]))
    except NmapImportError:
        return
    for item in items:
        if isinstance(item, HostResult):
            assert all(0 < ep.port <= 65535 for ep in item.endpoints)
            ipaddress.ip_address(item.address)  # only IP addresses get through
