"""Services with no Debian daemon here, served by small faithful servers on 127.0.21.x.

Each fake answers with real-format bytes (from the protocol specs and real captures) and, like
the real thing, closes on requests it does not understand. Ports are deliberately not the
services' usual ones: names must come from the replies.
"""

from __future__ import annotations

import asyncio
import json
import struct

from fake_servers import tcp_server, udp_ask, udp_server
from mamori.identify.engine import identify_tcp, identify_udp, udp_payload
from mamori.identify.table import load_table
from mamori.model import Service
from mamori.protocols import afp, dns, netbios, rdp

HOST = "127.0.21.10"


def _bson(doc: dict[str, object]) -> bytes:
    body = b""
    for key, value in doc.items():
        k = key.encode() + b"\0"
        if isinstance(value, bool):
            body += b"\x08" + k + bytes([value])
        elif isinstance(value, float):
            body += b"\x01" + k + struct.pack("<d", value)
        elif isinstance(value, int):
            body += b"\x10" + k + struct.pack("<i", value)
        elif isinstance(value, str):
            raw = value.encode() + b"\0"
            body += b"\x02" + k + struct.pack("<i", len(raw)) + raw
        elif isinstance(value, list):
            body += b"\x04" + k + _bson({str(i): v for i, v in enumerate(value)})
    return struct.pack("<i", len(body) + 5) + body + b"\0"


