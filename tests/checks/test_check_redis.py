"""redis-unauthenticated against a real redis-server: open, then with a password."""

from __future__ import annotations

from pathlib import Path

import pytest

import daemons as dm
from checks_helpers import assert_finding, assert_passed, run_check

pytestmark = pytest.mark.daemon
HOST = "127.0.51.1"


def test_open_redis_is_a_confirmed_finding(tmp_path: Path) -> None:
    with dm.running(dm.start_redis, tmp_path, HOST, 16390):
        result = run_check("redis-unauthenticated", HOST, 16390, "redis")
    assert_finding(result)
    assert result.evidence is not None
    assert result.evidence.facts["redis_version"].startswith("7.")
    assert "INFO" in (result.evidence.request or "")


def test_redis_with_a_password_passes(tmp_path: Path) -> None:
    with dm.running(dm.start_redis, tmp_path, HOST, 16391, password="s3cret-for-tests"):
        result = run_check("redis-unauthenticated", HOST, 16391, "redis")
    assert_passed(result)


def test_nothing_listening_is_not_tested_never_passed() -> None:
    result = run_check("redis-unauthenticated", HOST, 16392, "redis")
    assert result.status.value == "not-tested"
    assert "refused" in result.summary


def test_a_server_that_closes_on_info_is_not_tested() -> None:
    from threaded_server import ThreadedServer

    with ThreadedServer(HOST, 16393, lambda conn: conn.recv(1024)):
        result = run_check("redis-unauthenticated", HOST, 16393, "redis")
    assert result.status.value == "not-tested", result.summary
