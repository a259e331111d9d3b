"""The sdist and the wheel, built from this checkout, carry what a user and a packager need.

Both archives are built once per module with ``python -m build --no-isolation`` into a temporary
folder, so the test uses the ``build`` and ``hatchling`` from the dev extra and needs no network.
The expected files are computed from the source tree: a new subpackage that the build
configuration misses fails here, not on PyPI.
"""

from __future__ import annotations

import configparser
import email.parser
import importlib.util
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest

# The build runs in a subprocess (about 2 s), which the "slow" marker covers.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "agent_sessions"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _source_version() -> str:
    text = (PACKAGE / "_version.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE)
    assert match is not None, "agent_sessions/_version.py has no __version__ line"
    return match.group(1)


def _source_modules() -> set[str]:
    return {
        path.relative_to(ROOT).as_posix()
        for path in PACKAGE.rglob("*.py")
        if "__pycache__" not in path.parts
    }


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder holding the sdist and the wheel, built once for this module."""
    for module in ("build", "hatchling"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed; pip install -e '.[dev]' brings it")
    out = tmp_path_factory.mktemp("dist")
    command = [sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel"]
    result = subprocess.run(
        [*command, "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert result.returncode == 0, f"build failed:\n{result.stdout}\n{result.stderr}"
    return out


@pytest.fixture(scope="module")
def wheel(dist: Path) -> Iterator[zipfile.ZipFile]:
    """The built wheel, open for reading."""
    (path,) = dist.glob("*.whl")
    with zipfile.ZipFile(path) as archive:
        yield archive


@pytest.fixture(scope="module")
def wheel_names(wheel: zipfile.ZipFile) -> set[str]:
    """Every file path inside the wheel."""
    return set(wheel.namelist())


@pytest.fixture(scope="module")
def dist_info(wheel_names: set[str]) -> str:
    """The name of the wheel's one ``.dist-info`` folder."""
    (folder,) = {name.split("/")[0] for name in wheel_names if ".dist-info/" in name}
    return folder


@pytest.fixture(scope="module")
def metadata(wheel: zipfile.ZipFile, dist_info: str) -> Message:
    """The wheel's METADATA, parsed as the email-style headers it is."""
    text = wheel.read(f"{dist_info}/METADATA").decode("utf-8")
    return email.parser.Parser().parsestr(text)


@pytest.fixture(scope="module")
def sdist_names(dist: Path) -> set[str]:
    """Every file path inside the sdist, relative to its top folder."""
    (path,) = dist.glob("*.tar.gz")
    with tarfile.open(path) as archive:
        names = archive.getnames()
    # Every member sits under one "agent_sessions-<version>/" folder.
    return {name.partition("/")[2] for name in names}


def test_build_writes_one_sdist_and_one_wheel(dist: Path) -> None:
    """One build produces exactly one ``.tar.gz`` and one ``.whl``, named for the version."""
    version = _source_version()
    assert sorted(path.name for path in dist.iterdir()) == [
        f"agent_sessions-{version}-py3-none-any.whl",
        f"agent_sessions-{version}.tar.gz",
    ]


def test_wheel_ships_every_module_of_the_source_tree(wheel_names: set[str]) -> None:
    """Every ``.py`` file under ``agent_sessions/`` in the checkout is inside the wheel."""
    modules = _source_modules()
    assert "agent_sessions/__main__.py" in modules
    assert modules - wheel_names == set()


def test_wheel_ships_the_type_marker(wheel_names: set[str]) -> None:
    """The wheel carries ``agent_sessions/py.typed``, so type checkers read our annotations."""
    assert "agent_sessions/py.typed" in wheel_names


def test_wheel_ships_the_license(wheel: zipfile.ZipFile, dist_info: str) -> None:
    """The MIT LICENSE is in the wheel's ``.dist-info/licenses/``, byte for byte."""
    shipped = wheel.read(f"{dist_info}/licenses/LICENSE")
    assert shipped == (ROOT / "LICENSE").read_bytes()
    assert shipped.startswith(b"MIT License")


def test_wheel_declares_the_console_script(wheel: zipfile.ZipFile, dist_info: str) -> None:
    """The wheel's entry points install ``agent-sessions`` as ``agent_sessions.cli:main``."""
    entry_points = configparser.ConfigParser()
    entry_points.read_string(wheel.read(f"{dist_info}/entry_points.txt").decode("utf-8"))
    assert dict(entry_points["console_scripts"]) == {"agent-sessions": "agent_sessions.cli:main"}


def test_metadata_names_version_license_and_python(metadata: Message) -> None:
    """METADATA has the source version, the SPDX license and pyproject's ``requires-python``."""
    assert metadata["Name"] == "agent-sessions"
    assert metadata["Version"] == _source_version()
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert metadata["Requires-Python"] == PYPROJECT["requires-python"]


def test_metadata_lists_the_classifiers_and_urls(metadata: Message) -> None:
    """METADATA carries every classifier and project URL that pyproject.toml declares."""
    assert sorted(metadata.get_all("Classifier", [])) == sorted(PYPROJECT["classifiers"])
    urls = dict(entry.split(", ", 1) for entry in metadata.get_all("Project-URL", []))
    assert urls == PYPROJECT["urls"]


def test_classifiers_start_at_requires_python_and_cover_this_python(metadata: Message) -> None:
    """The lowest Python classifier is the ``requires-python`` floor, and this Python is listed."""
    versions = [
        tuple(int(part) for part in value.rsplit(" :: ", 1)[1].split("."))
        for value in metadata.get_all("Classifier", [])
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", value)
    ]
    assert metadata["Requires-Python"] == ">={}.{}".format(*min(versions))
    assert sys.version_info[:2] in versions


def test_sdist_ships_the_sources_docs_and_license(sdist_names: set[str]) -> None:
    """The sdist has the package and py.typed, the docs, LICENSE, README, CHANGELOG, pyproject."""
    expected = {
        "agent_sessions/py.typed",
        "LICENSE",
        "README.md",
        "CHANGELOG.md",
        "pyproject.toml",
        *_source_modules(),
        *(path.relative_to(ROOT).as_posix() for path in (ROOT / "docs").glob("*.md")),
    }
    assert expected - sdist_names == set()
