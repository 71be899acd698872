"""Protocol parsers: real captured replies parse right; random and cut bytes never crash.

Captures in identify_captures.json were recorded from the Debian daemons started by
daemons.py (OpenSSH 9.2p1, MariaDB 10.11, PostgreSQL 15, Redis 7.0, Samba 4,
Mosquitto 2.0, Unbound 1.17, Net-SNMP, ntpsec, inetutils telnetd, nginx 1.22).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mamori.identify.registry import PARSERS, READERS
from mamori.protocols import (
    afp,
    dns,
    http,
    memcached,
    mongodb,
    mqtt,
    mysql,
    netbios,
    ntp,
    postgres,
    rdp,
    redis,
    smb,
    snmp,
    ssh,
    telnet,
    tls,
)

TESTS = Path(__file__).resolve().parents[1]
CAPTURES = {k: bytes.fromhex(v) for k, v in
            json.loads((TESTS / "identify_captures.json").read_text()).items()}

PURE_PARSERS: dict[str, Callable[[bytes], object]] = {
    "tls": tls.parse_server_reply,
    "http": http.parse_response,
    "redis": redis.parse_reply,
    "dns": dns.parse_message,
    "ntp": ntp.parse_reply,
    "snmp": snmp.parse_response,
    "mysql": mysql.parse_greeting,
    "postgres": postgres.parse_reply,
    "mongodb": mongodb.parse_reply,
    "smb": smb.parse_negotiate_reply,
    "mqtt": mqtt.parse_broker_reply,
    "mqtt_packets": mqtt.parse_packets,
    "rdp": rdp.parse_connection_confirm,
    "afp": afp.parse_status,
    "telnet": telnet.parse_negotiation,
    "ssh": ssh.parse_ident,
    "memcached": memcached.parse_version,
    "memcached_udp": memcached.parse_udp_version,
    "netbios": netbios.parse_node_status,
    "redis_info": redis.info_fields,
}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_parsers_never_raise_on_random_bytes(data: bytes) -> None:
    for parse in PURE_PARSERS.values():
        parse(data)
    for parse in PARSERS.values():
        assert parse(data) is None or isinstance(parse(data), dict)
    for done in READERS.values():
        assert isinstance(done(data), bool)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(CAPTURES)), st.data())
def test_parsers_survive_cut_and_flipped_captures(name: str, data: st.DataObject) -> None:
    raw = CAPTURES[name]
    cut = data.draw(st.integers(0, len(raw)))
    flip = data.draw(st.integers(0, max(0, len(raw) - 1)))
    mutated = bytearray(raw)
    if mutated:
        mutated[flip] ^= data.draw(st.integers(1, 255))
    for sample in (raw[:cut], bytes(mutated), bytes(mutated[:cut])):
        for parse in PURE_PARSERS.values():
            parse(sample)
        for parse in PARSERS.values():
            parse(sample)


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_truncated_captures_are_rejected_or_partial(name: str) -> None:
    raw = CAPTURES[name]
    for cut in range(len(raw)):
        for parse in PARSERS.values():
            parse(raw[:cut])


def test_real_openssh() -> None:
    ident = ssh.parse_ident(CAPTURES["sshd_banner"])
    assert ident is not None
    assert ident.protocol == "2.0" and ident.software.startswith("OpenSSH_9.2")
    assert ident.comments.startswith("Debian-")


def test_real_mariadb_greeting() -> None:
    g = mysql.parse_greeting(CAPTURES["mariadb_greeting"])
    assert isinstance(g, mysql.Greeting)
    assert g.product == "MariaDB" and g.version.startswith("10.11.")
    assert g.server_version.startswith("5.5.5-10.11.")
    assert g.auth_plugin == "mysql_native_password"


def test_real_postgres_error() -> None:
    reply = postgres.parse_reply(CAPTURES["postgres_error"])
    assert reply is not None and reply.kind == "error"
    assert reply.fields["C"] == "28000" and "pg_hba.conf" in reply.fields["M"]
    assert postgres.reply_complete(CAPTURES["postgres_error"])
    assert not postgres.reply_complete(CAPTURES["postgres_error"][:20])


def test_real_redis_info() -> None:
    parsed = redis.parse_reply(CAPTURES["redis_info"])
    assert parsed is not None
    value, used = parsed
    assert isinstance(value, bytes) and used == len(CAPTURES["redis_info"])
    assert redis.info_fields(value)["redis_version"].startswith("7.")
    assert redis.parse_reply(b"+OK") is None  # no CRLF: incomplete, not a reply
    assert redis.parse_reply(b"+OK\r\n") == ("OK", 5)
    err = redis.parse_reply(b"-NOAUTH Authentication required.\r\n")
    assert err is not None and isinstance(err[0], redis.RespError)
    assert redis.parse_reply(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n") == ([b"INFO", b"server"], 26)


def test_real_samba_negotiate() -> None:
    reply = smb.parse_negotiate_reply(CAPTURES["samba_negotiate"])
    assert reply is not None and reply.smb_version == 2 and reply.status == 0
    assert reply.dialect in ("3.0.2", "3.0", "2.1", "2.0.2")
    assert b"not_defined_in_RFC4178@please_ignore" in reply.security_blob


def test_real_mosquitto() -> None:
    reply = mqtt.parse_broker_reply(CAPTURES["mosquitto_connack"])
    assert reply is not None and reply.return_code == 0
    assert reply.version is not None and reply.version.startswith("mosquitto version 2.")
    assert mqtt.reply_complete(CAPTURES["mosquitto_connack"])
    assert not mqtt.reply_complete(CAPTURES["mosquitto_connack"][:4])


def test_real_unbound() -> None:
    for msg in (dns.parse_message(CAPTURES["unbound_udp"]),
                dns.parse_message(CAPTURES["unbound_tcp"][2:])):
        assert msg is not None and msg.is_response and msg.rcode == 0
        assert msg.answers[0].text[0].startswith("unbound 1.")
    assert dns.tcp_reply_complete(CAPTURES["unbound_tcp"])
    assert not dns.tcp_reply_complete(CAPTURES["unbound_tcp"][:-1])


def test_dns_pointer_loops_rejected() -> None:
    header = b"\x12\x34\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00"
    assert dns.parse_message(header + b"\xc0\x0c\x00\x01\x00\x01") is None  # points at itself
    assert dns.parse_message(header + b"\xc0\x20\x00\x01\x00\x01") is None  # points forward


def test_real_netsnmp() -> None:
    reply = snmp.parse_response(CAPTURES["netsnmp_get"])
    assert reply is not None and reply.version == 1 and reply.community == "public"
    assert (reply.value(snmp.SYS_DESCR) or "").startswith("Linux")
    assert (reply.value(snmp.SYS_OBJECT_ID) or "").startswith("1.3.6.1.4.1.8072.")


def test_real_ntpsec() -> None:
    reply = ntp.parse_reply(CAPTURES["ntpsec_reply"], origin=ntp.DEFAULT_TRANSMIT)
    assert reply is not None and reply.mode == "server" and reply.version == 4
    assert ntp.parse_reply(CAPTURES["ntpsec_reply"], origin=1) is None


def test_real_telnetd() -> None:
    neg = telnet.parse_negotiation(CAPTURES["telnetd_banner"])
    assert neg is not None and ("DO", 24) in neg.options


def test_real_nginx() -> None:
    resp = http.parse_response(CAPTURES["nginx_http"])
    assert resp is not None and resp.status == 200
    assert resp.header("server") == "nginx/1.22.1"
    assert http.reply_complete(CAPTURES["nginx_http"])
    hello = tls.parse_server_reply(CAPTURES["nginx_server_hello"])
    assert hello is not None and hello.kind == "server-hello"
    assert hello.version in ("TLSv1.2", "TLSv1.3")
    resp = http.parse_response(CAPTURES["nginx_tls_port_plain_get"])
    assert resp is not None and resp.status == 400


def test_builders_round_trip() -> None:
    hello = tls.build_client_hello("mamori.test")
    assert hello[0] == 0x16 and int.from_bytes(hello[3:5], "big") == len(hello) - 5
    assert b"mamori.test" in hello
    assert b"127.0.0.1" not in tls.build_client_hello("127.0.0.1")
    req = http.build_request("GET", "/", "h\r\nX: y", "ua")
    assert b"\r\nX: y" not in req and req.endswith(b"\r\n\r\n")
    assert http.host_header("::1", 8080) == "[::1]:8080"
    q = dns.parse_message(dns.build_query("version.bind", dns.TYPE_TXT, dns.CLASS_CH))
    assert q is not None and q.questions == (("version.bind", dns.TYPE_TXT, dns.CLASS_CH),)
    startup = postgres.build_startup()
    assert int.from_bytes(startup[:4], "big") == len(startup)
    msg = mongodb.build_op_msg({"buildInfo": 1, "$db": "admin"})
    assert int.from_bytes(msg[:4], "little") == len(msg)
    neg = smb.build_negotiate()
    assert int.from_bytes(neg[1:4], "big") == len(neg) - 4 and neg[4:8] == b"\xfeSMB"
    cr = rdp.build_connection_request()
    assert int.from_bytes(cr[2:4], "big") == len(cr) and cr[5] == 0xE0
    assert len(ntp.build_client_request()) == 48
    assert len(afp.build_get_status()) == 16
    packets = mqtt.parse_packets(mqtt.build_version_query())
    assert packets is not None and [p.kind for p in packets] == [mqtt.CONNECT, mqtt.SUBSCRIBE]
    get = snmp.build_get()
    assert get[0] == 0x30 and get[1] == len(get) - 2
    assert netbios.build_node_status()[12:14] == b"\x20C"
