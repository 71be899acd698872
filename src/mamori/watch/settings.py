"""The ``[watch]`` section of the settings file, validated (docs/watch-settings.md).

``load_watch_settings()`` reads the settings file (``$MAMORI_SETTINGS`` or the user's config
dir, see :mod:`mamori.settings`) and returns a :class:`WatchSettings`; a wrong key or value
raises :class:`~mamori.settings.SettingsError` with ONE line naming the file and the key,
e.g. ``/etc/mamori/settings.toml: watch.alerts[2].url: must start with http:// or https://``.

Durations are seconds (a number) or text like ``"90s"``, ``"10m"``, ``"1h30m"``, ``"2d"``;
rate limits are ``"N/period"`` (``"5/10m"``: at most 5 alerts per 10 minutes).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from mamori.model.watch import Danger, EventType
from mamori.settings import SettingsError, load_settings

__all__ = [
    "AlertSink",
    "AppriseSinkSettings",
    "BlockSettings",
    "DetectSettings",
    "EmailSinkSettings",
    "JournaldSettings",
    "JsonlSinkSettings",
    "LogSettings",
    "RateLimit",
    "SettingsError",
    "StdoutSinkSettings",
    "SyslogSinkSettings",
    "WatchSettings",
    "WebhookSinkSettings",
    "format_duration",
    "load_watch_settings",
    "parse_duration",
]

# Filter words a sink's ``types`` may hold besides the event type codes.
EXTRA_TYPES = ("incident", "block")

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_NFT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def parse_duration(value: object) -> float:
    """Seconds from a number or text like ``"90s"``, ``"10m"``, ``"1h30m"``; > 0."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 10m, 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        else:
            pos, seconds = 0, 0.0
            for m in _DURATION.finditer(text):
                if text[pos:m.start()].strip():
                    break
                seconds += float(m.group(1)) * _UNITS[m.group(2)]
                pos = m.end()
            if pos == 0 or text[pos:].strip():
                raise ValueError(f"{value!r} is not a duration like 30s, 10m, 1h30m, 2d")
    else:
        raise ValueError("expected a duration like 30s, 10m, 1h")
    if not 0 < seconds <= 366 * 86400:
        raise ValueError("a duration must be more than 0 and at most a year")
    return seconds


def format_duration(seconds: float) -> str:
    """``600`` → ``"10m"``, ``5400`` → ``"1h30m"``, ``1.5`` → ``"1.5s"`` (for messages)."""
    if seconds != int(seconds) or seconds < 60:
        return f"{seconds:g}s"
    rest, out = int(seconds), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(out)


Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class RateLimit(_Model):
    """At most ``count`` alerts per ``period`` seconds (a token bucket: bursts up to count)."""

    count: int = Field(strict=True, ge=1, le=1_000_000)
    period: Duration

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            count, sep, period = value.partition("/")
            if not sep or not count.strip().isdigit():
                raise ValueError(f"{value!r} is not a rate like \"5/10m\" (N per period)")
            period = period.strip()
            return {"count": int(count), "period": f"1{period}" if period in _UNITS else period}
        return value

    def __str__(self) -> str:
        return f"{self.count} per {format_duration(self.period)}"


class _SinkBase(_Model):
    name: str | None = Field(default=None, min_length=1, max_length=64)
    types: tuple[str, ...] = ()  # empty: everything; "decoy.*" matches a family
    min_danger: Danger = Danger.INFO
    per_source: RateLimit | None = None
    global_: RateLimit | None = Field(default=None, alias="global")
    # alerts waiting for this sink at most (more are dropped, counted and reported)
    queue: int = Field(strict=True, default=1000, ge=1, le=1_000_000)

    @field_validator("types")
    @classmethod
    def _known_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        codes = {str(t) for t in EventType}
        families = {c.split(".", 1)[0] for c in codes}
        for word in value:
            if word in codes or word in EXTRA_TYPES:
                continue
            if word.endswith(".*") and word[:-2] in families:
                continue
            raise ValueError(f"unknown type {word!r} (event type codes such as decoy.login, "
                             "a family such as decoy.*, incident or block)")
        return value


class StdoutSinkSettings(_SinkBase):
    type: Literal["stdout"]
    stream: Literal["stdout", "stderr"] = "stdout"


class JsonlSinkSettings(_SinkBase):
    type: Literal["jsonl"]
    path: Path


