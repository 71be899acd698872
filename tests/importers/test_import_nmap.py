"""`mamori import` of real nmap XML: nmap scans daemons this test starts on loopback, mamori
reads the file into the store (and runs its checks on what nmap found); hostile XML is refused
with one line and nothing stored."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import daemons as dm
from conftest import run_mamori
from listeners import Listener
from mamori.importers import MAX_BYTES, NmapImportError, parse_nmap_xml
from mamori.store import Store

HOST = "127.0.88.1"
STEADY, REDIS, SHUT = 16881, 16882, 16883


def _nmap(out: Path) -> None:
    nmap = shutil.which("nmap")
    if nmap is None:
        pytest.skip("nmap is not installed")
    # -n: no reverse DNS (tests never ask the outside resolver); -Pn: loopback is up.
    proc = subprocess.run(
        [nmap, "-n", "-Pn", "-sT", "-sV", "-p", f"{STEADY},{REDIS},{SHUT}", HOST, "-oX", str(out)],
        capture_output=True, text=True, timeout=180, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0


@pytest.fixture(scope="module")
def nmap_xml(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """nmap's XML of HOST with an accepting port, an open Redis, and a closed port; the
    Redis stays running for the checks mamori runs at import."""
    tmp = tmp_path_factory.mktemp("nmap")
    out = tmp / "nmap.xml"
    steady = Listener(STEADY, HOST)
    try:
        with dm.running(dm.start_redis, tmp, HOST, REDIS):
            _nmap(out)
            yield out
    finally:
        steady.close()


def test_the_parser_reads_what_nmap_says(nmap_xml: Path) -> None:
    run = parse_nmap_xml(nmap_xml.read_bytes())
    assert run.targets == (HOST,)
    assert "-sV" in run.args and run.version
    eps = {ep.port: ep for ep in run.hosts[0].endpoints}
    assert eps[REDIS].state.value == "open" and eps[REDIS].reason.value == "syn-ack"
    svc = eps[REDIS].service
    assert svc is not None and svc.name == "redis" and svc.confidence == "confirmed"
    assert svc.product is not None and "Redis" in svc.product
    assert svc.extra["nmap_method"] == "probed"
    assert eps[SHUT].state.value == "closed" and eps[SHUT].reason.value == "conn-refused"
    assert eps[STEADY].state.value == "open"


def test_import_with_checks_stores_the_run_and_finds_the_open_redis(
    nmap_xml: Path, tmp_path: Path
) -> None:
    db = str(tmp_path / "m.db")
    proc = run_mamori("import", str(nmap_xml), "--checks", "redis-unauthenticated",
                       "-f", "json", "--db", db)
    assert proc.returncode == 0, proc.stderr
    assert "imported" in proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["scan"]["kind"] == "import" and doc["scan"]["targets"] == [HOST]
    (finding,) = [c for c in doc["checks"] if c["check_id"] == "redis-unauthenticated"]
    assert finding["status"] == "finding" and finding["port"] == REDIS
    with Store.open(db) as store:
        record = store.get_scan(doc["scan"]["id"])
    assert record is not None and record.status.value == "done"
    assert record.options["source"] == "nmap-xml"
    by_port = {ep.port: ep for ep in record.hosts[0].endpoints}
    redis_svc = by_port[REDIS].service
    assert redis_svc is not None and redis_svc.product is not None
    assert "Redis" in redis_svc.product
    assert by_port[SHUT].state.value == "closed"
    assert [c.check_id for c in record.findings] == ["redis-unauthenticated"]


def test_all_checks_and_a_table(nmap_xml: Path, tmp_path: Path) -> None:
    db = str(tmp_path / "m.db")
    proc = run_mamori("import", str(nmap_xml), "--checks", "all", "--db", db)
    assert proc.returncode == 0, proc.stderr
    assert "redis" in proc.stdout.lower() and str(REDIS) in proc.stdout


def test_two_imports_diff_clean_and_bad_checks_are_refused(
    nmap_xml: Path, tmp_path: Path
) -> None:
    db = str(tmp_path / "m.db")
    for _ in range(2):
        assert run_mamori("import", str(nmap_xml), "--db", db).returncode == 0
    proc = run_mamori("diff", "--db", db, "-f", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["old"]["kind"] == "import" and (doc["old"]["id"], doc["new"]["id"]) == (1, 2)
    assert doc["ports"] == {"opened": [], "closed": [], "not_compared": []}
    bad = run_mamori("import", str(nmap_xml), "--checks", "no-such-check", "--db", db)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    with Store.open(db) as store:
        assert len(store.list_scans()) == 2


_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE nmaprun [
 <!ENTITY a "aaaaaaaaaa">
 <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
 <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
]>
<nmaprun args="&c;"><host><address addr="127.0.88.9" addrtype="ipv4"/></host></nmaprun>
"""
_EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE nmaprun SYSTEM "file:///etc/passwd">
<nmaprun><host><address addr="127.0.88.9" addrtype="ipv4"/></host></nmaprun>
"""
_EXT_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE nmaprun [<!ENTITY x SYSTEM "file:///etc/hostname">]>
<nmaprun args="&x;"/>
"""


@pytest.mark.parametrize(
    ("name", "body", "says"),
    [
        ("laughs.xml", _LAUGHS, "DTD"),
        ("external.xml", _EXTERNAL, "DTD"),
        ("entity.xml", _EXT_ENTITY, "DTD"),
        ("broken.xml", b"<nmaprun><host>", "well-formed"),
        ("other.xml", b"<html/>", "not nmap"),
    ],
)
def test_hostile_xml_is_refused_in_one_line_and_nothing_is_stored(
    tmp_path: Path, name: str, body: bytes, says: str
) -> None:
    with pytest.raises(NmapImportError, match=says):
        parse_nmap_xml(body)
    path = tmp_path / name
    path.write_bytes(body)
    db = str(tmp_path / "m.db")
    proc = run_mamori("import", str(path), "--db", db)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert says in line
    with Store.open(db) as store:
        assert store.list_scans() == []


def test_a_file_over_64_mib_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.xml"
    with path.open("wb") as f:  # sparse: no 64 MiB written to the disk
        f.write(b"<nmaprun>")
        f.truncate(MAX_BYTES + 1)
    db = str(tmp_path / "m.db")
    proc = run_mamori("import", str(path), "--db", db)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "64 MiB" in line
    with Store.open(db) as store:
        assert store.list_scans() == []
    with pytest.raises(NmapImportError, match="64 MiB"):
        parse_nmap_xml(b" " * (MAX_BYTES + 1))


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    proc = run_mamori("import", str(tmp_path / "nope.xml"), "--db", str(tmp_path / "m.db"))
    assert proc.returncode == 2 and "cannot read" in proc.stderr
