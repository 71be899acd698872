"""`mamori completion bash|zsh|fish` and `mamori man`: the shell completion scripts and the
man page, printed for users who installed without the packaged copies.

The packaged copies (installed as share/man/man1/mamori.1 and in the shells' completion
directories) are the same text (``shipped_files``), generated in the build (setup.py calls
``write_shipped_files``); the copies committed under src/mamori/data/share/ are written by
``scripts/gen-shell-files`` and a test fails when they drift from the command line.
"""

from __future__ import annotations

from pathlib import Path
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


def write_shipped_files(root: Any, share: Path) -> list[Path]:
    """Write every packaged file of the command tree ``root`` under the directory ``share``;
    the paths written (setup.py in the build, scripts/gen-shell-files in the checkout)."""
    written = []
    for rel, text in shipped_files(root).items():
        target = share / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written
