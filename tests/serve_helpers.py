"""Helpers for the mamori serve tests: the real app under uvicorn in a thread, clients bound
to visitor addresses, and a recording scanner that wraps the real one.

Addresses: the server on 127.0.150.1; visitors (client source addresses) 127.0.151.x; spare
servers (e.g. a second app) on 127.0.152.x.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from mamori.scan.pipeline import ProgressFn, ScanSink
from mamori.serve.app import create_app
from mamori.serve.backend import EmbeddedBackend
from mamori.serve.scanner import PipelineScanner, ScanRequest
from mamori.serve.settings import ServeSettings, load_serve_settings
from mamori.store import Store

SERVER_HOST = "127.0.150.1"
SECRET = "test-secret-key-0123456789abcdef-0123456789"


@dataclass
class RecordingScanner:
    """The real pipeline scanner, with every request it gets written down first."""

    inner: Any = field(default_factory=PipelineScanner)
    requests: list[ScanRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # addresses whose checks a test keeps running (until it discards them or deletes the check)
    held: set[str] = field(default_factory=set)

    async def scan(self, request: ScanRequest, sink: ScanSink, progress: ProgressFn) -> None:
        with self.lock:
            self.requests.append(request)
        while request.address in self.held:
            await asyncio.sleep(0.05)
        await self.inner.scan(request, sink, progress)

    def addresses(self) -> list[str]:
        with self.lock:
            return [r.address for r in self.requests]


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    settings: ServeSettings
    store: Store
    scanner: RecordingScanner
    backend: EmbeddedBackend
    url: str
    server: uvicorn.Server
    app: Any

    def client(self, source: str, **kwargs: Any) -> httpx.Client:
        """A client whose connections come from ``source`` (a 127.x visitor address)."""
        transport = httpx.HTTPTransport(local_address=source)
        return httpx.Client(base_url=self.url, transport=transport, timeout=20,
                            follow_redirects=False, **kwargs)


def settings_for(tmp: Path, port: int, **overrides: Any) -> ServeSettings:
    """Test settings: an empty settings file of its own (the user's is never read), 2024
    excluded, short timeouts."""
    empty = tmp / "settings.toml"
    empty.write_text("")
    base: dict[str, Any] = {
        "bind": SERVER_HOST, "port": port, "public_url": f"http://{SERVER_HOST}:{port}",
        "secret_key": SECRET, "excluded_ports": "2024", "db": str(tmp / "serve.db"),
        "probe_timeout": 0.5, "heartbeat_seconds": 0.5,
    }
    base.update(overrides)
    return load_serve_settings(empty, **base)


@contextmanager
def serve(tmp: Path, host: str = SERVER_HOST, **overrides: Any) -> Iterator[Served]:
    """The real app on ``host``:<free port> under uvicorn, as ``mamori serve`` runs it."""
    port = free_port(host)
    overrides.setdefault("bind", host)
    overrides.setdefault("public_url", f"http://{host}:{port}")
    settings = settings_for(tmp, port, **overrides)
    store = Store.open(settings.db)
    scanner = RecordingScanner()
    backend = EmbeddedBackend(settings, store, scanner)
    app = create_app(settings, store=store, backend=backend, maintenance_every=0.5)
    config = uvicorn.Config(app, host=host, port=port, proxy_headers=False,
                            forwarded_allow_ips="", server_header=False, access_log=False,
                            log_level="warning", timeout_keep_alive=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    end = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > end:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield Served(settings, store, scanner, backend, f"http://{host}:{port}", server, app)
    finally:
        server.should_exit = True
        thread.join(15)
        store.close()


_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    m = _CSRF.search(html)
    assert m is not None, "no CSRF token in the page"
    return m.group(1)


def start_check(client: httpx.Client, **form: str) -> httpx.Response:
    """GET the landing page (cookie + token), then POST /checks like the browser does."""
    page = client.get("/")
    assert page.status_code == 200, page.text[:300]
    data = {"csrf": csrf_of(page.text), "profile": "custom", "consent": "yes", **form}
    return client.post("/checks", data=data)


def wait_done(client: httpx.Client, location: str, timeout: float = 60) -> dict[str, Any]:
    """Poll the status JSON until the check is done or failed."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status: dict[str, Any] = client.get(f"{location}/status").json()
        if status["status"] in ("done", "failed"):
            return status
        time.sleep(0.2)
    raise AssertionError(f"check {location} did not finish in {timeout} s")
