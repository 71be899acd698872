"""Pure SMTP and SOCKS parsers/builders, on captured bytes and on random and truncated input;
and the canary SMTP sink and HTTP canary on their own."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mamori.checks import canary
from mamori.checks.canary import HttpCanary, SmtpSink, find_token
from mamori.protocols import smtp, socks

# Postfix 3.7's EHLO reply, as the test daemon sends it.
EHLO = (b"250-relay.mamori.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n"
        b"250-ETRN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n"
        b"250 CHUNKING\r\n")
DANTE_REPLY = b"\x05\x00\x00\x01\x7f\x00<\x14\xe4n"


def test_parse_multiline_ehlo() -> None:
    parsed = smtp.parse_reply(EHLO)
    assert parsed is not None
    reply, used = parsed
    assert used == len(EHLO) and reply.code == 250 and reply.positive
    assert reply.lines[0] == "relay.mamori.test"
    assert {"PIPELINING", "SIZE", "CHUNKING"} <= smtp.ehlo_keywords(reply)


@pytest.mark.parametrize("raw", [
    b"250-a\r\n251 b\r\n",  # codes differ between lines
    b"+OK POP3 ready\r\n",
    b"250-unfinished\r\n",
    b"25",
    b"",
])
def test_malformed_or_partial_replies_are_none(raw: bytes) -> None:
    assert smtp.parse_reply(raw) is None


def test_reply_complete() -> None:
    assert smtp.reply_complete(b"220 hi\r\n")
    assert not smtp.reply_complete(b"250-a\r\n250")
    assert not smtp.reply_complete(b"22")
    assert smtp.reply_complete(b"+OK not smtp")  # stop at once: it can never become SMTP
    assert smtp.reply_complete(b"HTTP/1.1 400 Bad Request\r\n")


def test_server_name_from_banner() -> None:
    reply = smtp.SmtpReply(220, ("mx.example.test ESMTP Postfix",))
    assert smtp.server_name(reply) == "mx.example.test"
    assert smtp.server_name(smtp.SmtpReply(220, ("<<weird>>",))) is None


def test_commands_refuse_line_breaks() -> None:
    assert smtp.rcpt_to("a@b.test") == b"RCPT TO:<a@b.test>\r\n"
    with pytest.raises(ValueError, match="line break"):
        smtp.command("HELO", "x\r\nRCPT TO:<victim@example.net>")
    with pytest.raises(ValueError, match="unsafe"):
        smtp.mail_from("a>@b")


def test_relay_forms_are_the_classic_tricks() -> None:
    forms = {f.name: f.address for f in smtp.relay_forms("u", "d.test", "127.0.60.1")}
    assert forms["plain"] == "u@d.test"
    assert forms["percent-hack"] == "u%d.test@[127.0.60.1]"
    assert forms["quoted"] == '"u@d.test"'
    assert forms["source-route"] == "@[127.0.60.1]:u@d.test"
    assert forms["bang-path"] == "d.test!u"
    v6 = smtp.relay_forms("u", "d.test", "::1")
    assert v6[1].address == "u%d.test@[IPv6:::1]"


def test_message_carries_the_token_and_ends_properly() -> None:
    msg = smtp.build_message(sender="s@x.invalid", recipient="r@d.test", token="tok-1",
                             helo_name="x.invalid", date="Mon, 01 Jan 2024 00:00:00 GMT")
    assert msg.endswith(b"\r\n.\r\n") and b"X-Mamori-Token: tok-1" in msg
    assert b"\r\n.\r\n" not in msg[:-5]
    with pytest.raises(ValueError):
        smtp.build_message(sender="s@x\r\n.", recipient="r", token="t", helo_name="h", date="d")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_smtp_parsers_never_raise_on_random_bytes(data: bytes) -> None:
    parsed = smtp.parse_reply(data)
    if parsed is not None:
        assert 100 <= parsed[0].code <= 999 and 0 < parsed[1] <= len(data)
    smtp.reply_complete(data)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=len(EHLO) - 1))
def test_truncated_ehlo_is_incomplete(cut: int) -> None:
    assert smtp.parse_reply(EHLO[:cut]) is None
    assert not smtp.reply_complete(EHLO[:cut])


# --- SOCKS -----------------------------------------------------------------------------------


def test_socks5_round_trip() -> None:
    assert socks.build_greeting5((0, 2)) == b"\x05\x02\x00\x02"
    assert socks.parse_method5(b"\x05\x02") == socks.METHOD_USERPASS
    assert socks.build_connect5("127.0.0.1", 80) == b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50"
    assert socks.build_connect5("canary.test", 80)[3:5] == b"\x03\x0b"
    assert socks.build_connect5("::1", 80)[3] == 4
    parsed = socks.parse_reply5(DANTE_REPLY)
    assert parsed is not None and parsed[0].succeeded and parsed[1] == len(DANTE_REPLY)
    assert parsed[0].bound_host == "127.0.60.20"
    assert socks.reply5_name(2) == "connection not allowed by ruleset"


def test_socks4_round_trip() -> None:
    assert socks.build_connect4("127.0.0.1", 80) == b"\x04\x01\x00\x50\x7f\x00\x00\x01mamori\x00"
    assert socks.build_connect4("canary.test", 80).endswith(b"\x00canary.test\x00")
    reply = socks.parse_reply4(b"\x00\x5a\x00\x00\x00\x00\x00\x00")
    assert reply is not None and reply.granted
    assert socks.parse_reply4(b"\x00\x5b\x00\x00\x00\x00\x00") is None  # 7 bytes


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_socks_parsers_never_raise_on_random_bytes(data: bytes) -> None:
    socks.parse_method5(data)
    socks.parse_reply4(data)
    socks.reply5_complete(data)
    parsed = socks.parse_reply5(data)
    if parsed is not None:
        assert parsed[1] <= len(data)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=len(DANTE_REPLY) - 1))
def test_truncated_socks5_reply_is_incomplete(cut: int) -> None:
    assert socks.parse_reply5(DANTE_REPLY[:cut]) is None
    assert not socks.reply5_complete(DANTE_REPLY[:cut])


# --- canaries --------------------------------------------------------------------------------


async def _smtp_dialogue(port: int, lines: list[bytes]) -> list[bytes]:
    reader, writer = await asyncio.open_connection("127.0.60.60", port)
    replies = [await reader.readline()]
    for line in lines:
        writer.write(line)
        await writer.drain()
        reply = await reader.readline()
        while reply[3:4] == b"-":
            reply = await reader.readline()
        replies.append(reply)
    writer.close()
    return replies


def test_sink_stores_messages_and_find_token(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"

    async def main() -> list[bytes]:
        async with SmtpSink(inbox, "127.0.60.60", 0) as sink:
            return await _smtp_dialogue(sink.port, [
                b"EHLO t\r\n", b"MAIL FROM:<a@b>\r\n", b"RCPT TO:<c@d>\r\n", b"DATA\r\n",
                b"Subject: hi\r\n\r\n..leading dot\r\ntoken-xyz\r\n.\r\n", b"QUIT\r\n"])

    replies = asyncio.run(main())
    assert [r[:3] for r in replies] == [b"220", b"250", b"250", b"250", b"354", b"250", b"221"]
    found = find_token(inbox, "token-xyz")
    assert found is not None
    body = found.read_bytes()
    assert b"X-Envelope-To: <c@d>" in body and b"\r\n.leading dot\r\n" in body
    assert find_token(inbox, "absent") is None
    assert find_token(tmp_path / "missing", "x") is None


def test_sink_refuses_oversized_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(canary, "_MAX_MESSAGE", 100)
    inbox = tmp_path / "inbox"

    async def main() -> list[bytes]:
        async with SmtpSink(inbox, "127.0.60.60", 0) as sink:
            return await _smtp_dialogue(sink.port, [
                b"HELO t\r\n", b"MAIL FROM:<a@b>\r\n", b"RCPT TO:<c@d>\r\n", b"DATA\r\n",
                b"x" * 80 + b"\r\n" + b"y" * 80 + b"\r\n.\r\n"])

    replies = asyncio.run(main())
    assert replies[-1].startswith(b"552")
    assert list(inbox.iterdir()) == []


def test_http_canary_serves_its_secret_only_at_its_path() -> None:
    async def main() -> tuple[bytes, bytes, HttpCanary]:
        async with HttpCanary("127.0.60.60") as can:
            async def get(path: str) -> bytes:
                reader, writer = await asyncio.open_connection(can.host, can.port)
                writer.write(f"GET {path} HTTP/1.0\r\n\r\n".encode())
                data = await reader.read(4096)
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
                return data
            return await get(can.path), await get("/other"), can

    hit, miss, can = asyncio.run(main())
    assert hit.startswith(b"HTTP/1.0 200") and can.secret.encode() in hit
    assert miss.startswith(b"HTTP/1.0 404") and can.secret.encode() not in miss
    assert len(can.hits) == 1 and can.hits[0].peer == "127.0.0.1"
    assert can.secret not in can.url  # the secret is never part of what we send
