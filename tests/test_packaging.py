"""Packaging: the PyPI metadata in pyproject.toml and scripts/install's refusals.

scripts/check-install (run by scripts/test before pytest, because pip needs the package index)
proves the real thing: sdist and wheel built and twine-checked, the wheel and the checkout
installed with Debian's /usr/bin/python3, `mamori check` and a loopback scan run from them. Here:
what needs no index, each refusal one line on stderr with nothing installed or removed.
"""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "scripts" / "install"


def _project() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        project: dict[str, object] = tomllib.load(f)["project"]
    return project


def test_pyproject_has_the_metadata_pypi_shows() -> None:
    project = _project()
    classifiers = project["classifiers"]
    assert isinstance(classifiers, list)
    for wanted in (
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Operating System :: POSIX :: Linux",
        "Operating System :: MacOS",
        "Environment :: Console",
        "Topic :: Security",
        "Topic :: System :: Networking :: Monitoring",
        "Development Status :: 3 - Alpha",
    ):
        assert wanted in classifiers
    assert project["requires-python"] == ">=3.11"  # the oldest, tested by scripts/check-install
    urls = project["urls"]
    assert isinstance(urls, dict)
    assert set(urls) >= {"Homepage", "Source", "Issues", "Documentation"}
    assert all(str(u).startswith("https://") for u in urls.values())
    assert project["keywords"] and project["authors"] and project["maintainers"]
    assert project["readme"] == "README.md" and project["description"]


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(INSTALL), *map(str, args)], capture_output=True, text=True, timeout=60
    )


def _fake_python(tmp_path: Path, body: str) -> Path:
    """A python3 stand-in: `body` is the shell that answers scripts/install's probes."""
    fake = tmp_path / "python3"
    fake.write_text(f"#!/bin/sh\n{body}\n")
    fake.chmod(0o755)
    return fake


def test_install_without_python3_venv_says_so_in_one_line(tmp_path: Path) -> None:
    # Debian's python3 without the python3-venv package: `import ensurepip` fails.
    fake = _fake_python(
        tmp_path,
        'case "$*" in *ensurepip*) exit 1 ;; esac\nexec /usr/bin/python3 "$@"',
    )
    result = _run("--python", fake, "--prefix", tmp_path / "opt", "--bin-dir", tmp_path / "bin")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "install python3-venv" in result.stderr
    assert not (tmp_path / "opt").exists() and not (tmp_path / "bin").exists()


def test_install_refuses_a_python_older_than_3_11(tmp_path: Path) -> None:
    fake = _fake_python(
        tmp_path, 'case "$*" in *version_info*) exit 1 ;; *platform*) echo 3.9.2 ;; esac'
    )
    result = _run("--python", fake, "--prefix", tmp_path / "opt", "--bin-dir", tmp_path / "bin")
    assert result.returncode == 1
    assert result.stderr == (
        f"mamori install: error: {fake} is Python 3.9.2; mamori needs 3.11 or newer\n"
    )
    assert not (tmp_path / "opt").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--frobnicate"], "unknown argument: --frobnicate"),
        (["--prefix"], "--prefix needs a value"),
        (["--wheel", ""], "--wheel needs a value"),
    ],
)
def test_install_bad_arguments_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = _run(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("mamori install: error: ")
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_install_never_replaces_a_foreign_mamori_command(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mamori").write_text("#!/bin/sh\necho someone else's\n")
    result = _run("--prefix", tmp_path / "opt", "--bin-dir", bin_dir)
    assert result.returncode == 1
    assert "is not a link to" in result.stderr
    assert (bin_dir / "mamori").read_text() == "#!/bin/sh\necho someone else's\n"
    assert not (tmp_path / "opt").exists()


def test_install_never_takes_over_an_existing_directory(tmp_path: Path) -> None:
    prefix = tmp_path / "opt"
    prefix.mkdir()
    (prefix / "data").write_text("keep")
    result = _run("--prefix", prefix, "--bin-dir", tmp_path / "bin")
    assert result.returncode == 1
    assert "is not a mamori install" in result.stderr
    assert (prefix / "data").read_text() == "keep"


def test_uninstall_removes_only_what_install_made(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data").write_text("keep")
    result = _run("--uninstall", "--prefix", foreign, "--bin-dir", tmp_path / "bin")
    assert result.returncode == 1
    assert "not a mamori install" in result.stderr
    assert (foreign / "data").read_text() == "keep"

    # What scripts/install leaves: a venv with its marker and a link to its bin/mamori.
    prefix = tmp_path / "opt"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (prefix / ".mamori-install").write_text("/usr/bin/python3\n")
    (prefix / "bin" / "mamori").write_text("")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mamori").symlink_to(prefix / "bin" / "mamori")
    (bin_dir / "other").symlink_to(prefix / "bin" / "mamori")
    result = _run("--uninstall", "--prefix", prefix, "--bin-dir", bin_dir)
    assert result.returncode == 0, result.stderr
    assert not prefix.exists() and not (bin_dir / "mamori").is_symlink()
    assert (bin_dir / "other").is_symlink()  # only the link named mamori is install's
    # Idempotent: nothing left to remove is not an error.
    assert _run("--uninstall", "--prefix", prefix, "--bin-dir", bin_dir).returncode == 0