async def mongod(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    header = await reader.readexactly(16)
    length, request_id, _, opcode = struct.unpack("<iiii", header)
    if opcode != 2013 or not 21 <= length <= 48 * 1024 * 1024:
        return  # mongod drops connections that do not speak its wire protocol
    await reader.readexactly(length - 16)
    doc = _bson({"version": "7.0.5", "gitVersion": "7809d71e84e314b497f282ea8aa06d7ded3eb205",
                 "versionArray": [7, 0, 5, 0], "bits": 64, "maxBsonObjectSize": 16777216,
                 "ok": 1.0})
    payload = struct.pack("<I", 0) + b"\0" + doc
    writer.write(struct.pack("<iiii", 16 + len(payload), 77, request_id, 2013) + payload)
    await writer.drain()


def _http(status: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    return head.encode() + f"content-length: {len(body)}\r\n\r\n".encode() + body


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
        return None
    return head if head[:4] in (b"GET ", b"HEAD", b"POST") else None


async def elasticsearch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    if await _read_request(reader) is None:
        return
    body = json.dumps({
        "name": "node-1", "cluster_name": "elasticsearch", "cluster_uuid": "m2mbH8XyT6WOMQ6i0I1TRw",
        "version": {"number": "8.11.3", "build_flavor": "default", "build_type": "deb",
                    "lucene_version": "9.8.0", "minimum_wire_compatibility_version": "7.17.0"},
        "tagline": "You Know, for Search"}, indent=2, separators=(",", " : ")).encode() + b"\n"
    writer.write(_http("200 OK", [("X-elastic-product", "Elasticsearch"),
                                  ("content-type", "application/json")], body))
    await writer.drain()


async def dockerd(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    request = await _read_request(reader)
    if request is None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     b"Connection: close\r\n\r\n400 Bad Request")
    elif request.startswith(b"GET /version "):
        body = (b'{"Platform":{"Name":"Docker Engine - Community"},"Version":"24.0.7",'
                b'"ApiVersion":"1.43","MinAPIVersion":"1.12","GitCommit":"311b9ff",'
                b'"GoVersion":"go1.20.10","Os":"linux","Arch":"amd64"}\n')
        writer.write(_http("200 OK", [("Api-Version", "1.43"), ("Content-Type", "application/json"),
                                      ("Docker-Experimental", "false"), ("Ostype", "linux"),
                                      ("Server", "Docker/24.0.7 (linux)")], body))
    else:  # dockerd's router answers unknown paths without its own headers
        writer.write(_http("404 Not Found", [("Content-Type", "application/json")],
                           b'{"message":"page not found"}\n'))
    await writer.drain()


async def xrdp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = await reader.readexactly(4)
    if head[:2] != b"\x03\x00":
        return
    await reader.readexactly(int.from_bytes(head[2:4], "big") - 4)
    # Connection Confirm selecting PROTOCOL_SSL (what xrdp and Windows answer mstsc with).
    writer.write(b"\x03\x00\x00\x13\x0e\xd0\x00\x00\x12\x34\x00\x02\x1f\x08\x00"
                 + struct.pack("<I", rdp.PROTOCOL_SSL))
    await writer.drain()


async def vnc(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"RFB 003.008\n")
    await writer.drain()
    await reader.read(12)


def _afp_status() -> bytes:
    def pstr(s: bytes) -> bytes:
        return bytes([len(s)]) + s

    name, machine = b"homenas", b"Netatalk3.1.15"
    versions, uams = [b"AFP3.1", b"AFP3.2", b"AFP3.3", b"AFP3.4"], [b"DHX2", b"DHCAST128"]
    fixed = 10 + len(pstr(name))
    m_off = fixed + fixed % 2
    v_off = m_off + len(pstr(machine))
    u_off = v_off + 1 + sum(len(pstr(v)) for v in versions)
    block = struct.pack(">HHHHH", m_off, v_off, u_off, 0, 0x8F79) + pstr(name)
    block = block.ljust(m_off, b"\0") + pstr(machine) + bytes([len(versions)])
    block += b"".join(pstr(v) for v in versions) + bytes([len(uams)])
    block += b"".join(pstr(u) for u in uams)
    return struct.pack(">BBHiII", 1, afp.DSI_GET_STATUS, 1, 0, len(block), 0) + block


async def netatalk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    header = await reader.readexactly(16)
    if header[0] != 0 or header[1] != afp.DSI_GET_STATUS:
        return
    writer.write(_afp_status())
    await writer.drain()


def _tcp(port: int, handler) -> tuple[Service | None, list]:  # type: ignore[no-untyped-def,type-arg]
    async def main():  # type: ignore[no-untyped-def]
        async with tcp_server(HOST, port, handler):
            return await identify_tcp(HOST, port, banner_wait=1.0)

    return asyncio.run(main())


def test_mongodb() -> None:
    service, _ = _tcp(27117, mongod)
    assert service is not None and service.name == "mongodb"
    assert service.product == "MongoDB" and service.version == "7.0.5"


def test_elasticsearch() -> None:
    service, _ = _tcp(19201, elasticsearch)
    assert service is not None and service.name == "elasticsearch"
    assert service.product == "Elasticsearch" and service.version == "8.11.3"


def test_docker_api() -> None:
    service, _ = _tcp(12385, dockerd)
    assert service is not None and service.name == "docker" and service.confidence == "confirmed"
    assert service.product == "Docker" and service.version == "24.0.7"
    assert service.extra["api_version"] == "1.43"


def test_rdp() -> None:
    service, _ = _tcp(13389, xrdp)
    assert service is not None and service.name == "rdp"
    assert service.extra["selected_protocol"] == "ssl"


def test_vnc() -> None:
    service, _ = _tcp(15901, vnc)
    assert service is not None and service.name == "vnc" and service.method == "null"
    assert service.extra["protocol"] == "003.008"


def test_afp() -> None:
    service, _ = _tcp(10548, netatalk)
    assert service is not None and service.name == "afp"
    assert service.product == "Netatalk3.1.15"
    assert service.extra["server_name"] == "homenas"


def _mdns_reply(query: bytes) -> bytes | None:
    msg = dns.parse_message(query)
    if msg is None or not msg.questions:
        return None
    # Legacy unicast (source port != 5353): echo id and question, answer authoritatively.
    question = query[12:]
    target = b"\x04_smb\x04_tcp\xc0\x23"
    answer = b"\xc0\x0c" + struct.pack(">HHIH", dns.TYPE_PTR, 1, 10, len(target)) + target
    header = query[:2] + b"\x84\x00\x00\x01\x00\x01\x00\x00\x00\x00"
    return header + question[:-2] + b"\x00\x01" + answer


def _ssdp_reply(query: bytes) -> bytes | None:
    if not query.startswith(b"M-SEARCH * HTTP/1.1\r\n"):
        return None
    return (b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: upnp:rootdevice\r\n"
            b"USN: uuid:4d696e69-444c-164e-9d41-b827eb123456::upnp:rootdevice\r\nEXT:\r\n"
            b"SERVER: Linux/6.1 UPnP/1.1 MiniUPnPd/2.3.3\r\n"
            b"LOCATION: http://127.0.21.11:5000/rootDesc.xml\r\n\r\n")


def _nbns_reply(query: bytes) -> bytes | None:
    if len(query) < 50 or query[12:14] != b"\x20C":
        return None
    names = [(b"HOMENAS", 0, 0x0400), (b"HOMENAS", 0x20, 0x0400), (b"WORKGROUP", 0, 0x8400)]
    rdata = bytes([len(names)]) + b"".join(
        n.ljust(15) + bytes([s]) + struct.pack(">H", f) for n, s, f in names) + b"\0" * 46
    return (query[:2] + b"\x84\x00\x00\x00\x00\x01\x00\x00\x00\x00" + query[12:46]
            + struct.pack(">HHIH", 0x21, 1, 0, len(rdata)) + rdata)


def _udp(port: int, reply, payload_port: int) -> Service | None:  # type: ignore[no-untyped-def]
    async def main() -> bytes:
        async with udp_server(HOST, port, reply):
            return await udp_ask(HOST, port, udp_payload(payload_port))

    return identify_udp(payload_port, asyncio.run(main()))


def test_mdns() -> None:
    service = _udp(15353, _mdns_reply, 5353)
    assert service is not None and service.name == "mdns"


def test_ssdp() -> None:
    service = _udp(11900, _ssdp_reply, 1900)
    assert service is not None and service.name == "ssdp"
    assert service.product == "Linux/6.1 UPnP/1.1 MiniUPnPd/2.3.3"


def test_netbios_ns() -> None:
    service = _udp(10137, _nbns_reply, 137)
    assert service is not None and service.name == "netbios-ns"
    assert service.extra["computer_name"] == "HOMENAS"
    assert service.extra["workgroup"] == "WORKGROUP"
    parsed = netbios.parse_node_status(_nbns_reply(netbios.build_node_status()) or b"")
    assert parsed is not None and parsed.computer_name == "HOMENAS"


def test_every_tcp_probe_is_exercised_by_a_test_server() -> None:
    """Guard: the fakes and daemons between them cover every TCP probe's service."""
    tcp_services = {m.service for p in load_table().tcp() for m in p.matchers}
    covered = {"ssh", "ftp", "smtp", "pop3", "imap", "telnet", "http", "tls", "dns", "redis",
               "memcached", "mongodb", "postgresql", "mysql", "smb", "rsync", "mqtt", "vnc",
               "rdp", "elasticsearch", "docker", "afp",
               "rpcbind",  # tests/identify/test_identify_rpcbind.py
               "socks5",  # tests/identify/test_identify_rpcbind.py (a real dante)
               "ipp",  # tests/checks/test_check_printing.py (a real cupsd)
               # tests/checks/test_check_exposure.py (real Xvfb, git daemon, slapd)
               "x11", "git", "ldap"}
    assert tcp_services <= covered
