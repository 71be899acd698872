"""The JSON API of ``mamori serve`` (version 1): request bodies and answers, both ways. Pure.

One module for both ends, so that the service's validation and the client's reading cannot
drift apart: ``check_body`` builds what ``mamori check --outside`` sends, ``parse_ports``
is what the service accepts (any field but ``ports`` is refused: a client never names a
target), ``parse_created`` / ``parse_status`` read the service's answers into model records
(``OutsidePort``), and ``port_json`` writes them. Untrusted bytes never raise anything but
``ApiFormatError``; sizes are bounded by the reads that hand the bytes in.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from mamori.model.base import Proto
from mamori.model.path import OutsidePort, OutsideState
from mamori.protocols.jsonbody import json_object

API_VERSION = 1
API_ROOT = "/api/v1"
CHECKS_PATH = f"{API_ROOT}/checks"
MAX_PORT_ENTRIES = 1024  # entries a request may list at all (the service's cap is lower)
MAX_TEXT = 300  # reasons and messages are cut to this many characters
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,100}$")
STATUSES = frozenset({"queued", "running", "done", "failed"})
REQUEST_FIELDS = frozenset({"ports"})
PORT_FIELDS = frozenset({"proto", "port"})


class ApiFormatError(ValueError):
    """The body is not what API version 1 says; the message says what is wrong (one line)."""


@dataclass(frozen=True, slots=True)
class Created:
    """The answer to ``POST /api/v1/checks``."""

    check_id: str
    status: str
    seen_address: str
    not_tested: tuple[OutsidePort, ...]  # ports the service will not probe (cap…), with why


@dataclass(frozen=True, slots=True)
class CheckStatus:
    """The answer to ``GET /api/v1/checks/{id}``."""

    check_id: str
    status: str
    seen_address: str
    percent: int
    ports: tuple[OutsidePort, ...]  # complete once ``status`` is "done" or "failed"
    error: str | None


def _cut(value: object) -> str:
    return " ".join(str(value).split())[:MAX_TEXT]


def check_body(ports: Iterable[tuple[Proto, int]]) -> bytes:
    """The body of ``POST /api/v1/checks`` for ``ports`` (duplicates dropped, order kept)."""
    seen: dict[tuple[str, int], None] = {}
    for proto, port in ports:
        seen[(Proto(proto).value, int(port))] = None
    return json.dumps({"ports": [{"proto": p, "port": n} for p, n in seen]},
                      separators=(",", ":")).encode("ascii")


def parse_ports(raw: bytes) -> tuple[tuple[Proto, int], ...]:
    """The ports a client asks for, deduplicated in order. Raises ApiFormatError for
    anything but ``{"ports": [{"proto": "tcp"|"udp", "port": 1..65535}, …]}``."""
    obj = json_object(raw)
    if obj is None:
        raise ApiFormatError("the body is not a JSON object")
    extra = sorted(set(obj) - REQUEST_FIELDS)
    if extra:
        raise ApiFormatError(
            f"unknown field {_cut(extra[0])[:40]!r}: the only field is 'ports' (the service "
            "probes the address the request comes from, and nothing a request names)")
    items = obj.get("ports")
    if not isinstance(items, list) or not items:
        raise ApiFormatError("'ports' must be a non-empty list")
    if len(items) > MAX_PORT_ENTRIES:
        raise ApiFormatError(f"'ports' lists more than {MAX_PORT_ENTRIES} entries")
    out: dict[tuple[Proto, int], None] = {}
    for item in items:
        out[_one_port(item)] = None
    return tuple(out)


def _one_port(item: Any) -> tuple[Proto, int]:
    if not isinstance(item, dict):
        raise ApiFormatError("each entry of 'ports' must be an object {proto, port}")
    extra = sorted(set(item) - PORT_FIELDS)
    if extra:
        raise ApiFormatError(f"unknown field {_cut(extra[0])[:40]!r} in a port entry: "
                             "only 'proto' and 'port'")
    proto, port = item.get("proto"), item.get("port")
    if proto not in ("tcp", "udp"):
        raise ApiFormatError("'proto' must be \"tcp\" or \"udp\"")
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise ApiFormatError("'port' must be an integer from 1 to 65535")
    return Proto(proto), port


def port_json(port: OutsidePort) -> dict[str, Any]:
    out: dict[str, Any] = {"proto": port.proto.value, "port": port.port,
                           "state": port.state.value}
    if port.reason:
        out["reason"] = port.reason
    return out


def _read_port(item: Any) -> OutsidePort:
    if not isinstance(item, dict):
        raise ApiFormatError("a port entry of the answer is not an object")
    proto, port, state = item.get("proto"), item.get("port"), item.get("state")
    if proto not in ("tcp", "udp") or not isinstance(port, int) or isinstance(port, bool) \
            or not 1 <= port <= 65535:
        raise ApiFormatError("a port entry of the answer has no valid proto/port")
    try:
        the_state = OutsideState(str(state))
    except ValueError:
        raise ApiFormatError(f"unknown port state {_cut(state)[:40]!r}") from None
    reason = item.get("reason", "")
    return OutsidePort(Proto(proto), port, the_state, _cut(reason) if reason else "")


def _read_ports(items: Any, limit: int = MAX_PORT_ENTRIES) -> tuple[OutsidePort, ...]:
    if items is None:
        return ()
    if not isinstance(items, list) or len(items) > limit:
        raise ApiFormatError("'ports' of the answer is not a list of at most "
                             f"{limit} entries")
    return tuple(_read_port(i) for i in items)


def _common(raw: bytes) -> tuple[dict[str, Any], str, str, str]:
    obj = json_object(raw)
    if obj is None:
        raise ApiFormatError("the answer is not a JSON object")
    if type(obj.get("api")) is not int or obj.get("api") != API_VERSION:
        raise ApiFormatError(f"the answer is not API version {API_VERSION} "
                             f"(api={_cut(obj.get('api'))[:20]!r})")
    check_id, status, seen = obj.get("id"), obj.get("status"), obj.get("seen_address")
    if not isinstance(check_id, str) or not ID_PATTERN.match(check_id):
        raise ApiFormatError("the answer has no valid check id")
    if status not in STATUSES:
        raise ApiFormatError(f"unknown check status {_cut(status)[:40]!r}")
    if not isinstance(seen, str) or not seen or len(seen) > 64:
        raise ApiFormatError("the answer has no seen_address")
    return obj, check_id, str(status), seen


def parse_created(raw: bytes) -> Created:
    obj, check_id, status, seen = _common(raw)
    return Created(check_id, status, seen, _read_ports(obj.get("not_tested")))


def parse_status(raw: bytes) -> CheckStatus:
    obj, check_id, status, seen = _common(raw)
    percent = obj.get("percent", 0)
    if not isinstance(percent, int) or isinstance(percent, bool):
        percent = 0
    error = obj.get("error")
    return CheckStatus(check_id, status, seen, max(0, min(100, percent)),
                       _read_ports(obj.get("ports")),
                       _cut(error) if error else None)


def error_message(raw: bytes) -> str | None:
    """The ``error`` text of a refusal, when the body is the API's JSON; else None."""
    obj = json_object(raw)
    if obj is None or not isinstance(obj.get("error"), str):
        return None
    return _cut(obj["error"])


def refusal_seen_address(raw: bytes) -> str | None:
    """The ``seen_address`` a refusal names (an out-of-scope or blocked address), when it is
    an IP address; else None."""
    obj = json_object(raw)
    seen = obj.get("seen_address") if obj is not None else None
    if not isinstance(seen, str) or len(seen) > 64:
        return None
    try:
        return str(ipaddress.ip_address(seen))
    except ValueError:
        return None


def merge_ports(first: Sequence[OutsidePort], then: Sequence[OutsidePort]) -> tuple[
        OutsidePort, ...]:
    """``first`` (the creation's not-tested ports) then ``then``, one entry per port."""
    out: dict[tuple[Proto, int], OutsidePort] = {}
    for p in (*first, *then):
        out.setdefault((p.proto, p.port), p)
    return tuple(out.values())
