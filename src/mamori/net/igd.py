"""The gateway's sockets: the default route, SSDP search, bounded HTTP, NAT-PMP/PCP datagrams.

SSDP goes only where the gateway is: one multicast M-SEARCH per search target out of the
interface that leads to the gateway (TTL 2), and the same unicast to the gateway; only
answers from the gateway's own address are kept. HTTP is one request per connection to the
gateway, with a connect/read timeout, a whole-request deadline (a watchdog shuts the socket,
so a trickling server cannot hold us) and a body cap. Errors are ``IgdIoError`` (one line).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SSDP_GROUP = "239.255.255.250"
SSDP_PORT = 1900


class IgdIoError(Exception):
    """The gateway gave no usable answer; ``str()`` is one line for the evidence."""


def parse_proc_route(text: str) -> tuple[str, str] | None:
    """(interface, gateway) of the IPv4 default route in ``/proc/net/route`` text."""
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 8 or cols[1] != "00000000" or cols[7] != "00000000":
            continue
        try:
            flags = int(cols[3], 16)
            raw = struct.pack("<I", int(cols[2], 16))
        except (ValueError, struct.error):
            continue
        if flags & 0x2 and flags & 0x1:  # RTF_GATEWAY and RTF_UP
            return cols[0], str(ipaddress.IPv4Address(raw))
    return None


def default_gateway() -> tuple[str, str] | None:
    """The default route's (interface, gateway), or None."""
    try:
        return parse_proc_route(Path("/proc/net/route").read_text(errors="replace"))
    except OSError:
        return None


def local_address_towards(gateway: str) -> str | None:
    """This host's address on the way to ``gateway`` (a UDP connect: no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((gateway, SSDP_PORT))
            return str(s.getsockname()[0])
    except OSError:
        return None


def ssdp_search(gateway: str, requests: Sequence[bytes], *, timeout: float = 2.0,
                port: int = SSDP_PORT, multicast: bool = True, max_replies: int = 16,
                max_bytes: int = 2048, settle: float = 0.3) -> list[bytes]:
    """Send ``requests`` to the gateway (unicast, and multicast out of the interface that
    leads to it) and collect the gateway's answers for ``timeout`` seconds, or ``settle``
    seconds after its first answer."""
    local = local_address_towards(gateway)
    if local is None:
        raise IgdIoError(f"no route to the gateway {gateway}")
    replies: list[bytes] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((local, 0))
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 2)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(local))
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        for req in requests:
            with contextlib.suppress(OSError):
                s.sendto(req, (gateway, port))
            if multicast:
                with contextlib.suppress(OSError):
                    s.sendto(req, (SSDP_GROUP, port))
        end = time.monotonic() + timeout
        while len(replies) < max_replies:
            left = end - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                data, addr = s.recvfrom(max_bytes + 1)
            except TimeoutError:
                break
            except OSError:
                continue  # an ICMP error from an earlier send; keep listening
            if addr[0] == gateway:
                replies.append(data)
                end = min(end, time.monotonic() + settle)  # the rest come right behind
    return replies


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    body: bytes


def _shut(sock: socket.socket, fired: threading.Event) -> None:
    fired.set()
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _read_answer(sock: socket.socket, max_body: int) -> HttpAnswer:
    buf = bytearray()
    limit = max_body + 8192  # the body cap plus room for the head
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
        if len(buf) > limit:
            raise IgdIoError(f"the answer is larger than {max_body} bytes")
    head, sep, body = bytes(buf).partition(b"\r\n\r\n")
    if not sep:
        raise IgdIoError("the answer has no complete HTTP head")
    first = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = first.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise IgdIoError(f"not an HTTP answer: {first[:60]!r}")
    if b"chunked" in head.lower():
        body = _dechunk(body)
    if len(body) > max_body:
        raise IgdIoError(f"the answer is larger than {max_body} bytes")
    return HttpAnswer(int(parts[1]), body)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, sep, rest = data.partition(b"\r\n")
        if not sep:
            break
        try:
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        except ValueError:
            raise IgdIoError("bad chunked encoding") from None
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2:]
    return bytes(out)


def http_request(host: str, port: int, method: str, path: str, *,
                 headers: Sequence[tuple[str, str]] = (), body: bytes = b"",
                 timeout: float = 3.0, deadline: float = 8.0,
                 max_body: int = 64 * 1024) -> HttpAnswer:
    """One HTTP/1.1 request (Connection: close) to host:port. Raises IgdIoError."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except TimeoutError:
        raise IgdIoError(f"no connection to {host} port {port} within {timeout:g} s") from None
    except OSError as exc:
        raise IgdIoError(f"cannot connect to {host} port {port}: "
                         f"{exc.strerror or exc}") from None
    hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"{method} {path} HTTP/1.1", f"Host: {hostport}", "Connection: close",
             "User-Agent: mamori-router/1", *(f"{k}: {v}" for k, v in headers)]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    fired = threading.Event()
    watchdog = threading.Timer(deadline, _shut, (sock, fired))
    watchdog.daemon = True
    watchdog.start()
    try:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        answer = _read_answer(sock, max_body)
    except IgdIoError:
        if fired.is_set():
            raise IgdIoError(f"{host} port {port} did not finish within {deadline:g} s"
                             ) from None
        raise
    except TimeoutError:
        raise IgdIoError(f"{host} port {port} stalled (nothing for {timeout:g} s)") from None
    except OSError as exc:
        if fired.is_set():
            raise IgdIoError(f"{host} port {port} did not finish within {deadline:g} s"
                             ) from None
        raise IgdIoError(f"{host} port {port}: {exc.strerror or exc}") from None
    finally:
        watchdog.cancel()
        with contextlib.suppress(OSError):
            sock.close()
    if fired.is_set():
        raise IgdIoError(f"{host} port {port} did not finish within {deadline:g} s")
    return answer


def datagram_ask(host: str, port: int, payload: bytes, *, timeout: float = 1.0,
                 tries: int = 2, max_bytes: int = 1100) -> bytes | None:
    """Send ``payload`` to host:port (retried) and return the first answer from that
    address, or None (no answer, or the port is closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((host, port))
        except OSError:
            return None
        for _ in range(tries):
            try:
                s.send(payload)
            except OSError:
                return None
            s.settimeout(timeout)
            try:
                return s.recv(max_bytes)
            except TimeoutError:
                continue
            except OSError:  # ICMP port unreachable
                return None
    return None
