"""The named pieces the probe table may refer to: payload builders, reply parsers, readers.

Each kind lives in ONE explicit dict. The table names entries by key; a name that is not a key
is rejected when the table loads. Nothing here is looked up by attribute name or evaluated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mamori.protocols import (
    afp,
    dns,
    ftp,
    http,
    ipp,
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
    ssdp,
    ssh,
    telnet,
    tls,
)


@dataclass(frozen=True, slots=True)
class BuildContext:
    """What a payload builder may use about the endpoint and the caller."""

    host: str
    port: int
    server_hostname: str | None = None
    user_agent: str = "mamori/0.1"


Builder = Callable[[BuildContext, Mapping[str, str]], bytes]
Parser = Callable[[bytes], dict[str, str] | None]
Reader = Callable[[bytes], bool]


# --- builders -------------------------------------------------------------------------------

def _http_get(ctx: BuildContext, args: Mapping[str, str]) -> bytes:
    host = ctx.server_hostname or ctx.host
    return http.build_request("GET", args.get("path", "/"), http.host_header(host, ctx.port),
                              ctx.user_agent)


def _ipp(ctx: BuildContext, args: Mapping[str, str]) -> bytes:
    host = ctx.server_hostname or ctx.host
    uri = f"ipp://{http.host_header(host, ctx.port, 0)}/"
    body = ipp.build_request(ipp.OP_GET_PRINTER_ATTRIBUTES, 1, printer_uri=uri,
                             requested=("printer-name",))
    return ipp.build_http(body, host, ctx.port, ctx.user_agent)


def _tls_hello(ctx: BuildContext, args: Mapping[str, str]) -> bytes:
    return tls.build_client_hello(ctx.server_hostname)


def _redis(ctx: BuildContext, args: Mapping[str, str]) -> bytes:
    return redis.build_command(*args.get("command", "PING").split())


def _mongodb(ctx: BuildContext, args: Mapping[str, str]) -> bytes:
    return mongodb.build_op_msg({args.get("command", "buildInfo"): 1, "$db": "admin"})


def _postgres(ctx: BuildContext, args: Mapping[str, str]) -> bytes:
    return postgres.build_startup()


def _smb(ctx: BuildContext, args: Mapping[str, str]) -> bytes:
    return smb.build_negotiate()


def _rdp(ctx: BuildContext, args: Mapping[str, str]) -> bytes:
    return rdp.build_connection_request()


def _afp(ctx: BuildContext, args: Mapping[str, str]) -> bytes:
    return afp.build_get_status()


def _mqtt(ctx: BuildContext, args: Mapping[str, str]) -> bytes:
    return mqtt.build_version_query()


def _dns_version_tcp(ctx: BuildContext, args: Mapping[str, str]) -> bytes:
    return dns.frame_tcp(dns.build_query("version.bind", dns.TYPE_TXT, dns.CLASS_CH,
                                         recursion=False))


def _dns_version_udp(ctx: BuildContext, args: Mapping[str, str]) -> bytes:
    return dns.build_query("version.bind", dns.TYPE_TXT, dns.CLASS_CH, recursion=False)


def _mdns(ctx: BuildContext, args: Mapping[str, str]) -> bytes:
    return dns.build_query("_services._dns-sd._udp.local", dns.TYPE_PTR, txid=0,
                           recursion=False, unicast_response=True)


def _ntp(ctx: BuildContext, args: Mapping[str, str]) -> bytes:
    return ntp.build_client_request()


def _snmp(ctx: BuildContext, args: Mapping[str, str]) -> bytes:
    return snmp.build_get(community=args.get("community", "public"))


def _ssdp(ctx: BuildContext, args: Mapping[str, str]) -> bytes:
    return ssdp.build_msearch()


def _memcached_udp(ctx: BuildContext, args: Mapping[str, str]) -> bytes:
    return memcached.build_udp()


def _nbns(ctx: BuildContext, args: Mapping[str, str]) -> bytes:
    return netbios.build_node_status()


BUILDERS: dict[str, Builder] = {
    "http_get": _http_get,
    "ipp_get_printer_attributes": _ipp,
    "tls_client_hello": _tls_hello,
    "redis_command": _redis,
    "mongodb_command": _mongodb,
    "postgres_startup": _postgres,
    "smb_negotiate": _smb,
    "rdp_connection_request": _rdp,
    "afp_get_status": _afp,
    "mqtt_version_query": _mqtt,
    "dns_version_bind_tcp": _dns_version_tcp,
    "dns_version_bind": _dns_version_udp,
    "mdns_services": _mdns,
    "ntp_client": _ntp,
    "snmp_get": _snmp,
    "ssdp_msearch": _ssdp,
    "memcached_udp_version": _memcached_udp,
    "netbios_node_status": _nbns,
}


# --- parsers: bytes -> fields for templates, or None when the reply breaks the protocol -------

def _p_http(data: bytes) -> dict[str, str] | None:
    resp = http.parse_response(data)
    if resp is None:
        return None
    return {"status": str(resp.status), "server": resp.header("Server") or ""}


def _p_tls(data: bytes) -> dict[str, str] | None:
    reply = tls.parse_server_reply(data)
    if reply is None:
        return None
    return {"tls_reply": reply.kind, "tls_version": reply.version}


def _p_redis(data: bytes) -> dict[str, str] | None:
    parsed = redis.parse_reply(data)
    if parsed is None:
        return None
    value, _ = parsed
    if isinstance(value, redis.RespError):
        return {"kind": "error", "error": str(value)[:200]}
    if isinstance(value, bytes):
        info = redis.info_fields(value)
        return {"kind": "bulk", "version": info.get("redis_version", ""),
                "mode": info.get("redis_mode", ""), "os": info.get("os", "")}
    return {"kind": type(value).__name__}


def _p_mongodb(data: bytes) -> dict[str, str] | None:
    doc = mongodb.parse_reply(data)
    if doc is None or "ok" not in doc:
        return None
    out = {"ok": str(doc.get("ok"))}
    for key in ("version", "errmsg", "codeName", "maxWireVersion"):
        value = doc.get(key)
        if isinstance(value, str | int | float):
            out[key] = str(value)
    return out


def _p_postgres(data: bytes) -> dict[str, str] | None:
    reply = postgres.parse_reply(data)
    if reply is None:
        return None
    f = reply.fields
    return {"kind": reply.kind, "severity": f.get("S", ""), "code": f.get("C", ""),
            "message": f.get("M", ""), "routine": f.get("R", ""), "auth": f.get("auth", "")}


def _p_mysql(data: bytes) -> dict[str, str] | None:
    reply = mysql.parse_greeting(data)
    if isinstance(reply, mysql.Greeting):
        return {"product": reply.product, "version": reply.version,
                "server_version": reply.server_version, "auth_plugin": reply.auth_plugin}
    if isinstance(reply, mysql.ErrorPacket):
        product = "MariaDB" if "MariaDB" in reply.message else "MySQL"
        return {"product": product, "error_code": str(reply.code), "error": reply.message}
    return None


def _p_smb(data: bytes) -> dict[str, str] | None:
    reply = smb.parse_negotiate_reply(data)
    if reply is None:
        return None
    return {"smb_version": str(reply.smb_version), "dialect": reply.dialect,
            "signing_required": "yes" if reply.signing_required else "no",
            "status": f"0x{reply.status:08x}"}


def _p_rdp(data: bytes) -> dict[str, str] | None:
    cc = rdp.parse_connection_confirm(data)
    if cc is None:
        return None
    return {"selected": cc.selected or "", "failure": "" if cc.failure_code is None
            else str(cc.failure_code)}


def _p_afp(data: bytes) -> dict[str, str] | None:
    info = afp.parse_status(data)
    if info is None:
        return None
    return {"server_name": info.server_name, "machine_type": info.machine_type,
            "afp_versions": " ".join(info.afp_versions), "uams": " ".join(info.uams)}


def _p_mqtt(data: bytes) -> dict[str, str] | None:
    reply = mqtt.parse_broker_reply(data)
    if reply is None:
        return None
    return {"return_code": str(reply.return_code), "broker": reply.version or ""}


def _dns_fields(msg: dns.Message | None) -> dict[str, str] | None:
    if msg is None or not msg.is_response:
        return None
    txt = next((r.text[0] for r in msg.answers if r.rtype == dns.TYPE_TXT and r.text), "")
    names = [q[0] for q in msg.questions] + [r.name for r in msg.answers]
    local = any(n.lower().endswith(".local") for n in names)
    return {"rcode": str(msg.rcode), "txid": str(msg.txid), "txt": txt,
            "aa": "yes" if msg.authoritative else "no", "local": "yes" if local else "no",
            "answers": str(len(msg.answers))}


def _p_dns(data: bytes) -> dict[str, str] | None:
    return _dns_fields(dns.parse_message(data))


def _p_dns_tcp(data: bytes) -> dict[str, str] | None:
    if len(data) < 2 or int.from_bytes(data[:2], "big") != len(data) - 2:
        return None
    return _dns_fields(dns.parse_message(data[2:]))


def _p_ntp(data: bytes) -> dict[str, str] | None:
    reply = ntp.parse_reply(data, origin=ntp.DEFAULT_TRANSMIT)
    if reply is None:
        return None
    return {"version": str(reply.version), "mode": reply.mode, "stratum": str(reply.stratum),
            "refid": reply.refid}


def _p_snmp(data: bytes) -> dict[str, str] | None:
    reply = snmp.parse_response(data)
    if reply is None:
        return None
    return {"snmp_version": {0: "1", 1: "2c"}.get(reply.version, "?"),
            "community": reply.community, "sysdescr": reply.value(snmp.SYS_DESCR) or "",
            "sysobjectid": reply.value(snmp.SYS_OBJECT_ID) or ""}


def _p_telnet(data: bytes) -> dict[str, str] | None:
    neg = telnet.parse_negotiation(data)
    if neg is None:
        return None
    return {"options": str(len(neg.options))}


def _p_memcached_udp(data: bytes) -> dict[str, str] | None:
    version = memcached.parse_udp_version(data)
    return None if version is None else {"version": version}


def _p_nbns(data: bytes) -> dict[str, str] | None:
    status = netbios.parse_node_status(data)
    if status is None:
        return None
    return {"computer_name": status.computer_name or "", "workgroup": status.workgroup or "",
            "mac": status.mac}


def _p_ssh(data: bytes) -> dict[str, str] | None:
    ident = ssh.parse_ident(data)
    if ident is None:
        return None
    return {"protocol": ident.protocol, "software": ident.software, "comments": ident.comments}


PARSERS: dict[str, Parser] = {
    "http": _p_http,
    "tls": _p_tls,
    "redis": _p_redis,
    "mongodb": _p_mongodb,
    "postgresql": _p_postgres,
    "mysql": _p_mysql,
    "smb": _p_smb,
    "rdp": _p_rdp,
    "afp": _p_afp,
    "mqtt": _p_mqtt,
    "dns": _p_dns,
    "dns_tcp": _p_dns_tcp,
    "ntp": _p_ntp,
    "snmp": _p_snmp,
    "telnet": _p_telnet,
    "memcached_udp": _p_memcached_udp,
    "netbios": _p_nbns,
    "ssh": _p_ssh,
}


# --- readers: when is a reply complete (or plainly not the protocol we asked)? ---------------

def _banner_done(buf: bytes) -> bool:
    # A text banner ends at its line end; a binary greeting (MySQL, telnet options) arrives in
    # one piece, so the first non-text byte ends the wait.
    if not buf:
        return False
    if b"\n" in buf or len(buf) >= 4096:
        return True
    return any(b < 0x09 or 0x0E <= b < 0x20 or b >= 0x7F for b in buf[:64])


READERS: dict[str, Reader] = {
    "any": bool,
    "line": lambda buf: b"\n" in buf,
    "banner": _banner_done,
    "http": http.reply_complete,
    "tls": tls.reply_complete,
    "redis": redis.reply_complete,
    "mongodb": mongodb.reply_complete,
    "postgresql": postgres.reply_complete,
    "smb": smb.reply_complete,
    "rdp": rdp.reply_complete,
    "afp": afp.reply_complete,
    "mqtt": mqtt.reply_complete,
    "dns_tcp": dns.tcp_reply_complete,
    "greeting_reply": ftp.greeting_and_reply_complete,
    # IMAP: the reply to our tagged command is complete at the tagged line (or the cap).
    "imap_tagged": lambda buf: b"a001 " in buf or len(buf) >= 4096,
}
