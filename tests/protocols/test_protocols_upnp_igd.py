"""UPnP IGD / NAT-PMP / PCP wire formats and the safe XML reader (pure; replies as bytes)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mamori.model.base import Proto
from mamori.protocols.natpmp import (
    NatPmpFormatError,
    build_external_address_request,
    build_pcp_announce,
    parse_external_address,
    parse_pcp_announce,
)
from mamori.protocols.safexml import XmlRefused, parse_xml
from mamori.protocols.upnp_igd import (
    IGD_TARGETS,
    IgdFormatError,
    SoapFault,
    location_refusal,
    parse_description,
    parse_mapping,
    parse_soap,
    parse_ssdp_reply,
    search_requests,
    soap_request,
)

GW = "192.168.77.1"
LOCATION = "http://192.168.77.1:5000/rootDesc.xml"

# miniupnpd 2.3.1's answer, as captured in the router lab (cut to what matters)
SSDP_REPLY = (
    b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\n"
    b"ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n"
    b"USN: uuid:3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b::urn:schemas-upnp-org:device:"
    b"InternetGatewayDevice:1\r\nEXT:\r\n"
    b"SERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1\r\n"
    b"LOCATION: http://192.168.77.1:5000/rootDesc.xml\r\n\r\n"
)


def description(control: str = "/ctl/IPConn", base: str = "",
                service: str = "urn:schemas-upnp-org:service:WANIPConnection:1") -> bytes:
    url_base = f"<URLBase>{base}</URLBase>" if base else ""
    return (
        '<?xml version="1.0"?><root xmlns="urn:schemas-upnp-org:device-1-0">'
        f"<specVersion><major>1</major><minor>1</minor></specVersion>{url_base}"
        "<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>"
        "<friendlyName>MiniUPnPd</friendlyName><manufacturer>MiniUPnP</manufacturer>"
        "<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType>"
        "<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1"
        "</deviceType><serviceList><service>"
        f"<serviceType>{service}</serviceType>"
        "<serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId>"
        f"<controlURL>{control}</controlURL><eventSubURL>/evt/IPConn</eventSubURL>"
        "<SCPDURL>/WANIPCn.xml</SCPDURL></service></serviceList></device></deviceList>"
        "</device></deviceList></device></root>"
    ).encode()


def soap_answer(action: str, inner: str) -> bytes:
    return (
        '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>'
        f'<u:{action}Response xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:1">'
        f"{inner}</u:{action}Response></s:Body></s:Envelope>"
    ).encode()


FAULT_713 = (
    b'<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">'
    b"<s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring>"
    b'<detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>713</errorCode>'
    b"<errorDescription>SpecifiedArrayIndexInvalid</errorDescription></UPnPError></detail>"
    b"</s:Fault></s:Body></s:Envelope>"
)

ENTRY = soap_answer("GetGenericPortMappingEntry", (
    "<NewRemoteHost></NewRemoteHost><NewExternalPort>51413</NewExternalPort>"
    "<NewProtocol>TCP</NewProtocol><NewInternalPort>51413</NewInternalPort>"
    "<NewInternalClient>192.168.77.10</NewInternalClient><NewEnabled>1</NewEnabled>"
    "<NewPortMappingDescription>Transmission</NewPortMappingDescription>"
    "<NewLeaseDuration>0</NewLeaseDuration>"))


def test_search_asks_for_igd_v1_v2_and_the_wan_services() -> None:
    reqs = search_requests()
    assert len(reqs) == len(IGD_TARGETS)
    text = b"".join(reqs).decode()
    for st_ in ("InternetGatewayDevice:1", "InternetGatewayDevice:2", "WANIPConnection:1",
                "WANIPConnection:2", "WANPPPConnection:1"):
        assert "ST: urn:schemas-upnp-org:" in text and st_ in text
    assert all(r.startswith(b"M-SEARCH * HTTP/1.1\r\n") for r in reqs)


def test_ssdp_reply_gives_location_server_st() -> None:
    r = parse_ssdp_reply(SSDP_REPLY)
    assert r.location == LOCATION
    assert r.server == "Debian/12 UPnP/1.1 MiniUPnPd/2.3.1"
    assert r.st.endswith("InternetGatewayDevice:1")


@pytest.mark.parametrize("data", [b"", b"NOTIFY * HTTP/1.1\r\n\r\n",
                                  b"HTTP/1.1 200 OK\r\nST: x\r\n\r\n", b"x" * 5000])
def test_ssdp_reply_refuses_what_is_not_an_answer(data: bytes) -> None:
    with pytest.raises(IgdFormatError):
        parse_ssdp_reply(data)


@pytest.mark.parametrize(("url", "ok"), [
    (LOCATION, True),
    ("http://192.168.77.1/x.xml", True),
    ("http://192.168.77.2:5000/rootDesc.xml", False),  # another LAN host
    ("http://11.0.0.1:5000/rootDesc.xml", False),  # somewhere on the internet
    ("http://router.lan:5000/rootDesc.xml", False),  # a name: never looked up
    ("https://192.168.77.1:5000/rootDesc.xml", False),
    ("file:///etc/passwd", False),
    ("http://192.168.77.1:99999/", False),
    ("http://user@192.168.77.2@192.168.77.1/", True),  # urlsplit's host is the last one
])
def test_location_must_be_the_gateway_itself(url: str, ok: bool) -> None:
    assert (location_refusal(url, GW) is None) is ok


def test_description_relative_control_url_resolves_against_location() -> None:
    d = parse_description(description(), LOCATION, GW)
    assert d.control_url == "http://192.168.77.1:5000/ctl/IPConn"
    assert d.service_type.endswith("WANIPConnection:1")
    assert d.igd_version == 1
    assert "MiniUPnPd" in d.server


def test_description_urlbase_and_v2_service_preferred() -> None:
    both = description(base="http://192.168.77.1:49000/").replace(
        b"</serviceList>", b"<service><serviceType>urn:schemas-upnp-org:service:"
        b"WANIPConnection:2</serviceType><controlURL>ctl2</controlURL></service></serviceList>")
    d = parse_description(both, LOCATION, GW)
    assert d.control_url == "http://192.168.77.1:49000/ctl2"
    assert d.igd_version == 2


def test_description_ppp_service_is_found() -> None:
    d = parse_description(description(
        service="urn:schemas-upnp-org:service:WANPPPConnection:1"), LOCATION, GW)
    assert d.service_type.endswith("WANPPPConnection:1")


@pytest.mark.parametrize("data", [
    description(control="http://11.0.0.1/ctl"),  # control URL elsewhere
    description(base="http://192.168.77.99:5000/"),  # URLBase elsewhere
    description(service="urn:schemas-upnp-org:service:Layer3Forwarding:1"),
    description(control=""),
    b"<root><device>",  # malformed
    b"not xml at all",
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 '
    b'"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><root>&lol2;</root>',
    b'<?xml version="1.0"?><!DOCTYPE r SYSTEM "http://11.0.0.1/evil.dtd"><root/>',
    b"<root>" + b"<device>" * 100 + b"</device>" * 100 + b"</root>",  # too deep
    b"<root>" + b" " * (70 * 1024) + b"</root>",  # over the description cap
])
def test_description_refusals(data: bytes) -> None:
    with pytest.raises(IgdFormatError):
        parse_description(data, LOCATION, GW)


def test_billion_laughs_is_refused_before_any_expansion() -> None:
    lol = b'<!ENTITY l0 "ha">' + b"".join(
        f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">'.encode() for i in range(1, 10))
    with pytest.raises(XmlRefused, match=r"DTD|entity"):
        parse_xml(b"<?xml version='1.0'?><!DOCTYPE r [" + lol + b"]><r>&l9;</r>")


def test_undeclared_entity_is_malformed_not_fetched() -> None:
    with pytest.raises(XmlRefused):
        parse_xml(b"<r>&ext;</r>")


def test_soap_request_escapes_and_names_the_action() -> None:
    body, action = soap_request("urn:schemas-upnp-org:service:WANIPConnection:1",
                                "GetGenericPortMappingEntry",
                                (("NewPortMappingIndex", "<3&>"),))
    assert action == '"urn:schemas-upnp-org:service:WANIPConnection:1#GetGenericPortMappingEntry"'
    assert b"<NewPortMappingIndex>&lt;3&amp;&gt;</NewPortMappingIndex>" in body
    root = parse_xml(body)
    assert next(root.iter("GetGenericPortMappingEntry")).child_text("NewPortMappingIndex") \
        == "<3&>"


def test_soap_answer_fields_and_mapping() -> None:
    fields = parse_soap(ENTRY, "GetGenericPortMappingEntry")
    assert isinstance(fields, dict)
    m = parse_mapping(fields)
    assert (m.external_port, m.proto, m.internal_client, m.internal_port, m.description,
            m.lease_seconds, m.enabled, m.remote_host, m.source) == (
        51413, Proto.TCP, "192.168.77.10", 51413, "Transmission", 0, True, "", "upnp")


def test_soap_fault_713_is_the_end_of_the_table() -> None:
    fault = parse_soap(FAULT_713, "GetGenericPortMappingEntry")
    assert fault == SoapFault(713, "SpecifiedArrayIndexInvalid")


@pytest.mark.parametrize("data", [
    b"<Envelope><Body></Body></Envelope>",
    b"<html><body>200 OK</body></html>",
    soap_answer("GetExternalIPAddress", "<NewExternalIPAddress>1.2.3.4</NewExternalIPAddress>"),
    b"<s:Envelope",
])
def test_soap_answer_for_something_else_is_refused(data: bytes) -> None:
    with pytest.raises(IgdFormatError):
        parse_soap(data, "GetGenericPortMappingEntry")


@pytest.mark.parametrize(("field", "value"), [
    ("NewProtocol", "ICMP"), ("NewExternalPort", "0"), ("NewExternalPort", "65536"),
    ("NewInternalPort", "-1"), ("NewInternalClient", "evil.example"),
    ("NewLeaseDuration", "forever"),
])
def test_mapping_with_bad_fields_is_refused(field: str, value: str) -> None:
    fields = parse_soap(ENTRY, "GetGenericPortMappingEntry")
    assert isinstance(fields, dict)
    with pytest.raises(IgdFormatError):
        parse_mapping({**fields, field: value})


def test_mapping_description_is_cut() -> None:
    fields = parse_soap(ENTRY, "GetGenericPortMappingEntry")
    assert isinstance(fields, dict)
    m = parse_mapping({**fields, "NewPortMappingDescription": "x" * 5000})
    assert len(m.description) <= 160


def test_natpmp_external_address() -> None:
    assert build_external_address_request() == b"\x00\x00"
    # miniupnpd 2.3.1, captured in the lab: success, 11.0.0.2; and result 3 for 100.64.1.2
    ok = parse_external_address(b"\x00\x80\x00\x00\x00\x001\xef\x0b\x00\x00\x02")
    assert (ok.result, ok.address) == (0, "11.0.0.2")
    hidden = parse_external_address(b"\x00\x80\x00\x03\x00\x001\xed\x00\x00\x00\x00")
    assert (hidden.result, hidden.address, hidden.result_text) == (3, None, "network failure")


def test_pcp_announce() -> None:
    req = build_pcp_announce("192.168.77.10")
    assert len(req) == 24 and req[:2] == b"\x02\x00"
    assert req[-4:] == bytes([192, 168, 77, 10]) and req[-6:-4] == b"\xff\xff"
    ans = parse_pcp_announce(b"\x02\x80\x00\x00" + b"\x00" * 4 + struct.pack("!I", 12781)
                             + b"\x00" * 12)
    assert (ans.version, ans.result, ans.epoch) == (2, 0, 12781)
    assert parse_pcp_announce(b"\x00\x80\x00\x01").version == 0  # NAT-PMP only


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_fuzzed_bytes_only_raise_the_format_errors(data: bytes) -> None:
    for parse in (lambda: parse_ssdp_reply(data), lambda: parse_description(data, LOCATION, GW),
                  lambda: parse_soap(data, "GetExternalIPAddress")):
        try:
            parse()
        except IgdFormatError:
            pass
    for parse2 in (lambda: parse_external_address(data), lambda: parse_pcp_announce(data)):
        try:
            parse2()
        except NatPmpFormatError:
            pass
