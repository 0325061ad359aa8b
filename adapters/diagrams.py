"""Render every declared machine to ``docs/diagrams/<name>.mmd`` (mermaid ``stateDiagram-v2``).

Run ``python -m heirline.adapters.diagrams`` from the repository root (or pass
``--docs DIR``) after changing a machine; a test fails while a checked-in
diagram differs from its declaration. The rendering is ``transitions``'
mermaid ``GraphMachine``: a development tool, so ``transitions`` is imported
here, when a diagram is drawn, and never by the core (install the ``dev`` or
``test`` extra to draw).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from heirline.core.delivery import DELIVERY, ReplyState, ReplyTrigger
from heirline.core.lifecycle import LIFECYCLE, State, Trigger
from heirline.core.machine import MachineSpec

#: A machine declaration heirline draws.
Spec = MachineSpec[State, Trigger] | MachineSpec[ReplyState, ReplyTrigger]

SPECS: dict[str, Spec] = {"lifecycle": LIFECYCLE, "delivery": DELIVERY}
"""Every machine whose diagram is checked into ``docs/diagrams/``, by file stem."""


def mermaid(spec: Spec) -> str:
    """The ``stateDiagram-v2`` rendering of ``spec``, via ``transitions``' mermaid GraphMachine."""
    from transitions.extensions.diagrams import GraphMachine

    machine = GraphMachine(
        states=[s.value for s in spec.states],
        transitions=[
            {"trigger": t.trigger.value, "source": t.source.value, "dest": t.dest.value}
            for t in spec.transitions
        ],
        initial=spec.initial.value,
        auto_transitions=False,
        graph_engine="mermaid",
        title=spec.name,
    )
    text: str = machine.get_graph().draw(None)
    return text.rstrip() + "\n"


REGENERATE = "python -m heirline.adapters.diagrams"
"""The command that rewrites the diagrams (run from the repository root)."""


def diagram_path(docs_dir: Path, name: str) -> Path:
    """Where machine ``name``'s diagram lives under ``docs_dir``."""
    return docs_dir / "diagrams" / f"{name}.mmd"


def render_all(docs_dir: Path) -> list[Path]:
    """Write every spec's mermaid text to ``docs_dir/diagrams/<name>.mmd``; return the paths."""
    written: list[Path] = []
    for name, spec in SPECS.items():
        path = diagram_path(docs_dir, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(mermaid(spec), encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: regenerate the diagrams and list what was written."""
    parser = argparse.ArgumentParser(prog=REGENERATE, description=__doc__)
    parser.add_argument("--docs", type=Path, default=Path("docs"), help="docs directory")
    args = parser.parse_args(argv)
    for path in render_all(args.docs):
        print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
