"""nmap's file habits on `mamori scan`: -oN/-oX/-oG/-oA write nmap's formats (the XML valid
against Debian's nmap.dtd, read by Debian's `ndiff` and by `mamori import`), -iL reads target
lists, and a target that looks like a file is refused before any name lookup."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import daemons as dm
from conftest import run_mamori
from mamori.cli.common import UsageProblem
from mamori.cli.scan_io import looks_like_file, nmap_outputs, parse_target_list, read_target_list

HOST = "127.0.93.1"
REDIS, LATER = 16931, 16932  # LATER opens between the two runs
NMAP_DTD = Path("/usr/share/nmap/nmap.dtd")


def _scan(cwd: Path, db: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_mamori("scan", HOST, "-p", f"{REDIS},{LATER}", "--checks",
                      "redis-unauthenticated", "--db", str(db), "-f", "json", *extra)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Run 1 (-oA old): a real Redis on REDIS, LATER closed. Run 2 (-oA new): a second Redis
    opened on LATER. Both into one store."""
    tmp = tmp_path_factory.mktemp("nmapfiles")
    db = tmp / "m.db"
    (tmp / "r1").mkdir()
    (tmp / "r2").mkdir()
    with dm.running(dm.start_redis, tmp / "r1", HOST, REDIS):
        first = _scan(tmp, db, "-oA", str(tmp / "old"))
        assert first.returncode == 0, first.stderr
        with dm.running(dm.start_redis, tmp / "r2", HOST, LATER):
            second = _scan(tmp, db, "-oA", str(tmp / "new"))
            assert second.returncode == 0, second.stderr
    yield tmp


def test_oA_writes_the_three_files_and_the_report_still_goes_to_stdout(two_runs: Path) -> None:
    for ext in ("nmap", "xml", "gnmap"):
        assert (two_runs / f"old.{ext}").stat().st_size > 0
    normal = (two_runs / "old.nmap").read_text()
    assert f"Host {HOST}" in normal and str(REDIS) in normal and "redis" in normal.lower()
    gnmap = (two_runs / "new.gnmap").read_text().splitlines()
    (ports_line,) = [ln for ln in gnmap if ln.startswith(f"Host: {HOST} ") and "Ports:" in ln]
    assert f"{REDIS}/open/tcp//redis//" in ports_line and f"{LATER}/open/tcp//redis//" in ports_line
    assert gnmap[0].startswith("#") and gnmap[-1].startswith("#")
    old_gnmap = (two_runs / "old.gnmap").read_text()
    assert f"{LATER}/open" not in old_gnmap and "Ignored State: closed (1)" in old_gnmap
    assert not (two_runs / "X").exists()


def test_the_xml_is_valid_against_nmaps_dtd(two_runs: Path) -> None:
    etree = pytest.importorskip("lxml.etree")
    if not NMAP_DTD.exists():
        pytest.skip("nmap's DTD is not installed: run scripts/install-test-deps")
    dtd = etree.DTD(str(NMAP_DTD))
    for name in ("old.xml", "new.xml"):
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
        doc = etree.parse(str(two_runs / name), parser)
        assert dtd.validate(doc), (name, dtd.error_log.filter_from_errors())
        ports = {(p.get("portid"), p.find("state").get("state"), p.find("service").get("name"))
                 for p in doc.iterfind("host/ports/port")}
        assert (str(REDIS), "open", "redis") in ports
        (info,) = doc.iterfind("scaninfo")
        assert (info.get("type"), info.get("services")) == ("connect", f"{REDIS}-{LATER}")
        scripts = {(s.getparent().get("portid"), s.get("id")) for s in doc.iterfind(".//script")}
        assert (str(REDIS), "mamori-redis-unauthenticated") in scripts  # the finding


