"""The README's example runs as written and shows what it claims."""

from __future__ import annotations

import re
from pathlib import Path

from heirline.core import effects as fx

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_starts_with_the_demo_and_the_test_command() -> None:
    text = README.read_text(encoding="utf-8")
    (block,) = re.findall(r"```sh\n(.*?)```", text, flags=re.S)[:1]
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == [
        "python -m pip install . && heirline demo",
        'python -m pip install "nox[uv]" && nox',
    ]
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert commands[1] in ci  # CI runs exactly the README's test command


def test_the_engine_example_runs_and_returns_what_the_comment_says() -> None:
    text = README.read_text(encoding="utf-8")
    (code,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)[:1]
    namespace: dict[str, object] = {}
    exec(compile(code, str(README), "exec"), namespace)
    effects = namespace["effects"]
    assert isinstance(effects, list)
    assert [type(e) for e in effects] == [fx.Registered, fx.OpenSocket, fx.Log, fx.StartTimer]
    assert effects[1] == fx.OpenSocket(account="acct", generation=1)
