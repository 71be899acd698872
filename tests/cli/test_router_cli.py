"""`mamori router` input checks: one line on stderr, exit 2, nothing asked of any router."""

from __future__ import annotations

import json

import pytest

from conftest import run_mamori


@pytest.mark.parametrize(("args", "words"), [
    (("router", "close", "70000/tcp", "--yes"), "EXTERNAL_PORT/PROTO"),
    (("router", "close", "0/tcp", "--yes"), "EXTERNAL_PORT/PROTO"),
    (("router", "close", "80/icmp", "--yes"), "EXTERNAL_PORT/PROTO"),
    (("router", "close", "80", "--yes"), "EXTERNAL_PORT/PROTO"),
    (("router", "close", "tcp/80", "--yes"), "EXTERNAL_PORT/PROTO"),
    (("router", "close", "80/tcp", "--yes", "--gateway", "router.lan"), "IPv4 address"),
    (("router", "show", "--format", "xml"), "unknown --format 'xml'"),
    (("router", "show", "--gateway", "999.1.1.1"), "IPv4 address"),
    (("router", "show", "--gateway", "fd77::1"), "IPv4 address"),
])
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], words: str) -> None:
    done = run_mamori(*args, timeout=30)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mamori: error: "), done.stderr
    assert words in lines[0]
    assert done.stdout == ""


def test_close_without_terminal_or_yes_refuses_before_asking_anything() -> None:
    done = run_mamori("router", "close", "51413/tcp", "--gateway", "127.0.170.99",
                      input="y\n", timeout=30)
    assert done.returncode == 2
    assert "stdin is not a terminal; pass --yes" in done.stderr


def test_show_without_a_default_route_says_so() -> None:
    # the test namespace has loopback only: no default route, no gateway to ask
    done = run_mamori("router", "show", "--format", "json", timeout=30)
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    assert view["found"] is False
    assert view["error"] == "no IPv4 default route: no gateway to ask"
    table = run_mamori("router", "show", timeout=30)
    assert "router: none found (no IPv4 default route: no gateway to ask)" in table.stdout
