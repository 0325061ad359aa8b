"""Render every declared machine to ``docs/diagrams/<name>.mmd`` (mermaid ``stateDiagram-v2``).

Run ``python -m heirline.adapters.diagrams`` from the repository root (or pass
``--docs DIR``) after changing a machine; a test fails while a checked-in
diagram differs from its declaration.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from heirline.core.delivery import DELIVERY
from heirline.core.lifecycle import LIFECYCLE
from heirline.core.machine import MachineSpec

SPECS: dict[str, MachineSpec] = {"lifecycle": LIFECYCLE, "delivery": DELIVERY}
"""Every machine whose diagram is checked into ``docs/diagrams/``, by file stem."""

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
        path.write_text(spec.mermaid(), encoding="utf-8")
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
