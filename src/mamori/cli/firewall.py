"""`mamori firewall …`: plan (and, for nftables, apply) the firewall that closes what you do
not serve. Parse, hand over to ``mamori.audit.firewall.plan``, print.

Exit codes: 0 done, 2 bad usage (one line on stderr), 3 applying failed, 130 declined.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from mamori.cli.common import EXIT_FAILED, EXIT_USAGE, fail, stderr


def register(app: typer.Typer) -> None:
    app.add_typer(firewall_app, name="firewall")


firewall_app = typer.Typer(help="Plan the firewall that closes what you do not serve.",
                           no_args_is_help=True)


def _note(message: str) -> None:
    stderr.print(message, markup=False, highlight=False, soft_wrap=True)


@firewall_app.callback()
def _firewall() -> None:
    """Plan the firewall that closes what you do not serve."""


@firewall_app.command("plan")
def plan_command(
    allow: Annotated[str, typer.Option(
        "--allow", "-a", help="What stays reachable: service names (ssh, http, https, smtp, "
        "submission, imaps, dns, …) and PORT/PROTO or FIRST-LAST/PROTO, comma-separated.",
    )] = "",
    backend: Annotated[str | None, typer.Option(
        "--backend", "-b", help="nftables, ufw or pf (default: nftables on Linux, pf on macOS).",
    )] = None,
    no_ping: Annotated[bool, typer.Option(
        "--no-ping", help="Do not answer ICMP echo (ping); the ICMP errors stay allowed.",
    )] = False,
    explain: Annotated[bool, typer.Option(
        "--explain", help="Also walk through the rules one by one (on stderr).",
    )] = False,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write the ruleset to this file instead of stdout.",
    )] = None,
    apply: Annotated[bool, typer.Option(
        "--apply", help="Load the plan now (nftables only: into the table inet mamori), "
        "after a confirmation.",
    )] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking.")] = False,
) -> None:
    """Write a ruleset that drops everything inbound except --allow.

    Replies to this machine's own connections, loopback and the ICMP that IPv4 and IPv6 need
    stay allowed; each rule carries the reason it is there. Nothing changes on this machine
    unless --apply is given (nftables only, after a confirmation)."""
    from mamori.audit.firewall.plan import (
        AllowSpecError,
        Backend,
        build_plan,
        default_backend,
        parse_allow,
        plan_warnings,
    )
    from mamori.audit.firewall.rulesets import explain as explain_plan
    from mamori.audit.firewall.rulesets import render

    try:
        allowed = parse_allow(allow)
    except AllowSpecError as exc:
        fail(EXIT_USAGE, str(exc))
    if backend is None:
        chosen = default_backend()
        if chosen is None:
            fail(EXIT_USAGE, f"no firewall backend for {sys.platform}: pass --backend")
    else:
        try:
            chosen = Backend(backend.lower())
        except ValueError:
            names = ", ".join(b.value for b in Backend)
            fail(EXIT_USAGE, f"unknown --backend {backend!r} (choose from {names})")
    plan = build_plan(allowed, ping=not no_ping)
    text = render(plan, chosen)
    for warning in plan_warnings(plan, os.environ.get("SSH_CONNECTION")):
        _note(f"mamori: warning: {warning}")
    _write(text, output)
    if explain:
        _note(explain_plan(plan, chosen).rstrip("\n"))
    if apply:
        _apply(text, chosen, yes)


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(EXIT_FAILED, f"cannot write {output}: {exc.strerror or exc}")
    _note(f"plan written to {output}")


def _apply(text: str, backend: str, yes: bool) -> None:
    from mamori.audit.firewall.plan import Backend
    from mamori.audit.firewall.plan_nft import REMOVE_COMMAND, apply_nftables
    from mamori.audit.runner import SystemRunner

    if backend != Backend.NFTABLES:
        _note(f"mamori: --apply loads nftables plans only; nothing was changed. To apply the "
              f"{backend} plan, run the commands above as root"
              + (" (it is a shell script)." if backend == Backend.UFW else " (pfctl -f FILE)."))
        return
    runner = SystemRunner()
    checked = apply_nftables(text, runner, check_only=True)
    if not checked.ok:
        fail(EXIT_FAILED, f"cannot apply: nft -c (check) failed: {_one_line(checked.detail)}")
    if not yes and not typer.confirm(
        "Load this plan now? Inbound traffic not allowed above will be dropped", default=False,
        err=True,
    ):
        raise typer.Abort
    outcome = apply_nftables(text, runner)
    if not outcome.ok:
        fail(EXIT_FAILED, f"cannot apply: nft {outcome.step} failed: {_one_line(outcome.detail)}")
    _note(f"applied: table inet mamori is loaded. Undo with: {REMOVE_COMMAND}")


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]
