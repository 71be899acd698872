"""rpcbind and SOCKS 5 are named from what answers, on any port."""

from __future__ import annotations

import asyncio
from pathlib import Path

import daemons as dm
import fixtures_sharing as fs
import fixtures_smtp as fsm
from mamori.identify.engine import identify_tcp

HOST = "127.0.68.1"


def test_portmapper_is_identified_on_an_unusual_port() -> None:
    with fs.RpcService(HOST, 11111, 12049, []):
        service, _ = asyncio.run(identify_tcp(HOST, 11111, budget=10))
    assert service is not None and service.name == "rpcbind"


def test_dante_socks5_is_identified_on_an_unusual_port(tmp_path: Path) -> None:
    with dm.running(fsm.start_danted, tmp_path, "127.0.68.2", 11080, mode="open"):
        service, _ = asyncio.run(identify_tcp("127.0.68.2", 11080, budget=10))
    assert service is not None and service.name == "socks5"