class SyslogSinkSettings(_SinkBase):
    type: Literal["syslog"]
    socket: Literal["unix", "udp", "tcp"] = "unix"
    address: str | None = None  # host:port ([v6]:port) for udp/tcp; a path for unix
    facility: Literal[
        "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
        "authpriv", "ftp", "local0", "local1", "local2", "local3", "local4", "local5",
        "local6", "local7",
    ] = "daemon"
    format: Literal["rfc5424", "rfc3164"] = "rfc5424"
    app_name: str = Field(default="mamori", pattern=r"^[!-~]{1,48}$")
    # default: this host's name (never looked up in DNS)
    hostname: str | None = Field(default=None, pattern=r"^[!-~]{1,255}$")

    @model_validator(mode="after")
    def _address(self) -> SyslogSinkSettings:
        if self.socket != "unix" and self.address is not None:
            host, port = split_host_port(self.address, 514)
            if not host or not 0 < port < 65536:
                raise ValueError(f"address {self.address!r} is not host:port")
        return self


class WebhookSinkSettings(_SinkBase):
    type: Literal["webhook"]
    url: str
    timeout: Duration = 10.0  # one attempt, connect to answer
    retries: int = Field(strict=True, default=3, ge=0, le=10)
    backoff: Duration = 1.0  # first wait before a retry; doubles each time (at most 60 s)
    headers: dict[str, str] = Field(default_factory=dict)
    queue: int = Field(strict=True, default=200, ge=1, le=100_000)
    # The body as a Jinja2 template (sandboxed; checked at start-up); None: the alert's JSON.
    template: str | None = Field(default=None, min_length=1, max_length=65536)
    content_type: str = Field(default="application/json", pattern=r"^[!-~][ -~]{0,127}$")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s?#]+", value) or any(c in value for c in " \r\n\t"):
            raise ValueError("must start with http:// or https:// and name a host")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for key, val in value.items():
            if not _HEADER_NAME.match(key) or any(c in val for c in "\r\n\0"):
                raise ValueError(f"bad header {key!r} (a token name, a one-line value)")
            if key.lower() in ("host", "content-length", "content-type", "connection"):
                raise ValueError(f"header {key!r} is set by mamori")
        return value


class EmailSinkSettings(_SinkBase):
    type: Literal["email"]
    host: str = Field(min_length=1)
    port: int = Field(strict=True, default=25, ge=1, le=65535)
    from_: str = Field(alias="from", pattern=r"^[^\s@<>]+@[^\s@<>]+$")
    to: tuple[Annotated[str, Field(pattern=r"^[^\s@<>,]+@[^\s@<>,]+$")], ...] = Field(
        min_length=1)
    starttls: StrictBool = False
    tls_cafile: Path | None = None  # trust this CA file instead of the system's
    username: str | None = None
    password_env: str | None = Field(default=None, pattern=_ENV_NAME.pattern)
    timeout: Duration = 20.0
    helo: str = Field(default="mamori", pattern=r"^[A-Za-z0-9.-]{1,255}$")
    subject_prefix: str = Field(default="[mamori]", max_length=64, pattern=r"^[^\r\n]*$")
    queue: int = Field(strict=True, default=100, ge=1, le=100_000)

    @model_validator(mode="after")
    def _auth(self) -> EmailSinkSettings:
        if (self.username is None) != (self.password_env is None):
            raise ValueError("username and password_env go together (password_env names the "
                             "environment variable holding the password)")
        return self


class AppriseSinkSettings(_SinkBase):
    """Notification services through Apprise (the ``alerts`` extra): ntfy, Gotify, Discord,
    Slack, Telegram, Matrix, e-mail… one Apprise URL each, in ``urls`` and/or whitespace
    separated in the environment variable ``urls_env`` (tokens stay out of the file)."""

    type: Literal["apprise"]
    urls: tuple[str, ...] = ()
    urls_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
    timeout: Duration = 30.0  # one alert to every URL
    queue: int = Field(strict=True, default=200, ge=1, le=100_000)

    @field_validator("urls")
    @classmethod
    def _urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            if "://" not in url or any(c in url for c in " \r\n\t"):
                raise ValueError(f"{url.split('://', 1)[0][:20]!r}…: not an Apprise URL "
                                 "(scheme://…)")
        return value

    @model_validator(mode="after")
    def _some(self) -> AppriseSinkSettings:
        if not self.urls and self.urls_env is None:
            raise ValueError("give urls or urls_env")
        return self


