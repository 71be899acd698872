"""HTTP/1.x: build a small GET request and parse a response head (and the body we kept)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mamori.protocols._wire import text

_STATUS = re.compile(rb"^HTTP/(\d)\.(\d) (\d{3})(?: ([^\r\n]*))?\r?\n")
_MAX_HEADERS = 100
# Enough body to recognise JSON services (Elasticsearch, Docker); more only costs memory.
BODY_ENOUGH = 16384


def _clean(value: str) -> str:
    # Header injection through our own request is impossible only if no CR/LF gets in.
    return value.replace("\r", "").replace("\n", "")


def build_request(method: str, path: str, host: str, user_agent: str,
                  headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """An HTTP/1.0 request (so no chunked reply) with Host, User-Agent and Connection: close."""
    lines = [f"{_clean(method)} {_clean(path)} HTTP/1.0", f"Host: {_clean(host)}",
             f"User-Agent: {_clean(user_agent)}", "Accept: */*", "Connection: close"]
    lines += [f"{_clean(k)}: {_clean(v)}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


def host_header(host: str, port: int, default_port: int = 80) -> str:
    """The Host header value for an address or name (IPv6 literals bracketed)."""
    name = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return name if port == default_port else f"{name}:{port}"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    version: str
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first header with this name (case-insensitive), or None."""
        low = name.lower()
        for key, value in self.headers:
            if key.lower() == low:
                return value
        return None


def _head_end(buf: bytes) -> tuple[int, int] | None:
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = buf.find(sep)
        if i >= 0:
            return i, i + len(sep)
    return None


def parse_response(data: bytes) -> HttpResponse | None:
    """Parse a status line and complete header block; the body is whatever follows.

    Returns None when ``data`` is not an HTTP/1.x response or its head is incomplete or
    malformed. Never raises.
    """
    m = _STATUS.match(data)
    end = _head_end(data)
    if m is None or end is None:
        return None
    head, body_at = end
    headers: list[tuple[str, str]] = []
    for line in data[m.end() : head].splitlines():
        if not line:
            continue
        if b":" not in line or line[:1] in b" \t" or len(headers) >= _MAX_HEADERS:
            return None
        key, _, value = line.partition(b":")
        headers.append((text(key.strip(), 128), text(value.strip(), 1024)))
    return HttpResponse(
        version=f"{chr(m.group(1)[0])}.{chr(m.group(2)[0])}",
        status=int(m.group(3)),
        reason=text(m.group(4) or b"", 128),
        headers=tuple(headers),
        body=data[body_at:],
    )


def reply_complete(buf: bytes) -> bool:
    """True when a response is complete enough to judge, or cannot be HTTP at all.

    Complete means: the head is in and the body is whole (Content-Length), ends its chunks,
    or already holds ``BODY_ENOUGH`` bytes. Without a length the peer's close ends it.
    """
    if len(buf) >= 5 and not buf.startswith(b"HTTP/"):
        return True
    end = _head_end(buf)
    if end is None:
        return False
    resp = parse_response(buf)
    if resp is None:
        return True
    body = len(buf) - end[1]
    if body >= BODY_ENOUGH or resp.status in (204, 304) or 100 <= resp.status < 200:
        return True
    length = resp.header("Content-Length")
    if length is not None and length.strip().isdigit():
        return body >= int(length)
    encoding = (resp.header("Transfer-Encoding") or "").lower()
    return "chunked" in encoding and buf.endswith(b"0\r\n\r\n")


# --- web exposure checks: pure judgements on what a server sent back -------------------------
# Every function below reads only the bytes it is given (already capped by the caller), scans
# a bounded prefix, returns bounded results and never raises.

_SCAN = 16384  # bytes of a body the judgements below look at
_SIMILAR = 4096  # bytes compared when judging two bodies alike (difflib is quadratic)


def body_similarity(a: bytes, b: bytes) -> float:
    """How alike two bodies are, from 0.0 to 1.0 (1.0: identical), over their first 4 KiB.

    Used against a random-path baseline: a server that answers every path with the same page
    (a "soft 404") gives near 1.0 even when the page echoes the requested path.
    """
    import difflib

    x, y = a[:_SIMILAR], b[:_SIMILAR]
    if x == y:
        return 1.0
    # Compared as words, not bytes: byte-wise SequenceMatcher is quadratic in the worst case
    # (seconds for 4 KiB a hostile peer chose), words keep it to a few hundred items.
    wx, wy = _WORDS.findall(x)[:_MAX_WORDS], _WORDS.findall(y)[:_MAX_WORDS]
    if not wx and not wy:
        return 1.0 if x.strip() == y.strip() else 0.0
    return difflib.SequenceMatcher(None, wx, wy, autojunk=False).ratio()


