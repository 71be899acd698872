"""The joined path verdicts in every report format and both languages: per listener the reach
and the chain, the router, the IPv6 addresses, the mappings elsewhere and the outside result;
router-controlled text stays inert (escaped, capped) in each format."""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime

import pytest

from mamori.audit.path import HostAddresses, Inside, join_paths
from mamori.model import Proto, ScanRecord, ScanStatus
from mamori.model.audit import FirewallDecision, Listener, Scope, Verdict
from mamori.model.path import (
    NatKind,
    OutsidePort,
    OutsideResult,
    OutsideState,
    PortMapping,
    RouterView,
)
from mamori.report import render

OPEN = FirewallDecision(Verdict.NO_FIREWALL, "none", "no ruleset loaded")
EVIL = "<script>alert(1)</script>|**x**"
HOME = "192.168.77.10"


def record() -> ScanRecord:
    router = RouterView(True, "upnp-igd2", "http://192.168.77.1:5000/ctl", "192.168.77.1",
                        "miniupnpd", "11.0.0.2", NatKind.PUBLIC,
                        (PortMapping(2222, Proto.TCP, HOME, 22, "Transmission", 0),
                         PortMapping(8080, Proto.TCP, HOME, 8080, EVIL, 0),
                         PortMapping(3389, Proto.TCP, "192.168.77.20", 3389, "rdp", 60)))
    insides = [Inside(Listener(Proto.TCP, "0.0.0.0", 22, Scope.ALL, 10, "sshd"), {4: OPEN}),
               Inside(Listener(Proto.TCP, "0.0.0.0", 6379, Scope.ALL, 11, "redis-server"),
                      {4: OPEN}),
               Inside(Listener(Proto.TCP, "::", 80, Scope.ALL, 12, "nginx"), {4: OPEN, 6: OPEN})]
    outside = (OutsideResult("http://11.0.0.1:8080", 6, "2a0e:8b00:77::10",
                             (OutsidePort(Proto.TCP, 80, OutsideState.OPEN),), None, "c1"),)
    paths = join_paths(insides, router, outside,
                       HostAddresses((HOME,), (("2a0e:8b00:77::10", "global"),)))
    now = datetime(2026, 12, 8, tzinfo=UTC)
    return ScanRecord(1, "check", ScanStatus.DONE, now, now, ("localhost",), {}, (), (),
                      paths=paths)


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_table_shows_reach_and_chain_per_listener(lang: str) -> None:
    out = render(record(), "table", width=400, lang=lang)
    title = "What the internet sees" if lang == "en" else "インターネットから見えるもの"
    assert title in out
    internet = "internet" if lang == "en" else "インターネット"
    lan = "LAN only" if lang == "en" else "LAN のみ"
    rows = {line.split()[0] + line.split()[3]: line for line in out.splitlines()
            if line.startswith("tcp/")}
    assert internet in rows["tcp/22IPv4"] and lan in rows["tcp/6379IPv4"]
    assert internet in rows["tcp/80IPv6"] and lan in rows["tcp/80IPv4"]
    hides = ("IPv6 exposes what NAT hides" if lang == "en"
             else "NAT が隠すものを IPv6 が晒している")
    assert hides in rows["tcp/80IPv6"]
    assert "no mapping to tcp/6379" in rows["tcp/6379IPv4"]
    assert "opened by UPnP, description 'Transmission', lease 0 = permanent" in out
    assert "192.168.77.20:3389" in out and "2a0e:8b00:77::10 (global)" in out
    opened = "open (reachable from outside)" if lang == "en" else "開いている (外部から届く)"
    assert f"tcp/80    {opened}" in out


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_markdown_html_sarif_and_json_carry_the_verdicts(lang: str) -> None:
    rec = record()
    md = render(rec, "markdown", lang=lang)
    assert "| tcp/22 on 0.0.0.0 | IPv4 | **" in md and "<script>" not in md
    html = render(rec, "html", lang=lang)
    assert 'class="mr-reach-internet"' in html and "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    sarif = json.loads(render(rec, "sarif", lang=lang))
    rows = sarif["runs"][0]["properties"]["paths"]
    assert {(r["listener"], r["family"], r["reach"]) for r in rows} >= {
        ("tcp/22 on 0.0.0.0", "IPv4", "internet"), ("tcp/6379 on 0.0.0.0", "IPv4", "lan"),
        ("tcp/80 on ::", "IPv6", "internet")}
    doc = json.loads(render(rec, "json", lang=lang))
    assert doc["schema"] == "mamori.scan/1.6"
    v = next(x for x in doc["paths"]["verdicts"] if x["port"] == 22)
    assert v["reach"] == "internet" and v["mapping"]["description"] == "Transmission"
    assert [s["name"] for s in v["steps"]] == ["bind", "host-firewall", "router", "nat",
                                               "outside"]