AlertSink = Annotated[
    StdoutSinkSettings | JsonlSinkSettings | SyslogSinkSettings | WebhookSinkSettings
    | EmailSinkSettings | AppriseSinkSettings,
    Field(discriminator="type"),
]
SINK_TYPES = ("stdout", "jsonl", "syslog", "webhook", "email", "apprise")


class LogSettings(_Model):
    kind: Literal["auth", "access", "firewall", "journald-sshd", "journald-kernel", "pflog",
                  "macos-unified"]
    path: Path | None = None
    follow: StrictBool = True  # False: read the file once

    @model_validator(mode="after")
    def _path(self) -> LogSettings:
        journald = self.kind.startswith("journald-")
        if journald and self.path is not None:
            raise ValueError(f"kind {self.kind} reads the journal: no path")
        if not journald and self.path is None:
            raise ValueError(f"kind {self.kind} needs a path")
        return self


class JournaldSettings(_Model):
    """Shorthand for ``logs`` entries of kind journald-sshd / journald-kernel."""

    sshd: StrictBool = False
    kernel: StrictBool = False  # firewall log lines (nftables/iptables "log" rules)


class DetectSettings(_Model):
    """Detector thresholds; omitted ones keep mamori's built-in defaults."""

    # distinct ports from one source in the window
    portscan_ports: int | None = Field(default=None, strict=True, ge=2, le=65535)
    portscan_window: Duration | None = None
    bruteforce_failures: int | None = Field(default=None, strict=True, ge=2, le=1_000_000)
    bruteforce_window: Duration | None = None
    # distinct addresses pinged by one source in the window
    ping_sweep_targets: int | None = Field(default=None, strict=True, ge=2, le=65535)
    ping_sweep_window: Duration | None = None


