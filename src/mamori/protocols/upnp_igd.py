"""UPnP Internet Gateway Device: SSDP replies, the device description, SOAP (pure).

Discovery asks for the IGD device types (v1, v2) and the WAN connection services; a reply's
LOCATION must name the gateway itself (``location_refusal``): a device description anywhere
else is never fetched. The description gives the control URL of WANIPConnection:2/:1 or
WANPPPConnection:1, resolved against URLBase or LOCATION and held to the same host. SOAP:
GetExternalIPAddress, GetStatusInfo, GetGenericPortMappingEntry (indexed), DeletePortMapping
(only ``mamori router close`` sends it). Parse errors raise ``IgdFormatError`` (one line).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit
from xml.sax.saxutils import escape

from mamori.model.base import Proto
from mamori.model.path import PortMapping
from mamori.protocols.safexml import XmlRefused, parse_xml
from mamori.protocols.ssdp import build_msearch

IGD_TARGETS = (
    "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
    "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
    "urn:schemas-upnp-org:service:WANIPConnection:2",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
)
# preferred first
WAN_SERVICES = (
    "urn:schemas-upnp-org:service:WANIPConnection:2",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
)
MAX_SSDP_REPLY = 2048
MAX_DESCRIPTION = 64 * 1024
MAX_SOAP = 16 * 1024
MAX_TEXT = 160  # description, server strings kept
ARRAY_INDEX_INVALID = 713  # SpecifiedArrayIndexInvalid: the end of the mapping table
INVALID_ARGS = 402


class IgdFormatError(ValueError):
    """An answer that is not what the UPnP IGD specification says; ``str()`` is one line."""


def _cut(text: str, n: int = MAX_TEXT) -> str:
    one = " ".join(text.split())
    return one if len(one) <= n else one[: n - 1] + "…"


def search_requests() -> tuple[bytes, ...]:
    """One M-SEARCH per IGD device/service type (MX 1: answers come within a second)."""
    return tuple(build_msearch(target, mx=1) for target in IGD_TARGETS)


@dataclass(frozen=True, slots=True)
class SsdpReply:
    location: str
    server: str
    st: str


def parse_ssdp_reply(data: bytes) -> SsdpReply:
    """An SSDP search answer (``HTTP/1.1 200 OK`` + headers). Raises IgdFormatError."""
    if len(data) > MAX_SSDP_REPLY:
        raise IgdFormatError(f"SSDP reply larger than {MAX_SSDP_REPLY} bytes")
    lines = data.decode("latin-1").split("\r\n") if b"\r\n" in data else \
        data.decode("latin-1").split("\n")
    if not lines or not lines[0].startswith("HTTP/1.") or " 200" not in lines[0][:13]:
        raise IgdFormatError(f"not an SSDP answer: {_cut(lines[0] if lines else '', 60)!r}")
    headers: dict[str, str] = {}
    for line in lines[1:40]:
        name, sep, value = line.partition(":")
        if sep:
            headers.setdefault(name.strip().lower(), value.strip())
    location = headers.get("location", "")
    if not location:
        raise IgdFormatError("SSDP answer without LOCATION")
    return SsdpReply(location[:512], _cut(headers.get("server", "")), _cut(headers.get("st", "")))


def location_refusal(url: str, gateway: str) -> str | None:
    """None when ``url`` is http:// on the gateway's own address; else why it is refused."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return f"refused a malformed URL {_cut(url, 80)!r}"
    if parts.scheme != "http":
        return f"refused {_cut(url, 80)!r}: only http:// on the gateway is fetched"
    host = parts.hostname or ""
    try:
        same = ipaddress.ip_address(host) == ipaddress.ip_address(gateway)
    except ValueError:
        same = False
    if not same:
        return (f"refused {_cut(url, 80)!r}: it points at {_cut(host, 60) or 'no host'}, "
                f"not at the gateway {gateway}")
    if port is not None and not 0 < port < 65536:
        return f"refused {_cut(url, 80)!r}: bad port"
    return None


@dataclass(frozen=True, slots=True)
class IgdDescription:
    control_url: str
    service_type: str
    igd_version: int  # 1 or 2
    server: str  # friendlyName / manufacturer / modelName, cut


