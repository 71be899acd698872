"""Findings from the joined path verdicts (``audit/path.py``), as check results.

- ``exposed-listener`` graded by the joined reach: reachable from the internet is high (the
  catalog's medium is for the LAN), this host only is a pass;
- ``path-contradiction``: the host firewall reading says "blocked" but the outside probe got in;
- ``router-mapping-unused``: a router mapping points at this host on a port nothing listens on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from mamori.audit.path import chain_text, worst_reach
from mamori.model import CheckResult, Severity
from mamori.model.audit import AuditNote, Listener
from mamori.model.path import PathReport, PathVerdict, Reach
from mamori.model.path_json import CONTRADICTION, NAT_HIDES, mapping_words


def _why(v: PathVerdict) -> str:
    text = f"IPv{v.family} {v.reach.value}"
    if v.proven:
        text += " (proven: the outside probe connected)"
    elif v.mapping is not None:
        text += f" (router mapping: {mapping_words(v.mapping)})"
    elif v.missing:
        text += f" (missing: {v.missing})"
    return text + f" [{chain_text(v)}]"


def path_exposure(where: str, lst: Listener,
                  verdicts: Sequence[PathVerdict]) -> CheckResult | None:
    """The exposed-listener result from the joined verdicts; None when they do not decide
    (none joined, or the reach is undetermined: the firewall-only reading stands)."""
    from mamori.audit.notes import note_result

    reach = worst_reach(verdicts)
    if reach is None or reach is Reach.UNDETERMINED:
        return None
    whys = "; ".join(_why(v) for v in verdicts)
    hides = [n.split(": ", 1)[1] for v in verdicts for n in v.notes if n.startswith(NAT_HIDES)]
    extra = f"; {hides[0]}" if hides else ""
    if reach is Reach.INTERNET:
        result = note_result(AuditNote("exposed-listener", False,
                                       f"{where} is reachable from the internet: {whys}{extra}",
                                       "path"), host=lst.address, port=lst.port,
                         proto=lst.proto)
        return dataclasses.replace(result, severity=Severity.HIGH)
    if reach is Reach.HOST:
        return note_result(AuditNote("exposed-listener", True,
                                     f"{where}: this host only: {whys}", "path"),
                           host=lst.address, port=lst.port, proto=lst.proto)
    if not any(s.name == "host-firewall" and s.verdict == "open"
               for v in verdicts for s in v.steps):
        return None  # LAN-only but the host firewall's verdict is not known: as before
    return note_result(AuditNote("exposed-listener", False,
                                 f"{where} is reachable from the LAN, not from the internet: "
                                 f"{whys}{extra}", "path"), host=lst.address, port=lst.port,
                         proto=lst.proto)


def path_results(report: PathReport) -> list[CheckResult]:
    """Contradiction findings and mappings to this host where nothing listens."""
    from mamori.audit.notes import note_result

    out: list[CheckResult] = []
    for v in report.verdicts:
        for n in v.notes:
            if n.startswith(CONTRADICTION):
                detail = (f"{v.proto.value}/{v.port} on {v.address} over IPv{v.family}: "
                          f"{n.split(': ', 1)[1]}")
                out.append(note_result(AuditNote("path-contradiction", False, detail, "path"),
                                       host=v.address, port=v.port, proto=v.proto))
    for m in report.unmatched:
        detail = (f"the router maps {mapping_words(m)}, but nothing on this host listens on "
                  f"{m.proto.value}/{m.internal_port}: whatever starts there next is exposed")
        out.append(note_result(AuditNote("router-mapping-unused", False, detail, "router"),
                               host=m.internal_client, port=m.internal_port, proto=m.proto))
    return out
