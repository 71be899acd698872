"""One HTTP(S) request over one address family, bounded: the socket side of ``--outside``.

``resolve`` finds the service's addresses of one family only (``getaddrinfo`` with
``AF_INET`` or ``AF_INET6``; an IP literal of the other family is an error, never a
lookup). ``request`` connects to one of them, so the service sees this host's address of
that family, and sends one request. Bounds: a connect/read timeout, a whole-request
deadline (a watchdog shuts the socket, so a server that trickles headers or body cannot
hold the caller), a cap on the body. Redirects are never followed: the caller gets the
status and the ``Location``. Errors are ``HttpError`` with one line for the report.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

MAX_BODY = 256 * 1024
USER_AGENT = "mamori-outside-client/1"


class HttpError(Exception):
    """The request got no usable answer; ``str()`` is one line for the report."""


@dataclass(frozen=True, slots=True)
class Service:
    scheme: str  # "http" or "https"
    host: str  # as the URL names it (no brackets)
    port: int
    base_path: str  # "" or "/prefix" without the trailing slash

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse_service_url(url: str) -> Service:
    """``http(s)://host[:port][/prefix]``; raises ValueError with one line."""
    parts: SplitResult = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"the service URL must start with http:// or https://: {url[:80]!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"the service URL has a bad port: {url[:80]!r}") from None
    if not parts.hostname or parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("the service URL must be http(s)://host[:port][/path], without user, "
                         f"query or fragment: {url[:80]!r}")
    default = 443 if parts.scheme == "https" else 80
    return Service(parts.scheme, parts.hostname, port or default, parts.path.rstrip("/"))


def literal_family(host: str) -> int | None:
    """4 or 6 when ``host`` is an IP literal, else None."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).version
    except ValueError:
        return None


def resolve(service: Service, family: int) -> list[str]:
    """The service's addresses of ``family`` (4 or 6). Raises HttpError."""
    literal = literal_family(service.host)
    if literal is not None and literal != family:
        raise HttpError(f"the service URL names an IPv{literal} address; "
                        f"no IPv{family} request is possible")
    af = socket.AF_INET if family == 4 else socket.AF_INET6
    flags = socket.AI_NUMERICHOST if literal is not None else 0
    try:
        infos = socket.getaddrinfo(service.host, service.port, af, socket.SOCK_STREAM, 0, flags)
    except (socket.gaierror, UnicodeError) as exc:
        raise HttpError(f"{service.host} has no IPv{family} address ({exc})") from None
    out: list[str] = []
    for info in infos:
        addr = str(info[4][0])
        if addr not in out:
            out.append(addr)
    if not out:
        raise HttpError(f"{service.host} has no IPv{family} address")
    return out


def source_address(address: str, port: int) -> str | None:
    """The local address the kernel would use to reach ``address`` (no packet is sent:
    a UDP socket is only connected); None when there is no route."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((address, port))
            return str(s.getsockname()[0]).split("%", 1)[0]
    except OSError:
        return None


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names, the first of each
    body: bytes


def request(service: Service, address: str, method: str, path: str, *,
            body: bytes | None = None, content_type: str | None = None,
            timeout: float = 10.0, deadline: float = 30.0,
            max_body: int = MAX_BODY, source: str | None = None) -> Reply:
    """One request to ``address`` (of the service) for ``path``, from local address
    ``source`` when given (else the kernel's choice). Raises HttpError."""
    try:
        sock = socket.create_connection((address, service.port), timeout=timeout,
                                        source_address=(source, 0) if source else None)
    except TimeoutError:
        raise HttpError(f"no connection to {address} port {service.port} "
                        f"within {timeout:g} s") from None
    except ConnectionRefusedError:
        raise HttpError(f"{address} port {service.port} refused the connection") from None
    except OSError as exc:
        raise HttpError(f"cannot connect to {address} port {service.port}: "
                        f"{exc.strerror or exc}") from None
    fired = threading.Event()
    watchdog = threading.Timer(deadline, _shut, (sock, fired))
    watchdog.daemon = True
    watchdog.start()
    late = HttpError(f"the service did not answer within {deadline:g} s")
    try:
        reply = _exchange(sock, service, method, path, body, content_type, timeout, max_body)
    except HttpError:
        raise
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        if fired.is_set():
            raise late from None
        if isinstance(exc, TimeoutError):
            raise HttpError(f"the service stalled (nothing for {timeout:g} s)") from None
        raise HttpError(f"bad answer from the service: {type(exc).__name__}: "
                        f"{' '.join(str(exc).split())[:120]}") from None
    finally:
        watchdog.cancel()
        with contextlib.suppress(OSError):
            sock.close()
    if fired.is_set():  # the socket was shut mid-answer: what arrived is cut short
        raise late
    return reply


def _shut(sock: socket.socket, fired: threading.Event) -> None:
    fired.set()
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _exchange(sock: socket.socket, service: Service, method: str, path: str,
              body: bytes | None, content_type: str | None, timeout: float,
              max_body: int) -> Reply:
    the_sock: socket.socket = sock
    if service.scheme == "https":
        ctx = ssl.create_default_context()
        the_sock = ctx.wrap_socket(sock, server_hostname=service.host)
    conn = http.client.HTTPConnection(service.host, service.port, timeout=timeout)
    conn.sock = the_sock
    headers = {"Host": service.host_header, "User-Agent": USER_AGENT,
               "Accept": "application/json", "Connection": "close"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    conn.request(method, service.base_path + path, body=body, headers=headers)
    resp = conn.getresponse()
    names: dict[str, str] = {}
    for key, value in resp.getheaders():
        names.setdefault(key.lower(), value[:2000])
    length = names.get("content-length", "")
    if length.strip().isdigit() and int(length) > max_body:
        raise HttpError(f"the service's answer is too large ({int(length)} bytes; "
                        f"at most {max_body} read)")
    data = bytearray()
    while True:
        chunk = resp.read(min(65536, max_body + 1 - len(data)))
        if not chunk:
            break
        data += chunk
        if len(data) > max_body:
            raise HttpError(f"the service's answer is larger than {max_body} bytes")
    return Reply(resp.status, names, bytes(data))
