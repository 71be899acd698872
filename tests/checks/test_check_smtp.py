"""smtp-open-relay against real postfix (open, open through a client table, hardened), with and
without the canary sink, and against look-alikes that say 250 to everything."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

import fixtures_smtp as fx
from checks_helpers import assert_finding, assert_passed, run_check, yes_server
from daemons import Daemon, listeners_on_wildcard, running_all
from mamori.checks.canary import SmtpSink, find_token, serving_in_thread
from mamori.checks.observation import CheckOptions
from mamori.checks.probes.smtp import relay_grade
from mamori.model import CheckStatus, Confidence, Severity

pytestmark = pytest.mark.daemon

OPEN, SHUT, SINK, FAKE = "127.0.60.1", "127.0.60.2", "127.0.60.3", "127.0.60.30"
PORT, TABLE_PORT, SINK_PORT = 2525, 2527, 2526


@pytest.fixture(scope="module")
def sink_inbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    inbox = tmp_path_factory.mktemp("canary") / "inbox"
    with serving_in_thread(lambda: SmtpSink(inbox, SINK, SINK_PORT)):
        yield inbox


@pytest.fixture(scope="module")
def postfixes(tmp_path_factory: pytest.TempPathFactory, sink_inbox: Path
              ) -> Iterator[dict[str, Daemon]]:
    work = tmp_path_factory.mktemp("postfix")
    with running_all({
        "open": lambda: fx.start_postfix_relay(work, OPEN, PORT, open_relay=True,
                                               sink=(SINK, SINK_PORT), permit_port=TABLE_PORT),
        "shut": lambda: fx.start_postfix_relay(work, SHUT, PORT, open_relay=False,
                                               sink=(SINK, SINK_PORT)),
    }) as started:
        yield started


def _canary(inbox: Path) -> CheckOptions:
    return CheckOptions(smtp_canary_domain=fx.CANARY_DOMAIN, smtp_canary_inbox=str(inbox))


def test_postfix_listens_only_on_its_own_addresses(postfixes: dict[str, Daemon]) -> None:
    assert listeners_on_wildcard([d.proc.pid for d in postfixes.values()]) == []


def test_open_relay_with_canary_is_delivered(postfixes: dict[str, Daemon],
                                             sink_inbox: Path) -> None:
    result = run_check("smtp-open-relay", OPEN, PORT, "smtp", options=_canary(sink_inbox))
    assert_finding(result)
    assert result.confidence is Confidence.CONFIRMED
    assert result.severity is Severity.CRITICAL
    assert result.evidence is not None
    facts = result.evidence.facts
    assert facts["grade"] == "delivered" and facts["delivered"] == "yes"
    assert facts["relay_address"] == f"mamori-relay-test@{fx.CANARY_DOMAIN}"
    assert facts["data_reply"].startswith("250")
    delivered = find_token(sink_inbox, facts["token"])
    assert delivered is not None
    message = delivered.read_text()
    assert "X-Mamori-Token: " + facts["token"] in message
    assert "Received: from mamori.invalid" in message  # it really went through postfix
    assert "RCPT TO:<mamori-relay-test@" in (result.evidence.request or "")


def test_open_relay_without_canary_is_a_likely_finding(postfixes: dict[str, Daemon]) -> None:
    # Postfix with mynetworks = 0.0.0.0/0 takes even the control recipient at a .invalid
    # domain: without a canary its 250s cannot be told from a server that says yes to all.
    result = run_check("smtp-open-relay", OPEN, PORT, "smtp")
    assert_finding(result)
    assert result.confidence is Confidence.LIKELY
    assert result.evidence is not None
    facts = result.evidence.facts
    assert facts["grade"] == "accepts-everything"
    assert facts["relay_address"] == "mamori-relay-test@example.net"
    assert facts["control_reply"].startswith("250")
    assert facts["data_reply"].startswith("250 2.0.0 Ok: queued")


def test_client_table_that_says_ok_to_all_is_a_finding(postfixes: dict[str, Daemon],
                                                       sink_inbox: Path) -> None:
    result = run_check("smtp-open-relay", OPEN, TABLE_PORT, "smtp", options=_canary(sink_inbox))
    assert_finding(result)
    assert result.evidence is not None
    assert result.evidence.facts["grade"] == "delivered"


def test_hardened_postfix_passes(postfixes: dict[str, Daemon], sink_inbox: Path) -> None:
    for options in (None, _canary(sink_inbox)):
        result = run_check("smtp-open-relay", SHUT, PORT, "smtp", options=options)
        assert_passed(result)
        assert result.evidence is not None
        facts = result.evidence.facts
        assert facts["grade"] == "none"
        assert "Relay access denied" in facts["control_reply"]
        # Every classic address trick was tried and refused.
        tried = facts["forms_tried"].split()
        assert len(tried) == 9 and all(t.endswith("=554") for t in tried), tried
        assert {"percent-hack=554", "source-route=554", "bang-path=554"} <= set(tried)


def test_nothing_listening_is_not_tested() -> None:
    result = run_check("smtp-open-relay", FAKE, 2599, "smtp")
    assert result.status is CheckStatus.NOT_TESTED


def test_honeypot_is_never_confirmed(sink_inbox: Path) -> None:
    with yes_server(FAKE, 2530):
        for options in (None, _canary(sink_inbox)):
            result = run_check("smtp-open-relay", FAKE, 2530, "smtp", options=options)
            assert not (result.status is CheckStatus.FINDING
                        and result.confidence is Confidence.CONFIRMED), result.summary


# --- faithful little SMTP servers for the grades a stock postfix does not show --------------


class _FakeSmtp:
    """Real SMTP replies; ``refuse_invalid``: 550 for .invalid domains (as a server that
    checks recipient domains does), 250 for every other RCPT; DATA is taken and dropped."""

    def __init__(self, host: str, port: int, *, refuse_invalid: bool) -> None:
        self.host, self.port, self.refuse_invalid = host, port, refuse_invalid
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 fake.test ESMTP\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-fake.test\r\n250 PIPELINING\r\n")
            elif verb == b"RCPT" and self.refuse_invalid and b".invalid>" in line:
                writer.write(b"550 5.1.2 domain does not exist\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await writer.drain()
                while (await reader.readline()) not in (b".\r\n", b""):
                    pass
                writer.write(b"250 2.0.0 queued\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()

    async def __aenter__(self) -> _FakeSmtp:
        self.server = await asyncio.start_server(self._serve, self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


def test_smtp_server_saying_250_to_everything_is_at_most_likely(sink_inbox: Path) -> None:
    with serving_in_thread(lambda: _FakeSmtp(FAKE, 2531, refuse_invalid=False)):
        for options in (None, _canary(sink_inbox)):
            result = run_check("smtp-open-relay", FAKE, 2531, "smtp", options=options)
            assert_finding(result)
            assert result.confidence is Confidence.LIKELY
            assert result.evidence is not None
            assert result.evidence.facts["grade"] == "accepts-everything"
            if options is not None:  # it took the message but nothing reached the sink
                assert result.evidence.facts["delivered"].startswith("not within")


def test_data_accepted_for_outside_recipient_is_confirmed() -> None:
    with serving_in_thread(lambda: _FakeSmtp(FAKE, 2532, refuse_invalid=True)):
        result = run_check("smtp-open-relay", FAKE, 2532, "smtp")
    assert_finding(result)
    assert result.confidence is Confidence.CONFIRMED
    assert result.evidence is not None
    assert result.evidence.facts["grade"] == "accepted"
    assert result.evidence.facts["control_reply"].startswith("550")


@pytest.mark.parametrize(("rcpt", "control", "data", "delivered", "grade"), [
    (False, False, False, False, "none"),
    (False, True, False, False, "none"),
    (True, False, False, False, "likely"),
    (True, False, True, False, "accepted"),
    (True, True, True, False, "accepts-everything"),
    (True, True, False, False, "accepts-everything"),
    (True, True, True, True, "delivered"),
    (True, False, True, True, "delivered"),
])
def test_relay_grade(rcpt: bool, control: bool, data: bool, delivered: bool, grade: str) -> None:
    assert relay_grade(rcpt_ok=rcpt, control_ok=control, data_ok=data,
                       delivered=delivered) == grade
