"""`mamori router …`: what the LAN's router says (show), and removing one mapping (close).

``show`` is read-only: UPnP IGD (SSDP, description, GetExternalIPAddress, the mapping table),
else NAT-PMP/PCP. ``close EXTERNAL_PORT/PROTO`` sends one DeletePortMapping after a
confirmation (``--yes`` skips it; without a terminal and without ``--yes`` it refuses).

Exit codes: 0 done, 2 bad usage (one line on stderr), 3 no router / it refused, 130 declined.
"""

from __future__ import annotations

import ipaddress
import sys
from typing import Annotated

import typer

from mamori.cli.common import EXIT_FAILED, EXIT_USAGE, fail, stderr, write_stdout


def register(app: typer.Typer) -> None:
    app.add_typer(router_app, name="router")


router_app = typer.Typer(help="What the LAN's router tells (UPnP IGD, NAT-PMP): external "
                         "address, NAT, port mappings.", no_args_is_help=True)

GatewayOpt = Annotated[str | None, typer.Option(
    "--gateway", help="Ask this IPv4 address instead of the default route's gateway.",
)]


def _note(message: str) -> None:
    stderr.print(message, markup=False, highlight=False, soft_wrap=True)


def _gateway(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(ipaddress.IPv4Address(value.strip()))
    except ValueError:
        fail(EXIT_USAGE, f"--gateway must be an IPv4 address: {value[:60]!r}")


@router_app.callback()
def _router() -> None:
    """What the LAN's router tells (UPnP IGD, NAT-PMP): external address, NAT, mappings."""


@router_app.command("show")
def show_command(
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    gateway: GatewayOpt = None,
) -> None:
    """Read the router's external address, NAT kind and port mappings (changes nothing).

    Each mapping says who opened it ("opened by UPnP, description 'Transmission', lease 0 =
    permanent") and whether it points at this host."""
    if fmt not in ("table", "json"):
        fail(EXIT_USAGE, f"unknown --format {fmt!r} (choose from table, json)")
    from mamori.audit.router import RouterProbe, host_ipv4_addresses, read_router
    from mamori.report.router_view import router_json, router_table

    view = read_router(RouterProbe(gateway=_gateway(gateway)))
    here = host_ipv4_addresses()
    write_stdout(router_json(view, here) if fmt == "json" else router_table(view, here))


def _mapping_spec(value: str) -> tuple[int, str]:
    port, sep, proto = value.strip().partition("/")
    proto = proto.lower()
    if not sep or proto not in ("tcp", "udp") or not port.isdigit() \
            or not 0 < int(port) < 65536:
        fail(EXIT_USAGE, f"the mapping must be EXTERNAL_PORT/PROTO (e.g. 51413/tcp): "
                         f"{value[:40]!r}")
    return int(port), proto


@router_app.command("close")
def close_command(
    mapping: Annotated[str, typer.Argument(help="EXTERNAL_PORT/PROTO, e.g. 51413/tcp.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Remove without asking.")] = False,
    gateway: GatewayOpt = None,
) -> None:
    """Remove one port mapping from the router (UPnP DeletePortMapping), after confirmation."""
    port, proto_name = _mapping_spec(mapping)
    gw = _gateway(gateway)
    if not yes and not sys.stdin.isatty():
        fail(EXIT_USAGE, "not removing anything without a confirmation: stdin is not a "
                         "terminal; pass --yes")
    from mamori.audit.router import RouterProbe, delete_mapping, read_router
    from mamori.model.base import Proto
    from mamori.model.path_json import mapping_words

    proto = Proto(proto_name)
    probe = RouterProbe(gateway=gw)
    view = read_router(probe)
    if not view.found or not view.protocol.startswith("upnp"):
        fail(EXIT_FAILED, f"no UPnP router to ask: {view.error or 'none found'}")
    found = [m for m in view.mappings if m.external_port == port and m.proto is proto]
    if not found:
        fail(EXIT_FAILED, f"the router at {view.gateway} has no mapping {proto.value}/{port}"
                          + (" among the entries read" if view.mappings_truncated else ""))
    words = mapping_words(found[0])
    if not yes and not typer.confirm(f"Remove {words}?", default=False, err=True):
        raise typer.Abort
    done, line, _evidence = delete_mapping(view.gateway, port, proto, probe)
    if not done:
        fail(EXIT_FAILED, f"cannot remove {proto.value}/{port}: {line}")
    write_stdout(f"removed from the router at {view.gateway}: {words}\n")
