"""Web servers: directory listings, files that should never be served, dangerous methods,
version disclosure and out-of-the-box pages.

Every "exposed file" primitive first asks for a random path that cannot exist. A server that
answers it with 200 (a "soft 404") proves nothing by answering 200 again, so a file counts as
exposed only when its content proves what it is (``http.file_proof``) and it does not look
like the baseline page.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
from dataclasses import dataclass

from mamori.checks.observation import Observation, ProbeContext, excerpt
from mamori.checks.params import ParamError, Params
from mamori.checks.primitive import Primitive
from mamori.model import ErrorKind
from mamori.net.stream import ProbeFailure, exchange, insecure_tls_context
from mamori.protocols import http

MAX_PATHS = 32  # paths one check may ask for: the catalog is data, so bound it here too
PARALLEL = 4  # requests in flight at once against one server
SIMILAR = 0.9  # body_similarity at or above this: the same page as the random-path baseline
EVIDENCE_BODY = 512  # bytes of a proven file's body kept as evidence (after redaction)


@dataclass(frozen=True)
class Fetch:
    """One request and the response it got."""

    path: str
    request: bytes
    raw: bytes
    resp: http.HttpResponse

    @property
    def ok(self) -> bool:
        return self.resp.status in (200, 206)


def _server_hostname(ctx: ProbeContext) -> str | None:
    if not ctx.hostname:
        return None
    try:
        ipaddress.ip_address(ctx.hostname)
    except ValueError:
        return ctx.hostname
    return None  # an address is not a valid SNI name


async def fetch(
    ctx: ProbeContext, method: str, path: str,
    headers: tuple[tuple[str, str], ...] = (), body: bytes = b"",
) -> Fetch:
    """Send one HTTP/1.0 request (over TLS when the service is HTTPS) and parse the reply.

    Returns the Fetch. Raises ProbeFailure: the stream's failures, or PROTOCOL when the reply
    is not an HTTP/1.x response.
    """
    tls = ctx.service is not None and ctx.service.tls
    host = http.host_header(ctx.hostname or ctx.address, ctx.port, 443 if tls else 80)
    if body or method in ("PUT", "POST"):
        headers = (*headers, ("Content-Length", str(len(body))))
    request = http.build_request(method, path, host, ctx.options.user_agent, headers) + body
    raw = await exchange(
        ctx.address, ctx.port, request, ctx.options.limits,
        tls=insecure_tls_context() if tls else None,
        server_hostname=_server_hostname(ctx),
        done=http.reply_complete,
    )
    resp = http.parse_response(raw)
    if resp is None:
        raise ProbeFailure(ErrorKind.PROTOCOL, f"{method} {path}: the reply is not HTTP/1.x",
                           partial=raw[:256])
    return Fetch(path, request, raw, resp)


def _head(f: Fetch) -> bytes:
    return f.raw[: len(f.raw) - len(f.resp.body)]


def _random_name() -> str:
    return "mamori-" + secrets.token_hex(8)


def _paths(params: Params, name: str = "paths") -> list[str]:
    paths = params.texts(name)
    if not paths or len(paths) > MAX_PATHS or not all(p.startswith("/") for p in paths):
        raise ParamError(f"parameter {name!r} needs 1 to {MAX_PATHS} paths starting with '/'")
    return paths


async def _fetch_all(
    ctx: ProbeContext, paths: list[str], headers: tuple[tuple[str, str], ...] = (),
) -> list[Fetch | ProbeFailure]:
    gate = asyncio.Semaphore(PARALLEL)

    async def one(path: str) -> Fetch | ProbeFailure:
        async with gate:
            try:
                return await fetch(ctx, "GET", path, headers)
            except ProbeFailure as exc:
                return exc

    return list(await asyncio.gather(*(one(p) for p in paths)))


def _without_path(f: Fetch) -> bytes:
    # Soft-404 pages often echo the path asked for; a long random path would otherwise make
    # two copies of the same page look different.
    body = f.resp.body
    return body.replace(f.path.encode(), b"") if len(f.path) > 1 else body


def _like_baseline(f: Fetch, baseline: Fetch) -> bool:
    """Is ``f`` the page the server gave for a path that cannot exist?"""
    if not baseline.ok:
        return False
    return http.body_similarity(_without_path(f), _without_path(baseline)) >= SIMILAR


# --- exposed files -------------------------------------------------------------------------------


async def http_exposed_file(ctx: ProbeContext, params: Params) -> Observation:
    """Ask for each of ``paths`` after a random-path baseline; a path is exposed when the
    reply is 200/206, its content proves the file (``proof``: git-head, git-config, env,
    ds-store, backup) and it is not the baseline page again.

    Fields: exposed (the proven paths), proof (what proved the first), baseline_status,
    soft404 ("yes" when the random path got 200), checked, keys (dotenv names, no values).
    Raises ProbeFailure when the baseline cannot be fetched, or when a path could not be
    fetched and nothing was proven (an untested path is never a pass).
    """
    paths = _paths(params)
    kind = params.text("proof")
    if kind not in http.FILE_PROOFS:
        raise ParamError(f"parameter 'proof' must be one of {', '.join(http.FILE_PROOFS)}")
    # Same suffix as the first path, so servers that route by extension answer alike.
    suffix = paths[0].rsplit("/", 1)[-1]
    baseline = await fetch(ctx, "GET", f"/{_random_name()}-{suffix.lstrip('.')}")
    # A range keeps big backups from being downloaded; servers ignoring it send 200.
    results = await _fetch_all(ctx, paths, (("Range", "bytes=0-16383"),))
    exposed: list[tuple[Fetch, str]] = []
    failures: list[ProbeFailure] = []
    for item in results:
        if isinstance(item, ProbeFailure):
            failures.append(item)
            continue
        if not item.ok or _like_baseline(item, baseline):
            continue
        proof = http.file_proof(kind, item.path, item.resp.body)
        # A server whose page for a nonexistent path passes the same proof fabricates it.
        if proof is not None and not (
            baseline.ok and http.file_proof(kind, item.path, baseline.resp.body)
        ):
            exposed.append((item, proof))
    if failures and not exposed:
        first = failures[0]
        raise ProbeFailure(first.kind, f"{len(failures)} of {len(paths)} paths could not be "
                           f"fetched: {first.detail}")
    fields = {
        "baseline_status": str(baseline.resp.status),
        "soft404": "yes" if baseline.ok else "no",
        "checked": str(len(paths) - len(failures)),
    }
    shown: Fetch = baseline
    if exposed:
        shown, proof = exposed[0]
        fields["exposed"] = ", ".join(f.path for f, _ in exposed)[:512]
        fields["proof"] = proof
        if kind == "env":
            fields["keys"] = ", ".join(http.env_keys(shown.resp.body) or ())[:512]
    body = http.redact(shown.resp.body[:EVIDENCE_BODY], kind)
    return Observation(
        test=(f"fetched a random path as a baseline, then {len(paths)} path(s) "
              f"({', '.join(paths[:6])}{', ...' if len(paths) > 6 else ''}), judging each "
              f"reply by its content ({kind})"),
        fields=fields,
        request=excerpt(shown.request),
        reply=excerpt(_head(shown) + body),
    )


# --- directory listing -----------------------------------------------------------------------


async def http_directory_listing(ctx: ProbeContext, params: Params) -> Observation:
    """Ask for each directory in ``paths`` (and a random directory as a baseline); a listing
    is an auto-generated index page (http.directory_listing) whose title names the directory
    asked for and which is not the baseline page again.

    Fields: listing (the first listed directory), style (nginx, apache, ...), entries (count),
    names (the first entry names), baseline_status. Raises ProbeFailure as http_exposed_file.
    """
    paths = _paths(params)
    baseline = await fetch(ctx, "GET", f"/{_random_name()}/")
    results = await _fetch_all(ctx, paths)
    failures = [r for r in results if isinstance(r, ProbeFailure)]
    found: tuple[Fetch, tuple[str, str, tuple[str, ...]]] | None = None
    # A server that shows an index even for a directory that cannot exist fabricates them.
    fabricated = baseline.ok and http.directory_listing(baseline.resp.body) is not None
    for item in results if not fabricated else ():
        if isinstance(item, ProbeFailure) or not item.ok or _like_baseline(item, baseline):
            continue
        listing = http.directory_listing(item.resp.body)
        if listing is not None and listing[1].rstrip("/") == item.path.rstrip("/"):
            found = (item, listing)
            break
    if failures and found is None:
        raise ProbeFailure(failures[0].kind, f"{len(failures)} of {len(paths)} paths could "
                           f"not be fetched: {failures[0].detail}")
    fields = {"baseline_status": str(baseline.resp.status)}
    if fabricated:
        fields["fabricated"] = "yes"
    shown = baseline
    if found is not None:
        shown, (style, listed, entries) = found
        fields.update(listing=listed, style=style, entries=str(len(entries)),
                      names=", ".join(entries[:10])[:512])
    return Observation(
        test=(f"fetched a random directory as a baseline, then {', '.join(paths[:8])}"
              f"{', ...' if len(paths) > 8 else ''}, looking for an auto-generated index "
              "page of the directory asked for"),
        fields=fields,
        request=excerpt(shown.request),
        reply=excerpt(shown.raw),
    )


# --- methods: TRACE echo, PUT written and read back, DELETE -------------------------------


async def _write_probe(ctx: ProbeContext, fields: dict[str, str]) -> list[Fetch]:
    """PUT a uniquely named file, read it back, DELETE it and check it is gone."""
    path = f"/{_random_name()}.txt"
    content = (f"mamori exposure check {secrets.token_hex(8)}: a test file written with "
               "HTTP PUT; safe to delete\n").encode()
    put = await fetch(ctx, "PUT", path, (("Content-Type", "text/plain"),), content)
    fields["put_status"] = str(put.resp.status)
    if not 200 <= put.resp.status < 300:
        return [put]
    back = await fetch(ctx, "GET", path)
    if not (back.ok and back.resp.body == content):
        return [put, back]
    fields["put_readback"] = "yes"
    fields["put_path"] = path
    fields["leftover"] = path  # until DELETE proves otherwise
    delete = await fetch(ctx, "DELETE", path)
    fields["delete_status"] = str(delete.resp.status)
    if 200 <= delete.resp.status < 300:
        gone = await fetch(ctx, "GET", path)
        if gone.resp.status in (404, 410):
            fields["delete_confirmed"] = "yes"
            del fields["leftover"]
    return [put, back, delete]


async def http_methods(ctx: ProbeContext, params: Params) -> Observation:
    """OPTIONS / (what the server advertises), TRACE / with a unique header (is it echoed?),
    and unless ``write`` is false: PUT a uniquely named file, GET it back, DELETE it.

    Fields: allow, dav (headers), trace_status, trace_echo ("yes"), put_status,
    put_readback ("yes": the file we wrote came back byte for byte), put_path,
    delete_status, delete_confirmed ("yes": gone afterwards), leftover (our file could not be
    removed), dangerous (the confirmed methods), grade ("write" or "trace").
    Raises ProbeFailure when the server cannot be asked.
    """
    fields: dict[str, str] = {}
    options = await fetch(ctx, "OPTIONS", "/")
    for name in ("Allow", "DAV"):
        value = options.resp.header(name)
        if value:
            fields[name.lower()] = value[:256]
    token = secrets.token_hex(12)
    trace = await fetch(ctx, "TRACE", "/", (("X-Mamori-Trace", token),))
    fields["trace_status"] = str(trace.resp.status)
    echoed = trace.resp.status == 200 and http.trace_echoed(trace.resp.body, token)
    shown = [trace]
    dangerous = []
    if echoed:
        fields["trace_echo"] = "yes"
        dangerous.append("TRACE")
    if params.flag("write", True):
        writes = await _write_probe(ctx, fields)
        if fields.get("put_readback") == "yes":
            dangerous.insert(0, "PUT")
            shown = writes[:2]
        if fields.get("delete_confirmed") == "yes":
            dangerous.insert(1, "DELETE")
    if dangerous:
        fields["dangerous"] = ", ".join(dangerous)
        fields["grade"] = "write" if "PUT" in dangerous else "trace"
    return Observation(
        test=("sent OPTIONS /, TRACE / with a unique header" +
              (", then PUT a uniquely named text file, read it back and DELETE it"
               if params.flag("write", True) else "")),
        fields=fields,
        request=excerpt(b"".join(f.request for f in shown)),
        reply=excerpt(b"\n".join(f.raw for f in shown)),
    )


# --- what the front page says ------------------------------------------------------------------


async def http_front_page(ctx: ProbeContext, params: Params) -> Observation:
    """GET / and a random missing path (error pages carry server signatures).

    Fields: status, server, powered_by, disclosed (product/version tokens, "; "-joined),
    default_page (the name of a known out-of-the-box page served at /), title.
    Raises ProbeFailure when / cannot be fetched.
    """
    front = await fetch(ctx, "GET", "/")
    fields: dict[str, str] = {"status": str(front.resp.status)}
    shown = front
    tokens = list(http.disclosed_versions(front.resp))
    if params.flag("error_page", True):
        try:
            missing = await fetch(ctx, "GET", f"/{_random_name()}")
        except ProbeFailure:
            missing = None  # the front page alone is still a complete answer
        if missing is not None:
            extra = [t for t in http.disclosed_versions(missing.resp) if t not in tokens]
            if extra and not tokens:
                shown = missing
            tokens += extra
    for name, key in (("Server", "server"), ("X-Powered-By", "powered_by")):
        value = front.resp.header(name)
        if value:
            fields[key] = value[:200]
    if tokens:
        fields["disclosed"] = "; ".join(tokens[:10])
    page = http.default_page(front.resp.body) if front.resp.status == 200 else None
    if page is not None:
        fields["default_page"] = page
    return Observation(
        test="fetched / and a random missing path, reading the headers and the pages",
        fields=fields,
        request=excerpt(shown.request),
        reply=excerpt(shown.raw[:2048]),
    )


PRIMITIVES: dict[str, Primitive] = {
    "http_exposed_file": http_exposed_file,
    "http_directory_listing": http_directory_listing,
    "http_methods": http_methods,
    "http_front_page": http_front_page,
}
