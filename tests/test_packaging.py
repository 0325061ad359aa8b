"""What a user installs: one version, the licence, the supported Pythons, and nox's guards.

The version and licence are read from the *installed* distribution's metadata, so
these tests check what pip built from pyproject.toml, not only the source tree.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import tomllib
from pathlib import Path

import heirline.core
from heirline.adapters import stdio

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]


def test_the_version_has_one_source_and_the_installed_package_reports_it() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", heirline.core.__version__)
    assert "version" not in PROJECT
    assert PROJECT["dynamic"] == ["version"]
    dynamic = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "heirline.core.__version__"}
    assert importlib.metadata.version("heirline") == heirline.core.__version__
    assert stdio.version() == heirline.core.__version__


def test_the_node_package_has_the_same_version() -> None:
    package = json.loads((ROOT / "bindings" / "node" / "package.json").read_text("utf-8"))
    assert package["version"] == heirline.core.__version__


def test_the_protocol_doc_shows_the_current_version_in_the_hello_answer() -> None:
    doc = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    assert re.findall(r'"heirline":"([^"]+)"', doc) == [heirline.core.__version__]
