"""Typed access to a check's probe parameters (from its YAML file)."""

from __future__ import annotations

from collections.abc import Mapping

ParamValue = str | int | float | bool | list[str]


class ParamError(ValueError):
    """A check file gave a primitive a parameter of the wrong kind (a catalog bug)."""


class Params:
    def __init__(self, values: Mapping[str, ParamValue]) -> None:
        self._values = dict(values)

    def text(self, name: str, default: str | None = None) -> str:
        value = self._values.get(name, default)
        if not isinstance(value, str):
            raise ParamError(f"parameter {name!r} must be text")
        return value

    def number(self, name: str, default: float | None = None) -> float:
        value = self._values.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParamError(f"parameter {name!r} must be a number")
        return float(value)

    def flag(self, name: str, default: bool = False) -> bool:
        value = self._values.get(name, default)
        if not isinstance(value, bool):
            raise ParamError(f"parameter {name!r} must be true or false")
        return value

    def texts(self, name: str, default: list[str] | None = None) -> list[str]:
        value = self._values.get(name, default if default is not None else [])
        if not isinstance(value, list):
            raise ParamError(f"parameter {name!r} must be a list of text")
        return list(value)
