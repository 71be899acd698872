"""The one place where check files meet Python: primitive names → functions.

Each probes module lists its primitives in its own PRIMITIVES dict; this module merges the
explicit list below. No dispatch by getattr on names read from files: a check naming a
primitive that is not here fails catalog validation.
"""

from __future__ import annotations

from mamori.checks.primitive import Primitive
from mamori.checks.probes import (
    amplify,
    data,
    directory,
    dns,
    mail,
    printing,
    proxy,
    redis,
    remote,
    rpc,
    sharing,
    smb_security,
    smtp,
    smtp_exposure,
    snmp_access,
    ssh,
    tls,
    unauth,
    web,
    web_pages,
)

_MODULES = (redis, smtp, proxy, dns, amplify, data, remote, sharing, web, web_pages, tls,
            ssh, directory, unauth)
# Mail beyond relaying, SNMP write access and SMB signing (issue 14).
_BREADTH = (mail, smtp_exposure, smb_security, snmp_access)
_PRINT_DISCOVERY = (rpc, printing)  # portmapper listing, printing (issue 14)


def _merge() -> dict[str, Primitive]:
    merged: dict[str, Primitive] = {}
    for module in (*_MODULES, *_BREADTH, *_PRINT_DISCOVERY):
        for name, fn in module.PRIMITIVES.items():
            if name in merged:
                raise RuntimeError(f"check primitive {name!r} is registered twice")
            merged[name] = fn
    return merged


PRIMITIVES: dict[str, Primitive] = _merge()
