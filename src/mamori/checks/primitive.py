"""The type every check primitive has."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from mamori.checks.observation import Observation, ProbeContext
from mamori.checks.params import Params

Primitive = Callable[[ProbeContext, Params], Awaitable[Observation]]
