"""What an HTTP page is, read from its content: server status pages, authentication
challenges and login forms. Pure and bounded: no sockets, at most ``SCAN`` bytes of a body.

Status pages are recognised by the structure their module always writes (mod_status's
scoreboard, mod_info's module sections, nginx stub_status's three lines, PHP-FPM's pool
fields), never by a path or a product name in a banner: a 200 on /server-status with some
other page is not a status page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

SCAN = 65536  # bytes of a body looked at
SNIPPET = 400  # bytes of a status page kept as its proof
MAX_FORMS = 20  # forms kept from one page
MAX_LINKS = 50  # links kept from one page


@dataclass(frozen=True, slots=True)
class StatusPage:
    kind: str  # apache-status, apache-info, nginx-stub-status, php-fpm-status
    facts: tuple[tuple[str, str], ...]  # what the page gives away, in words
    snippet: bytes  # the part of the page that shows what it is (at most SNIPPET bytes)

    def describe(self) -> str:
        return "; ".join(f"{k}: {v}" for k, v in self.facts)


# mod_status: the scoreboard is one character per worker slot from a fixed alphabet.
_SCOREBOARD_AUTO = re.compile(rb"(?m)^Scoreboard: ([_SRWKDCLGI.]{1,65536})\r?$")
_AUTO_KEYS = re.compile(rb"(?m)^(Total Accesses|BusyWorkers|IdleWorkers|ServerUptimeSeconds|"
                        rb"Uptime|ConnsTotal): ?\d")
_SCOREBOARD_HTML = re.compile(rb"<pre>\s*([_SRWKDCLGI.\n]{4,65536})</pre>")
_SCOREBOARD_KEY = re.compile(rb'Scoreboard Key:|"<b><code>_</code></b>" Waiting for Connection')
_UPTIME = re.compile(rb"Server uptime:\s*([^<\n]{1,80})")
_BUSY = re.compile(rb"(\d{1,9}) requests? currently being processed,\s*(\d{1,9}) (?:idle|workers)")
_VERSION = re.compile(rb"Server Version:\s*(?:<[^<>]{0,40}>\s*){0,4}([^<\s][^<\n]{0,119})")
_EXTENDED = re.compile(rb"<th>Client</th>|<th>Request</th>|<th>VHost</th>", re.I)
_ROW_REQUEST = re.compile(rb"<td nowrap>((?:GET|POST|HEAD|PUT|DELETE|OPTIONS) [^<]{0,200})</td>",
                          re.I)
# mod_info: each module is a section with these headings.
_MODULE_NAME = re.compile(rb"Module Name:")
_INFO_SECTIONS = re.compile(rb"Content handlers:|Configuration Phase Participation:|"
                            rb"Current Configuration:|Module Directives:")
_INFO_CONFIG = re.compile(rb"Server Settings|Server Root:|Config File:")
# nginx stub_status: always exactly these three lines.
_STUB = re.compile(rb"\AActive connections: (\d{1,12}) ?\r?\nserver accepts handled requests"
                   rb"\r?\n (\d{1,20}) (\d{1,20}) (\d{1,20}) ?\r?\nReading: (\d{1,12}) "
                   rb"Writing: (\d{1,12}) Waiting: (\d{1,12}) ?\r?\n?\Z")
# PHP-FPM status, plain text format: "name:  value" lines.
_FPM_LINE = re.compile(rb"(?m)^([a-z][a-z ]{1,40}):\s{1,40}([^\r\n]{0,200})\r?$")
_FPM_NEEDED = ("pool", "process manager", "accepted conn")


def _text(b: bytes) -> str:
    return b.decode("utf-8", "replace").strip()


def _around(body: bytes, at: int) -> bytes:
    start = max(0, at - 200)
    return body[start:start + SNIPPET]


def _apache_status(body: bytes) -> StatusPage | None:
    auto = _SCOREBOARD_AUTO.search(body)
    if auto is not None and len(_AUTO_KEYS.findall(body)) >= 2:
        facts = [("format", "machine-readable (?auto)"),
                 ("worker slots", str(len(auto.group(1))))]
        for key in (rb"ServerVersion", rb"Total Accesses", rb"BusyWorkers"):
            m = re.search(rb"(?m)^" + key + rb": ([^\r\n]{1,120})", body)
            if m:
                facts.append((_text(key), _text(m.group(1))))
        return StatusPage("apache-status", tuple(facts), _around(body, auto.start()))
    board = _SCOREBOARD_HTML.search(body)
    if board is None or not (_SCOREBOARD_KEY.search(body) and _UPTIME.search(body)):
        return None
    facts = [("format", "HTML"),
             ("worker slots", str(len(board.group(1).replace(b"\n", b""))))]
    if (v := _VERSION.search(body)) is not None:
        facts.append(("server version", _text(v.group(1))))
    if (b := _BUSY.search(body)) is not None:
        facts.append(("busy/idle", f"{_text(b.group(1))}/{_text(b.group(2))}"))
    if _EXTENDED.search(body):
        requests = _ROW_REQUEST.findall(body)
        facts.append(("extended", f"client addresses and requested URLs shown "
                                  f"({len(requests)} request line(s))"))
    return StatusPage("apache-status", tuple(facts), _around(body, board.start()))


def _apache_info(body: bytes) -> StatusPage | None:
    modules = len(_MODULE_NAME.findall(body))
    if modules < 1 or not _INFO_SECTIONS.search(body) or not _INFO_CONFIG.search(body):
        return None
    facts = [("modules listed", str(modules))]
    if (v := _VERSION.search(body)) is not None:
        facts.append(("server version", _text(v.group(1))))
    if b"Current Configuration:" in body:
        facts.append(("configuration", "shown, with file names and line numbers"))
    first = _MODULE_NAME.search(body)
    return StatusPage("apache-info", tuple(facts), _around(body, first.start() if first else 0))


def _nginx_stub(body: bytes) -> StatusPage | None:
    m = _STUB.match(body.strip(b" ") if len(body) < 512 else b"")
    if m is None:
        return None
    active, accepts, _handled, requests = (_text(m.group(i)) for i in range(1, 5))
    return StatusPage("nginx-stub-status", (("active connections", active),
                                            ("connections accepted", accepts),
                                            ("requests", requests)), body[:SNIPPET])


def _php_fpm(body: bytes) -> StatusPage | None:
    fields: dict[str, str] = {}
    for key, value in _FPM_LINE.findall(body[:SCAN])[:400]:
        fields.setdefault(_text(key), _text(value))
    if not all(k in fields for k in _FPM_NEEDED) or "start time" not in fields:
        return None
    if not fields["accepted conn"].isdigit():
        return None
    facts = [("pool", fields["pool"][:64]), ("process manager", fields["process manager"][:32]),
             ("accepted connections", fields["accepted conn"])]
    if "request uri" in fields or "script" in fields:
        facts.append(("full", "per-process scripts and request URIs shown"))
    return StatusPage("php-fpm-status", tuple(facts), body[:SNIPPET])


def status_page(body: bytes) -> StatusPage | None:
    """The server status page ``body`` is (see KINDS), or None for any other page."""
    body = body[:SCAN]
    for reader in (_nginx_stub, _php_fpm, _apache_status, _apache_info):
        page = reader(body)
        if page is not None:
            return page
    return None


# --- authentication challenges ------------------------------------------------------------------

_SCHEME = re.compile(r"(?:^|,)\s*(basic|digest)(?=\s|,|$)", re.I)
_REALM = re.compile(r'realm\s*=\s*"([^"]{0,128})"', re.I)
_ALGORITHM = re.compile(r"algorithm\s*=\s*\"?([A-Za-z0-9-]{1,32})", re.I)


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str  # "Basic" or "Digest"
    realm: str
    algorithm: str  # Digest's algorithm ("MD5" when not said), "" for Basic


def password_challenges(headers: tuple[tuple[str, str], ...]) -> tuple[Challenge, ...]:
    """The Basic and Digest challenges in a response's WWW-Authenticate headers (RFC 7235:
    several headers, or several challenges in one, are allowed)."""
    out: list[Challenge] = []
    for name, full in headers[:100]:
        if name.lower() != "www-authenticate":
            continue
        value = full[:2048]
        for m in _SCHEME.finditer(value):
            rest = value[m.end():]
            nxt = _SCHEME.search(rest)
            params = rest[: nxt.start()] if nxt else rest
            realm = _REALM.search(params)
            scheme = m.group(1).capitalize()
            algo = _ALGORITHM.search(params)
            out.append(Challenge(scheme, realm.group(1) if realm else "",
                                 (algo.group(1) if algo else "MD5") if scheme == "Digest"
                                 else ""))
    return tuple(out[:10])


# --- forms --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Form:
    action: str  # as written ("" when absent: the page's own URL)
    method: str
    password_fields: tuple[str, ...]  # names of the password inputs

    def target(self, page_url: str) -> str:
        """The absolute URL the browser posts to."""
        return urljoin(page_url, self.action)


class _FormReader(HTMLParser):
    """Collects forms with their password inputs, and links, bounded."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self.links: list[tuple[str, str]] = []  # (href, words of the link)
        self._form: tuple[str, str, list[str]] | None = None
        self._link: tuple[str, list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs[:50]}
        if tag == "form":
            self._close_form()
            self._form = (a.get("action", "").strip()[:512],
                          (a.get("method", "get").strip() or "get").lower()[:16], [])
        elif tag == "input" and self._form is not None:
            if a.get("type", "").strip().lower() == "password" and len(self._form[2]) < 10:
                self._form[2].append(a.get("name", "")[:64] or "(unnamed)")
        elif tag == "a" and "href" in a and len(self.links) < MAX_LINKS:
            self._link = (a["href"].strip()[:512], [])

    def handle_data(self, data: str) -> None:
        if self._link is not None and len(self._link[1]) < 20:
            self._link[1].append(data.strip()[:64])

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._close_form()
        elif tag == "a" and self._link is not None:
            self.links.append((self._link[0], " ".join(w for w in self._link[1] if w)))
            self._link = None

    def _close_form(self) -> None:
        if self._form is not None and len(self.forms) < MAX_FORMS:
            action, method, pw = self._form
            self.forms.append(Form(action, method, tuple(pw)))
        self._form = None

    def close(self) -> None:
        super().close()
        self._close_form()


