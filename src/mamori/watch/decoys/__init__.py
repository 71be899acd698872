"""Low-interaction decoy listeners (TCP personas and a UDP datagram recorder).

Each persona speaks just enough of its protocol to record what a visitor sends first (requests,
credentials, commands), then closes. Nothing a visitor sends is ever run or relayed.
"""

from mamori.watch.decoys.guard import SourceGuard
from mamori.watch.decoys.server import DecoyServer, DecoyStats
from mamori.watch.decoys.spec import PERSONA_NAMES, DecoyLimits, DecoySpec, guess_persona

__all__ = ["PERSONA_NAMES", "DecoyLimits", "DecoyServer", "DecoySpec", "DecoyStats",
           "SourceGuard", "guess_persona"]
