"""Rendering a scenario's result: the text report (timeline, replies, checks) and its JSON.

``rich`` draws the tables and colours when it is installed (``heirline[cli]``);
without it the same report is plain text (:mod:`heirline.adapters.plain`).
"""

from __future__ import annotations

from heirline.adapters.scenario_check import ScenarioResult
from heirline.adapters.scenario_read import Scenario

try:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text
except ImportError:  # pragma: no cover - the tests run with rich; test_cli runs without it
    from heirline.adapters.plain import Console, Table, Text  # type: ignore[assignment]

__all__ = ["Console", "Table", "Text", "render"]


def _clock(sc: Scenario, ms: int) -> str:
    total = sc.clock_base_ms + ms
    h, rest = divmod(total // 1000, 3600)
    m, s = divmod(rest, 60)
    return f"{h % 24:02d}:{m:02d}:{s:02d}.{total % 1000:03d}"


def render(console: Console, result: ScenarioResult, *, timeline: bool = True) -> None:
    sc = result.scenario
    console.print(Text(f"{sc.name} ({result.runtime}) - {sc.path}", style="bold"))
    if sc.description:
        console.print(sc.description)
    if timeline:
        for e in result.timeline:
            who = "" if e.generation is None else f"g{e.generation}"
            style = "cyan" if e.level == "note" else ("yellow" if e.level == "warning" else "")
            console.print(Text(f"{_clock(sc, e.at_ms)}  {who:<3} {e.message}", style=style))
    replies = Table(title="Replies", title_justify="left")
    for column in ("reply", "outcome", "via", "generation", "reason"):
        replies.add_column(column, overflow="fold")
    for r, o, v, g, why in result.outcome_rows():
        style = "green" if o == "delivered" else "red"
        replies.add_row(r, Text(o, style=style), v or "", "" if g is None else str(g), why)
    checks = Table(title="Expectations and invariants", title_justify="left")
    checks.add_column("check", overflow="fold")
    checks.add_column("held")
    checks.add_column("detail", overflow="fold")
    for c in result.checks:
        checks.add_row(c.name, Text("yes" if c.ok else "NO", "green" if c.ok else "red"), c.detail)
    console.print(replies)
    console.print(checks)
    if result.error:
        console.print(Text(f"scenario did not finish: {result.error}", style="bold red"))
    verdict = "every expectation held" if result.ok else "an expectation FAILED"
    console.print(
        Text(
            f"{verdict} ({result.transmissions} transmissions, {result.wall_s:.2f}s)",
            style="bold green" if result.ok else "bold red",
        )
    )
