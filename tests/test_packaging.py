"""What a user installs: one version, the licence, the supported Pythons, and nox's guards.

The version and licence are read from the *installed* distribution's metadata, so
these tests check what pip built from pyproject.toml, not only the source tree.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

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


def _classifier_pythons() -> list[str]:
    prefix = "Programming Language :: Python :: "
    return [
        c.removeprefix(prefix)
        for c in PROJECT["classifiers"]
        if re.fullmatch(re.escape(prefix) + r"3\.\d+", c)
    ]


def _noxfile_constant(name: str) -> tuple[str, ...]:
    """A tuple constant of noxfile.py, read without importing nox."""
    import ast

    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == [name]:
            value = ast.literal_eval(node.value)
            assert isinstance(value, tuple)
            return tuple(str(v) for v in value)
    raise AssertionError(f"noxfile.py has no {name} = (...)")


def _noxfile_pythons() -> tuple[str, ...]:
    return _noxfile_constant("PYTHONS")


def test_the_tests_nox_runs_on_one_interpreter_only_exist() -> None:
    # A --deselect of a test that is not there is silently ignored: keep ONCE true.
    once = _noxfile_constant("ONCE")
    assert once
    for test in once:
        path, _, name = test.partition("::")
        assert re.search(rf"^def {re.escape(name)}\(", (ROOT / path).read_text("utf-8"), re.M), test


def test_requires_python_the_classifiers_and_nox_name_the_same_pythons() -> None:
    pythons = _classifier_pythons()
    assert pythons == list(_noxfile_pythons())
    minors = [int(p.split(".")[1]) for p in pythons]
    assert minors == list(range(minors[0], minors[0] + len(minors)))  # none left out
    assert PROJECT["requires-python"] == f">={pythons[0]}"
    assert f"py3{minors[0]}" == PYPROJECT["tool"]["ruff"]["target-version"]
    assert PYPROJECT["tool"]["mypy"]["python_version"] == pythons[0]
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in pythons


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


def test_the_changelog_keeps_an_unreleased_section_and_every_release() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "https://keepachangelog.com/en/1.1.0/" in text
    headings = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", text, flags=re.M)
    names = [name for name, _ in headings]
    assert names[0] == "Unreleased"
    assert "0.1.0" in names
    for name in names:  # every heading links somewhere
        assert re.search(rf"^\[{re.escape(name)}\]: https://github\.com/heirline/", text, re.M)
    released = [tuple(int(x) for x in n.split(".")) for n in names[1:]]
    assert released == sorted(released, reverse=True)
    assert all(date for _, date in headings[1:])


# ------------------------------------------------------------------------- nox


def _nox() -> list[str]:
    """The command that runs nox: the interpreter running the nox session, else this one."""
    python = os.environ.get("HEIRLINE_NOX_PYTHON")
    if python:
        return [python, "-m", "nox"]
    if importlib.util.find_spec("nox") is not None:
        return [sys.executable, "-m", "nox"]
    if "NOX_CURRENT_SESSION" in os.environ:
        pytest.fail("run by nox without HEIRLINE_NOX_PYTHON: the tests session must set it")
    pytest.skip("nox is not installed here (pip install -e '.[dev]')")


def _run_nox(
    *args: str, tmp_path: Path, path: str | None = None
) -> subprocess.CompletedProcess[str]:
    # CI=... would make nox error on a missing interpreter by itself: take it away, so
    # the noxfile's own setting is what is tested.
    env = {k: v for k, v in os.environ.items() if k != "CI" and not k.startswith("NOX_")}
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [*_nox(), "--noxfile", str(ROOT / "noxfile.py"), "--envdir", str(tmp_path), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_plain_nox_runs_the_tests_on_every_supported_python(tmp_path: Path) -> None:
    listed = _run_nox("--list", "--json", tmp_path=tmp_path)
    assert listed.returncode == 0, listed.stderr
    selected = {s["session"] for s in json.loads(listed.stdout)}
    expected = {f"tests-{p}" for p in _classifier_pythons()} | {"typecheck", "lint", "node"}
    assert selected == expected


def test_a_missing_interpreter_fails_nox_instead_of_being_skipped(tmp_path: Path) -> None:
    args = ("--sessions", "lint", "--force-python", "3.99", "--download-python", "never")
    failed = _run_nox(*args, tmp_path=tmp_path)
    assert failed.returncode == 1, failed.stderr
    assert "Session lint-3.99 failed: Python interpreter 3.99 not found" in failed.stderr
    # nox's own default outside CI, which the noxfile overrides: a skip and exit 0.
    skipped = _run_nox(*args, "--no-error-on-missing-interpreters", tmp_path=tmp_path)
    assert skipped.returncode == 0, skipped.stderr
    assert "Session lint-3.99 skipped" in skipped.stderr


def test_the_node_session_names_the_fix_for_a_node_that_is_too_old(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    for program, out in (("node", "v16.20.2"), ("npm", "8.19.4")):
        (fake / program).write_text(f"#!/bin/sh\necho {out}\n", encoding="utf-8")
        (fake / program).chmod(0o755)
    env_path = f"{fake}{os.pathsep}{os.environ.get('PATH', '')}"
    done = _run_nox("--sessions", "node", tmp_path=tmp_path / "envs", path=env_path)
    assert done.returncode == 1, done.stderr
    assert "needs Node.js >= 18 with npm, found node v16.20.2" in done.stderr
    assert "apt-get install nodejs npm" in done.stderr
