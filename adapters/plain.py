"""Plain-text stand-ins for the few ``rich`` names the CLI's reports use.

``rich`` is an optional extra (``heirline[cli]``): without it, ``heirline demo``
and ``heirline run`` print the same report without colours, through these
classes (``Console.print``, ``Table.add_column`` / ``add_row``, ``Text`` with
``append``). Styles are accepted and ignored.
"""

from __future__ import annotations

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
    """A titled table printed as aligned columns."""

    def __init__(self, title: str = "", title_justify: str = "left") -> None:
        self.title = title
        self.columns: list[str] = []
        self.rows: list[list[str]] = []

    def add_column(self, header: str, overflow: str = "fold") -> None:
        self.columns.append(header)

    def add_row(self, *cells: object) -> None:
        self.rows.append([str(cell) for cell in cells])

    def lines(self) -> list[str]:
        rows = [self.columns, *self.rows]
        widths = [
            max(len(row[i]) for row in rows if i < len(row)) for i in range(len(self.columns))
        ]
        out = [self.title] if self.title else []
        for row in rows:
            out.append(
                "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)).rstrip()
            )
        return out


class Console:
    """Prints :class:`Text`, :class:`Table` or strings to ``file``; colour options are ignored."""

    def __init__(
        self,
        file: IO[str] | None = None,
        no_color: bool = True,
        color_system: str | None = None,
        highlight: bool = False,
        width: int | None = None,
    ) -> None:
        self.file = file

    def print(self, item: object = "", overflow: str = "fold") -> None:
        lines = item.lines() if isinstance(item, Table) else [str(item)]
        for line in lines:
            print(line, file=self.file)
