"""The command line as plain data: every command's path, help, options and arguments.

``walk(root)`` reads Typer's click command tree once; the man page and the completion
scripts (cli/manpage.py, cli/completion_scripts.py) are pure functions of what it returns, so
they list exactly what the parser accepts.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Opt:
    names: tuple[str, ...]  # ("-f", "--format"), secondary ("--no-identify") included
    help: str
    takes_value: bool
    choices: tuple[str, ...]  # the allowed values of a choice (a Literal), else ()
    metavar: str  # what the man page shows after a value-taking option


@dataclass(frozen=True)
class Cmd:
    path: tuple[str, ...]  # () for mamori itself, ("checks", "list") for mamori checks list
    help: str
    options: tuple[Opt, ...]
    arguments: tuple[str, ...]  # positional names, upper case, "..." when several
    subcommands: tuple[str, ...]


def walk(command: Any, path: tuple[str, ...] = ()) -> list[Cmd]:
    """``command`` (a click/Typer command or group) and every visible command below it."""
    options: list[Opt] = []
    arguments: list[str] = []
    for param in command.params:
        if getattr(param, "hidden", False):
            continue
        if param.param_type_name == "argument":
            name = (param.name or "arg").upper()
            arguments.append(name + ("..." if param.nargs != 1 else ""))
        else:
            options.append(_option(param))
    options.append(Opt(("-h", "--help"), "Show this message and exit.", False, (), ""))
    subs = getattr(command, "commands", {})
    visible = tuple(n for n, c in subs.items() if not getattr(c, "hidden", False))
    out = [Cmd(path, _clean(command.help or ""), tuple(options), tuple(arguments), visible)]
    for name in visible:
        out.extend(walk(subs[name], (*path, name)))
    return out


def _option(param: Any) -> Opt:
    names = tuple(sorted((*param.opts, *param.secondary_opts), key=lambda n: (len(n), n)))
    takes_value = not param.is_flag and not getattr(param, "count", False)
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    choices: tuple[str, ...] = ()
    if typing.get_origin(annotation) is typing.Literal:
        choices = tuple(str(v) for v in typing.get_args(annotation))
    if not takes_value:
        metavar = ""
    elif choices:
        metavar = "|".join(choices)
    else:
        metavar = (param.metavar or param.name or "value").upper()
    return Opt(names, _clean(param.help or ""), takes_value, choices, metavar)


def _clean(text: str) -> str:
    """Help text with Typer's escaped brackets and trailing blank space undone."""
    return text.replace("\\[", "[").strip()


def first_sentence(text: str) -> str:
    """The first line of the first paragraph, for one-line descriptions."""
    para = text.split("\n\n", 1)[0]
    return " ".join(para.split())
