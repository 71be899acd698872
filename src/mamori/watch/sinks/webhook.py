"""The webhook sink: each alert is POSTed as JSON (the JSON-lines shape of the alert), or as
the body the settings' ``template`` renders (a sandboxed Jinja2 template, checked at start-up:
:mod:`mamori.watch.sinks.template`) with their ``content_type``.

Every attempt has one deadline (connect, send, status line: ``timeout``); an answer of 2xx
is delivered, 408/425/429/5xx, timeouts and connection errors are retried up to ``retries``
times after ``backoff``, 2·backoff, 4·backoff… (at most 60 s), other 4xx are final. Only the
status line and headers are read, capped in bytes: a hostile or broken endpoint can cost at
most ``(retries + 1) · timeout`` plus the back-off per alert, and the router's bounded queue
absorbs the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from mamori import __version__
from mamori.watch.settings import SettingsError, WebhookSinkSettings
from mamori.watch.sinks.alert import Alert, alert_to_dict
from mamori.watch.sinks.base import SinkError
from mamori.watch.sinks.template import TemplateProblem, compile_body

__all__ = ["HttpAnswer", "WebhookSink", "post_json"]

HEAD_CAP = 16 * 1024  # bytes of status line + headers read
BACKOFF_CAP = 60.0
RETRY_STATUS = {408, 425, 429}


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    reason: str


class _Retry(Exception):
    pass


async def post_json(url: str, body: bytes, headers: dict[str, str], *,
                    tls: ssl.SSLContext | None = None,
                    content_type: str = "application/json") -> HttpAnswer:
    """POST ``body`` to ``url`` (http or https) and read the status line; raises OSError,
    ValueError (garbage answer), asyncio.LimitOverrunError / IncompleteReadError."""
    parts = urlsplit(url)
    https = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if https else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    authority = f"[{host}]" if ":" in host else host
    if parts.port:
        authority += f":{parts.port}"
    context = (tls or ssl.create_default_context()) if https else None
    reader, writer = await asyncio.open_connection(
        host, port, ssl=context, server_hostname=host if https else None, limit=HEAD_CAP)
    try:
        head = [f"POST {path} HTTP/1.1", f"Host: {authority}",
                f"Content-Type: {content_type}", f"Content-Length: {len(body)}",
                f"User-Agent: mamori/{__version__}", "Connection: close",
                *(f"{k}: {v}" for k, v in headers.items())]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        status_line = await reader.readuntil(b"\n")
        fields = status_line.decode("latin-1").split(None, 2)
        if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
            raise ValueError(f"not an HTTP answer: {status_line[:60]!r}")
        return HttpAnswer(int(fields[1]), fields[2].strip() if len(fields) > 2 else "")
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


class WebhookSink:
    def __init__(self, name: str, settings: WebhookSinkSettings,
                 tls: ssl.SSLContext | None = None) -> None:
        self.name = name
        self.settings = settings
        self._tls = tls
        self.attempts = 0  # every POST tried (for stats and tests)
        self._render = None
        if settings.template is not None:
            try:
                self._render = compile_body(settings.template)
            except TemplateProblem as exc:
                raise SettingsError(f"alert sink {name}: {exc}") from None

    async def start(self) -> None:
        return None

    async def _attempt(self, body: bytes) -> None:
        self.attempts += 1
        try:
            answer = await asyncio.wait_for(
                post_json(self.settings.url, body, self.settings.headers, tls=self._tls,
                          content_type=self.settings.content_type),
                self.settings.timeout)
        except TimeoutError:
            raise _Retry(f"no answer within {self.settings.timeout:g} s") from None
        except (OSError, ValueError, asyncio.LimitOverrunError,
                asyncio.IncompleteReadError) as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}"[:200]) from None
        if 200 <= answer.status < 300:
            return
        if answer.status >= 500 or answer.status in RETRY_STATUS:
            raise _Retry(f"HTTP {answer.status}")
        raise SinkError(f"webhook answered HTTP {answer.status} {answer.reason[:80]} (not retried)")

    async def send(self, alert: Alert) -> None:
        if self._render is not None:
            try:
                body = self._render(alert)
            except TemplateProblem as exc:
                raise SinkError(str(exc)) from None
        else:
            body = json.dumps(alert_to_dict(alert), ensure_ascii=False).encode("utf-8")
        delay = self.settings.backoff
        for attempt in range(self.settings.retries + 1):
            try:
                await self._attempt(body)
                return
            except _Retry as exc:
                if attempt == self.settings.retries:
                    raise SinkError(f"webhook failed after {attempt + 1} attempt(s): {exc}") \
                        from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_CAP)

    async def aclose(self) -> None:
        return None