def parse_description(data: bytes, location: str, gateway: str) -> IgdDescription:
    """The WAN connection service of a device description. Raises IgdFormatError."""
    try:
        root = parse_xml(data, max_bytes=MAX_DESCRIPTION)
    except XmlRefused as exc:
        raise IgdFormatError(f"device description: {exc}") from None
    base = root.child_text("URLBase") or location
    device = next(root.iter("device"), None)
    if device is None:
        raise IgdFormatError("device description without a <device>")
    dtype = device.child_text("deviceType")
    version = 2 if dtype.endswith("InternetGatewayDevice:2") else 1
    server = _cut(" ".join(x for x in (device.child_text("friendlyName"),
                                        device.child_text("manufacturer"),
                                        device.child_text("modelName")) if x))
    services = [s for s in root.iter("service")]
    for wanted in WAN_SERVICES:
        for svc in services:
            if svc.child_text("serviceType") != wanted:
                continue
            control = svc.child_text("controlURL")
            if not control:
                raise IgdFormatError(f"{wanted.rsplit(':', 2)[-2]} without a controlURL")
            url = urljoin(base, control)
            refused = location_refusal(url, gateway)
            if refused is not None:
                raise IgdFormatError(f"control URL {refused}")
            if wanted.endswith("WANIPConnection:2"):
                version = 2
            return IgdDescription(url, wanted, version, server)
    raise IgdFormatError("device description names no WANIPConnection/WANPPPConnection")


def soap_request(service_type: str, action: str, args: tuple[tuple[str, str], ...] = ()
                 ) -> tuple[bytes, str]:
    """The SOAP envelope for ``action`` and the SOAPAction header value."""
    inner = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in args)
    body = (
        '<?xml version="1.0"?>\r\n'
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>'
        f'<u:{action} xmlns:u="{escape(service_type)}">{inner}</u:{action}>'
        "</s:Body></s:Envelope>\r\n"
    )
    return body.encode("utf-8"), f'"{service_type}#{action}"'


@dataclass(frozen=True, slots=True)
class SoapFault:
    code: int  # the UPnP errorCode (0 when the fault named none)
    description: str


def parse_soap(data: bytes, action: str) -> dict[str, str] | SoapFault:
    """The output arguments of ``action``'s response, or the UPnP fault.
    Raises IgdFormatError for anything else."""
    try:
        root = parse_xml(data, max_bytes=MAX_SOAP)
    except XmlRefused as exc:
        raise IgdFormatError(f"SOAP answer: {exc}") from None
    body = root.child("Body") if root.tag == "Envelope" else None
    if body is None:
        raise IgdFormatError("SOAP answer without Envelope/Body")
    fault = body.child("Fault")
    if fault is not None:
        err = next(fault.iter("UPnPError"), None)
        code_text = err.child_text("errorCode") if err is not None else ""
        desc = err.child_text("errorDescription") if err is not None else ""
        code = int(code_text) if code_text.isdigit() and len(code_text) < 6 else 0
        return SoapFault(code, _cut(desc or fault.child_text("faultstring"), 80))
    resp = body.child(f"{action}Response")
    if resp is None:
        raise IgdFormatError(f"SOAP answer without {action}Response")
    return {c.tag: c.text.strip()[:512] for c in resp.children[:32]}


def _port(value: str, what: str) -> int:
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise IgdFormatError(f"port mapping with a bad {what} {_cut(value, 20)!r}")
    return int(value)


def parse_mapping(fields: dict[str, str]) -> PortMapping:
    """One GetGenericPortMappingEntry answer as a PortMapping. Raises IgdFormatError."""
    proto = fields.get("NewProtocol", "").strip().upper()
    if proto not in ("TCP", "UDP"):
        raise IgdFormatError(f"port mapping with protocol {_cut(proto, 20)!r}")
    client = fields.get("NewInternalClient", "").strip()
    try:
        client = str(ipaddress.ip_address(client))
    except ValueError:
        raise IgdFormatError(f"port mapping to {_cut(client, 40)!r}, not an address") from None
    lease = fields.get("NewLeaseDuration", "0").strip() or "0"
    if not lease.isdigit() or len(lease) > 10:
        raise IgdFormatError(f"port mapping with lease {_cut(lease, 20)!r}")
    enabled = fields.get("NewEnabled", "1").strip().lower() not in ("0", "false", "no")
    return PortMapping(
        external_port=_port(fields.get("NewExternalPort", "").strip(), "external port"),
        proto=Proto.TCP if proto == "TCP" else Proto.UDP,
        internal_client=client,
        internal_port=_port(fields.get("NewInternalPort", "").strip(), "internal port"),
        description=_cut(fields.get("NewPortMappingDescription", "")),
        lease_seconds=int(lease),
        enabled=enabled,
        remote_host=_cut(fields.get("NewRemoteHost", ""), 64),
        source="upnp",
    )


def mapping_entry_args(index: int) -> tuple[tuple[str, str], ...]:
    return (("NewPortMappingIndex", str(index)),)


def delete_mapping_args(external_port: int, proto: Proto) -> tuple[tuple[str, str], ...]:
    return (("NewRemoteHost", ""), ("NewExternalPort", str(external_port)),
            ("NewProtocol", proto.value.upper()))
