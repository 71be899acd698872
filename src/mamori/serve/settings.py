"""Settings of ``mamori serve``: the settings file's ``[serve]`` table, then environment
variables ``MAMORI_SERVE_<NAME>`` (which win), then explicit overrides (which win over both).

List and table values in the environment are JSON, e.g.
``MAMORI_SERVE_TRUSTED_PROXIES='["10.0.0.2"]'``. Unknown names in ``[serve]`` are errors.
Example (``~/.config/mamori/settings.toml``)::

    exclude_ports = "2024"
    [serve]
    public_url = "https://check.example.net"
    bind = "127.0.0.1"
    port = 8080
    trusted_proxies = ["127.0.0.1"]        # nginx in front
    secret_key = "<64 random characters>"
    admin_users = { alice = "scrypt$16384$8$1$..." }   # mamori serve --hash-password
"""

from __future__ import annotations

import contextvars
import ipaddress
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from mamori.serve.passwords import is_password_hash
from mamori.serve.scope import AddressError, ScopePolicy, parse_networks

# The Celery backend's limits, checked here so a bad settings file fails at load (the Celery
# app reads them from here too).
BROKER_SCHEMES = ("redis", "rediss", "redis+socket")
SOFT_LIMIT_MARGIN = 30.0  # seconds above check_timeout before Celery interrupts the task
HARD_LIMIT_MARGIN = 60.0  # ... and before it kills the pool process


class ServeSettingsError(ValueError):
    """Settings that cannot work; the message is one line and names the setting."""


_FILE_SECTION: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar(
    "mamori_serve_file_section", default={}  # noqa: B039 - never mutated
)


