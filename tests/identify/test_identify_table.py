"""The probe table checks its own rules (like ssh-audit's table tests) and rejects bad input."""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest
import yaml

from mamori.identify import registry
from mamori.identify.engine import identify_udp, udp_payload
from mamori.identify.table import (
    DEFAULT_PATH,
    REQUIRED_SERVICES,
    TableError,
    check_table,
    compile_table,
    first_match,
    load_table,
    unescape,
)


@pytest.fixture(scope="module")
def raw() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load(DEFAULT_PATH.read_text())


def test_table_is_sound() -> None:
    assert check_table(load_table()) == []


def test_every_required_service_has_a_confirmed_rule() -> None:
    table = load_table()
    confirmed = {m.service for p in table.probes for m in p.matchers if m.confidence == "confirmed"}
    assert REQUIRED_SERVICES <= confirmed
    for name in ("ssh", "ftp", "smtp", "pop3", "imap", "telnet", "http", "dns", "redis",
                 "memcached", "mongodb", "postgresql", "mysql", "smb", "rsync", "mqtt", "vnc",
                 "rdp", "snmp", "ntp", "ssdp", "mdns", "elasticsearch", "docker", "afp"):
        assert name in REQUIRED_SERVICES


def test_examples_name_their_rules_through_the_engine() -> None:
    """UDP examples go through identify_udp on the hinted port and come out as that service."""
    table = load_table()
    for probe in table.udp():
        for matcher in probe.matchers:
            for example in matcher.examples:
                port = min(probe.ports)
                service = identify_udp(port, example)
                assert service is not None, (probe.name, example)
                assert service.name == matcher.service, (probe.name, example)


def test_over_broad_matchers_do_not_fire_on_yes_men() -> None:
    """nuclei's trick: replies that say "yes" to everything must not confirm specific services."""
    table = load_table()
    yes_men = [b"+OK\r\n", b"OK\r\n", b"\r\n", b"yes\n", b"\x00" * 64, b"\xff" * 64,
               b"200 OK\r\n", b"HELLO\r\n", b"A" * 512]
    for reply in yes_men:
        for probe in table.probes:
            hit = first_match(probe.matchers, reply)
            assert hit is None or hit[0].confidence == "likely", (probe.name, reply, hit[0].service)


def test_udp_payloads() -> None:
    for port in (53, 123, 161, 1900, 5353, 11211, 137):
        assert udp_payload(port), port
    assert udp_payload(9) == b""
    assert udp_payload(53)[2:4] == b"\x00\x00"  # version.bind without recursion


def test_identify_udp_unknown_and_empty() -> None:
    assert identify_udp(53, b"") is None
    svc = identify_udp(53, b"\x01\x02garbage")
    assert svc is not None and svc.name == "unknown" and svc.confidence == "likely"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("probes", 0, "colour"), "blue", "Extra inputs"),
        (("probes", 0, "matchers", 0, "bogus"), 1, "Extra inputs"),
        (("probes", 0, "matchers", 0, "pattern"), "(unclosed", "bad regex"),
        (("probes", 1, "builder"), "os.system", "unknown builder"),
        (("probes", 0, "matchers", 0, "parser"), "__import__", "unknown parser"),
        (("probes", 0, "read"), "eval", "unknown reader"),
        (("probes", 0, "matchers", 0, "examples"), [], "at least 1"),
        (("probes", 0, "matchers", 0, "examples"), ["\\q"], "bad escape"),
        (("probes", 1, "ports"), [0], "1-65535"),
        (("version",), 2, "version"),
    ],
)
def test_bad_tables_are_rejected(raw: dict, path: tuple, value: object, message: str) -> None:  # type: ignore[type-arg]
    data = copy.deepcopy(raw)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(TableError, match=message):
        compile_table(data)


def test_one_null_probe_and_unique_names(raw: dict) -> None:  # type: ignore[type-arg]
    data = copy.deepcopy(raw)
    data["probes"].append(copy.deepcopy(data["probes"][0]))
    with pytest.raises(TableError, match="duplicate"):
        compile_table(data)


def test_unescape() -> None:
    assert unescape(r"a\r\n\t\0\\\x41\x7f'") == b"a\r\n\t\x00\\A\x7f'"
    for bad in (r"\x4", r"\u0041", "\\", "é" * 0 + "\u0100"):
        with pytest.raises(ValueError):
            unescape(bad)


def test_registry_is_explicit() -> None:
    """No dispatch by attribute name or eval anywhere in identify/."""
    for path in Path(registry.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("getattr", "eval", "exec", "__import__"), path
    assert all(callable(f) for f in registry.BUILDERS.values())
    assert all(callable(f) for f in registry.PARSERS.values())
