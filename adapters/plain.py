"""Plain-text stand-ins for the few ``rich`` names the CLI's reports use.

``rich`` is an optional extra (``heirline[cli]``): without it, ``heirline demo``
and ``heirline run`` print the same report without colours, through these
classes (``Console.print``, ``Table.add_column`` / ``add_row``, ``Text`` with
``append``). Styles are accepted and ignored; lines wrap at ``width`` (80).
"""

from __future__ import annotations

import sys
import textwrap
from typing import IO

__all__ = ["Console", "Table", "Text"]


class Text:
    """A line of text; ``style`` is ignored."""

    def __init__(self, text: str = "", style: str = "") -> None:
        self.plain = text

    def append(self, text: str, style: str = "") -> None:
        self.plain += text

    def __str__(self) -> str:
        return self.plain


class Table:
    """A titled table printed as aligned columns, its widest cells wrapped to fit."""

    def __init__(self, title: str = "", title_justify: str = "left") -> None:
        self.title = title
        self.columns: list[str] = []
        self.rows: list[list[str]] = []

    def add_column(self, header: str, overflow: str = "fold") -> None:
        self.columns.append(header)

    def add_row(self, *cells: object) -> None:
        self.rows.append([str(cell) for cell in cells])

    def lines(self, width: int = 80) -> list[str]:
        rows = [self.columns, *self.rows]
        n = len(self.columns)
        widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(n)]
        # Narrow the widest column, a column at a time, until the row fits (2 between).
        while sum(widths) + 2 * (n - 1) > width and max(widths) > 8:
            widths[widths.index(max(widths))] -= 1
        out = [self.title] if self.title else []
        for row in rows:
            cells = [
                textwrap.wrap(cell, w, break_on_hyphens=False) or [""]
                for cell, w in zip(row, widths, strict=False)
            ]
            for k in range(max(len(c) for c in cells)):
                parts = [
                    (c[k] if k < len(c) else "").ljust(w)
                    for c, w in zip(cells, widths, strict=True)
                ]
                out.append("  ".join(parts).rstrip())
        return out


class Console:
    """Prints :class:`Text`, :class:`Table` or strings to ``file``, wrapped to ``width``.

    Colour options are ignored.
    """

    def __init__(
        self,
        file: IO[str] | None = None,
        no_color: bool = True,
        color_system: str | None = None,
        highlight: bool = False,
        width: int | None = None,
    ) -> None:
        self.file = file
        self.width = width or 80

    def print(self, item: object = "", overflow: str = "fold") -> None:
        if isinstance(item, Table):
            lines = item.lines(self.width)
        else:
            lines = [
                part
                for line in str(item).splitlines() or [""]
                for part in (
                    [line]
                    if len(line) <= self.width
                    else textwrap.wrap(line, self.width, break_on_hyphens=False)
                )
            ]
        for line in lines:
            print(line, file=self.file)
        (self.file or sys.stdout).flush()  # a timeline streams: each line out when printed
