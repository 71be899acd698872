"""``PathReport`` to and from plain JSON values (the store's column and the JSON report).

Pure: no I/O. ``path_report_from_dict`` refuses (``ValueError``) what it cannot read, so a
damaged row is an error the caller names, never a half-filled record.
"""

from __future__ import annotations

from typing import Any

from mamori.model.base import Proto
from mamori.model.path import (
    NatKind,
    OutsidePort,
    OutsideResult,
    OutsideState,
    PathReport,
    PathStep,
    PathVerdict,
    PortMapping,
    Reach,
    RouterView,
)

# The notes a joined verdict carries start with one of these tokens (then ": " and English
# evidence); reports say them in their own language.
CONTRADICTION = "contradiction"
NAT_HIDES = "ipv6-exposes-what-nat-hides"
CGNAT_NOTE = "behind CGNAT: not reachable over IPv4"
NO_PUBLIC_NOTE = ("the router reports no public IPv4 address (behind CGNAT or another NAT): "
                  "not reachable over IPv4 from the internet, likely")
STATIC_FORWARD = "static-forward"


def mapping_words(m: PortMapping) -> str:
    """"opened by UPnP, description 'Transmission', lease 0 = permanent" and where it goes."""
    how = {"upnp": "opened by UPnP", "natpmp": "opened by NAT-PMP", "pcp": "opened by PCP"}
    lease = ("lease 0 = permanent" if m.lease_seconds == 0
             else f"lease {m.lease_seconds} s left")
    src = f", only from {m.remote_host}" if m.remote_host else ""
    off = ", disabled" if not m.enabled else ""
    return (f"external {m.proto.value}/{m.external_port} → {m.internal_client}:"
            f"{m.internal_port}, {how.get(m.source, 'opened by ' + m.source)}, description "
            f"{m.description!r}, {lease}{src}{off}")


def mapping_dict(m: PortMapping) -> dict[str, Any]:
    return {"external_port": m.external_port, "proto": m.proto.value,
            "internal_client": m.internal_client, "internal_port": m.internal_port,
            "description": m.description, "lease_seconds": m.lease_seconds,
            "enabled": m.enabled, "remote_host": m.remote_host, "source": m.source}


def _mapping(d: dict[str, Any]) -> PortMapping:
    return PortMapping(int(d["external_port"]), Proto(d["proto"]), str(d["internal_client"]),
                       int(d["internal_port"]), str(d["description"]), int(d["lease_seconds"]),
                       bool(d.get("enabled", True)), str(d.get("remote_host", "")),
                       str(d.get("source", "upnp")))


def router_dict(r: RouterView) -> dict[str, Any]:
    return {"found": r.found, "protocol": r.protocol, "control_url": r.control_url,
            "gateway": r.gateway, "server": r.server, "external_address": r.external_address,
            "nat": r.nat.value, "mappings": [mapping_dict(m) for m in r.mappings],
            "mappings_truncated": r.mappings_truncated, "control_open": r.control_open,
            "error": r.error, "evidence": list(r.evidence),
            "connection_status": r.connection_status}


def _router(d: dict[str, Any]) -> RouterView:
    return RouterView(
        found=bool(d["found"]), protocol=str(d.get("protocol", "")),
        control_url=str(d.get("control_url", "")), gateway=str(d.get("gateway", "")),
        server=str(d.get("server", "")), external_address=d.get("external_address"),
        nat=NatKind(d.get("nat", "unknown")),
        mappings=tuple(_mapping(m) for m in d.get("mappings", ())),
        mappings_truncated=bool(d.get("mappings_truncated", False)),
        control_open=d.get("control_open"), error=d.get("error"),
        evidence=tuple(str(e) for e in d.get("evidence", ())),
        connection_status=str(d.get("connection_status", "")))


def outside_dict(o: OutsideResult) -> dict[str, Any]:
    return {"service": o.service, "family": o.family, "seen_address": o.seen_address,
            "ports": [{"proto": p.proto.value, "port": p.port, "state": p.state.value,
                       "reason": p.reason} for p in o.ports],
            "error": o.error, "check_id": o.check_id}


def _outside(d: dict[str, Any]) -> OutsideResult:
    ports = tuple(OutsidePort(Proto(p["proto"]), int(p["port"]), OutsideState(p["state"]),
                              str(p.get("reason", ""))) for p in d.get("ports", ()))
    return OutsideResult(str(d["service"]), int(d["family"]), d.get("seen_address"), ports,
                         d.get("error"), str(d.get("check_id", "")))


def verdict_dict(v: PathVerdict) -> dict[str, Any]:
    return {"proto": v.proto.value, "address": v.address, "port": v.port, "family": v.family,
            "reach": v.reach.value, "proven": v.proven, "missing": v.missing,
            "steps": [{"name": s.name, "verdict": s.verdict, "detail": s.detail}
                      for s in v.steps],
            "mapping": mapping_dict(v.mapping) if v.mapping else None,
            "notes": list(v.notes)}


def _verdict(d: dict[str, Any]) -> PathVerdict:
    return PathVerdict(
        Proto(d["proto"]), str(d["address"]), int(d["port"]), int(d["family"]), Reach(d["reach"]),
        steps=tuple(PathStep(str(s["name"]), str(s["verdict"]), str(s["detail"]))
                    for s in d.get("steps", ())),
        missing=str(d.get("missing", "")),
        mapping=_mapping(d["mapping"]) if d.get("mapping") else None,
        proven=bool(d.get("proven", False)), notes=tuple(str(n) for n in d.get("notes", ())))


def path_report_dict(p: PathReport) -> dict[str, Any]:
    """The report as JSON values (lists and dicts only)."""
    return {"verdicts": [verdict_dict(v) for v in p.verdicts],
            "router": router_dict(p.router) if p.router is not None else None,
            "outside": [outside_dict(o) for o in p.outside],
            "ipv6_addresses": [{"address": a, "kind": k} for a, k in p.ipv6],
            "other_hosts": [mapping_dict(m) for m in p.other_hosts],
            "unmatched": [mapping_dict(m) for m in p.unmatched]}


def path_report_from_dict(d: dict[str, Any]) -> PathReport:
    """The inverse of ``path_report_dict``; ValueError when ``d`` is not one."""
    try:
        return PathReport(
            verdicts=tuple(_verdict(v) for v in d.get("verdicts", ())),
            router=_router(d["router"]) if d.get("router") else None,
            outside=tuple(_outside(o) for o in d.get("outside", ())),
            ipv6=tuple((str(a["address"]), str(a["kind"])) for a in d.get("ipv6_addresses", ())),
            other_hosts=tuple(_mapping(m) for m in d.get("other_hosts", ())),
            unmatched=tuple(_mapping(m) for m in d.get("unmatched", ())))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"not a stored path report: {exc!r}") from None
