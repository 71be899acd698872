"""The stdout sink (one human line per alert) and the JSON-lines file sink."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TextIO

from mamori.watch.settings import JsonlSinkSettings, SettingsError, StdoutSinkSettings
from mamori.watch.sinks.alert import Alert, alert_line, alert_to_dict
from mamori.watch.sinks.base import SinkError, ThreadWorker

__all__ = ["JsonlSink", "StdoutSink"]


class StdoutSink:
    """``2024-05-01 12:00:03Z HIGH new incident worm.codered from 198.51.100.7: ...``"""

    def __init__(self, name: str, settings: StdoutSinkSettings,
                 stream: TextIO | None = None) -> None:
        self.name = name
        self._stream = stream
        self._which = settings.stream
        self._worker = ThreadWorker(name)

    async def start(self) -> None:
        return None

    def _write(self, line: str) -> None:
        # Looked up at write time: tests and the CLI may swap sys.stdout.
        out = self._stream or (sys.stdout if self._which == "stdout" else sys.stderr)
        try:
            out.write(line + "\n")
            out.flush()
        except (OSError, ValueError) as exc:
            raise SinkError(f"cannot write to {self._which}: {exc}") from None

    async def send(self, alert: Alert) -> None:
        await self._worker.run(self._write, alert_line(alert))

    async def aclose(self) -> None:
        self._worker.close()


class JsonlSink:
    """One JSON object per line, appended and flushed per alert (``event_to_dict`` for
    events, ``incident_to_dict`` for incidents, ``notice_to_dict`` for notices)."""

    def __init__(self, name: str, settings: JsonlSinkSettings) -> None:
        self.name = name
        self.path: Path = settings.path.expanduser()
        if not self.path.parent.is_dir():
            raise SettingsError(f"alert sink {name}: the directory of {self.path} does not exist")
        self._file: TextIO | None = None
        self._worker = ThreadWorker(name)

    def _open(self) -> None:
        try:
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
        except OSError as exc:
            raise SinkError(f"cannot open {self.path}: {exc.strerror or exc}") from None

    async def start(self) -> None:
        await self._worker.run(self._open)

    def _write(self, line: str) -> None:
        if self._file is None:
            self._open()
        assert self._file is not None
        try:
            self._file.write(line + "\n")
            self._file.flush()
        except OSError as exc:
            raise SinkError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    async def send(self, alert: Alert) -> None:
        line = json.dumps(alert_to_dict(alert), ensure_ascii=False, separators=(",", ":"))
        await self._worker.run(self._write, line)

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    async def aclose(self) -> None:
        await self._worker.run(self._close)
        self._worker.close()
