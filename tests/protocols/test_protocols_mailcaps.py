"""Pure parsers of mail capability answers (IMAP CAPABILITY, POP3 CAPA, SMTP EHLO/VRFY):
the cases the real daemons in tests/checks/test_check_mail.py do not show, and hostile input."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mamori.protocols import mailcaps, smtp_policy
from mamori.protocols.smtp import SmtpReply


def test_imap_logindisabled_with_only_strong_sasl_allows_nothing_in_clear() -> None:
    caps = mailcaps.parse_imap_capability(
        b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED AUTH=SCRAM-SHA-256\r\nM1 OK done\r\n")
    assert caps is not None
    verdict = mailcaps.judge_imap(caps)
    assert verdict.grade == "none" and verdict.starttls


def test_imap_logindisabled_but_auth_plain_is_still_cleartext() -> None:
    verdict = mailcaps.judge_imap(("IMAP4REV1", "LOGINDISABLED", "AUTH=PLAIN"))
    assert verdict.clear_methods == ("AUTH=PLAIN",) and verdict.grade == "cleartext-only"


def test_imap_answers_out_of_turn_are_not_a_capability_list() -> None:
    assert mailcaps.parse_imap_capability(b"+OK\r\n250 OK\r\nM1 OK\r\n") is None
    assert mailcaps.parse_imap_capability(b"M1 OK but no capability line\r\n") is None
    assert mailcaps.parse_imap_greeting(b"220 yes.example ESMTP\r\n* OK IMAP4rev1\r\n") is None


def test_pop3_capa_with_a_second_status_line_is_refused() -> None:
    assert mailcaps.parse_pop3_capa(b"+OK\r\nUSER\r\n.\r\n+OK\r\n") is None
    assert mailcaps.parse_pop3_capa(b"-ERR unknown command\r\n") is None
    assert mailcaps.pop3_capa_done(b"-ERR unknown command\r\n")


def test_pop3_sasl_without_clear_mechanisms_and_no_user_is_clean() -> None:
    verdict = mailcaps.judge_pop3(("TOP", "STLS", "SASL CRAM-MD5"))
    assert verdict.grade == "none" and verdict.login_disabled


@given(st.binary(max_size=600))
def test_parsers_never_raise(data: bytes) -> None:
    mailcaps.parse_imap_greeting(data)
    mailcaps.parse_imap_capability(data)
    mailcaps.imap_tagged_done(data)
    mailcaps.parse_pop3_capa(data)
    mailcaps.pop3_capa_done(data)


def test_smtp_difference_needs_a_refused_random_name() -> None:
    ok, unknown, maybe = SmtpReply(250, ("ok",)), SmtpReply(550, ("no",)), SmtpReply(252, ("?",))
    assert smtp_policy.tells_users_apart(ok, unknown)
    assert smtp_policy.tells_users_apart(maybe, unknown)
    assert not smtp_policy.tells_users_apart(ok, ok)  # says yes to everything
    assert not smtp_policy.tells_users_apart(maybe, maybe)
    assert not smtp_policy.tells_users_apart(ok, SmtpReply(450, ("later",)))
    assert not smtp_policy.tells_users_apart(unknown, unknown)


def test_ehlo_auth_in_both_spellings() -> None:
    reply = SmtpReply(250, ("mx", "AUTH=LOGIN PLAIN", "AUTH CRAM-MD5 LOGIN", "STARTTLS"))
    facts = smtp_policy.ehlo_facts(reply)
    assert facts.auth_mechanisms == ("LOGIN", "PLAIN", "CRAM-MD5")
    assert smtp_policy.starttls_grade(facts) == "auth-before-starttls"
    strong = smtp_policy.ehlo_facts(SmtpReply(250, ("mx", "AUTH CRAM-MD5")))
    assert smtp_policy.starttls_grade(strong) == "no-starttls"
