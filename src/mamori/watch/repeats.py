"""Repeats within a window, remembered in bounded memory (pure; the caller passes the time)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class RecentKeys:
    """``repeat(key, now)`` is True when ``key`` was last recorded less than ``window`` seconds
    before ``now`` (a repeat: not recorded again); otherwise it records ``key`` at ``now``.
    At most ``max_keys`` keys are remembered: the least recently recorded are forgotten first."""

    def __init__(self, window: float, max_keys: int) -> None:
        self.window, self.max_keys = window, max_keys
        self._last: OrderedDict[Hashable, float] = OrderedDict()

    def repeat(self, key: Hashable, now: float) -> bool:
        last = self._last.get(key)
        if last is not None and now - last < self.window:
            return True
        self._last[key] = now
        self._last.move_to_end(key)
        while len(self._last) > self.max_keys:
            self._last.popitem(last=False)
        return False

    def __len__(self) -> int:
        return len(self._last)
