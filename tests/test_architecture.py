"""docs/architecture.md's module map lists exactly the modules that exist, and each adapter's
imports as the code has them; the core imports nothing outside itself and the stdlib.

This reads the source; what a fresh interpreter actually loads for ``import
heirline.core.engine`` (no asyncio, logging, transitions, six) is tests/test_imports.py."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
MAP = DOC.split("## Module map", 1)[1].split("\n## ", 1)[0]


def _modules(package: str) -> set[str]:
    return {p.stem for p in (ROOT / package).glob("*.py") if p.stem != "__init__"}


def _imports(path: Path) -> set[str]:
    """Every heirline module ``path`` imports, anywhere in it (lazy imports too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module in ("heirline.adapters", "heirline.core"):
                found |= {f"{node.module}.{a.name}" for a in node.names}
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def _table() -> dict[str, set[str]]:
    rows = re.findall(r"^\| `(\w+)` \| .* \| (.*) \|$", MAP, flags=re.M)
    return {module: set(re.findall(r"`(\w+)`", deps)) for module, deps in rows}


def test_the_adapter_table_lists_every_adapter_module_and_its_imports() -> None:
    table = _table()
    assert set(table) == _modules("adapters")
    for module, listed in table.items():
        imported = {
            name.split(".")[2]
            for name in _imports(ROOT / "adapters" / f"{module}.py")
            if name.startswith("heirline.adapters.")
        } - {module}
        assert listed == imported, f"docs/architecture.md, adapter {module}"


def test_the_core_paragraph_names_every_core_module() -> None:
    core = MAP.split("Adapters (", 1)[0]
    named = set(re.findall(r"`(\w+)`", core)) - {"heirline"}
    assert named == _modules("core")


def test_the_core_imports_only_the_standard_library_and_itself() -> None:
    for module in sorted(_modules("core")):
        for name in _imports(ROOT / "core" / f"{module}.py"):
            top = name.split(".")[0]
            if top == "heirline":
                assert name.startswith("heirline.core"), f"core/{module}.py imports {name}"
            else:
                assert top in sys.stdlib_module_names or top == "__future__", (module, name)
