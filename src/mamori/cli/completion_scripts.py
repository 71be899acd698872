"""Static shell completion for bash, zsh and fish, generated from the command tree.

Static scripts (no call back into mamori, nothing probed at shell start-up): commands and
sub-commands, each command's options, the allowed values of a choice option (--format), file
names for other option values and arguments. ``render(shell, cmds)`` is pure.
"""

from __future__ import annotations

from mamori.cli.cmdtree import Cmd, first_sentence

SHELLS = ("bash", "zsh", "fish")
HEADER = "# {} completion for mamori, generated from its command line: do not edit.\n"


def render(shell: str, cmds: list[Cmd]) -> str:
    if shell == "bash":
        return HEADER.format("bash") + _bash_function(cmds) + \
            "complete -o default -F _mamori mamori\n"
    if shell == "zsh":
        return _zsh(cmds)
    if shell == "fish":
        return _fish(cmds)
    raise ValueError(f"unknown shell {shell!r}")


def _words(cmd: Cmd) -> list[str]:
    return [*cmd.subcommands, *(n for o in cmd.options for n in o.names)]


def _bash_function(cmds: list[Cmd], name: str = "_mamori") -> str:
    paths = [" ".join(c.path) for c in cmds[1:]]
    lines = [
        f"{name}() {{",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
        '    local path="" next i',
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        next="${path:+$path }${COMP_WORDS[i]}"',
        '        case "$next" in',
        "            " + "|".join(f'"{p}"' for p in paths) + ') path="$next" ;;',
        "        esac",
        "    done",
        '    case "$path|$prev" in',
    ]
    for cmd in cmds:
        here = " ".join(cmd.path)
        for opt in cmd.options:
            if not opt.takes_value:
                continue
            keys = "|".join(f'"{here}|{n}"' for n in opt.names)
            action = (f'COMPREPLY=($(compgen -W "{" ".join(opt.choices)}" -- "$cur")); return'
                      if opt.choices else "return")  # no words: the shell offers file names
            lines.append(f"        {keys}) {action} ;;")
    lines += ["    esac", '    local words=""', '    case "$path" in']
    for cmd in cmds:
        lines.append(f'        "{" ".join(cmd.path)}") words="{" ".join(_words(cmd))}" ;;')
    lines += [
        "    esac",
        '    COMPREPLY=($(compgen -W "$words" -- "$cur"))',
        "}",
        "",
    ]
    return "\n".join(lines)


def _zsh(cmds: list[Cmd]) -> str:
    """zsh runs the bash function through its bashcompinit layer (same words, same rules)."""
    return "\n".join([
        "#compdef mamori",
        HEADER.format("zsh").rstrip("\n"),
        "autoload -U +X bashcompinit && bashcompinit",
        _bash_function(cmds, "_mamori_bash"),
        "complete -o default -F _mamori_bash mamori",
        "# autoloaded as _mamori by compinit: complete the word being asked for right away",
        '[[ "${funcstack[1]}" == _mamori ]] && _bash_complete -o default -F _mamori_bash',
        "",
    ])


def _fish(cmds: list[Cmd]) -> str:
    lines = [HEADER.format("fish").rstrip("\n")]
    groups = {c.path: c for c in cmds if c.subcommands}
    for cmd in cmds:
        cond = _fish_condition(cmd.path, groups)
        if cmd.subcommands:
            for sub in cmd.subcommands:
                sub_help = first_sentence(next(c.help for c in cmds if c.path == (*cmd.path, sub)))
                lines.append(f"complete -c mamori -n {_q(cond)} -f -a {sub} -d {_q(sub_help)}")
        for opt in cmd.options:
            flags = " ".join(_fish_flag(n) for n in opt.names)
            extra = f" -r -f -a {_q(' '.join(opt.choices))}" if opt.choices else \
                (" -r" if opt.takes_value else "")
            lines.append(f"complete -c mamori -n {_q(cond)} {flags}{extra} "
                         f"-d {_q(first_sentence(opt.help))}")
    return "\n".join(lines) + "\n"


def _fish_condition(path: tuple[str, ...], groups: dict[tuple[str, ...], Cmd]) -> str:
    """True while the command line is at ``path`` (and no deeper)."""
    if not path:
        return "__fish_use_subcommand"
    parts = [f"__fish_seen_subcommand_from {word}" for word in path]
    below = groups.get(path)
    if below is not None:
        parts.append("not __fish_seen_subcommand_from " + " ".join(below.subcommands))
    return "; and ".join(parts)


def _fish_flag(name: str) -> str:
    if name.startswith("--"):
        return f"-l {name[2:]}"
    return f"-s {name[1:]}" if len(name) == 2 else f"-o {name[1:]}"


def _q(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
