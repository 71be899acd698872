"""RecentKeys: the one repeat filter of the knock and half-open sensors."""

from __future__ import annotations

from mamori.watch.repeats import RecentKeys


def test_a_key_seen_again_within_the_window_is_a_repeat_and_not_recorded_again() -> None:
    keys = RecentKeys(window=10.0, max_keys=100)
    assert keys.repeat("a", 0.0) is False
    assert keys.repeat("a", 9.9) is True
    assert keys.repeat("a", 10.0) is False  # the window is measured from the last record
    assert keys.repeat("a", 19.9) is True


def test_memory_is_bounded_and_the_least_recently_recorded_go_first() -> None:
    keys = RecentKeys(window=60.0, max_keys=3)
    for i, key in enumerate("abcd"):
        assert keys.repeat(key, float(i)) is False
    assert len(keys) == 3
    assert keys.repeat("a", 5.0) is False  # forgotten: recorded anew
    assert keys.repeat("d", 5.0) is True
