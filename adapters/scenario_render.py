"""Rendering a scenario's result: the text report (timeline, replies, checks) and its JSON.

``rich`` draws the tables and colours when it is installed (``heirline[cli]``);
without it the same report is plain text (:mod:`heirline.adapters.plain`).

The timeline is printed one entry at a time (:class:`Stream`), as the run
produces it, so ``heirline demo`` and ``heirline run --real`` show what happens
while it happens. Controllers are named ``g1``, ``g2``, ... (their generation)
everywhere, and a long message wraps under itself, so every line fits the
console's width (80 columns when it is not a terminal).
"""

from __future__ import annotations

import textwrap
from io import TextIOBase
from typing import Any, Final, TextIO, cast

from heirline.adapters.gateway import TimelineEntry
from heirline.adapters.scenario_check import ScenarioResult
from heirline.adapters.scenario_doc import clock_text
from heirline.adapters.script import At, Until

try:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text
except ImportError:  # pragma: no cover - the tests run with rich; test_cli runs without it
    from heirline.adapters.plain import Console, Table, Text  # type: ignore[assignment]

__all__ = [
    "Console",
    "Stream",
    "Table",
    "Text",
    "controller_name",
    "make_console",
    "render",
    "render_tables",
    "timeline_lines",
]

#: Columns before a timeline message: "12:02:27.820  g1  ".
_INDENT: Final = 18

_STYLE: Final = {
    "note": "cyan",
    "debug": "dim",
    "warning": "yellow",
    "error": "bold red",
    "reply_delivered": "bold green",
    "reply_refused": "bold red",
    "reply_failed": "bold red",
    "reply_unknown": "bold red",
}


def make_console(out: TextIOBase | TextIO, color: bool, *, stdout: bool) -> Console:
    """A console on ``out``: the terminal's width on stdout, else 80 columns."""
    return Console(
        file=cast(TextIO, out),
        no_color=not color,
        color_system="auto" if color else None,
        highlight=False,
        width=None if stdout else 80,
    )


def controller_name(generation: int | None) -> str:
    """``g1``, ``g2``, ... for controller generations; blank when an entry has none."""
    return "" if generation is None else f"g{generation}"


def timeline_lines(clock_base_ms: int, entry: TimelineEntry, width: int = 80) -> list[str]:
    """One entry as lines of at most ``width`` columns; a long message wraps under itself."""
    clock = clock_text((clock_base_ms + entry.at_ms) % 86_400_000)
    head = f"{clock}  {controller_name(entry.generation):<3} "
    wrapped = textwrap.wrap(entry.message, max(20, width - _INDENT), break_on_hyphens=False) or [""]
    return [head + wrapped[0], *(" " * _INDENT + more for more in wrapped[1:])]


class Stream:
    """Prints timeline entries as they come, and what the run waits for in between.

    ``progress``: ``"live"`` shows the wait on one transient status line (rich on a
    terminal), ``"lines"`` prints it as a dim line, ``None`` not at all.
    """

    def __init__(self, console: Console, clock_base_ms: int, progress: str | None = None) -> None:
        self.console = console
        self.clock_base_ms = clock_base_ms
        self.progress = progress
        self.printed = 0  # entries printed
        self._status: Any = None  # rich's Status (progress "live" is only chosen with rich)

    @property
    def width(self) -> int:
        return int(getattr(self.console, "width", 80) or 80)

    def entry(self, entry: TimelineEntry) -> None:
        style = _STYLE.get(entry.code) or _STYLE.get(entry.level, "")
        for line in timeline_lines(self.clock_base_ms, entry, self.width):
            self.console.print(Text(line, style=style), overflow="fold")
        self.printed += 1

    def wait(self, step: At | Until) -> None:
        if self.progress is None:
            return
        if isinstance(step, At):
            clock = clock_text((self.clock_base_ms + step.ms) % 86_400_000)
            what = f"waiting for {step.what or 'the next step'} at {clock}"
        else:
            what = f"waiting until {step.what}"
        if self.progress == "lines":
            for line in textwrap.wrap(what, self.width - _INDENT) or [""]:
                self.console.print(Text(" " * _INDENT + line, style="dim"))
            return
        if self._status is None:
            self._status = self.console.status(what)
            self._status.start()
        else:
            self._status.update(what)

    def close(self) -> None:
        """Take the live status line down (idempotent)."""
        if self._status is not None:
            self._status.stop()
            self._status = None


def render_tables(console: Console, result: ScenarioResult) -> None:
    """The replies, the checks and the verdict (after the timeline)."""
    replies = Table(title="Replies", title_justify="left")
    for column in ("reply", "outcome", "via", "reason"):
        replies.add_column(column, overflow="fold")
    for r, o, v, g, why in result.outcome_rows():
        style = "green" if o == "delivered" else "red"
        via = "" if g is None else f"{v} {controller_name(g)}"
        replies.add_row(r, Text(o, style=style), via, why)
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


def render_head(console: Console, result_name: str, runtime: str, path: str, text: str) -> None:
    console.print(Text(f"{result_name} ({runtime}) - {path}", style="bold"), overflow="fold")
    if text:
        console.print(text, overflow="fold")


def render(console: Console, result: ScenarioResult, *, timeline: bool = True) -> None:
    """The whole report of a finished run (timeline, tables, verdict)."""
    sc = result.scenario
    render_head(console, sc.name, result.runtime, sc.path, sc.description)
    if timeline:
        stream = Stream(console, sc.clock_base_ms)
        for e in result.timeline:
            stream.entry(e)
    render_tables(console, result)
