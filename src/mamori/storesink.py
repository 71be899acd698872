"""The pipeline's sink that writes each result to the store the moment it arrives."""

from __future__ import annotations

from mamori.model import Endpoint, ProbeError, Proto, Service, Target
from mamori.store import Store


class StoreSink:
    def __init__(self, store: Store, scan_id: int) -> None:
        self.store = store
        self.scan_id = scan_id

    def on_host(self, target: Target) -> None:
        self.store.add_host(self.scan_id, target.address, target.hostname)

    def on_endpoints(self, endpoints: list[Endpoint]) -> None:
        self.store.add_endpoints(self.scan_id, endpoints)

    def on_service(self, address: str, proto: Proto, port: int, service: Service) -> None:
        self.store.set_service(self.scan_id, address, proto, port, service)

    def on_error(self, error: ProbeError) -> None:
        self.store.add_error(self.scan_id, error)

    def on_not_shown(self, address: str, counts: dict[str, dict[str, int]]) -> None:
        self.store.set_not_shown(self.scan_id, address, counts)