def test_debians_ndiff_reports_the_port_opened_between_the_runs(two_runs: Path) -> None:
    ndiff = shutil.which("ndiff")
    if ndiff is None:
        pytest.skip("ndiff is not installed: run scripts/install-test-deps")
    proc = subprocess.run([ndiff, str(two_runs / "old.xml"), str(two_runs / "new.xml")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # 1: the scans differ
    added = [ln for ln in proc.stdout.splitlines() if ln.startswith("+")]
    assert any(f"{LATER}/tcp" in ln and "open" in ln for ln in added), proc.stdout
    # REDIS stayed open (its version line may differ between runs); only LATER changed state
    assert not any(f"{REDIS}/tcp" in ln and "open" not in ln for ln in proc.stdout.splitlines())
    assert any(ln.startswith("-Not shown: 1 closed") for ln in proc.stdout.splitlines())
    same = subprocess.run([ndiff, str(two_runs / "new.xml"), str(two_runs / "new.xml")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert same.returncode == 0, same.stdout + same.stderr


def test_mamori_import_reads_its_own_xml_back(two_runs: Path, tmp_path: Path) -> None:
    proc = run_mamori("import", str(two_runs / "new.xml"), "-f", "json",
                      "--db", str(tmp_path / "i.db"))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["scan"]["kind"] == "import" and doc["scan"]["targets"] == [HOST]
    (host,) = doc["hosts"]
    by_port = {ep["port"]: ep for ep in host["endpoints"]}
    assert by_port[REDIS]["state"] == "open" and by_port[LATER]["state"] == "open"
    assert by_port[REDIS]["service"]["name"] == "redis"


_SPY = """
import json, os, socket
_log = os.environ["MAMORI_TEST_LOOKUP_LOG"]
def _spy(host, *a, **k):
    with open(_log, "a") as f:
        f.write(json.dumps(str(host)) + "\\n")
    raise socket.gaierror(socket.EAI_NONAME, "lookups are refused in this test")
socket.getaddrinfo = _spy
socket.gethostbyname = _spy
"""


@pytest.mark.parametrize("args", [
    ("-o", "X", "out.xml"),        # nmap's -oX written as two words
    ("out.xml",),
    ("reports/base",),
    ("scan-targets.txt",),
])
def test_a_target_that_looks_like_a_file_is_refused_before_any_lookup(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    spy = tmp_path / "spy"
    spy.mkdir()
    (spy / "sitecustomize.py").write_text(_SPY)
    log = tmp_path / "lookups"
    db = tmp_path / "m.db"
    proc = run_mamori("scan", *args, "-p", "1", "--db", str(db),
                      env={"PYTHONPATH": str(spy), "MAMORI_TEST_LOOKUP_LOG": str(log)})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("mamori: error:")
    assert "looks like a file" in line or "-oX" in line
    assert not log.exists(), log.read_text()  # no name was looked up
    assert not db.exists() and not (tmp_path / "X").exists()


def test_a_file_that_exists_is_refused_as_a_target(tmp_path: Path) -> None:
    (tmp_path / "hosts").write_text(f"{HOST}\n")
    proc = run_mamori("scan", str(tmp_path / "hosts"), "-p", "1",
                      "--db", str(tmp_path / "m.db"))
    assert proc.returncode == 2 and "use -iL FILE" in proc.stderr
    assert looks_like_file("127.0.0.0/30") is False and looks_like_file("127.0.0.1") is False


def test_iL_reads_targets_from_a_file_and_from_stdin(tmp_path: Path) -> None:
    listing = tmp_path / "targets.lst"
    listing.write_text(f"# my hosts\n\n{HOST}   # the lab\n  127.0.93.2\t127.0.93.3\n")
    db = tmp_path / "m.db"
    proc = run_mamori("scan", "-iL", str(listing), "-p", str(REDIS), "--no-checks",
                      "--db", str(db), "-f", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["scan"]["targets"] == [HOST, "127.0.93.2", "127.0.93.3"]
    piped = run_mamori("scan", "-iL", "-", "-p", str(REDIS), "--no-checks", "--db", str(db),
                       "-f", "json", input="# none here\n127.0.93.4\n")
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout)["scan"]["targets"] == ["127.0.93.4"]
    empty = run_mamori("scan", "-iL", "-", "--db", str(db), input="# only a comment\n")
    assert empty.returncode == 2 and "no targets in it" in empty.stderr


def test_target_list_and_output_rules() -> None:
    assert parse_target_list("a b\n#c\n\n d # e\n") == ["a", "b", "d"]
    assert read_target_list(Path("-"), io.StringIO("127.0.0.1\n")) == ["127.0.0.1"]
    outs = nmap_outputs(None, Path("mine.xml"), None, Path("base"), None)
    assert outs.files() == (("normal", Path("base.nmap")), ("xml", Path("mine.xml")),
                            ("grepable", Path("base.gnmap")))
    for bad in ((None, Path("-"), None, None, None), (None, None, None, None, Path("X")),
                (Path("/no/such/dir/f"), None, None, None, None)):
        with pytest.raises(UsageProblem):
            nmap_outputs(*bad)
