"""Alerts through Apprise (the ``alerts`` extra) and the webhook's sandboxed body template.

Apprise sends to local receivers only, named by IP literal (no name is ever looked up): an
HTTP server on 127.0.145.4 that records every request (json://, form://, xml://, ntfy://,
gotify://) and a real postfix delivering to a Maildir (mailto://). Discord, Slack and Telegram
URLs name their services' own hosts: those are not tested here. Matrix is tested against the
same recorder answering as a homeserver's client-server API would (login, join, send), not
against a real homeserver (none is in Debian's test dependencies). A template that reaches
for unsafe attributes, an unknown name or bad syntax is refused when the sinks are built
(start-up), and ``mamori watch`` says so in one line with exit 2."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from daemons import start_or_skip
from fixtures_alerts import MAIL_DOMAIN, SMTP_HOST, start_postfix_mailbox
from mamori.model.watch import Danger, Incident
from mamori.settings import SettingsError
from mamori.watch.settings import WatchSettings
from mamori.watch.sinks import AlertRouter

HOST = "127.0.145.4"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("apprise")


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Recorder:
    port: int = 0
    status: int = 200
    reply: bytes = b"{}"
    requests: list[Request] = field(default_factory=list)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            size = int(self.headers.get("Content-Length") or 0)
            rec.requests.append(Request(self.command, self.path, dict(self.headers.items()),
                                        self.rfile.read(min(size, 1 << 20))))
            body = rec.reply
            self.send_response(rec.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_PUT = do_POST

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((HOST, 0), Handler)
    rec.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


def incident(src: str = "198.51.100.7", kind: str = "bruteforce",
             danger: Danger = Danger.HIGH) -> Incident:
    return Incident(src, kind, danger, T0, T0, 12, ("ssh.login",), (), ("root/123456",), id=42)


def route(*alerts: dict[str, Any]) -> AlertRouter:
    return AlertRouter.from_settings(WatchSettings.from_table({"alerts": list(alerts)}))


def deliver(router: AlertRouter, *items: Incident, deadline: float = 20) -> None:
    async def go() -> None:
        await router.start()
        for item in items:
            router.publish(item, opened=True)
        await router.aclose(deadline)

    asyncio.run(go())


HEADLINE = ("HIGH new incident bruteforce from 198.51.100.7: 12 event(s) 12:00:00-12:00:00Z "
            'e.g. "root/123456"')


def test_apprise_http_services_get_the_alert(recorder: Recorder) -> None:
    base = f"{HOST}:{recorder.port}"
    router = route({"type": "apprise", "types": ["incident"], "urls": [
        f"json://{base}/json", f"form://{base}/form", f"xml://{base}/xml",
        f"ntfy://{base}/mamori-alerts", f"gotify://{base}/AbCdEfGhIjKlMnO"]})
    deliver(router, incident())
    stats = router.stats()["apprise"]
    assert (stats.sent, stats.failed) == (1, 0)
    got = {r.path.split("?")[0]: r for r in recorder.requests}
    assert sorted(got) == ["/", "/form", "/json", "/message", "/xml"]
    as_json = json.loads(got["/json"].body)
    assert as_json["title"] == f"mamori: {HEADLINE}" and as_json["type"] == "failure"
    assert as_json["message"].endswith(HEADLINE)
    form = parse_qs(got["/form"].body.decode())
    assert form["title"] == [f"mamori: {HEADLINE}"]
    assert b"<Subject>mamori: HIGH new incident bruteforce" in got["/xml"].body
    ntfy = json.loads(got["/"].body)  # ntfy posts JSON to its root with the topic inside
    assert ntfy["topic"] == "mamori-alerts" and ntfy["title"] == f"mamori: {HEADLINE}"
    gotify = json.loads(got["/message"].body)
    assert gotify["title"] == f"mamori: {HEADLINE}"
    assert got["/message"].headers.get("X-Gotify-Key") == "AbCdEfGhIjKlMnO"


def test_apprise_matrix_logs_in_joins_and_sends(recorder: Recorder) -> None:
    recorder.reply = json.dumps({"access_token": "syt_test", "user_id": "@mamori:mx.test",
                                 "home_server": "mx.test", "room_id": "!r00m:mx.test",
                                 "event_id": "$ev1"}).encode()
    router = route({"type": "apprise", "urls": [
        f"matrix://mamori:secret@{HOST}:{recorder.port}/#alerts?discovery=no"]})
    deliver(router, incident())
    assert router.stats()["apprise"].sent == 1
    calls = [(r.method, r.path) for r in recorder.requests]
    assert calls[0] == ("POST", "/_matrix/client/v3/login")
    assert json.loads(recorder.requests[0].body)["password"] == "secret"
    assert calls[-1][0] == "PUT" and calls[-1][1].startswith(
        "/_matrix/client/v3/rooms/%21r00m%3Amx.test/send/m.room.message/")
    message = json.loads(recorder.requests[-1].body)
    assert message["msgtype"] == "m.text" and HEADLINE in message["body"]
    assert recorder.requests[-1].headers["Authorization"] == "Bearer syt_test"


def test_a_failing_service_is_counted_not_raised(recorder: Recorder) -> None:
    recorder.status = 500
    router = route({"type": "apprise", "urls": [f"json://{HOST}:{recorder.port}/x"],
                    "timeout": 10})
    deliver(router, incident())
    stats = router.stats()["apprise"]
    assert (stats.sent, stats.failed) == (0, 1) and len(recorder.requests) == 1


@pytest.mark.parametrize(("entry", "expected"), [
    ({"urls": ["nosuchservice://127.0.145.4/x"]},
     "alert sink apprise: Apprise does not understand URL 1 (nosuchservice://…)"),
    ({"urls_env": "MAMORI_TEST_NO_SUCH_VAR"},
     "alert sink apprise: the environment variable MAMORI_TEST_NO_SUCH_VAR (urls_env) is not "
     "set"),
])
def test_bad_apprise_urls_fail_at_start_up(entry: dict[str, Any], expected: str) -> None:
    with pytest.raises(SettingsError) as info:
        route({"type": "apprise", **entry})
    assert str(info.value) == expected


def test_apprise_urls_from_the_environment(recorder: Recorder,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAMORI_TEST_APPRISE", f"json://{HOST}:{recorder.port}/env")
    router = route({"type": "apprise", "urls_env": "MAMORI_TEST_APPRISE"})
    deliver(router, incident())
    assert [r.path for r in recorder.requests] == ["/env"]


@pytest.mark.daemon
def test_apprise_mailto_through_postfix(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind((SMTP_HOST, 0))
        port = s.getsockname()[1]
    box = start_or_skip(start_postfix_mailbox, tmp_path, port)
    with box.daemon:
        router = route({"type": "apprise", "urls": [
            f"mailto://{SMTP_HOST}:{port}?mode=insecure&from=mamori@sensor.test"
            f"&to=owner@{MAIL_DOMAIN}"]})
        deliver(router, incident())
        raw = box.wait_for(1)
    assert router.stats()["apprise"].sent == 1 and len(raw) == 1
    msg = email.message_from_bytes(raw[0], policy=email.policy.default)
    assert str(msg["Subject"]) == f"mamori: {HEADLINE}"
    assert str(msg["To"]).endswith(f"owner@{MAIL_DOMAIN}")


# --- the webhook's body template ---------------------------------------------------------------


def test_webhook_body_template_is_rendered(recorder: Recorder) -> None:
    template = ('{"text": {{ line|tojson }}, "who": "{{ src }}", "n": {{ alert.count }}, '
                '"e": {{ examples|tojson }}}')
    router = route({"type": "webhook", "url": f"http://{HOST}:{recorder.port}/hook",
                    "template": template, "content_type": "application/json; charset=utf-8"})
    deliver(router, incident(src="203.0.113.9"))
    [req] = recorder.requests
    assert req.headers["Content-Type"] == "application/json; charset=utf-8"
    body = json.loads(req.body)
    assert body["who"] == "203.0.113.9" and body["n"] == 12 and body["e"] == ["root/123456"]
    assert body["text"].startswith("2024-05-01 12:00:00Z HIGH new incident bruteforce")


@pytest.mark.parametrize(("template", "expected"), [
    ("{{ ''.__class__.__mro__ }}", "'__mro__' is not allowed"),
    ("{{ alert|attr('__class__') }}", "'__class__' is not allowed"),
    ("{% if kind == 'never' %}{{ line.__globals__ }}{% endif %}", "'__globals__' is not allowed"),
    ("{{ alert['__init__'] }}", "'__init__' is not allowed"),
    ("{{ line.format.mro }}", "'mro' is not allowed"),
    ("{% set x = alert.update({'a': 1}) %}{{ x }}", "alert sink webhook: template: "),
    ("{{ no_such_name }}", "'no_such_name' is undefined"),
    ("{{ line ", "template: "),
])
def test_unsafe_or_broken_templates_fail_at_start_up(template: str, expected: str) -> None:
    with pytest.raises(SettingsError) as info:
        route({"type": "webhook", "url": f"http://{HOST}:9/x", "template": template})
    text = str(info.value)
    assert text.startswith("alert sink webhook: template: ") and expected in text
    assert "\n" not in text


def test_watch_refuses_an_unsafe_template_with_exit_2(tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text('[[watch.alerts]]\ntype = "webhook"\nurl = "http://127.0.145.4:9/x"\n'
                        "template = \"{{ ''.__class__ }}\"\n")
    db = tmp_path / "w.db"
    proc = subprocess.run(
        [sys.executable, "-m", "mamori", "watch", "--settings", str(settings), "--db", str(db),
         "--decoy", f"{HOST}:0"], capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**os.environ, "MAMORI_SETTINGS": str(settings)}, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == ("mamori: error: alert sink webhook: template: '__class__' "
                                   "is not allowed (the template runs in a sandbox)")
    assert not db.exists()
