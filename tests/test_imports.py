"""What importing heirline costs: the core loads the standard library only, and the package
installs with no runtime dependency (the CLI runs without its ``cli`` extra)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Modules the pure core must never load (the issue's list, and the test-only beartype).
FORBIDDEN = ("asyncio", "logging", "transitions", "six", "beartype")

_PROBE = """
import json, sys
before = set(sys.modules)
import heirline.core.engine
added = sorted(set(sys.modules) - before)
print(json.dumps({"before": len(before), "after": len(sys.modules), "added": added}))
"""


def _fresh(code: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter (-I: no site customisation, no user path)."""
    proc = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    result = json.loads(proc.stdout)
    assert isinstance(result, dict)
    return result


def test_importing_the_engine_loads_only_the_standard_library() -> None:
    probe = _fresh(_PROBE)
    added = probe["added"]
    assert isinstance(added, list)
    tops = {name.split(".")[0] for name in added}
    assert not tops & set(FORBIDDEN), sorted(tops & set(FORBIDDEN))
    foreign = sorted(t for t in tops if t != "heirline" and t not in sys.stdlib_module_names)
    assert foreign == [], f"heirline.core.engine loads non-stdlib modules: {foreign}"
    heirline = [n for n in added if n.startswith("heirline.")]
    assert all(n.startswith("heirline.core") for n in heirline), heirline
    # The count, for the record (issue 11's closing note): before the reshape the same
    # import loaded asyncio, logging, transitions and six, 136 modules in all.
    print(f"import heirline.core.engine: {probe['before']} -> {probe['after']} modules")
    assert len(added) < 100


def test_the_package_has_no_runtime_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["dependencies"] == []
    extras = project["optional-dependencies"]
    test_only = {"beartype", "transitions", "jsonschema"}
    named = {
        extra: {req.split(">")[0].split("=")[0].split("<")[0].strip() for req in reqs}
        for extra, reqs in extras.items()
    }
    assert test_only <= named["test"]
    assert all(not test_only & names for extra, names in named.items() if extra != "test")
    assert named["cli"] == {"rich"}


def test_the_cli_runs_without_rich(tmp_path: Path) -> None:
    """``pip install heirline && heirline demo`` (no extra): plain text, same verdicts."""
    code = (
        "import sys; sys.modules['rich'] = None\n"  # any `import rich...` now fails
        "from heirline.adapters.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    run = [sys.executable, "-I", "-c", code]
    demo = subprocess.run(
        [*run, "demo", "--speed", "40"], capture_output=True, text=True, timeout=120, check=False
    )
    assert demo.returncode == 0, demo.stderr
    assert "every promise held" in demo.stdout
    assert "Promises" in demo.stdout
    assert "\x1b[" not in demo.stdout
    scenario = subprocess.run(
        [*run, "run", str(ROOT / "examples" / "relink.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert scenario.returncode == 0, scenario.stderr
    assert "refused" in scenario.stdout
    assert "every expectation held" in scenario.stdout
