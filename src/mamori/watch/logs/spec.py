"""What to read: a log kind, where, and whether to follow it."""

from __future__ import annotations

import os
from dataclasses import dataclass

LOG_KINDS = (
    "auth", "access", "firewall", "journald-sshd", "journald-kernel", "pflog", "macos-unified"
)
JOURNALD_KINDS = frozenset({"journald-sshd", "journald-kernel"})
AUTH_KINDS = frozenset({"auth", "journald-sshd", "macos-unified"})


@dataclass(frozen=True, slots=True)
class LogSpec:
    """One log source.

    ``path`` is the file to read (required for file kinds); for journald kinds it is None
    (the system journal) or a journal file / directory (``journalctl --file`` /
    ``--directory``). ``follow`` keeps reading as the log grows (rotation-safe), else the
    log is read once to its end. ``from_start`` starts a followed file at its beginning
    instead of its end.
    """

    kind: str
    path: str | None = None
    follow: bool = True
    from_start: bool = False

    def __post_init__(self) -> None:
        if self.kind not in LOG_KINDS:
            raise ValueError(
                f"unknown log kind {self.kind!r} (one of {', '.join(LOG_KINDS)})"
            )
        if self.path is not None and not isinstance(self.path, str):
            object.__setattr__(self, "path", os.fspath(self.path))
        if self.kind not in JOURNALD_KINDS and not self.path:
            raise ValueError(f"a {self.kind} log needs a path")

    @property
    def source(self) -> str:
        """The ``Event.source`` of what this log yields."""
        if self.kind in JOURNALD_KINDS:
            what = self.kind.removeprefix("journald-")
            return f"journald:{what}" if self.path is None else f"journald:{what}:{self.path}"
        return f"log:{self.path}"

    @classmethod
    def parse(cls, text: str, *, follow: bool = True) -> LogSpec:
        """``KIND:PATH`` (``access:/var/log/nginx/access.log``) or a bare journald kind."""
        kind, _sep, path = text.partition(":")
        kind = kind.strip()
        if kind not in LOG_KINDS:
            raise ValueError(
                f"bad log spec {text!r}: expected KIND:PATH with KIND one of {', '.join(LOG_KINDS)}"
            )
        return cls(kind, path or None, follow=follow)