def test_the_json_paths_validate_against_the_published_schema() -> None:
    from pathlib import Path

    from jsonschema import Draft202012Validator

    schema = json.loads((Path(__file__).resolve().parents[2] / "docs" / "schema"
                         / "scan-v1.json").read_text(encoding="utf-8"))
    doc = json.loads(render(record(), "json"))
    assert doc["paths"]["router"]["mappings"] and doc["paths"]["outside"]
    Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(doc)
    doc["paths"]["verdicts"][0]["reach"] = "everywhere"
    assert list(Draft202012Validator(schema).iter_errors(doc))


@pytest.mark.parametrize("lang", ["en", "ja"])
@pytest.mark.parametrize("fmt", ["table", "markdown", "html", "sarif"])
def test_lease_0_reads_permanent_in_every_format(fmt: str, lang: str) -> None:
    out = html.unescape(render(record(), fmt, width=400, lang=lang))
    assert "description 'Transmission', lease 0 = permanent" in out
    assert "lease 60 s left" in out  # the other host's mapping, with a lease


def no_public_record() -> ScanRecord:
    router = RouterView(True, "upnp-igd1", "http://192.168.77.1:5000/ctl", "192.168.77.1",
                        "MiniUPnPd", None, NatKind.NO_PUBLIC, connection_status="Connected")
    paths = join_paths([Inside(Listener(Proto.TCP, "0.0.0.0", 22, Scope.ALL, 10, "sshd"),
                               {4: OPEN})], router, (), HostAddresses((HOME,), ()))
    now = datetime(2026, 12, 8, tzinfo=UTC)
    return ScanRecord(1, "check", ScanStatus.DONE, now, now, ("localhost",), {}, (), (),
                      paths=paths)


@pytest.mark.parametrize(("lang", "words"), [
    ("en", "the router reports no public IPv4 address (behind CGNAT or another NAT): not "
           "reachable over IPv4 from the internet, likely"),
    ("ja", "ルーターは公開 IPv4 アドレスを持っていないと報告している (CGNAT など別の NAT の内側): "
           "インターネットから IPv4 では届かない (推定)"),
])
@pytest.mark.parametrize("fmt", ["table", "markdown", "html"])
def test_no_public_ipv4_is_said_in_every_format(fmt: str, lang: str, words: str) -> None:
    text = html.unescape(render(no_public_record(), fmt, width=400, lang=lang))
    out = " ".join(text.replace("\\", "").split())  # Markdown escapes ( and )
    assert words in out
    assert "NAT unknown" not in out and "(unknown)" not in out


def test_no_public_ipv4_json_validates_against_the_published_schema() -> None:
    from pathlib import Path

    from jsonschema import Draft202012Validator

    schema = json.loads((Path(__file__).resolve().parents[2] / "docs" / "schema"
                         / "scan-v1.json").read_text(encoding="utf-8"))
    doc = json.loads(render(no_public_record(), "json"))
    assert doc["schema"] == "mamori.scan/1.6"
    router = doc["paths"]["router"]
    assert (router["nat"], router["connection_status"]) == ("no-public-ipv4", "Connected")
    Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(doc)