class DecoyLimitSettings(_Model):
    """Bounds on what visitors can make the decoys hold or write; omitted ones keep the
    built-in defaults (``mamori.watch.decoys.DecoyLimits``)."""

    read_cap: int | None = Field(default=None, strict=True, ge=64, le=16 * 1024 * 1024)
    idle_timeout: Duration | None = None
    total_timeout: Duration | None = None
    max_connections: int | None = Field(default=None, strict=True, ge=1, le=1_000_000)
    per_source_connections: int | None = Field(default=None, strict=True, ge=1, le=1_000_000)
    events_per_second: float | None = Field(default=None, gt=0, le=1_000_000)
    event_burst: int | None = Field(default=None, strict=True, ge=1, le=10_000_000)

    def overrides(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class BlockSettings(_Model):
    """Opt-in blocking: sources of incidents at or above ``min_danger`` go into an nftables
    set with a timeout (``table``/``set4``/``set6``/``chain`` are created when missing)."""

    enabled: StrictBool = False
    table: str = Field(default="mamori", pattern=_NFT_NAME.pattern)  # family inet
    set4: str = Field(default="watch_block", pattern=_NFT_NAME.pattern)
    set6: str = Field(default="watch_block6", pattern=_NFT_NAME.pattern)
    chain: str = Field(default="watch_input", pattern=_NFT_NAME.pattern)
    priority: int = Field(strict=True, default=-10, ge=-1000, le=1000)  # of the input hook chain
    timeout: Duration = 3600.0
    min_danger: Danger = Danger.HIGH
    allowlist: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()  # never blocked
    # Never blocked either (besides the host's own networks and default gateways).
    never_block: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    allow_loopback: StrictBool = False  # loopback is never blocked unless this is true
    nft: str = "nft"  # the nft binary
    ip: str = "ip"  # the ip binary (the host's networks and default gateways)

    @field_validator("allowlist", "never_block", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            out = []
            for item in value:
                try:
                    out.append(ipaddress.ip_network(str(item), strict=False))
                except ValueError:
                    raise ValueError(f"{item!r} is not an address or network") from None
            return tuple(out)
        return value


def _default_alerts() -> tuple[StdoutSinkSettings, ...]:
    return (StdoutSinkSettings(type="stdout", types=("incident", "block")),)


class WatchSettings(_Model):
    decoys: tuple[str, ...] = ()  # "127.0.0.1:2323", "0.0.0.0:1900/udp", "0.0.0.0:8081/tcp=http"
    logs: tuple[LogSettings, ...] = ()
    icmp: StrictBool = False
    tcp_knock: StrictBool = True  # half-open (SYN/NULL/FIN/XMAS) scans of the TCP decoys
    # SYN/NULL/FIN/XMAS and UDP to closed ports (raw sockets; without CAP_NET_RAW said to be
    # not watched, and the rest runs on)
    knocks: StrictBool = True
    journald: JournaldSettings = JournaldSettings()
    store: str | None = None  # a database URL, or a file path for SQLite
    incident_window: Duration | None = None
    detect: DetectSettings = DetectSettings()
    decoy_limits: DecoyLimitSettings = DecoyLimitSettings()
    block: BlockSettings = BlockSettings()
    # Omitted: incidents (and blocks) as lines on stdout. ``alerts = []``: no alerts at all.
    alerts: tuple[AlertSink, ...] = Field(default_factory=_default_alerts)

    @field_validator("decoys")
    @classmethod
    def _decoys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for spec in value:
            _check_decoy(spec)
        return value

    @field_validator("store")
    @classmethod
    def _store(cls, value: str | None) -> str | None:
        if value is None or "://" in value:
            return value
        if not value.strip():
            raise ValueError("store must be a database URL or a file path")
        return f"sqlite:///{Path(value).expanduser()}"

    @model_validator(mode="after")
    def _names(self) -> WatchSettings:
        seen: set[str] = set()
        for sink in self.alerts:
            if sink.name is not None:
                if sink.name in seen:
                    raise ValueError(f"two alert sinks are named {sink.name!r}")
                seen.add(sink.name)
        return self

    def log_settings(self) -> tuple[LogSettings, ...]:
        """``logs`` plus the ``journald`` shorthand as log entries (no duplicates)."""
        extra = []
        if self.journald.sshd:
            extra.append(LogSettings(kind="journald-sshd"))
        if self.journald.kernel:
            extra.append(LogSettings(kind="journald-kernel"))
        have = {(s.kind, s.path) for s in self.logs}
        return self.logs + tuple(s for s in extra if (s.kind, s.path) not in have)

    @classmethod
    def from_table(cls, table: Mapping[str, Any] | None, where: str = "settings") -> WatchSettings:
        """Validate the raw ``[watch]`` table; raises SettingsError with one line."""
        try:
            return cls.model_validate(dict(table or {}))
        except ValidationError as exc:
            raise SettingsError(f"{where}: {_one_line(exc)}") from None


def load_watch_settings(path: Path | None = None) -> WatchSettings:
    """The ``[watch]`` section of the settings file (defaults when absent)."""
    settings = load_settings(path)
    where = str(settings.path) if settings.path else "settings"
    return WatchSettings.from_table(settings.watch, where)


def split_host_port(address: str, default_port: int) -> tuple[str, int]:
    """``"h:514"``, ``"[::1]:514"``, ``"::1"`` or ``"h"`` → (host, port); port -1 if bad."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ("" if not rest else "x")
    elif address.count(":") == 1:
        host, _, port_text = address.partition(":")
    else:
        host, port_text = address, ""
    if not port_text:
        return host, default_port
    return host, int(port_text) if port_text.isdigit() else -1


def _check_decoy(spec: str) -> None:
    parse = _decoy_parser()
    if parse is not None:
        parse(spec)  # the sources piece's one parser: ValueError with a one-line message
    elif not re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[^:/\s]+):\d{1,5}(/(tcp|udp))?(=[a-z0-9_-]+)?",
                          spec):
        raise ValueError(f"decoy {spec!r} is not like 127.0.0.1:2323[/udp][=persona]")


def _decoy_parser() -> Any:
    try:
        from mamori.watch import decoys
    except ImportError:  # pragma: no cover - only while the decoys package is missing
        return None
    spec_class = getattr(decoys, "DecoySpec", None)
    return getattr(spec_class, "parse", None)


def _one_line(exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    loc = _loc(first["loc"])
    msg = str(first["msg"])
    if first["type"] == "extra_forbidden":
        msg = "unknown setting"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"{loc}: {msg}{more}".replace("\n", " ")


def _loc(parts: tuple[int | str, ...]) -> str:
    out = "watch"
    previous: int | str | None = None
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(previous, int) and part in SINK_TYPES:
            pass  # the discriminator's tag pydantic inserts: watch.alerts[0].url reads better
        else:
            out += f".{'global' if part == 'global_' else part}"
        previous = part
    return out