def read_page(body: bytes) -> tuple[tuple[Form, ...], tuple[tuple[str, str], ...]]:
    """The forms and the links (href, link text) of an HTML page; never raises."""
    reader = _FormReader()
    try:
        reader.feed(body[:SCAN].decode("utf-8", "replace"))
        reader.close()
    except (AssertionError, ValueError):  # html.parser's own complaints on broken markup
        pass
    return tuple(reader.forms), tuple(reader.links)


def password_forms(body: bytes) -> tuple[Form, ...]:
    """The forms of ``body`` that hold a password input."""
    return tuple(f for f in read_page(body)[0] if f.password_fields)


_LOGIN_WORDS = re.compile(r"log ?in|sign ?in|log ?on|auth|admin|account|password|ログイン",
                          re.I)


def same_origin_path(href: str, page_url: str) -> str | None:
    """The path (and query) ``href`` points to when it stays on ``page_url``'s scheme, host
    and port; None for other origins, fragments and non-HTTP links."""
    try:
        origin = urlsplit(page_url)
        url = urlsplit(urljoin(page_url, href.strip()))
    except ValueError:
        return None
    if (url.scheme, url.netloc) != (origin.scheme, origin.netloc) or not url.path:
        return None
    return url.path + (f"?{url.query}" if url.query else "")


def links_to_follow(body: bytes, page_url: str, limit: int = 5) -> tuple[str, ...]:
    """Paths on the same origin as ``page_url`` that the page links to, those with words of
    logging in (href or text) first, at most ``limit``; the page itself left out."""
    here = same_origin_path(page_url, page_url)
    login: list[str] = []
    other: list[str] = []
    for href, words in read_page(body)[1]:
        path = same_origin_path(href, page_url)
        if path is None or path == here or path in login or path in other:
            continue
        wanted = _LOGIN_WORDS.search(href) or _LOGIN_WORDS.search(words)
        (login if wanted else other).append(path)
    return tuple((login + other)[:limit])


def posts_in_cleartext(form: Form, page_url: str) -> bool:
    """Does the form send its password over plain HTTP from this page?"""
    return urlsplit(form.target(page_url)).scheme.lower() == "http"
