"""`mamori completion bash|zsh|fish` and `mamori man`: the shell completion scripts and the
man page, printed for users who installed without the packaged copies.

The packaged copies (src/mamori/data/share/..., installed as share/man/man1/mamori.1 and in
the shells' completion directories) are the same text (``shipped_files``), written by
``scripts/gen-shell-files``; a test fails when they drift from the command line.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer

from mamori import __version__
from mamori.cli import completion_scripts, manpage
from mamori.cli.cmdtree import walk
from mamori.cli.common import emit

# Where each generated file goes, under a share/ directory (the FHS / XDG places).
SHIPPED = {
    "man": "man/man1/mamori.1",
    "bash": "bash-completion/completions/mamori",
    "zsh": "zsh/site-functions/_mamori",
    "fish": "fish/vendor_completions.d/mamori.fish",
}


def register(app: typer.Typer) -> None:
    app.command("completion")(completion)
    app.command("man")(man)


def completion(
    ctx: typer.Context,
    shell: Annotated[Literal["bash", "zsh", "fish"], typer.Argument(help="The shell.")],
) -> None:
    """Print the shell completion script (bash: `source <(mamori completion bash)`)."""
    emit(shipped_files(ctx.find_root().command)[SHIPPED[shell]])


def man(ctx: typer.Context) -> None:
    """Print the man page in roff (`mamori man | man -l -`)."""
    emit(shipped_files(ctx.find_root().command)[SHIPPED["man"]])


def shipped_files(root: Any) -> dict[str, str]:
    """Every packaged file's path under share/ and its text, from the command tree ``root``."""
    cmds = walk(root)
    out = {SHIPPED["man"]: manpage.render(cmds, __version__)}
    for shell in completion_scripts.SHELLS:
        out[SHIPPED[shell]] = completion_scripts.render(shell, cmds)
    return out
