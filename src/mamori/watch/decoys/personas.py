"""The persona registry: one explicit table from persona name to a fresh session."""

from __future__ import annotations

from collections.abc import Callable

from mamori.watch.decoys.banner import BannerPersona
from mamori.watch.decoys.ftp import FtpPersona
from mamori.watch.decoys.http import HttpPersona
from mamori.watch.decoys.mysql import MysqlPersona
from mamori.watch.decoys.rdp import RdpPersona
from mamori.watch.decoys.redis import RedisPersona
from mamori.watch.decoys.session import Persona
from mamori.watch.decoys.smb import SmbPersona
from mamori.watch.decoys.spec import DecoyLimits, DecoySpec
from mamori.watch.decoys.ssh import SshPersona
from mamori.watch.decoys.telnet import TelnetPersona

__all__ = ["persona_factory"]

_FACTORIES: dict[str, Callable[[DecoySpec, DecoyLimits], Persona]] = {
    "telnet": lambda spec, limits: TelnetPersona(limits.max_commands),
    "ftp": lambda spec, limits: FtpPersona(limits.max_commands),
    "ssh": lambda spec, limits: SshPersona(),
    "http": lambda spec, limits: HttpPersona(),
    "smb": lambda spec, limits: SmbPersona(),
    "redis": lambda spec, limits: RedisPersona(limits.max_commands),
    "mysql": lambda spec, limits: MysqlPersona(),
    "rdp": lambda spec, limits: RdpPersona(),
    "banner": lambda spec, limits: BannerPersona(spec.banner),
}


def persona_factory(spec: DecoySpec, limits: DecoyLimits) -> Callable[[], Persona]:
    """A function making a new persona session for each connection to ``spec``."""
    make = _FACTORIES[spec.persona]
    return lambda: make(spec, limits)
