"""Reading the service files in contrib/ (systemd units) the way the tests check them."""

from __future__ import annotations


def unit_entries(text: str) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit file (keys may repeat), section names prefixed."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key}", []).append(value)
    return out
