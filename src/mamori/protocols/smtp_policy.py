"""SMTP answers that tell a user list apart, and what EHLO says about TLS and AUTH. Pure.

User enumeration is proven by a difference, never by a word list: a name that exists on every
mail system (postmaster, RFC 5321 4.5.1; root) is accepted while a random name that cannot
exist is refused, for the same command. 252 ("cannot verify, will try") and 4xx (try later)
are no answer either way.
"""

from __future__ import annotations

from dataclasses import dataclass

from mamori.protocols.smtp import SmtpReply, ehlo_keywords

CLEAR_SASL = frozenset({"PLAIN", "LOGIN"})  # the password travels as it is (base64 only)
_UNKNOWN_USER_CODES = frozenset({550, 551, 553})  # RFC 5321: no such mailbox / not local


def answer_class(reply: SmtpReply) -> str:
    """"known" (250/251), "unknown" (550/551/553), or "no-answer" (252, 4xx, 500-502...)."""
    if reply.code in (250, 251):
        return "known"
    if reply.code in _UNKNOWN_USER_CODES:
        return "unknown"
    return "no-answer"


def tells_users_apart(existing: SmtpReply, random_name: SmtpReply) -> bool:
    """True when the command accepted a name that exists everywhere and refused a random one.

    A server that accepts both (or refuses both, or will not answer) reveals nothing.
    VRFY's 252 for the existing name counts as accepted only when the random name is
    refused as unknown: the server then did look the name up.
    """
    random_class = answer_class(random_name)
    if random_class != "unknown":
        return False
    return answer_class(existing) == "known" or existing.code == 252


@dataclass(frozen=True, slots=True)
class EhloFacts:
    starttls: bool
    auth_mechanisms: tuple[str, ...]  # as advertised on this (cleartext) connection

    @property
    def clear_auth(self) -> tuple[str, ...]:
        return tuple(m for m in self.auth_mechanisms if m in CLEAR_SASL)


def ehlo_facts(reply: SmtpReply) -> EhloFacts:
    """STARTTLS and the AUTH mechanisms from a positive EHLO reply."""
    mechanisms: list[str] = []
    for line in reply.lines[1:]:
        words = line.upper().replace("=", " ").split()
        if words and words[0] == "AUTH":
            mechanisms.extend(w[:32] for w in words[1:33])
    return EhloFacts("STARTTLS" in ehlo_keywords(reply), tuple(dict.fromkeys(mechanisms)))


def starttls_grade(facts: EhloFacts) -> str:
    """The verdict on a cleartext SMTP session's EHLO.

    "no-starttls-auth": no STARTTLS, and passwords accepted in the clear (AUTH PLAIN/LOGIN);
    "auth-before-starttls": STARTTLS offered, but AUTH PLAIN/LOGIN offered before it too;
    "no-starttls": no STARTTLS at all (mail and, on submission, logins cross in the clear);
    "none": STARTTLS offered and no cleartext password mechanism.
    """
    if not facts.starttls:
        return "no-starttls-auth" if facts.clear_auth else "no-starttls"
    return "auth-before-starttls" if facts.clear_auth else "none"
