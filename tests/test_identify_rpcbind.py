"""rpcbind is named from its reply to an ONC RPC NULL call, on any port."""

from __future__ import annotations

import asyncio

import fixtures_sharing as fs
from mamori.identify.engine import identify_tcp

HOST = "127.0.68.1"


def test_portmapper_is_identified_on_an_unusual_port() -> None:
    with fs.RpcService(HOST, 11111, 12049, []):
        service, _ = asyncio.run(identify_tcp(HOST, 11111, budget=10))
    assert service is not None and service.name == "rpcbind"
