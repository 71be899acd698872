"""The syslog sink: RFC 5424 (default) or RFC 3164 messages over UDP, TCP (RFC 6587
octet counting) or a local unix datagram socket (``/dev/log``).

RFC 5424 messages carry the alert as structured data ``[mamori@32473 type=… src=…
danger=…]`` (32473 is the documentation enterprise number of RFC 5612) and the MSGID is the
event type, ``incident``, ``block`` or ``notice``. Severity follows the danger: critical →
crit, high → err, medium → warning, low → notice, info → info.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from datetime import UTC

from mamori.model.watch import Danger, Event, Incident
from mamori.watch.settings import SyslogSinkSettings, split_host_port
from mamori.watch.sinks.alert import Alert, alert_headline, alert_src, alert_time, alert_type
from mamori.watch.sinks.base import SinkError

__all__ = ["FACILITIES", "SyslogSink", "format_rfc3164", "format_rfc5424"]

FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
    "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, **{f"local{i}": 16 + i for i in range(8)},
}
SEVERITY = {Danger.CRITICAL: 2, Danger.HIGH: 3, Danger.MEDIUM: 4, Danger.LOW: 5, Danger.INFO: 6}
SD_ID = "mamori@32473"
UDP_MAX = 2048  # bytes of one datagram (RFC 5426: receivers should take 2048)
STREAM_MAX = 8192
CONNECT_TIMEOUT = 5.0
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _sd_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _pri(facility: str, alert: Alert) -> int:
    return FACILITIES[facility] * 8 + SEVERITY[alert.item.danger]


def format_rfc5424(alert: Alert, *, facility: str, hostname: str, app_name: str,
                   procid: int) -> bytes:
    item = alert.item
    stamp = alert_time(item).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    params = {"type": alert_type(item), "danger": str(item.danger)}
    src = alert_src(item)
    if src:
        params["src"] = src
    if isinstance(item, Incident):
        params.update(kind=item.kind, count=str(item.count), opened=str(alert.opened).lower())
    elif isinstance(item, Event) and item.signatures:
        params["signatures"] = ",".join(item.signatures)
    sd = f"[{SD_ID} " + " ".join(f'{k}="{_sd_value(v)}"' for k, v in params.items()) + "]"
    msgid = alert_type(item)[:32]
    head = f"<{_pri(facility, alert)}>1 {stamp} {hostname} {app_name} {procid} {msgid} {sd} "
    return head.encode("ascii", "replace") + b"\xef\xbb\xbf" + alert_headline(
        item, opened=alert.opened).encode("utf-8")


def format_rfc3164(alert: Alert, *, facility: str, hostname: str, app_name: str,
                   procid: int) -> bytes:
    local = alert_time(alert.item).astimezone()
    stamp = f"{_MONTHS[local.month - 1]} {local.day:2d} {local:%H:%M:%S}"
    head = f"<{_pri(facility, alert)}>{stamp} {hostname} {app_name}[{procid}]: "
    return head.encode("ascii", "replace") + alert_headline(
        alert.item, opened=alert.opened).encode("utf-8")


def _cut(data: bytes, limit: int) -> bytes:
    return data if len(data) <= limit else data[:limit].decode("utf-8", "ignore").encode()


def _hostname() -> str:
    name = socket.gethostname()  # no DNS: the kernel's name as it is
    name = "".join(c for c in name if "!" <= c <= "~")[:255]
    return name or "-"


class SyslogSink:
    def __init__(self, name: str, settings: SyslogSinkSettings) -> None:
        self.name = name
        self.settings = settings
        self.hostname = settings.hostname or _hostname()
        self._format = format_rfc5424 if settings.format == "rfc5424" else format_rfc3164
        self._sock: socket.socket | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.path = settings.address or "/dev/log"  # socket = "unix"
        self.address = split_host_port(settings.address or "127.0.0.1", 514)  # udp, tcp

    async def start(self) -> None:
        if self.settings.socket == "unix":
            await self._open_unix()
        elif self.settings.socket == "udp":
            await self._open_udp()
        else:
            with contextlib.suppress(SinkError):  # a TCP receiver may come up later
                await self._connect_tcp()

    async def _open_unix(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            raise SinkError(f"syslog socket {self.path}: {exc.strerror or exc}") from None
        sock.setblocking(False)
        self._sock = sock

    async def _open_udp(self) -> None:
        host, port = self.address
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            family, kind, proto, _, addr = infos[0]
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            sock.connect(addr)  # UDP: only fixes the destination
        except OSError as exc:
            raise SinkError(f"syslog udp {host}:{port}: {exc.strerror or exc}") from None
        self._sock = sock

    async def _connect_tcp(self) -> None:
        host, port = self.address
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port),
                                               CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise SinkError(f"syslog tcp {host}:{port}: {exc or 'timed out'}") from None
        self._writer = writer

    def message(self, alert: Alert) -> bytes:
        return self._format(alert, facility=self.settings.facility, hostname=self.hostname,
                            app_name=self.settings.app_name, procid=os.getpid())

    async def send(self, alert: Alert) -> None:
        data = self.message(alert)
        if self.settings.socket == "tcp":
            await self._send_tcp(_cut(data, STREAM_MAX))
            return
        if self._sock is None:
            await self.start()
        assert self._sock is not None
        try:
            self._sock.send(_cut(data, UDP_MAX if self.settings.socket == "udp" else STREAM_MAX))
        except BlockingIOError:
            raise SinkError("syslog socket is full (receiver too slow)") from None
        except OSError as exc:
            self._sock.close()
            self._sock = None  # reopen on the next alert
            raise SinkError(f"syslog send: {exc.strerror or exc}") from None

    async def _send_tcp(self, data: bytes) -> None:
        frame = str(len(data)).encode() + b" " + data  # RFC 6587 octet counting
        for attempt in range(2):  # the receiver may have restarted: reconnect once
            if self._writer is None:
                await self._connect_tcp()
            assert self._writer is not None
            try:
                self._writer.write(frame)
                await asyncio.wait_for(self._writer.drain(), CONNECT_TIMEOUT)
                return
            except (OSError, TimeoutError) as exc:
                self._writer.close()
                self._writer = None
                if attempt:
                    raise SinkError(f"syslog tcp send: {exc or 'timed out'}") from None

    async def aclose(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(self._writer.wait_closed(), 1.0)
            self._writer = None
