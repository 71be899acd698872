"""mamori(1) in roff (man macros), generated from the command tree: every command, its
arguments, options and help text. ``render(cmds, version)`` is pure."""

from __future__ import annotations

from mamori.cli.cmdtree import Cmd, Opt, first_sentence

EXIT_STATUS = (
    ("0", "Done; nothing at or above --fail-on (diff: nothing got worse)."),
    ("1", "Findings at or above --fail-on (diff: something got worse)."),
    ("2", "Bad usage: one line on stderr, nothing stored."),
    ("3", "The run could not happen (store, network or output failure)."),
    ("130", "Interrupted."),
)


def render(cmds: list[Cmd], version: str) -> str:
    root = cmds[0]
    lines = [
        f'.TH MAMORI 1 "" "mamori {_esc(version)}" "User Commands"',
        ".SH NAME",
        f"mamori \\- {_esc(first_sentence(root.help).split(':', 1)[-1].strip())}",
        ".SH SYNOPSIS",
        ".B mamori",
        "[\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]...",
        ".SH DESCRIPTION",
        *_paragraphs(root.help),
        ".SH OPTIONS",
        *_options(root.options),
        ".SH COMMANDS",
    ]
    for cmd in cmds[1:]:
        lines.append(f'.SS "{_esc(_synopsis(cmd))}"')
        lines.extend(_paragraphs(cmd.help))
        if cmd.subcommands:
            lines.append(".PP")
            lines.append("Commands: " + _esc(", ".join(cmd.subcommands)) + ".")
        lines.extend(_options(cmd.options))
    lines.append(".SH EXIT STATUS")
    for code, meaning in EXIT_STATUS:
        lines += [".TP", f".B {code}", _esc(meaning)]
    lines += [".SH SEE ALSO", "\\fBnmap\\fR(1)", ""]
    return "\n".join(lines)


def _synopsis(cmd: Cmd) -> str:
    words = ["mamori", *cmd.path, "[OPTIONS]"]
    words += ["COMMAND"] if cmd.subcommands else list(cmd.arguments)
    return " ".join(words)


def _paragraphs(text: str) -> list[str]:
    out: list[str] = []
    for para in text.split("\n\n"):
        if para.strip():
            out += [".PP", _esc(" ".join(para.split()))]
    return out


def _options(options: tuple[Opt, ...]) -> list[str]:
    out: list[str] = []
    for opt in options:
        names = ", ".join(f"\\fB{_esc(n)}\\fR" for n in opt.names)
        value = f" \\fI{_esc(opt.metavar)}\\fR" if opt.takes_value else ""
        out += [".TP", names + value, _esc(" ".join(opt.help.split())) or "\\&"]
    return out


def _esc(text: str) -> str:
    """Text safe in a roff line: backslashes, dashes and non-ASCII escaped, no request at
    line start."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    text = "".join(c if ord(c) < 128 else f"\\[u{ord(c):04X}]" for c in text)  # 守 → \[u5B88]
    return "\\&" + text if text[:1] in (".", "'") else text
