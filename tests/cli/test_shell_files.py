"""The man page and the shell completion scripts: generated from the command line, shipped in
the package, printed by `mamori man` / `mamori completion SHELL`, and working in real shells."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from tests.conftest import run_mamori

from mamori.cli.app import app
from mamori.cli.cmdtree import walk
from mamori.cli.shell import SHIPPED, shipped_files

REPO = Path(__file__).resolve().parents[2]
SHARE = REPO / "src" / "mamori" / "data" / "share"
ROOT = typer.main.get_command(app)


def test_the_shipped_files_are_what_the_command_line_generates() -> None:
    for rel, text in shipped_files(ROOT).items():
        shipped = SHARE / rel
        assert shipped.is_file(), f"{rel} missing: run scripts/gen-shell-files"
        assert shipped.read_text(encoding="utf-8") == text, \
            f"{rel} is stale: run scripts/gen-shell-files"


def test_the_build_generates_them_whatever_the_committed_copies_say(tmp_path: Path) -> None:
    """setup.py's build_py and install_data write the current files (package data and the
    share/ data files) in a tree whose committed copies are missing or stale (scripts/
    check-install proves the same of a real PEP 517 wheel)."""
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md", "LICENSE", "NOTICE"):
        shutil.copy2(REPO / name, tree / name)
    shutil.copytree(REPO / "src", tree / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    copies = tree / "src" / "mamori" / "data" / "share"
    shutil.rmtree(copies)
    (copies / "bash-completion" / "completions").mkdir(parents=True)
    (copies / SHIPPED["bash"]).write_text("stale\n", encoding="utf-8")
    r = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path / "lib"),
         "install_data", "--install-dir", str(tmp_path / "prefix")],
        cwd=tree, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    for rel, text in shipped_files(ROOT).items():
        for built in (tmp_path / "lib" / "mamori" / "data" / "share" / rel,
                      tmp_path / "prefix" / "share" / rel):
            assert built.is_file(), f"{built} not generated"
            assert built.read_text(encoding="utf-8") == text, f"{built} is not current"


def test_man_renders_without_warnings_and_lists_every_command(tmp_path: Path) -> None:
    if shutil.which("man") is None or shutil.which("groff") is None:
        pytest.skip("not tested: man/groff not installed (scripts/install-test-deps)")
    r = run_mamori("man")
    assert r.returncode == 0, r.stderr
    assert r.stdout == (SHARE / SHIPPED["man"]).read_text(encoding="utf-8")
    page = tmp_path / "mamori.1"
    page.write_text(r.stdout, encoding="utf-8")
    groff = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(page)],
                           capture_output=True, text=True, timeout=60, check=False)
    assert groff.returncode == 0 and groff.stderr == "", groff.stderr
    env = {"MANPAGER": "cat", "PAGER": "cat", "MANWIDTH": "100", "PATH": "/usr/bin:/bin",
           "LC_ALL": "C.UTF-8"}
    shown = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True,
                           timeout=60, check=False, env=env)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    for cmd in walk(ROOT)[1:]:
        assert "mamori " + " ".join(cmd.path) + " [OPTIONS]" in text, cmd.path
    for expected in ("--format", "table|json|markdown|html|sarif", "EXIT STATUS", "守り"):
        assert expected in text


def _bash_complete(script: Path, *words: str) -> list[str]:
    """COMPREPLY of the shipped bash completion for the command line ``words`` (the last one
    is the word being completed)."""
    quoted = " ".join(f"'{w}'" for w in words)
    r = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c",
         f'source "$1"; COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; _mamori; '
         'printf "%s\\n" "${COMPREPLY[@]}"; complete -p mamori', "_", str(script)],
        capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 0, r.stderr
    *replies, registered = r.stdout.splitlines()
    assert registered == "complete -o default -F _mamori mamori"
    return [w for w in replies if w]


def test_bash_completes_commands_options_and_choices(tmp_path: Path) -> None:
    r = run_mamori("completion", "bash")
    assert r.returncode == 0, r.stderr
    script = tmp_path / "mamori.bash"
    script.write_text(r.stdout, encoding="utf-8")
    assert _bash_complete(script, "mamori", "sc") == ["scan"]
    assert _bash_complete(script, "mamori", "scan", "--fo") == ["--format"]
    assert _bash_complete(script, "mamori", "scan", "10.0.0.1", "--format", "") == \
        ["table", "json", "markdown", "html", "sarif"]
    assert _bash_complete(script, "mamori", "history", "-f", "") == ["table", "json"]
    assert _bash_complete(script, "mamori", "checks", "l") == ["list"]
    assert "--lang" in _bash_complete(script, "mamori", "checks", "list", "--")
    assert _bash_complete(script, "mamori", "scan", "--output", "") == []  # file names
    assert _bash_complete(script, "mamori", "completion", "--h") == ["--help"]


@pytest.mark.parametrize(("shell", "check"), [("zsh", ["zsh", "-n"]),
                                              ("fish", ["fish", "--no-execute"])])
def test_zsh_and_fish_scripts_parse(shell: str, check: list[str], tmp_path: Path) -> None:
    r = run_mamori("completion", shell)
    assert r.returncode == 0, r.stderr
    assert r.stdout == (SHARE / SHIPPED[shell]).read_text(encoding="utf-8")
    assert "--format" in r.stdout or "-l format" in r.stdout
    if shutil.which(check[0]) is None:
        pytest.skip(f"not tested: {check[0]} not installed")
    script = tmp_path / f"mamori.{shell}"
    script.write_text(r.stdout, encoding="utf-8")
    parsed = subprocess.run([*check, str(script)], capture_output=True, text=True, timeout=30,
                            check=False)
    assert parsed.returncode == 0 and parsed.stderr == "", parsed.stderr


def test_an_unknown_shell_is_one_line_exit_2() -> None:
    r = run_mamori("completion", "tcsh")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("mamori: error: ")
    assert "'tcsh' is not one of 'bash', 'zsh', 'fish'" in r.stderr


def test_fish_completes_commands_options_and_choices() -> None:
    if shutil.which("fish") is None:
        pytest.skip("not tested: fish not installed")
    script = SHARE / SHIPPED["fish"]

    def complete(line: str) -> list[str]:
        r = subprocess.run(["fish", "--no-config", "-c", f"source {script}; complete -C '{line}'"],
                           capture_output=True, text=True, timeout=30, check=False)
        assert r.returncode == 0, r.stderr
        return [row.split("\t")[0] for row in r.stdout.splitlines()]

    assert complete("mamori sc") == ["scan"]
    assert complete("mamori scan --fo") == ["--format"]
    assert sorted(complete("mamori scan --format ")) == ["html", "json", "markdown", "sarif",
                                                         "table"]
    assert complete("mamori checks l") == ["list"]
