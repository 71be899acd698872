"""protocols/serve_api.py: the API v1 wire format, both ends. Pure: no sockets."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mamori.model.base import Proto
from mamori.model.path import OutsidePort, OutsideState
from mamori.protocols.serve_api import (
    MAX_PORT_ENTRIES,
    ApiFormatError,
    check_body,
    error_message,
    merge_ports,
    parse_created,
    parse_ports,
    parse_status,
)

ID = "a" * 43


def test_the_clients_body_is_what_the_service_accepts() -> None:
    body = check_body([(Proto.TCP, 22), (Proto.UDP, 53), (Proto.TCP, 22)])
    assert json.loads(body) == {"ports": [{"proto": "tcp", "port": 22},
                                          {"proto": "udp", "port": 53}]}
    assert parse_ports(body) == ((Proto.TCP, 22), (Proto.UDP, 53))


@pytest.mark.parametrize("body, words", [
    (b'{"ports": [{"proto": "tcp", "port": 22}], "target": "192.0.2.1"}', "unknown field 'target'"),
    (b'{"ports": [{"proto": "tcp", "port": 22, "host": "192.0.2.1"}]}', "unknown field 'host'"),
    (b'{"ports": []}', "non-empty"),
    (b'{"ports": [{"proto": "sctp", "port": 22}]}', "proto"),
    (b'{"ports": [{"proto": "tcp", "port": 0}]}', "1 to 65535"),
    (b'{"ports": [{"proto": "tcp", "port": true}]}', "1 to 65535"),
    (b'{"ports": [{"proto": "tcp", "port": "22"}]}', "1 to 65535"),
    (b'[1, 2]', "not a JSON object"),
    (b'\xff\xfe', "not a JSON object"),
    (b'{"ports": [' + b'[' * 100 + b']' * 100 + b']}', "not a JSON object"),
])
def test_bad_bodies_are_refused_with_the_reason(body: bytes, words: str) -> None:
    with pytest.raises(ApiFormatError, match=words):
        parse_ports(body)


def test_too_many_entries_are_refused() -> None:
    many = {"ports": [{"proto": "tcp", "port": 1 + i % 65535}
                      for i in range(MAX_PORT_ENTRIES + 1)]}
    with pytest.raises(ApiFormatError, match="more than"):
        parse_ports(json.dumps(many).encode())


def test_answers_are_read_into_outside_ports() -> None:
    created = parse_created(json.dumps({
        "api": 1, "id": ID, "status": "queued", "seen_address": "198.51.100.7",
        "not_tested": [{"proto": "tcp", "port": 9, "state": "not-tested", "reason": "cap"}],
    }).encode())
    assert created.not_tested == (OutsidePort(Proto.TCP, 9, OutsideState.NOT_TESTED, "cap"),)
    status = parse_status(json.dumps({
        "api": 1, "id": ID, "status": "done", "seen_address": "198.51.100.7", "percent": 250,
        "ports": [{"proto": "udp", "port": 53, "state": "filtered", "reason": "x" * 1000}],
    }).encode())
    assert status.percent == 100 and len(status.ports[0].reason) == 300
    assert merge_ports(created.not_tested, status.ports)[0].port == 9
    for bad in ({"api": 2}, {"api": True, "id": ID, "status": "done", "seen_address": "a"},
                {"api": 1, "id": "short", "status": "done", "seen_address": "a"},
                {"api": 1, "id": ID, "status": "exploded", "seen_address": "a"},
                {"api": 1, "id": ID, "status": "done", "seen_address": "a",
                 "ports": [{"proto": "tcp", "port": 1, "state": "ajar"}]}):
        with pytest.raises(ApiFormatError):
            parse_status(json.dumps(bad).encode())
    assert error_message(b'{"api": 1, "error": "too\\nmany"}') == "too many"
    assert error_message(b"<html>") is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_untrusted_bytes_only_ever_raise_api_format_error(raw: bytes) -> None:
    for parse in (parse_ports, parse_created, parse_status):
        try:
            parse(raw)
        except ApiFormatError:
            pass
    error_message(raw)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 70000) | st.text(max_size=8)
    | st.sampled_from(["tcp", "udp", "open", "done", "not-tested", ID]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["api", "id", "status", "seen_address", "ports", "not_tested",
                         "proto", "port", "state", "reason", "percent", "error", "x"]),
        inner, max_size=6),
    max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_json_shaped_lies_only_ever_raise_api_format_error(value: object) -> None:
    raw = json.dumps(value).encode()
    for parse in (parse_ports, parse_created, parse_status):
        try:
            parse(raw)
        except ApiFormatError:
            pass
