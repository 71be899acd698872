"""The Apprise sink (``type = "apprise"``, the ``alerts`` extra): one notification per alert
to every Apprise URL of the entry: ntfy, Gotify, Discord, Slack, Telegram, Matrix, e-mail
(``mailto://``) and the rest Apprise knows. The URLs are checked when the sink is built
(start-up: an unknown scheme or a missing extra is a settings error); Apprise sends in the
sink's own thread, each alert bounded by ``timeout``. Error texts name a URL by its scheme
and position only: URLs carry tokens."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from mamori.model.watch import Danger
from mamori.watch.settings import AppriseSinkSettings, SettingsError
from mamori.watch.sinks.alert import Alert, alert_danger, alert_headline, alert_line
from mamori.watch.sinks.base import SinkError, ThreadWorker

__all__ = ["AppriseSink", "notify_text"]

MAX_URLS = 64


def notify_text(alert: Alert) -> tuple[str, str, str]:
    """(title, body, Apprise notify type) for one alert."""
    title = f"mamori: {alert_headline(alert.item, opened=alert.opened)}"[:250]
    danger = alert_danger(alert.item)
    kind = ("failure" if danger.rank >= Danger.HIGH.rank
            else "warning" if danger.rank >= Danger.MEDIUM.rank else "info")
    return title, alert_line(alert), kind


class AppriseSink:
    def __init__(self, name: str, settings: AppriseSinkSettings) -> None:
        self.name = name
        self.settings = settings
        try:
            import apprise
        except ImportError:
            raise SettingsError(f"alert sink {name}: type \"apprise\" needs Apprise: "
                                "pip install 'mamori[alerts]'") from None
        urls = list(settings.urls)
        if settings.urls_env is not None:
            value = os.environ.get(settings.urls_env)
            if value is None:
                raise SettingsError(f"alert sink {name}: the environment variable "
                                    f"{settings.urls_env} (urls_env) is not set")
            urls += value.split()
        if not urls or len(urls) > MAX_URLS:
            raise SettingsError(f"alert sink {name}: give 1 to {MAX_URLS} Apprise URLs")
        self._apprise: Any = apprise.Apprise()
        for i, url in enumerate(urls, 1):
            if not self._apprise.add(url):
                raise SettingsError(f"alert sink {name}: Apprise does not understand URL {i} "
                                    f"({url.split('://', 1)[0][:20]}://…)")
        self._worker = ThreadWorker(name)

    async def start(self) -> None:
        return None

    def _notify(self, title: str, body: str, kind: str) -> bool:
        return bool(self._apprise.notify(body=body, title=title, notify_type=kind))

    async def send(self, alert: Alert) -> None:
        title, body, kind = notify_text(alert)
        try:
            ok = await asyncio.wait_for(self._worker.run(self._notify, title, body, kind),
                                        self.settings.timeout)
        except TimeoutError:
            raise SinkError(f"apprise: not sent within {self.settings.timeout:g} s") from None
        if not ok:
            raise SinkError("apprise: at least one service did not take the notification "
                            "(Apprise's log says which)")

    async def aclose(self) -> None:
        self._worker.close()
