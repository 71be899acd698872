"""router-upnp-open and router-upnp-mapping from a RouterView (pure)."""

from __future__ import annotations

from mamori.audit.router_findings import router_results
from mamori.model import CheckStatus, Confidence, Layer, Proto
from mamori.model.path import NatKind, PortMapping, RouterView

TRANSMISSION = PortMapping(51413, Proto.TCP, "192.168.77.10", 51413, "Transmission", 0)
OPEN = RouterView(
    found=True, protocol="upnp-igd1", control_url="http://192.168.77.1:5000/ctl/IPConn",
    gateway="192.168.77.1", external_address="11.0.0.2", nat=NatKind.PUBLIC,
    mappings=(TRANSMISSION,), control_open=True,
    evidence=("POST GetExternalIPAddress: HTTP 200, NewExternalIPAddress='11.0.0.2'",))




def test_open_router_and_upnp_mapping_are_findings_with_evidence() -> None:
    results = router_results(OPEN)
    opened = [r for r in results if r.check_id == "router-upnp-open"]
    mapped = [r for r in results if r.check_id == "router-upnp-mapping"]
    assert len(opened) == 1 and len(mapped) == 1
    o, m = opened[0], mapped[0]
    assert o.status is CheckStatus.FINDING and o.confidence is Confidence.CONFIRMED
    assert o.layer is Layer.NETWORK
    assert "without authentication" in o.summary and "GetExternalIPAddress" in o.summary
    assert m.status is CheckStatus.FINDING
    assert (m.address, m.port, m.proto) == ("192.168.77.10", 51413, Proto.TCP)
    assert "opened by UPnP, description 'Transmission', lease 0 = permanent" in m.summary
    assert m.texts["ja"].title and m.remediation["router"]


def test_refused_control_passes_and_empty_table_passes() -> None:
    view = RouterView(found=True, protocol="upnp-igd1", gateway="192.168.77.1",
                      control_open=False, error="the router refused our control requests")
    results = router_results(view)
    assert [r.status for r in results if r.check_id == "router-upnp-open"] == [
        CheckStatus.PASSED]
    # refused: the table was not read, so the mapping check could not run
    assert [r.status for r in results if r.check_id == "router-upnp-mapping"] == [
        CheckStatus.NOT_TESTED]
    empty = RouterView(found=True, protocol="upnp-igd2", gateway="192.168.77.1",
                       control_open=True)
    assert [r.status for r in router_results(empty) if r.check_id == "router-upnp-mapping"
            ] == [CheckStatus.PASSED]


def test_no_router_is_not_tested_never_passed() -> None:
    view = RouterView(found=False, error="no UPnP IGD answered SSDP within 2 s; "
                      "NAT-PMP: no answer")
    results = router_results(view)
    assert {r.status for r in results} == {CheckStatus.NOT_TESTED}
    assert all("no UPnP IGD answered" in r.summary for r in results)


def test_natpmp_router_table_is_not_tested() -> None:
    view = RouterView(found=True, protocol="natpmp", gateway="192.168.77.1",
                      external_address="100.64.1.2", nat=NatKind.CGNAT, control_open=True,
                      evidence=("NAT-PMP external address request to 192.168.77.1: success",))
    results = {r.check_id: r for r in router_results(view)}
    assert results["router-upnp-open"].status is CheckStatus.FINDING
    assert results["router-upnp-mapping"].status is CheckStatus.NOT_TESTED
    assert "NAT-PMP/PCP" in results["router-upnp-mapping"].summary


def test_mamori_check_job_reports_the_router_findings() -> None:
    """run_check_job with a router reader: the router's findings are in the checklist (no
    listeners, so nothing is probed; the router is the network layer's own item)."""
    import asyncio

    from mamori.audit.inside import CheckJob, run_check_job
    from mamori.audit.path import HostAddresses
    from mamori.scan.pipeline import ScanPlan

    seen: list[object] = []

    class Sink:
        def on_check(self, result: object) -> None:
            seen.append(result)

        def on_listener(self, record: object) -> None:
            pass

        def on_paths(self, report: object) -> None:
            seen.append(report)

    job = CheckJob(ScanPlan(targets=(), tcp_ports=()), False, frozenset(), lambda: [],
                   lambda lst: None, lambda: [], read_router=lambda: OPEN,
                   read_addresses=lambda: HostAddresses(ipv4=("192.168.77.10",)))
    asyncio.run(run_check_job(job, Sink(), lambda **kw: None))  # type: ignore[arg-type]
    ids = [getattr(r, "check_id", None) for r in seen]
    assert "router-upnp-open" in ids and "router-upnp-mapping" in ids
