"""What every request handler shares: settings, store, job backend, signer, limits, the
refusal log, templates, and the helpers that read a request (visitor address, cookies)."""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from mamori.serve import ratelimit
from mamori.serve.backend import JobBackend
from mamori.serve.peer import ProxyHeaderError, client_address
from mamori.serve.scope import AddressError, IPAddress, IPNetwork, ScopePolicy, parse_networks
from mamori.serve.settings import ServeSettings
from mamori.serve.tokens import Signer
from mamori.store import Store

HERE = Path(__file__).resolve().parent
WINDOW_15_MIN = 900.0


@dataclass
class Refusal:
    address: str
    reason: str
    count: int
    first: datetime
    last: datetime


class RefusalLog:
    """Who was refused and why, for the admin's "blocked sources" page. Bounded in memory:
    the least recently refused (address, reason) pairs go first."""

    def __init__(self, max_entries: int = 2000) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[tuple[str, str], Refusal] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, address: str, reason: str) -> None:
        now = datetime.now(UTC)
        key = (address[:64], reason[:120])
        with self._lock:
            item = self._items.pop(key, None)
            if item is None:
                item = Refusal(key[0], key[1], 0, now, now)
            item.count += 1
            item.last = now
            self._items[key] = item
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def top(self, n: int = 100) -> list[Refusal]:
        with self._lock:
            items = list(self._items.values())
        return sorted(items, key=lambda r: (-r.count, r.address))[:n]


@dataclass
class ServeState:
    settings: ServeSettings
    store: Store
    backend: JobBackend
    signer: Signer
    policy: ScopePolicy
    trusted: tuple[IPNetwork, ...]
    check_ids: tuple[str, ...]
    check_titles: list[tuple[str, str]]
    templates: jinja2.Environment
    refusals: RefusalLog = field(default_factory=RefusalLog)
    submit_lock: threading.Lock = field(default_factory=threading.Lock)
    page_rate: ratelimit.Window = field(init=False)
    check_rate: ratelimit.Window = field(init=False)
    prefix_rate: ratelimit.Window = field(init=False)
    login_rate: ratelimit.Window = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        self.page_rate = ratelimit.Window(s.requests_per_minute, 60.0)
        self.check_rate = ratelimit.Window(s.checks_per_hour, 3600.0)
        self.prefix_rate = ratelimit.Window(s.checks_per_hour_per_prefix, 3600.0)
        self.login_rate = ratelimit.Window(s.login_attempts, WINDOW_15_MIN)

    # -- cookies ---------------------------------------------------------------------------

    @property
    def visitor_cookie(self) -> str:
        return "__Host-mamori_v" if self.settings.secure_cookies else "mamori_v"

    @property
    def admin_cookie(self) -> str:
        return "mamori_admin"

    def cookie_args(self, *, same_site: str, max_age: int, path: str = "/") -> dict[str, Any]:
        return {"httponly": True, "samesite": same_site, "secure": self.settings.secure_cookies,
                "max_age": max_age, "path": path}

    # -- the visitor -----------------------------------------------------------------------

    def visitor_address(self, request: Request) -> IPAddress:
        """The address a check would probe. Raises AddressError or ProxyHeaderError."""
        client = request.scope.get("client")
        if not client:
            raise AddressError("no peer address (not a TCP connection)")
        return client_address(str(client[0]), request.scope.get("headers", []), self.trusted,
                              self.settings.forwarded_header)

    def rate_key(self, scope: MutableMapping[str, Any]) -> str | None:
        """The per-visitor key for the page-rate limit: the visitor's address, or the raw
        peer when the proxy header is unusable."""
        client = scope.get("client")
        if not client:
            return None
        try:
            return str(client_address(str(client[0]), scope.get("headers", []), self.trusted,
                                      self.settings.forwarded_header))
        except (AddressError, ProxyHeaderError):
            return str(client[0])

    # -- pages -----------------------------------------------------------------------------

    def page(self, name: str, status: int = 200, headers: dict[str, str] | None = None,
             **context: Any) -> HTMLResponse:
        s = self.settings
        html = self.templates.get_template(name).render(
            service_name=s.service_name, contact=s.contact, public_url=s.public_url,
            user_agent=s.user_agent, helo_name=s.smtp_helo, **context)
        return HTMLResponse(html, status_code=status, headers={
            "cache-control": "no-store", **(headers or {})})


def make_templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["when"] = lambda d: d.strftime("%Y-%m-%d %H:%M UTC") if d else "-"
    env.filters["seconds"] = _seconds
    return env


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 90:
        return f"{value:.0f} s"
    return f"{value / 60:.1f} min"


def make_state(settings: ServeSettings, store: Store, backend: JobBackend) -> ServeState:
    from mamori.checks.catalog import default_catalog, select

    key = (settings.secret_key.get_secret_value().encode("utf-8")
           if settings.secret_key is not None else secrets.token_bytes(32))
    specs = select(settings.checks)  # CatalogError for an unknown id
    catalog = default_catalog()
    return ServeState(
        settings=settings, store=store, backend=backend, signer=Signer(key),
        policy=settings.scope_policy(), trusted=parse_networks(settings.trusted_proxies),
        check_ids=tuple(s.id for s in specs),
        check_titles=[(s.id, catalog[s.id].title.en) for s in specs],
        templates=make_templates(),
    )


def now_ts() -> float:
    return time.time()