_WORDS = re.compile(rb"[^\s<>\"'=/]+")
_MAX_WORDS = 400


_LISTING_TITLES: tuple[tuple[str, re.Pattern[bytes]], ...] = (
    ("python", re.compile(rb"<title>Directory listing for (/[^<]{0,512})</title>", re.I)),
    ("iis", re.compile(rb"<title>[^<]{0,256} - (/[^<]{0,512})</title>.{0,2048}"
                       rb"\[To Parent Directory\]", re.I | re.S)),
    ("index-of", re.compile(rb"<title>Index of (/[^<]{0,512})</title>", re.I)),
    ("index-of", re.compile(rb"<h1>Index of (/[^<]{0,512})</h1>", re.I)),
)
_HREF = re.compile(rb"""<a\s[^>]{0,512}?href\s*=\s*["']([^"'<>]{1,512})["']""", re.I)
_MAX_ENTRIES = 50


def _listing_server(body: bytes) -> str:
    low = body[:_SCAN].lower()
    if b"<address>apache" in low or b"?c=n;o=d" in low:
        return "apache"
    if b"lighttpd" in low:
        return "lighttpd"
    if b'<hr><pre><a href="../">../</a>' in low:
        return "nginx"
    return "generic"


def directory_listing(body: bytes) -> tuple[str, str, tuple[str, ...]] | None:
    """Recognise an auto-generated directory index (nginx autoindex, Apache mod_autoindex,
    lighttpd, Python http.server, IIS directory browsing).

    Returns (server style, the directory the page says it lists, entry names: at most 50,
    without the parent link and sort links), or None when the body is not such a page.
    """
    head = body[:_SCAN]
    for style, pattern in _LISTING_TITLES:
        m = pattern.search(head)
        if m is None:
            continue
        listed = text(m.group(1).strip(), 512)
        entries: list[str] = []
        for href in _HREF.findall(head):
            name = text(href, 256)
            if name.startswith(("?", "#", "/", "..", "mailto:")) or "://" in name:
                continue
            if name not in entries:
                entries.append(name)
            if len(entries) >= _MAX_ENTRIES:
                break
        kind = _listing_server(head) if style == "index-of" else style
        return kind, listed, tuple(entries)
    return None


_VERSION_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9_.+-]{0,40}/v?\d[\w.+~-]{0,40}")
_VERSION_HEADERS: tuple[tuple[str, str], ...] = (
    ("Server", ""),
    ("X-Powered-By", ""),
    ("X-AspNet-Version", "ASP.NET/"),
    ("X-AspNetMvc-Version", "ASP.NET-MVC/"),
    ("X-Generator", ""),
)
# Signatures servers print at the foot of their own error pages.
_BODY_SIGNATURES = (
    re.compile(rb"<center>([A-Za-z][\w.-]{0,40}/\d[\w.~+-]{0,40})</center>"),  # nginx, openresty
    re.compile(rb"<address>([A-Za-z][\w.-]{0,40}/\d[^<]{0,80}?) Server at ", re.I),  # Apache
)


def disclosed_versions(resp: HttpResponse) -> tuple[str, ...]:
    """Product/version tokens the response gives away ("nginx/1.22.1", "PHP/8.2.7").

    Looks at Server, X-Powered-By, X-AspNet-Version, X-AspNetMvc-Version, X-Generator and the
    server signature on error pages. A bare product name ("nginx") is not a version and is
    not returned. At most 10 tokens, each at most 82 characters, in order of appearance.
    """
    found: list[str] = []

    def add(token: str) -> None:
        if token not in found and len(found) < 10:
            found.append(token)

    for name, prefix in _VERSION_HEADERS:
        value = resp.header(name)
        if not value:
            continue
        if prefix:
            if re.match(r"^v?\d", value.strip()):
                add(prefix + value.strip()[:40])
            continue
        for token in _VERSION_TOKEN.findall(value):
            add(token)
    for pattern in _BODY_SIGNATURES:
        m = pattern.search(resp.body[:_SCAN])
        if m is not None:
            token = _VERSION_TOKEN.search(text(m.group(1), 120))
            if token:
                add(token.group(0))
    return tuple(found)


