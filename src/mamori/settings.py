"""The user's settings file: defaults for options the owner does not want to repeat.

``$MAMORI_SETTINGS`` or ``<user config dir>/mamori/settings.toml``, e.g.::

    # listeners and ports mamori must never touch (same syntax as -p)
    exclude_ports = "2024,8443"

    [watch]   # mamori watch: decoys, logs, alerts, blocking (docs/watch-settings.md)

A missing file means no settings; a file that cannot be read or parsed is an error (one line),
never silently ignored.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

KNOWN = {"exclude_ports", "watch", "serve"}  # [serve]: mamori.serve.settings


class SettingsError(ValueError):
    """The settings file is unreadable or wrong; the message names the file."""


@dataclass(frozen=True)
class Settings:
    exclude_ports: str | None = None
    # the raw [watch] table; validated by mamori.watch.settings.WatchSettings
    watch: dict[str, Any] | None = None
    path: Path | None = None  # the file these came from (for error messages)


def settings_path() -> Path:
    env = os.environ.get("MAMORI_SETTINGS")
    if env:
        return Path(env)
    return Path(platformdirs.user_config_dir("mamori")) / "settings.toml"


def load_settings(path: Path | None = None) -> Settings:
    """Read the settings file (none: defaults). Raises SettingsError."""
    where = path or settings_path()
    if not where.exists():
        if path is not None or os.environ.get("MAMORI_SETTINGS"):
            raise SettingsError(f"settings file {where} does not exist")
        return Settings()
    try:
        data = tomllib.loads(where.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"cannot read settings file {where}: {exc}") from None
    unknown = set(data) - KNOWN
    if unknown:
        raise SettingsError(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}")
    exclude = data.get("exclude_ports")
    if exclude is not None and not isinstance(exclude, str | int):
        raise SettingsError(f"{where}: exclude_ports must be text like \"2024,8443\"")
    watch = data.get("watch")
    if watch is not None and not isinstance(watch, dict):
        raise SettingsError(f"{where}: watch must be a table ([watch])")
    return Settings(exclude_ports=str(exclude) if exclude is not None else None, watch=watch,
                    path=where)


def merged_exclusions(cli_value: str | None, settings: Settings) -> str | None:
    """The command line's --exclude-ports plus the settings file's, as one spec."""
    parts = [p for p in (settings.exclude_ports, cli_value) if p]
    return ",".join(parts) or None
