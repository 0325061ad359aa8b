"""The README's example runs as written and shows what it claims."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from heirline.core import effects as fx
from heirline.core.timers import HealthTimer

README = Path(__file__).resolve().parents[1] / "README.md"


def _commands(block: str) -> list[str]:
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]


def test_the_readme_starts_with_the_venv_the_demo_and_the_test_command() -> None:
    text = README.read_text(encoding="utf-8")
    venv, commands = (_commands(b) for b in re.findall(r"```sh\n(.*?)```", text, flags=re.S)[:2])
    assert venv == ["python3 -m venv .venv && . .venv/bin/activate"]
    assert commands == [
        "python -m pip install . && heirline demo",
        'python -m pip install "nox[uv]" && nox',
    ]
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    ci_commands = [line.strip() for line in ci.splitlines()]
    # CI runs exactly the README's venv step, then exactly its test command, and ends there.
    assert venv[0] in ci_commands
    assert commands[1] in ci_commands
    assert ci_commands.index(venv[0]) < ci_commands.index(commands[1])
    assert [line for line in ci_commands if line][-1] == commands[1]


def test_the_readme_names_what_the_test_command_needs() -> None:
    text = README.read_text(encoding="utf-8")
    assert "Node.js >= 18" in text
    assert "nodejs npm" in text  # how, as .ci/run installs it
    assert "uv python install" in text
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "install -y -qq nodejs" in ci
    assert "install -y -qq npm" in ci
    project = tomllib.loads((README.parent / "pyproject.toml").read_text(encoding="utf-8"))
    prefix = "Programming Language :: Python :: "
    pythons = [c.removeprefix(prefix) for c in project["project"]["classifiers"]]
    pythons = [p for p in pythons if re.fullmatch(r"3\.\d+", p)]
    assert f"CPython **{', '.join(pythons[:-1])} and {pythons[-1]}**" in text


def test_the_engine_example_runs_and_returns_what_the_comment_says() -> None:
    text = README.read_text(encoding="utf-8")
    (code,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)[:1]
    namespace: dict[str, object] = {}
    exec(compile(code, str(README), "exec"), namespace)
    effects = namespace["effects"]
    assert isinstance(effects, list)
    assert [type(e) for e in effects] == [fx.Registered, fx.OpenSocket, fx.Log, fx.StartTimer]
    assert effects[1] == fx.OpenSocket(account="acct", generation=1, attempt=1)
    assert effects[3] == fx.StartTimer(timer=HealthTimer(), deadline_ms=300_000)
    # The comment shows those two effects exactly as they print.
    comment = code.split("# -> ", 1)[1]
    assert repr(effects[1]) in comment
    assert repr(effects[3]) in comment
