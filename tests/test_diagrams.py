"""The checked-in diagrams match the machine declarations; the renderer draws every declared
transition and nothing else; ``transitions`` is loaded only when a diagram is drawn."""

from __future__ import annotations

import re
import subprocess
import sys
from enum import StrEnum
from pathlib import Path

import pytest

from heirline.adapters.diagrams import (
    REGENERATE,
    SPECS,
    Spec,
    diagram_path,
    main,
    mermaid,
    render_all,
)
from heirline.core.delivery import DELIVERY
from heirline.core.lifecycle import LIFECYCLE
from heirline.core.machine import MachineSpec, Transition

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EDGE = re.compile(r"^  (\w+) --> (\w+): (.+)$")


def edges(text: str) -> set[tuple[str, str, str]]:
    """The (source, trigger, dest) edges a mermaid state diagram draws."""
    found: set[tuple[str, str, str]] = set()
    for line in text.splitlines():
        match = EDGE.match(line)
        if match:
            source, dest, triggers = match.groups()
            found |= {(source, t.strip(), dest) for t in triggers.split("|")}
    return found


def declared(spec: Spec) -> set[tuple[str, str, str]]:
    return {(t.source.value, t.trigger.value, t.dest.value) for t in spec.transitions}


def test_the_rendered_machines_are_lifecycle_and_delivery() -> None:
    assert SPECS == {"lifecycle": LIFECYCLE, "delivery": DELIVERY}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_checked_in_diagram_is_up_to_date(name: str) -> None:
    path = diagram_path(DOCS, name)
    assert path.exists(), f"{path} is missing; regenerate with `{REGENERATE}` from the repo root"
    assert path.read_text(encoding="utf-8") == mermaid(SPECS[name]), (
        f"{path.relative_to(ROOT)} is out of date with the {name!r} machine; "
        f"regenerate with `{REGENERATE}` from the repo root"
    )


@pytest.mark.parametrize("name", sorted(SPECS))
def test_a_diagram_draws_every_declared_transition_and_nothing_else(name: str) -> None:
    spec = SPECS[name]
    text = mermaid(spec)
    assert text.startswith(f"---\n{name}\n---\nstateDiagram-v2\n")
    assert text.endswith(f"  [*] --> {spec.initial.value}\n")
    assert edges(text) == declared(spec)
    for state in spec.states:
        assert f'  state "{state.value}" as {state.value}\n' in text


def test_the_shutdown_edges_are_in_the_delivery_diagram() -> None:
    drawn = edges(diagram_path(DOCS, "delivery").read_text(encoding="utf-8"))
    assert {
        ("pending", "shutdown", "failed"),
        ("waiting", "shutdown", "failed"),
        ("waiting", "shutdown_unclear", "unknown"),
        ("in_flight", "shutdown_unclear", "unknown"),
    } <= drawn


class Lamp(StrEnum):
    OFF = "off"
    ON = "on"


class Flip(StrEnum):
    FLIP = "flip"


def test_any_spec_can_be_drawn() -> None:
    spec = MachineSpec(
        name="lamp",
        states=(Lamp.OFF, Lamp.ON),
        initial=Lamp.OFF,
        terminal=frozenset(),
        triggers=(Flip.FLIP,),
        transitions=(
            Transition(Lamp.OFF, Flip.FLIP, Lamp.ON),
            Transition(Lamp.ON, Flip.FLIP, Lamp.OFF),
        ),
    )
    text = mermaid(spec)  # type: ignore[arg-type]
    assert text.startswith("---\nlamp\n---\nstateDiagram-v2\n")
    assert edges(text) == {("off", "flip", "on"), ("on", "flip", "off")}
    assert "[*] --> off" in text


def test_render_all_writes_one_file_per_spec(tmp_path: Path) -> None:
    written = render_all(tmp_path)
    assert written == [tmp_path / "diagrams" / f"{name}.mmd" for name in SPECS]
    for name, path in zip(SPECS, written, strict=True):
        assert path.read_text(encoding="utf-8") == mermaid(SPECS[name])


def test_main_regenerates_into_the_given_docs_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--docs", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [str(tmp_path / "diagrams" / f"{name}.mmd") for name in SPECS]


def test_transitions_is_loaded_only_to_draw_a_diagram() -> None:
    """The core never imports it; the diagram module imports it when asked to draw."""
    probe = (
        "import sys\n"
        "import heirline.core.engine, heirline.core.machine, heirline.core.lifecycle\n"
        "import heirline.core.delivery, heirline.core.book, heirline.core.wire\n"
        "core = 'transitions' in sys.modules\n"
        "import heirline.adapters.diagrams as d\n"
        "imported = 'transitions' in sys.modules\n"
        "d.mermaid(d.SPECS['lifecycle'])\n"
        "print(core, imported, 'transitions' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split() == ["False", "False", "True"]
