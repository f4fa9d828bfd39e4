"""Tables that stay readable in a narrow terminal: headers fold between words and are never cut, cells wrap,
and when even that does not fit, the least important columns go (and the table says which).

rich shrinks a table that is too wide by cutting every column with an ellipsis ("dimensi…", "selecti…");
``fit_table`` sets each column's minimum width to its header's longest word, lets cells fold, drops the
borders when the console is narrow, and drops the columns named droppable (last first) while the minimum
widths still do not fit.
"""

from __future__ import annotations

from typing import Sequence

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

__all__ = ["fit_table"]

_LONGEST_KEPT_WORD = 22


def _header_text(column) -> str:
    return str(getattr(column.header, "plain", column.header))


def _measure(table: Table, console: Console) -> Measurement:
    """The table's narrowest (every word whole) and natural widths, unbounded by the console."""
    return Measurement.get(console, console.options.update_width(100_000), table)


def _padding(table: Table, index: int) -> int:
    # As rich counts it when it lays columns out (pad_edge only changes where the edge padding is drawn).
    _top, right, _bottom, left = table.padding
    return left + right


def _widths(table: Table, console: Console, width: int) -> list[int] | None:
    """Content widths that fit ``width``: each column's minimum, the spare space shared in proportion to what
    each column would use beyond it; None when the minimums alone do not fit. (Fixed widths, because rich's own
    squeezing ignores the minimums.)"""
    options = console.options.update_width(100_000)
    mins = [c.min_width or 1 for c in table.columns]
    natural = [max([m] + [Measurement.get(console, options, cell).maximum for cell in [c.header, *c.cells]])
               for m, c in zip(mins, table.columns)]
    separators = (len(table.columns) - 1) if table.box else 0
    edges = 2 if table.box and table.show_edge else 0
    avail = width - separators - edges - sum(_padding(table, i) for i in range(len(table.columns)))
    if sum(mins) > avail:
        return None
    spare, want = avail - sum(mins), [n - m for n, m in zip(natural, mins)]
    if sum(want) <= spare:
        return natural
    return [m + (spare * w) // sum(want) for m, w in zip(mins, want)]


def fit_table(table: Table, console: Console, droppable: Sequence[str] = ()) -> Table:
    """``table`` made to fit ``console.width`` (changed in place and returned)."""
    width = console.width
    for column in table.columns:
        # Whole header words always; whole cell words up to a length (a timestamp may fold). A column the
        # caller marked no_wrap holds identifiers (a drill id): its words stay whole whatever their length.
        keep_whole = bool(column.no_wrap)
        words = _header_text(column).split() or [""]
        cell_words = [w for cell in column.cells for w in str(getattr(cell, "plain", cell)).split()]
        longest = max((len(w) for w in cell_words), default=0)
        column.min_width = max(column.min_width or 0, max(len(w) for w in words),
                               longest if keep_whole else min(_LONGEST_KEPT_WORD, longest))
        column.no_wrap = keep_whole
        column.overflow = "fold"
    if _measure(table, console).maximum <= width:
        return table
    # Borders cost three characters a column; in a narrow terminal the space is worth more: a rule under the
    # header, columns apart by their padding.
    table.box = box.SIMPLE_HEAD
    table.show_edge = False
    table.pad_edge = False
    widths = _widths(table, console, width)
    if widths is None:
        # Too narrow for whole cell words: cells fold, header words stay whole.
        for column in table.columns:
            if not column.no_wrap:
                column.min_width = max(len(w) for w in (_header_text(column).split() or [""]))
        widths = _widths(table, console, width)
    dropped = []
    for name in reversed(list(droppable)):
        if widths is not None:
            break
        column = next((c for c in table.columns if _header_text(c) == name), None)
        if column is not None:
            table.columns.remove(column)
            dropped.append(name)
            widths = _widths(table, console, width)
    for column, w in zip(table.columns, widths or []):
        column.width = w
    if dropped:
        note = f"left out at {width} columns: {', '.join(reversed(dropped))} (widen the terminal, or --format json)"
        table.caption = f"{table.caption}; {note}" if table.caption else note
        table.caption_justify = "left"
    return table
