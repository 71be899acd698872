"""Findings from the router's view (``RouterView``), as check results (pure).

- ``router-upnp-open``: the router answered control requests from this host without
  authentication (a finding, confirmed: it answered); it refused them (passed); not known
  (not tested, with the reason);
- ``router-upnp-mapping``: one finding per mapping a program opened through UPnP/NAT-PMP/PCP
  ("opened by UPnP, description 'Transmission', lease 0 = permanent"); a table read to its end
  with none is a pass; a table that could not be read is not tested.
"""

from __future__ import annotations

from mamori.audit.notes import note_result
from mamori.model import CheckResult
from mamori.model.audit import AuditNote
from mamori.model.path import RouterView
from mamori.model.path_json import mapping_words


def _open_note(view: RouterView) -> AuditNote:
    where = f"the router at {view.gateway or '?'} ({view.protocol or 'no protocol'})"
    if not view.found:
        return AuditNote("router-upnp-open", None,
                         f"no router answered UPnP or NAT-PMP: {view.error or 'no answer'}",
                         "router")
    if view.control_open is True:
        asked = [e for e in view.evidence if e.startswith(("POST ", "NAT-PMP"))][:2]
        return AuditNote("router-upnp-open", False,
                         f"{where} answered control requests from this host without "
                         f"authentication (read requests only: mamori adds no mapping): "
                         + "; ".join(asked), "router")
    if view.control_open is False:
        return AuditNote("router-upnp-open", True,
                         f"{where} refused control requests from this host: "
                         f"{view.error or 'refused'}", "router")
    return AuditNote("router-upnp-open", None,
                     f"{where}: whether it accepts control requests is not known: "
                     f"{view.error or 'no control answer'}", "router")


def router_results(view: RouterView) -> list[CheckResult]:
    """The router-upnp-open result and one router-upnp-mapping result per mapping (or one
    pass / not tested)."""
    gateway = view.gateway or "router"
    out = [note_result(_open_note(view), host=gateway)]
    opened = [m for m in view.mappings if m.source in ("upnp", "natpmp", "pcp")]
    for m in opened:
        out.append(note_result(AuditNote(
            "router-upnp-mapping", False,
            f"the router at {gateway} lists {mapping_words(m)}", "router"),
            host=m.internal_client, port=m.internal_port, proto=m.proto))
    if opened:
        return out
    if view.found and view.protocol.startswith("upnp") and view.error is None:
        out.append(note_result(AuditNote(
            "router-upnp-mapping", True,
            f"the router at {gateway} lists no port mapping", "router"), host=gateway))
    else:
        reason = ("the mapping table cannot be read over NAT-PMP/PCP" if view.found
                  and not view.protocol.startswith("upnp") else
                  f"the mapping table was not read: {view.error or 'no router'}")
        out.append(note_result(AuditNote("router-upnp-mapping", None, reason, "router"),
                               host=gateway))
    return out
