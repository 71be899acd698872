"""`mamori firewall …` (placeholder until the plan command lands)."""

from __future__ import annotations

import typer

firewall_app = typer.Typer(help="Plan the firewall that closes what you do not serve.",
                           no_args_is_help=True)
