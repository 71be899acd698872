"""Web pages that give away too much, or take a password in the clear: server status pages
(mod_status, mod_info, nginx stub_status, PHP-FPM status), HTTP Basic/Digest challenges on
plain HTTP, and login forms posted over plain HTTP.

Every page is judged by its content (``protocols.http_pages``), after a random-path baseline:
a server that answers every path alike proves nothing by answering these.
"""

from __future__ import annotations

import ipaddress

from mamori.checks.canary import source_address_for
from mamori.checks.observation import Observation, ProbeContext, excerpt
from mamori.checks.params import Params
from mamori.checks.primitive import Primitive
from mamori.checks.probes.web import (
    Fetch,
    _fetch_all,
    _head,
    _like_baseline,
    _paths,
    _random_name,
    fetch,
)
from mamori.net.stream import ProbeFailure
from mamori.protocols import http, http_pages


def _seen_locally(ctx: ProbeContext) -> bool:
    """Is the target this machine itself (loopback, or one of its own addresses, which the
    kernel then uses as our source too)? Servers commonly allow their status pages to local
    clients only (Apache's ``Require local`` is exactly "loopback, or client address = server
    address"; nginx ``allow 127.0.0.1``): what they show here may be hidden from others."""
    try:
        if ipaddress.ip_address(ctx.address).is_loopback:
            return True
        return source_address_for(ctx.address, ctx.port) == ctx.address
    except (ValueError, OSError):
        return False


def _failed(results: list[Fetch | ProbeFailure], paths: list[str]) -> ProbeFailure:
    failures = [r for r in results if isinstance(r, ProbeFailure)]
    first = failures[0]
    return ProbeFailure(first.kind, f"{len(failures)} of {len(paths)} paths could not be "
                        f"fetched: {first.detail}")


# --- status pages --------------------------------------------------------------------------------


async def http_status_pages(ctx: ProbeContext, params: Params) -> Observation:
    """Ask for each of ``paths`` after a random-path baseline; a path is a status page when
    its 200 reply's content is one (``http_pages.status_page``) and the baseline is not.

    Fields: status_kind/status_path/status_facts (the first status page: mod_status, nginx
    stub_status or PHP-FPM), info_path/info_facts (mod_info), pages (every page found,
    "kind at path"), baseline_status, checked, grade ("local" when the target is this
    machine itself, where local-only pages show too; "remote" otherwise). Raises
    ProbeFailure when the baseline cannot be fetched, or a path could not be and nothing
    was found.
    """
    paths = _paths(params)
    local = _seen_locally(ctx)
    baseline = await fetch(ctx, "GET", f"/{_random_name()}-status")
    fabricated = baseline.ok and http_pages.status_page(baseline.resp.body) is not None
    results = await _fetch_all(ctx, paths)
    found: list[tuple[Fetch, http_pages.StatusPage]] = []
    for item in results if not fabricated else ():
        if isinstance(item, ProbeFailure) or item.resp.status != 200:
            continue
        page = http_pages.status_page(item.resp.body)
        if page is not None and not _like_baseline(item, baseline):
            found.append((item, page))
    if not found and any(isinstance(r, ProbeFailure) for r in results):
        raise _failed(results, paths)
    fields = {"baseline_status": str(baseline.resp.status),
              "checked": str(sum(not isinstance(r, ProbeFailure) for r in results))}
    if fabricated:
        fields["fabricated"] = "yes"
    shown: list[tuple[Fetch, bytes]] = [(baseline, baseline.resp.body[:512])]
    status = [(f, p) for f, p in found if p.kind != "apache-info"]
    info = [(f, p) for f, p in found if p.kind == "apache-info"]
    if status:
        f, p = status[0]
        fields.update(status_kind=p.kind, status_path=f.path, status_facts=p.describe()[:512])
        shown = [(f, p.snippet)]
    if info:
        f, p = info[0]
        fields.update(info_path=f.path, info_facts=p.describe()[:512])
        shown = [*shown, (f, p.snippet)] if status else [(f, p.snippet)]
    if found:
        fields["pages"] = ", ".join(f"{p.kind} at {f.path}" for f, p in found)[:512]
        fields["grade"] = "local" if local else "remote"
    return Observation(
        test=(f"fetched a random path as a baseline, then {len(paths)} path(s) "
              f"({', '.join(paths[:6])}{', ...' if len(paths) > 6 else ''}) from "
              f"{'this machine itself' if local else 'the network'}, "
              "judging each 200 reply by its content (status page structure)"),
        fields=fields,
        request=excerpt(b"".join(f.request for f, _ in shown)),
        reply=excerpt(b"\n".join(_head(f) + b"[...]" + part + b"[...]" for f, part in shown),
                      2048),
    )


# --- passwords over plain HTTP ----------------------------------------------------------------


def _url(ctx: ProbeContext, tls: bool, path: str) -> str:
    host = http.host_header(ctx.hostname or ctx.address, ctx.port, 443 if tls else 80)
    return f"{'https' if tls else 'http'}://{host}{path}"


