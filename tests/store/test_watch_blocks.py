"""The blocks of ``mamori watch --block`` in SQLite (migration 0009): recorded with their
expiry, one row per address (a new block replaces the old), expired rows not listed, removed
on unblock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from mamori.store import Store
from mamori.store.blocks import StoredBlock, active_blocks, record_block, remove_block

T0 = datetime(2026, 12, 8, 3, 0, tzinfo=UTC)


def block(address: str, minutes: int, reason: str = "scan.ports (high)",
          at: datetime = T0) -> StoredBlock:
    return StoredBlock(address, reason, 7, at, at + timedelta(minutes=minutes))


def test_blocks_are_recorded_replaced_expired_and_removed(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "b.db")) as store:
        record_block(store, block("192.0.2.7", 60))
        record_block(store, block("2001:db8::7", 5))
        record_block(store, block("192.0.2.7", 120, "bruteforce (high)"))  # replaces
        record_block(store, block("192.0.2.8", 1))
        now = T0 + timedelta(minutes=2)  # 192.0.2.8 has expired
        assert active_blocks(store, now) == [
            block("2001:db8::7", 5), block("192.0.2.7", 120, "bruteforce (high)")]
        assert remove_block(store, "192.0.2.7") == block("192.0.2.7", 120, "bruteforce (high)")
        assert remove_block(store, "192.0.2.7") is None
        assert [b.address for b in active_blocks(store, now)] == ["2001:db8::7"]
        # a later block sweeps the expired rows out
        record_block(store, block("192.0.2.9", 60, at=T0 + timedelta(minutes=10)))
        assert [b.address for b in active_blocks(store, T0)] == ["192.0.2.9"]
