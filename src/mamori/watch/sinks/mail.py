"""The e-mail sink: one message per alert through SMTP (smtplib, in the sink's own thread).

STARTTLS is optional (``starttls = true``; ``tls_cafile`` to trust a private CA); AUTH
uses ``username`` and the password in the environment variable ``password_env`` (never in
the settings file). Nothing is looked up in DNS on the way: the HELO name and the
Message-ID domain come from the settings, not from ``getfqdn()``.
"""

from __future__ import annotations

import json
import os
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from mamori.model.watch import Incident
from mamori.watch.settings import EmailSinkSettings, SettingsError
from mamori.watch.sinks.alert import Alert, alert_headline, alert_line, alert_time, alert_to_dict
from mamori.watch.sinks.base import SinkError, ThreadWorker

__all__ = ["EmailSink", "build_message"]


def build_message(alert: Alert, settings: EmailSinkSettings) -> EmailMessage:
    """The message for one alert: a one-line subject, a readable body, the JSON at the end."""
    msg = EmailMessage()
    headline = alert_headline(alert.item, opened=alert.opened)
    msg["Subject"] = f"{settings.subject_prefix} {headline}"[:200].strip()
    msg["From"] = settings.from_
    msg["To"] = ", ".join(settings.to)
    msg["Date"] = format_datetime(alert_time(alert.item))
    msg["Message-ID"] = make_msgid("mamori", domain=settings.helo)
    msg["Auto-Submitted"] = "auto-generated"
    lines = [alert_line(alert), ""]
    item = alert.item
    if isinstance(item, Incident):
        lines += [f"source:     {item.src}", f"kind:       {item.kind}",
                  f"danger:     {item.danger}", f"first seen: {item.first_seen.isoformat()}",
                  f"last seen:  {item.last_seen.isoformat()}", f"events:     {item.count}",
                  f"types:      {', '.join(item.types)}"]
        if item.signatures:
            lines.append(f"signatures: {', '.join(item.signatures)}")
        lines += [f"example:    {ex}" for ex in item.examples[:5]]
        lines.append("")
    lines += ["-- ", "mamori watch", "", json.dumps(alert_to_dict(alert), ensure_ascii=False,
                                                     indent=1)]
    msg.set_content("\n".join(lines))
    return msg


class EmailSink:
    def __init__(self, name: str, settings: EmailSinkSettings) -> None:
        self.name = name
        self.settings = settings
        self._worker = ThreadWorker(name)
        self._password: str | None = None
        if settings.password_env is not None:
            password = os.environ.get(settings.password_env)
            if password is None:
                raise SettingsError(f"alert sink {name}: the environment variable "
                                    f"{settings.password_env} (password_env) is not set")
            self._password = password

    async def start(self) -> None:
        return None

    def _context(self) -> ssl.SSLContext:
        cafile = self.settings.tls_cafile
        return ssl.create_default_context(cafile=str(cafile) if cafile else None)

    def _deliver(self, msg: EmailMessage) -> None:
        s = self.settings
        try:
            with smtplib.SMTP(s.host, s.port, timeout=s.timeout, local_hostname=s.helo) as smtp:
                if s.starttls:
                    smtp.starttls(context=self._context())
                if s.username is not None and self._password is not None:
                    smtp.login(s.username, self._password)
                refused = smtp.send_message(msg)
        except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            raise SinkError(f"e-mail via {s.host}:{s.port}: {type(exc).__name__}: "
                            f"{str(exc)[:200]}") from None
        if refused:
            raise SinkError(f"e-mail: recipients refused: {', '.join(sorted(refused))}")

    async def send(self, alert: Alert) -> None:
        await self._worker.run(self._deliver, build_message(alert, self.settings))

    async def aclose(self) -> None:
        self._worker.close()