_DEFAULT_PAGES: tuple[tuple[str, re.Pattern[bytes]], ...] = (
    ("nginx welcome page", re.compile(rb"<title>Welcome to nginx!</title>", re.I)),
    ("OpenResty welcome page", re.compile(rb"<title>Welcome to OpenResty!</title>", re.I)),
    ("Apache2 Debian default page", re.compile(rb"Apache2 Debian Default Page", re.I)),
    ("Apache2 Ubuntu default page", re.compile(rb"Apache2 Ubuntu Default Page", re.I)),
    ("Apache test page", re.compile(rb"<title>(Test Page for the (Apache|HTTP) Server"
                                    rb"|HTTP Server Test Page)", re.I)),
    ("Apache \"It works!\" page",
     re.compile(rb"^\s*<html><body><h1>It works!</h1>", re.I)),
    ("IIS default page", re.compile(rb"<title>(IIS Windows Server|IIS\d* ?Welcome|"
                                    rb"Internet Information Services)", re.I)),
    ("lighttpd placeholder page", re.compile(rb"lighttpd :: just installed|"
                                             rb"<title>Placeholder page</title>", re.I)),
    ("Tomcat default page",
     re.compile(rb"If you're seeing this, you've successfully installed Tomcat", re.I)),
    ("Caddy default page", re.compile(rb"<title>Caddy works!</title>", re.I)),
)


def default_page(body: bytes) -> str | None:
    """The name of the out-of-the-box page ``body`` is (nginx welcome, Apache2 Debian default,
    IIS, Tomcat...), or None when it is not one of the pages we know."""
    head = body[:_SCAN]
    for name, pattern in _DEFAULT_PAGES:
        if pattern.search(head):
            return name
    return None


# --- content proof for files that should never be served --------------------------------------

_HTMLISH = re.compile(rb"^\s*(<!doctype|<html|<head|<body|<\?xml|<!--)", re.I)
_GIT_HEAD = re.compile(rb"\A(ref: (refs/[\x21-\x7e]{1,200})|([0-9a-f]{40}|[0-9a-f]{64}))\s*\Z")
_GIT_CORE = re.compile(rb"^\s*\[core\]\s*$", re.M)
_GIT_CORE_KEY = re.compile(rb"^\s*(repositoryformatversion|filemode|bare)\s*=", re.M)
_ENV_LINE = re.compile(rb"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]{0,127})\s*=(.*)$")
_SQL_DUMP = re.compile(rb"(?im)^(-- (MySQL|MariaDB) dump|-- PostgreSQL database dump|"
                       rb"CREATE TABLE\b|INSERT INTO\b|DROP TABLE\b|PRAGMA foreign_keys)")


def env_keys(body: bytes) -> tuple[str, ...] | None:
    """The variable names of a dotenv file (at most 20), or None when ``body`` is not one.

    A dotenv file is text, not HTML, whose non-blank, non-comment lines are at least 80 %
    ``NAME=value`` lines (and at least one).
    """
    head = body[:_SCAN]
    if _HTMLISH.match(head) or b"\x00" in head:
        return None
    keys: list[str] = []
    lines = other = 0
    for raw in head.splitlines():
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        lines += 1
        m = _ENV_LINE.match(line)
        if m is None:
            other += 1
            continue
        name = text(m.group(1), 128)
        if name not in keys and len(keys) < 20:
            keys.append(name)
    if not keys or other * 5 > lines:
        return None
    return tuple(keys)


def _git_head_proof(body: bytes) -> str | None:
    m = _GIT_HEAD.match(body[:512])
    if m is None:
        return None
    return f"HEAD points at {text(m.group(2), 200)}" if m.group(2) else "HEAD holds a commit id"


def _git_config_proof(body: bytes) -> str | None:
    head = body[:_SCAN]
    if _HTMLISH.match(head) or not _GIT_CORE.search(head) or not _GIT_CORE_KEY.search(head):
        return None
    return "a git config with a [core] section"


def _env_proof(body: bytes) -> str | None:
    keys = env_keys(body)
    if keys is None:
        return None
    return f"{len(keys)} NAME=value settings: " + ", ".join(keys[:10])