def _challenge_line(f: Fetch) -> str:
    """The reply's status line and WWW-Authenticate headers, as evidence."""
    lines = [f"HTTP/{f.resp.version} {f.resp.status} {f.resp.reason}".strip()]
    lines += [f"{k}: {v}" for k, v in f.resp.headers if k.lower() == "www-authenticate"]
    return " | ".join(lines)[:300]


MAX_FOLLOWED = 8  # pages fetched beyond the listed paths: a redirect of / and its links
_REDIRECTS = (301, 302, 303, 307, 308)


async def _fetched_ok(ctx: ProbeContext, paths: list[str]) -> list[Fetch]:
    return [r for r in await _fetch_all(ctx, paths) if not isinstance(r, ProbeFailure)]


async def _reachable_from_front(ctx: ProbeContext, tls: bool,
                                fetched: list[Fetch]) -> list[Fetch]:
    """The page / redirects to on the same origin (one hop), and the same-origin pages it
    (or / itself) links to, login links first; at most MAX_FOLLOWED new pages."""
    known = {f.path for f in fetched}
    front = next((f for f in fetched if f.path == "/"), None)
    if front is None:
        return []
    landing: list[Fetch] = [front] if front.ok else []
    more: list[Fetch] = []
    if front.resp.status in _REDIRECTS:
        target = http_pages.same_origin_path(front.resp.header("Location") or "",
                                             _url(ctx, tls, "/"))
        if target is not None and target not in known:
            known.add(target)
            more = await _fetched_ok(ctx, [target])
            landing += [f for f in more if f.ok]
    links: list[str] = []
    for page in landing:
        for path in http_pages.links_to_follow(page.resp.body, _url(ctx, tls, page.path)):
            if path not in known and path not in links:
                links.append(path)
    return more + await _fetched_ok(ctx, links[: MAX_FOLLOWED - len(more)])


async def http_cleartext_passwords(ctx: ProbeContext, params: Params) -> Observation:
    """Fetch each of ``paths`` (and where / redirects and links to, on the same origin: login
    links first, MAX_FOLLOWED pages at most) without credentials:
    a 401 with a Basic or Digest challenge, or a page whose form holds a password input and
    posts it to an http:// URL (a relative action on an http:// page included).

    Fields: cleartext ("yes" on plain HTTP, "no" over TLS: nothing is sent in the clear
    there), auth_scheme, auth_path, realm, digest_algorithm, challenge (the status line and
    WWW-Authenticate headers), challenges (every scheme/path seen), form_path, form_action
    (the absolute URL posted to), form_method, password_fields, checked, grade
    ("basic"/"digest"). Raises ProbeFailure when a listed path could not be fetched and
    nothing was found.
    """
    tls = ctx.service is not None and ctx.service.tls
    paths = _paths(params)
    results = await _fetch_all(ctx, paths)
    fetched = [r for r in results if not isinstance(r, ProbeFailure)]
    fetched += await _reachable_from_front(ctx, tls, fetched)
    fields: dict[str, str] = {"cleartext": "no" if tls else "yes",
                              "checked": str(len(fetched))}
    challenged: list[tuple[Fetch, http_pages.Challenge]] = []
    for f in fetched:
        if f.resp.status == 401:
            challenged += [(f, c) for c in http_pages.password_challenges(f.resp.headers)]
    shown: list[Fetch] = []
    if challenged:
        # Basic first: it sends the password itself, Digest only a hash of it.
        challenged.sort(key=lambda fc: fc[1].scheme != "Basic")
        f, c = challenged[0]
        fields.update(auth_scheme=c.scheme, auth_path=f.path, realm=c.realm or "(none)",
                      grade=c.scheme.lower(), challenge=_challenge_line(f))
        if c.scheme == "Digest":
            fields["digest_algorithm"] = c.algorithm
        fields["challenges"] = ", ".join(sorted({f"{c.scheme} at {f.path}"
                                                 for f, c in challenged}))[:512]
        shown.append(f)
    for f in fetched:
        if not f.ok:
            continue
        page_url = _url(ctx, tls, f.path)
        forms = [fm for fm in http_pages.password_forms(f.resp.body)
                 if http_pages.posts_in_cleartext(fm, page_url)]
        if forms:
            fields.update(form_path=f.path, form_action=forms[0].target(page_url)[:256],
                          form_method=forms[0].method.upper(),
                          password_fields=", ".join(forms[0].password_fields))
            shown.append(f)
            break
    if not shown:
        if any(isinstance(r, ProbeFailure) for r in results):
            raise _failed(results, paths)  # a path not asked is never a pass
        shown = fetched[:1]
    return Observation(
        test=(f"fetched {len(fetched)} page(s) without credentials "
              f"({', '.join(f.path for f in fetched[:8])}{', ...' if len(fetched) > 8 else ''})"
              f" over {'TLS' if tls else 'plain HTTP'}, reading WWW-Authenticate challenges "
              "and the forms that hold a password input; no password was sent"),
        fields=fields,
        request=excerpt(b"".join(f.request for f in shown)),
        reply=excerpt(b"\n".join(f.raw[:1024] for f in shown), 2048),
    )


PRIMITIVES: dict[str, Primitive] = {
    "http_status_pages": http_status_pages,
    "http_cleartext_passwords": http_cleartext_passwords,
}
