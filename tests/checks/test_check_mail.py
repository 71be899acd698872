"""Mail beyond relaying against real daemons, each with a hardened twin that must stay clean:
mail-cleartext-login (dovecot IMAP + POP3: cleartext only, STARTTLS but cleartext allowed,
LOGINDISABLED), smtp-no-starttls and smtp-user-enumeration (postfix on an MX port and a
submission port with AUTH: VRFY on, no TLS vs. VRFY off, STARTTLS, AUTH only after TLS)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import fixtures_mail as fm
from checks_helpers import assert_finding, assert_passed, run_check
from daemons import Daemon, listeners_on_wildcard, running_all
from mamori.model import CheckStatus, Confidence, Severity

pytestmark = pytest.mark.daemon

CLEAR, CLEAR_TLS, HARD = "127.0.84.1", "127.0.84.2", "127.0.84.3"
MX_OPEN, MX_HARD = "127.0.84.11", "127.0.84.12"
IMAP, POP3, SMTP, SUBMISSION = 14143, 14110, 14025, 14587


@pytest.fixture(scope="module")
def dovecots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Daemon]]:
    work = tmp_path_factory.mktemp("dovecot")
    with running_all({
        mode: (lambda mode=mode, host=host: fm.start_dovecot_mail(work, host, IMAP, POP3,
                                                                  mode=mode))
        for mode, host in (("cleartext", CLEAR), ("cleartext-tls", CLEAR_TLS),
                           ("hardened", HARD))
    }) as started:
        yield started


@pytest.fixture(scope="module")
def postfixes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Daemon]]:
    work = tmp_path_factory.mktemp("postfix")
    with running_all({
        "open": lambda: fm.start_postfix_mail(work, MX_OPEN, SMTP, SUBMISSION, hardened=False),
        "hard": lambda: fm.start_postfix_mail(work, MX_HARD, SMTP, SUBMISSION, hardened=True),
    }) as started:
        yield started


def test_daemons_listen_only_on_their_own_addresses(dovecots: dict[str, Daemon],
                                                    postfixes: dict[str, Daemon]) -> None:
    pids = [d.proc.pid for d in (*dovecots.values(), *postfixes.values())]
    assert listeners_on_wildcard(pids) == []


# --- mail-cleartext-login ---------------------------------------------------------------------


@pytest.mark.parametrize("service,port,methods", [
    ("imap", IMAP, "LOGIN command, AUTH=PLAIN, AUTH=LOGIN"),
    ("pop3", POP3, "USER/PASS, SASL PLAIN, SASL LOGIN"),
])
def test_cleartext_only_dovecot_is_a_confirmed_high_finding(
        dovecots: dict[str, Daemon], service: str, port: int, methods: str) -> None:
    result = run_check("mail-cleartext-login", CLEAR, port, service)
    assert_finding(result)
    assert result.confidence is Confidence.CONFIRMED
    assert result.severity is Severity.HIGH
    assert result.evidence is not None
    facts = result.evidence.facts
    assert facts["grade"] == "cleartext-only" and facts["starttls"] == "no"
    assert facts["clear_methods"] == methods
    assert "no login attempted" in result.evidence.test
    # The evidence is the exact request and the server's own capability answer.
    assert ("CAPABILITY" if service == "imap" else "CAPA") in (result.evidence.request or "")
    assert ("AUTH=PLAIN" if service == "imap" else "USER") in (result.evidence.reply or "")


@pytest.mark.parametrize("service,port", [("imap", IMAP), ("pop3", POP3)])
def test_starttls_with_cleartext_still_allowed_is_a_medium_finding(
        dovecots: dict[str, Daemon], service: str, port: int) -> None:
    result = run_check("mail-cleartext-login", CLEAR_TLS, port, service)
    assert_finding(result)
    assert result.confidence is Confidence.CONFIRMED
    assert result.severity is Severity.MEDIUM
    assert result.evidence is not None
    assert result.evidence.facts["grade"] == "cleartext-allowed"
    assert result.evidence.facts["starttls"] == "yes"


@pytest.mark.parametrize("service,port", [("imap", IMAP), ("pop3", POP3)])
def test_hardened_dovecot_passes(dovecots: dict[str, Daemon], service: str, port: int) -> None:
    result = run_check("mail-cleartext-login", HARD, port, service)
    assert_passed(result)
    assert result.evidence is not None
    assert result.evidence.facts["grade"] == "none"
    assert result.evidence.facts["clear_methods"] == "none"
    if service == "imap":
        assert "LOGINDISABLED" in result.evidence.facts["capabilities"]


def test_smtp_server_is_not_tested_as_imap(postfixes: dict[str, Daemon]) -> None:
    result = run_check("mail-cleartext-login", MX_OPEN, SMTP, "imap")
    assert result.status is CheckStatus.NOT_TESTED
    assert "not an IMAP greeting" in result.summary


# --- smtp-no-starttls -------------------------------------------------------------------------


def test_mx_without_starttls_is_a_finding(postfixes: dict[str, Daemon]) -> None:
    result = run_check("smtp-no-starttls", MX_OPEN, SMTP, "smtp")
    assert_finding(result)
    assert result.confidence is Confidence.CONFIRMED
    assert result.severity is Severity.MEDIUM
    assert result.evidence is not None
    facts = result.evidence.facts
    assert facts["grade"] == "no-starttls" and facts["role"] == "mx"
    assert "EHLO" in (result.evidence.request or "")


def test_submission_with_auth_in_clear_is_high(postfixes: dict[str, Daemon]) -> None:
    result = run_check("smtp-no-starttls", MX_OPEN, SUBMISSION, "smtp")
    assert_finding(result)
    assert result.severity is Severity.HIGH
    assert result.evidence is not None
    facts = result.evidence.facts
    assert facts["grade"] == "no-starttls-auth" and facts["role"] == "submission"
    assert facts["clear_auth"] == "PLAIN LOGIN"


@pytest.mark.parametrize("port", [SMTP, SUBMISSION])
def test_hardened_postfix_with_starttls_passes(postfixes: dict[str, Daemon], port: int) -> None:
    result = run_check("smtp-no-starttls", MX_HARD, port, "smtp")
    assert_passed(result)
    assert result.evidence is not None
    assert result.evidence.facts["starttls"] == "yes"
    assert result.evidence.facts["auth_mechanisms"] == "none"  # AUTH only after STARTTLS


# --- smtp-user-enumeration --------------------------------------------------------------------


def test_vrfy_enabled_postfix_tells_users_apart(postfixes: dict[str, Daemon]) -> None:
    result = run_check("smtp-user-enumeration", MX_OPEN, SMTP, "smtp")
    assert_finding(result)
    assert result.confidence is Confidence.CONFIRMED
    assert result.evidence is not None
    facts = result.evidence.facts
    assert facts["grade"] == "vrfy"
    assert facts["methods"] == "vrfy rcpt"
    assert "VRFY root -> 252" in facts["vrfy"] and "-> 550" in facts["vrfy"]
    assert facts["random_name"] in facts["rcpt"]
    request = result.evidence.request or ""
    assert "RSET" in request and "DATA" not in request  # never sends a message


def test_hardened_postfix_tells_nothing(postfixes: dict[str, Daemon]) -> None:
    result = run_check("smtp-user-enumeration", MX_HARD, SMTP, "smtp")
    assert_passed(result)
    assert result.evidence is not None
    facts = result.evidence.facts
    assert facts["methods"] == "none"
    assert "502" in facts["vrfy"]  # VRFY disabled