def is_ds_store(body: bytes) -> bool:
    """True when ``body`` is a macOS .DS_Store: the Bud1 magic, and a buddy-allocator header
    that agrees with itself (the root block's offset, given twice, past the header; a size)."""
    if len(body) < 20 or body[:8] != b"\x00\x00\x00\x01Bud1":
        return False
    offset = int.from_bytes(body[8:12], "big")
    size = int.from_bytes(body[12:16], "big")
    return body[8:12] == body[16:20] and offset >= 32 and size > 0


def _ds_store_proof(body: bytes) -> str | None:
    return "the .DS_Store Bud1 header" if is_ds_store(body) else None


_ARCHIVES: tuple[tuple[tuple[str, ...], str, re.Pattern[bytes]], ...] = (
    ((".zip",), "a ZIP archive", re.compile(rb"\APK(\x03\x04|\x05\x06)", re.S)),
    ((".tar.gz", ".tgz", ".gz", ".sql.gz"), "a gzip stream", re.compile(rb"\A\x1f\x8b\x08", re.S)),
    ((".7z",), "a 7-Zip archive", re.compile(rb"\A7z\xbc\xaf\x27\x1c", re.S)),
    ((".rar",), "a RAR archive", re.compile(rb"\ARar!\x1a\x07", re.S)),
    ((".tar",), "a tar archive", re.compile(rb"\A.{257}ustar", re.S)),
    ((".swp",), "a vim swap file", re.compile(rb"\Ab0VIM ", re.S)),
)
_SOURCE_SUFFIXES = (".bak", ".old", ".orig", ".save", ".backup", "~", ".txt", ".copy")
_PHP_OPEN = re.compile(rb"<\?php\b", re.I)


def _backup_proof(path: str, body: bytes) -> str | None:
    low = path.lower()
    for suffixes, name, pattern in _ARCHIVES:
        if low.endswith(suffixes):
            return f"{name} (file signature)" if pattern.match(body[:512]) else None
    head = body[:_SCAN]
    if low.endswith(".sql"):
        ok = not _HTMLISH.match(head) and _SQL_DUMP.search(head)
        return "an SQL dump (DDL/DML statements)" if ok else None
    if low.endswith(_SOURCE_SUFFIXES) and ".php" in low:
        # The server sent the script's source instead of running it.
        return "PHP source code served as a file" if _PHP_OPEN.search(head) else None
    return None


def _git_proof(path: str, body: bytes) -> str | None:
    if path.endswith("/HEAD"):
        return _git_head_proof(body)
    if path.endswith("/config"):
        return _git_config_proof(body)
    return None


_PROOFS = {
    "git": _git_proof,
    "env": lambda _path, body: _env_proof(body),
    "ds-store": lambda _path, body: _ds_store_proof(body),
    "backup": _backup_proof,
}
FILE_PROOFS = tuple(_PROOFS)


def file_proof(kind: str, path: str, body: bytes) -> str | None:
    """Does ``body`` really hold the file ``path`` names, judged by its content?

    ``kind`` is one of ``FILE_PROOFS``: "git" (.../HEAD: a ref or a commit id; .../config: a
    [core] section with its keys), "env" (NAME=value lines), "ds-store" (the Bud1 header),
    "backup" (by the path's suffix: archive signatures, an SQL dump, PHP source). Returns a
    short description of the proof, or None. Raises ValueError for an unknown ``kind``.
    """
    proof = _PROOFS.get(kind)
    if proof is None:
        raise ValueError(f"unknown file proof {kind!r}")
    return proof(path, body)


def trace_echoed(body: bytes, token: str) -> bool:
    """True when ``body`` is our TRACE request echoed back: it starts with the TRACE request
    line and carries our unique header line ``X-Mamori-Trace: token``."""
    head = body[:_SCAN]
    return head.startswith(b"TRACE ") and (
        f"\nX-Mamori-Trace: {token}".encode().lower() in head.lower()
    )


_SECRET_URL = re.compile(rb"(://)[^/@\s:]{1,256}:[^/@\s]{1,256}@")


def redact(body: bytes, kind: str) -> bytes:
    """``body`` with secrets blanked for evidence: dotenv values and passwords in URLs."""
    out = _SECRET_URL.sub(rb"\1***:***@", body)
    if kind != "env":
        return out
    lines = []
    for line in out.splitlines():
        m = _ENV_LINE.match(line)
        lines.append(line[: m.start(2)] + b"***" if m and m.group(2).strip() else line)
    return b"\n".join(lines)
