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
