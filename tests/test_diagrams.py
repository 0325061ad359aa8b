"""The checked-in diagrams match the machine declarations; the renderer writes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from heirline.adapters.diagrams import REGENERATE, SPECS, diagram_path, main, render_all

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_checked_in_diagram_is_up_to_date(name: str) -> None:
    path = diagram_path(DOCS, name)
    assert path.exists(), f"{path} is missing; regenerate with `{REGENERATE}` from the repo root"
    assert path.read_text(encoding="utf-8") == SPECS[name].mermaid(), (
        f"{path.relative_to(ROOT)} is out of date with the {name!r} machine; "
        f"regenerate with `{REGENERATE}` from the repo root"
    )


def test_lifecycle_is_among_the_rendered_machines() -> None:
    assert SPECS["lifecycle"].name == "lifecycle"


def test_render_all_writes_one_file_per_spec(tmp_path: Path) -> None:
    written = render_all(tmp_path)
    assert written == [tmp_path / "diagrams" / f"{name}.mmd" for name in SPECS]
    for name, path in zip(SPECS, written, strict=True):
        assert path.read_text(encoding="utf-8") == SPECS[name].mermaid()


def test_main_regenerates_into_the_given_docs_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--docs", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [str(tmp_path / "diagrams" / f"{name}.mmd") for name in SPECS]
