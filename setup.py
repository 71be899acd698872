"""Build hooks: the man page and the shell completion scripts are generated in the build.

Everything else about the package is declared in pyproject.toml. Here, two setuptools commands
write the files that ``mamori.cli.shell.shipped_files`` renders from the command tree of the
tree being built (so ``typer`` is a build requirement):

* ``build_py``: into the built package, ``mamori/data/share/...`` (what ``mamori man`` users
  of an unpacked wheel and distribution packagers pick up), over any copy in the source tree;
* ``install_data``: as the wheel's data files, installed under the venv's or prefix's
  ``share/`` (``share/man/man1/mamori.1``, ``share/bash-completion/completions/mamori``,
  ``share/zsh/site-functions/_mamori``, ``share/fish/vendor_completions.d/mamori.fish``).

A wheel or sdist built from a checkout without the committed copies in
``src/mamori/data/share`` therefore still ships them, and a stale committed copy never ships
(scripts/check-install builds from such a copy of the tree and compares).
"""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

install_data = Distribution().get_command_class("install_data")  # setuptools' own distutils

HERE = Path(__file__).resolve().parent
GENERATED = "build/mamori-share"  # relative: install_data takes relative paths only
# Where each generated file is installed, under the prefix: (directory, path under share/).
DATA_FILES = [
    ("share/man/man1", "man/man1/mamori.1"),
    ("share/bash-completion/completions", "bash-completion/completions/mamori"),
    ("share/zsh/site-functions", "zsh/site-functions/_mamori"),
    ("share/fish/vendor_completions.d", "fish/vendor_completions.d/mamori.fish"),
]


def generate_shell_files(share: Path) -> list[Path]:
    """Write the man page and completion scripts of the tree being built under ``share``."""
    sys.path.insert(0, str(HERE / "src"))  # this tree's mamori, never an installed one
    try:
        import typer

        from mamori.cli.app import app
        from mamori.cli.shell import write_shipped_files
    finally:
        sys.path.remove(str(HERE / "src"))
    return write_shipped_files(typer.main.get_command(app), share)


class BuildPyWithShellFiles(build_py):
    """build_py, then the generated files into the built package's data/share/."""

    def run(self) -> None:
        super().run()
        for path in generate_shell_files(Path(self.build_lib) / "mamori" / "data" / "share"):
            self.announce(f"generated {path}", level=2)


class InstallDataWithShellFiles(install_data):
    """install_data, the generated files written first where DATA_FILES points."""

    def run(self) -> None:
        for path in generate_shell_files(HERE / GENERATED):
            self.announce(f"generated {path}", level=2)
        super().run()


setup(
    cmdclass={"build_py": BuildPyWithShellFiles, "install_data": InstallDataWithShellFiles},
    data_files=[(target, [f"{GENERATED}/{rel}"]) for target, rel in DATA_FILES],
)
