"""http-open-proxy (tinyproxy) and socks-open-proxy (dante), each open and hardened, plus
look-alikes that answer yes without fetching anything."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

import fixtures_smtp as fx
from checks_helpers import assert_finding, assert_passed, run_check, yes_server
from daemons import Daemon, listeners_on_wildcard, running_all
from mamori.checks.canary import HttpCanary, serving_in_thread
from mamori.checks.observation import CheckOptions, Observation, ProbeContext
from mamori.checks.params import Params
from mamori.checks.probes.proxy import http_proxy_fetch, socks_fetch
from mamori.model import CheckStatus, Confidence, Proto

pytestmark = pytest.mark.daemon

TINY_OPEN, TINY_SHUT = "127.0.60.10", "127.0.60.11"
DANTE_OPEN, DANTE_AUTH, DANTE_CLIENTS = "127.0.60.20", "127.0.60.21", "127.0.60.22"
YES = "127.0.60.40"
CANARY_HOST = "127.0.60.50"
TINY_PORT, SOCKS_PORT = 8888, 1080


@pytest.fixture(scope="module")
def daemons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Daemon]]:
    work = tmp_path_factory.mktemp("proxies")
    with running_all({
        "tiny-open": lambda: fx.start_tinyproxy(work, TINY_OPEN, TINY_PORT, allow="127.0.0.0/8"),
        "tiny-shut": lambda: fx.start_tinyproxy(work, TINY_SHUT, TINY_PORT, allow="127.0.0.5"),
        "dante-open": lambda: fx.start_danted(work, DANTE_OPEN, SOCKS_PORT, mode="open"),
        "dante-auth": lambda: fx.start_danted(work, DANTE_AUTH, SOCKS_PORT, mode="auth"),
        "dante-clients": lambda: fx.start_danted(work, DANTE_CLIENTS, SOCKS_PORT,
                                                 mode="client-restricted"),
    }) as started:
        yield started


def _primitive(fn, host: str, port: int, params: dict, options: CheckOptions | None = None
               ) -> Observation:
    ctx = ProbeContext(host, port, Proto.TCP, None, None, options or CheckOptions())
    return asyncio.run(fn(ctx, Params(params)))


def test_daemons_listen_only_on_their_own_addresses(daemons: dict[str, Daemon]) -> None:
    assert listeners_on_wildcard([d.proc.pid for d in daemons.values()]) == []


# --- HTTP proxy ------------------------------------------------------------------------------


def test_open_tinyproxy_fetches_the_canary(daemons: dict[str, Daemon]) -> None:
    result = run_check("http-open-proxy", TINY_OPEN, TINY_PORT, "http")
    assert_finding(result)
    assert result.confidence is Confidence.CONFIRMED
    assert result.evidence is not None
    facts = result.evidence.facts
    assert facts["grade"] == "fetched"
    assert facts["fetched_via"] == "absolute-URI GET"
    # The canary saw the request come from the proxy's own outgoing address (Bind).
    assert facts["canary_hit_from"] == TINY_OPEN
    assert "GET http://127.0.0.1:" in (result.evidence.request or "")
    assert "mamori-canary-" in (result.evidence.reply or "")


def test_open_tinyproxy_tunnels_with_connect(daemons: dict[str, Daemon]) -> None:
    obs = _primitive(http_proxy_fetch, TINY_OPEN, TINY_PORT, {"methods": ["connect"]})
    assert obs.fields["grade"] == "fetched"
    assert obs.fields["fetched_via"] == "CONNECT"
    assert obs.fields["connect_status"] == "200"
    assert obs.fields["tunnel_status"] == "200"


def test_tinyproxy_allowing_another_address_passes(daemons: dict[str, Daemon]) -> None:
    result = run_check("http-open-proxy", TINY_SHUT, TINY_PORT, "http")
    assert_passed(result)
    assert result.evidence is not None
    assert result.evidence.facts["get_status"] == "403"
    assert result.evidence.facts["connect_status"] == "403"


def test_canary_url_and_pattern_given_as_options(daemons: dict[str, Daemon]) -> None:
    with serving_in_thread(lambda: HttpCanary(CANARY_HOST)) as server:
        assert isinstance(server, HttpCanary)
        good = CheckOptions(proxy_canary_url=server.url, proxy_canary_pattern=server.secret)
        result = run_check("http-open-proxy", TINY_OPEN, TINY_PORT, "http", options=good)
        assert_finding(result)
        assert result.evidence is not None
        assert result.evidence.facts["canary_url"] == server.url
        assert server.hits and server.hits[0].peer == TINY_OPEN
        wrong = CheckOptions(proxy_canary_url=server.url, proxy_canary_pattern="not-there-\\d{9}")
        assert_passed(run_check("http-open-proxy", TINY_OPEN, TINY_PORT, "http", options=wrong))


def test_a_server_that_says_200_to_everything_is_not_a_proxy() -> None:
    # It echoes our request line (canary path included) but cannot know the secret.
    with yes_server(YES, 18080):
        result = run_check("http-open-proxy", YES, 18080, "http")
    assert_passed(result)
    assert result.evidence is not None
    assert result.evidence.facts["grade"] == "none"
    assert "canary_hit_from" not in result.evidence.facts


def test_http_proxy_nothing_listening_is_not_tested() -> None:
    result = run_check("http-open-proxy", YES, 18081, "http")
    assert result.status is CheckStatus.NOT_TESTED
    assert "refused" in result.summary


# --- SOCKS -----------------------------------------------------------------------------------


def test_open_dante_relays_socks5(daemons: dict[str, Daemon]) -> None:
    result = run_check("socks-open-proxy", DANTE_OPEN, SOCKS_PORT, "unknown")
    assert_finding(result)
    assert result.confidence is Confidence.CONFIRMED
    assert result.evidence is not None
    facts = result.evidence.facts
    assert facts["grade"] == "fetched"
    assert facts["fetched_via"] == "SOCKS 5"
    assert facts["socks5_method"] == "no authentication"
    assert facts["socks5_reply"] == "succeeded"
    assert facts["canary_hit_from"] == DANTE_OPEN


def test_open_dante_relays_socks4(daemons: dict[str, Daemon]) -> None:
    obs = _primitive(socks_fetch, DANTE_OPEN, SOCKS_PORT, {"versions": ["4"]})
    assert obs.fields["grade"] == "fetched"
    assert obs.fields["fetched_via"] == "SOCKS 4"
    assert obs.fields["socks4_reply"] == "request granted"


def test_dante_requiring_a_login_passes(daemons: dict[str, Daemon]) -> None:
    result = run_check("socks-open-proxy", DANTE_AUTH, SOCKS_PORT, "socks")
    assert_passed(result)
    assert result.evidence is not None
    assert result.evidence.facts["socks5_method"] == "username/password"
    assert result.evidence.facts["socks4_reply"] == "request rejected or failed"


def test_dante_serving_other_clients_only_passes(daemons: dict[str, Daemon]) -> None:
    result = run_check("socks-open-proxy", DANTE_CLIENTS, SOCKS_PORT, "socks")
    assert_passed(result)
    assert result.evidence is not None
    facts = result.evidence.facts
    # sockd closes (or resets) a connection from a client no rule passes.
    assert facts.get("socks5_method") == "closed" or facts["socks5_error"].startswith("reset")


def test_honeypot_is_not_a_socks_proxy() -> None:
    with yes_server(YES, 11080):
        result = run_check("socks-open-proxy", YES, 11080, "unknown")
    assert result.status is not CheckStatus.FINDING, result.summary


async def _fake_socks5_that_grants_everything(reader: asyncio.StreamReader,
                                              writer: asyncio.StreamWriter) -> None:
    """Says "no auth" and "succeeded" to anything, then answers 200 without connecting."""
    await reader.readexactly(4)
    writer.write(b"\x05\x00")
    await reader.read(64)
    writer.write(b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x50")
    await reader.read(1024)
    writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nOK")
    await writer.drain()


async def _fake_http_that_echoes(reader: asyncio.StreamReader,
                                 writer: asyncio.StreamWriter) -> None:
    """Answers every request (absolute URI, CONNECT, tunnelled GET) with 200 and an echo."""
    for _ in range(2):
        head = await reader.readuntil(b"\r\n\r\n")
        body = b"you asked for " + head.split(b"\r\n", 1)[0]
        if head.startswith(b"CONNECT"):
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            continue
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        return


class _FakeSocks:
    def __init__(self, host: str, port: int, handler=_fake_socks5_that_grants_everything) -> None:
        self.host, self.port, self.handler = host, port, handler
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> _FakeSocks:
        self.server = await asyncio.start_server(self.handler, self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


def test_socks_server_that_grants_without_connecting_is_not_confirmed() -> None:
    with serving_in_thread(lambda: _FakeSocks(YES, 11081)):
        result = run_check("socks-open-proxy", YES, 11081, "socks")
    assert_passed(result)
    assert result.evidence is not None
    assert result.evidence.facts["socks5_reply"] == "succeeded"
    assert "canary_hit_from" not in result.evidence.facts


def test_socks_nothing_listening_is_not_tested(tmp_path: Path) -> None:
    result = run_check("socks-open-proxy", YES, 11082, "socks")
    assert result.status is CheckStatus.NOT_TESTED


def test_http_server_that_echoes_200_is_not_a_proxy() -> None:
    with serving_in_thread(lambda: _FakeSocks(YES, 18082, _fake_http_that_echoes)):
        result = run_check("http-open-proxy", YES, 18082, "http")
    assert_passed(result)
    assert result.evidence is not None
    facts = result.evidence.facts
    assert facts["get_status"] == "200" and facts["connect_status"] == "200"
    assert facts["tunnel_status"] == "200" and facts["grade"] == "none"
    assert "/mamori-canary/" in (result.evidence.reply or "")  # the echo had the path
