"""The one way tests start a real browser: Debian's Chromium driven by Playwright.

Chromium must never touch the network beyond loopback: background networking, component
updates, sync and autofill are off, and ``--host-resolver-rules`` answers every host name, and
every address literal outside 127.0.0.0/8, with "not found" inside the browser. Without it
Chromium asks the machine's resolver (off-machine) for Google hosts at start-up (seen here).
Note that the rules apply to address literals too: ``EXCLUDE 127.*`` keeps loopback reachable.
"""

from __future__ import annotations

from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-features=AutofillServerCommunication,OptimizationHints,MediaRouter,Translate",
    "--no-first-run",
    "--no-pings",
    "--disable-quic",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.*",
]


def launch_chromium(playwright: Any, **kwargs: Any) -> Any:
    """Launch headless Chromium with the no-network arguments (extra ``args`` appended)."""
    extra = list(kwargs.pop("args", []))
    return playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_ARGS, *extra], **kwargs
    )


def _loopback_only(route: Any) -> None:
    """Abort any request whose host is not a loopback address literal, before it reaches the
    browser's network stack (an aborted request is not a DNS error, so Chromium does not start
    its DNS probe, which would ask the system resolver and 8.8.8.8 about google.com)."""
    import ipaddress
    from urllib.parse import urlsplit

    parts = urlsplit(route.request.url)
    if parts.scheme in ("file", "data", "blob", "about"):
        route.fallback()
        return
    try:
        host = ipaddress.ip_address((parts.hostname or "").strip("[]"))
    except ValueError:
        route.abort("blockedbyclient")
        return
    if host.is_loopback and parts.port != 2024:
        route.fallback()
    else:
        route.abort("blockedbyclient")


def new_guarded_context(browser: Any, **kwargs: Any) -> Any:
    """A browser context whose pages can only load file:, data: and loopback URLs."""
    context = browser.new_context(**kwargs)
    context.route("**/*", _loopback_only)
    return context