class _FileSection(PydanticBaseSettingsSource):
    """The ``[serve]`` table of the settings file, below the environment in priority."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_FILE_SECTION.get())


class ServeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MAMORI_SERVE_", extra="forbid",
                                      frozen=True, allow_inf_nan=False)

    # -- where and who ----------------------------------------------------------------------
    bind: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    public_url: str = "http://127.0.0.1:8080"  # how visitors reach the page; named in probes
    service_name: str = "mamori serve"
    contact: str | None = None  # shown on the page, e.g. "abuse@example.net"
    allowed_hosts: list[str] = Field(default_factory=list)  # Host header; empty: public_url's
    trusted_proxies: list[str] = Field(default_factory=list)
    forwarded_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"
    # -- scope policy -----------------------------------------------------------------------
    allow_loopback: bool = False
    allow_private: bool = False
    allow_link_local: bool = False
    allow_cgnat: bool = False
    allow_networks: list[str] = Field(default_factory=list)
    deny_networks: list[str] = Field(default_factory=list)
    # -- what is probed ---------------------------------------------------------------------
    excluded_ports: str = ""  # never probed, same syntax as `mamori scan -p`
    common_top_ports: int = Field(100, ge=1, le=65535)
    services_top_ports: int = Field(1000, ge=1, le=65535)
    services_udp_ports: list[int] = Field(
        default_factory=lambda: [53, 123, 137, 161, 1900, 5353, 11211])
    custom_max_ports: int = Field(20, ge=1, le=1000)
    api_max_ports: int = Field(64, ge=1, le=100)  # ports one API check probes (more: not tested)
    checks: list[str] | None = None  # check ids; None: the whole catalog
    probe_timeout: float = Field(1.5, gt=0, le=10)
    probe_rate: float | None = Field(500.0, gt=0)  # probes per second, per check
    helo_name: str | None = None  # SMTP HELO; default: public_url's host
    # -- results, limits, jobs --------------------------------------------------------------
    result_days: int = Field(7, ge=1, le=3650)
    requests_per_minute: int = Field(120, ge=1)  # every page, per address
    checks_per_hour: int = Field(6, ge=1)  # per address
    checks_per_hour_per_prefix: int = Field(20, ge=1)  # per IPv6 /64
    login_attempts: int = Field(5, ge=1)  # failed admin logins per address per 15 minutes
    max_active_checks: int = Field(8, ge=1)  # queued + running, all visitors together
    workers: int = Field(2, ge=1, le=64)  # checks that run at the same time (embedded pool)
    check_timeout: float = Field(600.0, gt=0)  # seconds; a longer check is stopped, failed
    heartbeat_seconds: float = Field(5.0, gt=0)
    stale_after: float = Field(120.0, gt=0)  # a running check silent this long has failed
    max_connections: int = Field(256, ge=1)
    max_body_bytes: int = Field(16_384, ge=1024)
    body_timeout: float = Field(10.0, gt=0)  # seconds for a whole request body
    # -- admin ------------------------------------------------------------------------------
    admin_users: dict[str, str] = Field(default_factory=dict)  # name -> scrypt hash
    secret_key: SecretStr | None = None  # None: a random key per start (sessions reset)
    session_hours: float = Field(8.0, gt=0, le=24 * 30)
    db: str | None = None  # database URL; None: --db, MAMORI_DB, or the default file
    # -- the Celery backend (mamori worker; see mamori.serve.celery_app) ---------------------
    backend: Literal["embedded", "celery"] = "embedded"  # who runs checks
    broker_url: str | None = None  # redis://host:6379/0: the job queue of backend "celery"
    celery_queue: str = Field("mamori", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    visibility_timeout: float = Field(1800.0, gt=0)  # the broker re-delivers an unacked job
    requeue_after: float = Field(30.0, gt=0)  # a running check silent this long runs again
    max_attempts: int = Field(2, ge=1, le=10)  # runs of one check before it ends failed

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _FileSection(settings_cls))

    @model_validator(mode="before")
    @classmethod
    def _default_public_url(cls, data: Any) -> Any:
        # Unless told otherwise, visitors reach the page where it listens: `--port 9000`
        # alone must not announce (and name in probes) the default port 8080.
        if isinstance(data, dict) and "public_url" not in data:
            return {**data, "public_url": _listening_url(data.get("bind"), data.get("port"))}
        return data

    @field_validator("bind")
    @classmethod
    def _literal_bind(cls, value: str) -> str:
        ipaddress.ip_address(value)  # ValueError: the bind address must be a literal
        return value

    @field_validator("public_url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("public_url must be an http:// or https:// URL")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("public_url must not have a path (serve from the site root)")
        return f"{parts.scheme}://{parts.netloc}"

    @field_validator("trusted_proxies", "allow_networks", "deny_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        try:
            parse_networks(value)
        except AddressError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("admin_users")
    @classmethod
    def _hashes(cls, value: dict[str, str]) -> dict[str, str]:
        for name, stored in value.items():
            if not name or len(name) > 64:
                raise ValueError("admin user names are 1 to 64 characters")
            if not is_password_hash(stored):
                raise ValueError(f"admin_users.{name} is not a scrypt hash "
                                 "(make one with: mamori serve --hash-password)")
        return value

    @field_validator("excluded_ports")
    @classmethod
    def _port_spec(cls, value: str) -> str:
        from mamori.ports import PortSpecError, parse_port_spec

        if value.strip():
            try:
                parse_port_spec(value, default_both=True)
            except PortSpecError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("services_udp_ports")
    @classmethod
    def _ports(cls, value: list[int]) -> list[int]:
        if any(not 0 < p < 65536 for p in value):
            raise ValueError("ports are 1 to 65535")
        return value

    @model_validator(mode="after")
    def _secret(self) -> ServeSettings:
        if self.secret_key is not None and len(self.secret_key.get_secret_value()) < 32:
            raise ValueError("secret_key needs at least 32 characters")
        return self

    @model_validator(mode="after")
    def _celery(self) -> ServeSettings:
        problem = celery_settings_problem(self)
        if problem is not None:
            raise ValueError(problem)
        return self

    # -- derived ---------------------------------------------------------------------------

    @property
    def public_host(self) -> str:
        host = urlsplit(self.public_url).hostname
        assert host is not None  # validated
        return host

    @property
    def hosts(self) -> list[str]:
        """The Host header values accepted (without ports)."""
        return self.allowed_hosts or [self.public_host]

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.startswith("https://")

    @property
    def user_agent(self) -> str:
        from mamori import __version__

        return f"mamori-serve/{__version__} (+{self.public_url}; connection check you requested)"

    @property
    def smtp_helo(self) -> str:
        if self.helo_name:
            return self.helo_name
        host = self.public_host
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return host
        return f"[IPv6:{ip}]" if ip.version == 6 else f"[{ip}]"  # RFC 5321 address literal

    def scope_policy(self) -> ScopePolicy:
        return ScopePolicy(
            allow_loopback=self.allow_loopback, allow_private=self.allow_private,
            allow_link_local=self.allow_link_local, allow_cgnat=self.allow_cgnat,
            allow_networks=parse_networks(self.allow_networks),
            deny_networks=parse_networks(self.deny_networks),
        )


def _listening_url(bind: object, port: object) -> str:
    """http://BIND:PORT from raw (unvalidated) settings; a wildcard bind is named by its
    loopback address, and what does not parse keeps the default (validation reports it)."""
    try:
        ip = ipaddress.ip_address(str(bind if bind is not None else "127.0.0.1"))
        number = int(str(port if port is not None else 8080))
    except ValueError:
        return "http://127.0.0.1:8080"
    if ip.is_unspecified:
        ip = ipaddress.ip_address("::1" if ip.version == 6 else "127.0.0.1")
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    return f"http://{host}:{number}"


def _file_section(path: Path | None) -> dict[str, Any]:
    import os

    from mamori.settings import settings_path

    where = path or settings_path()
    if not where.exists():
        if path is not None or os.environ.get("MAMORI_SETTINGS"):
            raise ServeSettingsError(f"settings file {where} does not exist")
        return {}
    try:
        data = tomllib.loads(where.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ServeSettingsError(f"cannot read settings file {where}: {exc}") from None
    section = data.get("serve", {})
    if not isinstance(section, dict):
        raise ServeSettingsError(f"{where}: serve must be a table ([serve])")
    return section


@contextmanager
def _section(data: dict[str, Any]) -> Iterator[None]:
    token = _FILE_SECTION.set(data)
    try:
        yield
    finally:
        _FILE_SECTION.reset(token)


def load_serve_settings(path: Path | None = None, **overrides: Any) -> ServeSettings:
    """File, then environment, then ``overrides``. Raises ServeSettingsError (one line)."""
    section = _file_section(path)
    try:
        with _section(section):
            return ServeSettings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "serve"
        raise ServeSettingsError(f"serve setting {where}: {first['msg']}") from None


def celery_settings_problem(s: ServeSettings) -> str | None:
    """Why these settings cannot run the Celery backend (one line), or None."""
    if s.broker_url is not None:
        scheme = urlsplit(s.broker_url).scheme
        if scheme not in BROKER_SCHEMES:
            return (f"broker_url must be a Redis URL ({', '.join(BROKER_SCHEMES)}), "
                    f"not {scheme or 'no scheme'}")
    if s.backend != "celery":
        return None
    if s.broker_url is None:
        return 'broker_url is needed with backend = "celery" (e.g. redis://127.0.0.1:6379/0)'
    if not 2 * s.heartbeat_seconds < s.requeue_after < s.stale_after:
        return ("requeue_after must be more than twice heartbeat_seconds and less than "
                "stale_after")
    if s.visibility_timeout <= s.check_timeout + HARD_LIMIT_MARGIN:
        return (f"visibility_timeout must be longer than check_timeout + "
                f"{int(HARD_LIMIT_MARGIN)} s")
    return None
