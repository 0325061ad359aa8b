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


def test_the_licence_is_an_spdx_expression_with_its_file_installed() -> None:
    assert PROJECT["license"] == "MIT"
    assert PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n\nCopyright (c) 2026 the heirline authors\n")
    meta = importlib.metadata.metadata("heirline")
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    # PEP 639: no licence classifier next to an expression (setuptools refuses both).
    assert not [c for c in PROJECT["classifiers"] if c.startswith("License ::")]
    files = importlib.metadata.files("heirline") or []
    installed = [f for f in files if f.name == "LICENSE" and ".dist-info" in str(f)]
    assert len(installed) == 1
    assert installed[0].read_text(encoding="utf-8") == text


def test_the_node_package_carries_the_same_licence() -> None:
    node = ROOT / "bindings" / "node"
    assert (node / "LICENSE").read_text("utf-8") == (ROOT / "LICENSE").read_text("utf-8")
    assert json.loads((node / "package.json").read_text("utf-8"))["license"] == "MIT"


def test_the_project_names_its_home_and_says_what_it_is() -> None:
    home = "https://github.com/heirline/heirline"
    urls = PROJECT["urls"]
    assert urls["Homepage"] == home
    assert urls["Changelog"] == f"{home}/blob/main/CHANGELOG.md"
    assert all(u.startswith(home) for u in urls.values())
    assert {"whatsapp", "baileys", "sans-io"} <= set(PROJECT["keywords"])
    assert "Typing :: Typed" in PROJECT["classifiers"]
    meta = importlib.metadata.metadata("heirline")
    assert f"Homepage, {home}" in (meta.get_all("Project-URL") or [])
