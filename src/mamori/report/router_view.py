"""The router's view for ``mamori router show``: a table for people, JSON for programs (pure).

JSON is ``model.path_json.router_dict`` plus, per mapping, ``to_this_host`` and ``words``
("external tcp/51413 → 192.168.77.10:51413, opened by UPnP, description 'Transmission',
lease 0 = permanent"), and ``this_host`` (the addresses compared).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mamori.model.path import NatKind, RouterView
from mamori.model.path_json import mapping_words, router_dict

_NAT_WORDS = {
    NatKind.PUBLIC: "public: the router's WAN address is reachable from the internet",
    NatKind.CGNAT: "CGNAT (100.64.0.0/10): the ISP's NAT stands in front; nothing on this "
                   "line is reachable from the internet over IPv4",
    NatKind.PRIVATE: "private: another NAT (double NAT) stands in front of this router",
    NatKind.UNKNOWN: "unknown: the router did not tell its external address",
    NatKind.NO_PUBLIC: "no public IPv4 address: the router reports no public IPv4 address "
                       "(behind CGNAT or another NAT): not reachable over IPv4 from the "
                       "internet, likely",
}


def router_json(view: RouterView, this_host: Sequence[str]) -> str:
    d: dict[str, Any] = router_dict(view)
    for m, md in zip(view.mappings, d["mappings"], strict=True):
        md["to_this_host"] = m.internal_client in this_host
        md["words"] = mapping_words(m)
    d["this_host"] = list(this_host)
    return json.dumps(d, indent=2, ensure_ascii=False) + "\n"


def router_table(view: RouterView, this_host: Sequence[str]) -> str:
    lines: list[str] = []
    if not view.found:
        lines.append(f"router: none found ({view.error or 'no answer'})")
        if view.gateway:
            lines.append(f"gateway: {view.gateway}")
    else:
        lines += [
            f"gateway: {view.gateway}  protocol: {view.protocol}"
            + (f"  server: {view.server}" if view.server else ""),
            f"external address: {view.external_address or 'not told'}"
            + (f"  (WAN connection: {view.connection_status})"
               if view.connection_status else ""),
            f"NAT: {_NAT_WORDS[view.nat]}",
        ]
        if view.control_open is True:
            lines.append("control: the router answered UPnP/NAT-PMP control requests from this "
                         "host without any authentication")
        elif view.control_open is False:
            lines.append("control: the router refused control requests from this host")
        lines.append(f"mappings: {len(view.mappings)}"
                     + (" (more on the router: mamori stopped reading)"
                        if view.mappings_truncated else ""))
        for m in view.mappings:
            mark = "this host" if m.internal_client in this_host else "other host"
            lines.append(f"  [{mark}] {mapping_words(m)}")
        if view.error:
            lines.append(f"error: {view.error}")
    if view.evidence:
        lines.append("evidence:")
        lines += [f"  {e}" for e in view.evidence]
    return "\n".join(lines) + "\n"
