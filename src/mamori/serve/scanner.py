"""The one seam between a web check and the network: a ``Scanner`` runs one ``ScanRequest``.

The real one (``PipelineScanner``) builds a ``ScanPlan`` for the one address and runs mamori's
pipeline; tests wrap it with a recorder to assert exactly what was (and was not) scanned.
Probes name the service: HTTP requests carry its User-Agent, SMTP sessions its HELO name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from mamori.scan.pipeline import ProgressFn, ScanSink

API_PROFILE = "api"  # the profile name of checks asked for through the JSON API


@dataclass(frozen=True)
class ScanRequest:
    address: str  # the one address to probe: the visitor's own
    tcp_ports: tuple[int, ...]
    udp_ports: tuple[int, ...]
    checks: tuple[str, ...]  # check ids from the catalog
    user_agent: str
    helo_name: str
    timeout: float = 1.5
    rate: float | None = None
    # Name the services that answer (the page shows them). The API reports port states only:
    # its checks skip identification, so a silent listener costs one probe timeout, not the
    # identification budget (UDP payloads of the sweep still tell open UDP ports).
    identify: bool = True


class Scanner(Protocol):
    async def scan(self, request: ScanRequest, sink: ScanSink, progress: ProgressFn) -> None:
        """Probe ``request.address`` only, handing every result to ``sink``."""
        ...


class PipelineScanner:
    """mamori's own pipeline: sweep, identification, exposure checks."""

    async def scan(self, request: ScanRequest, sink: ScanSink, progress: ProgressFn) -> None:
        from mamori.checks.catalog import select
        from mamori.checks.observation import CheckOptions
        from mamori.model import Target
        from mamori.net.sweep import SweepOptions
        from mamori.scan.pipeline import ScanPlan, run_scan

        specs = tuple(select(request.checks))
        plan = ScanPlan(
            targets=(Target(request.address),),
            tcp_ports=request.tcp_ports,
            udp_ports=request.udp_ports,
            # One lane, no forked workers: the web process is threaded, and one address
            # gains nothing from a second core.
            sweep=SweepOptions(max_timeout=request.timeout, rate=request.rate, workers=1),
            identify=request.identify,
            identify_user_agent=request.user_agent,
            checks=specs,
            check_options=CheckOptions(helo_name=request.helo_name,
                                       user_agent=request.user_agent) if specs else None,
        )
        await run_scan(plan, sink, progress)
