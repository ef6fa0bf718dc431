"""CSV files Inspector writes are opened in spreadsheets: no cell may become a formula.

A spreadsheet runs a cell that begins with ``=``, ``+``, ``-`` or ``@`` (and some treat a leading
tab or carriage return the same way) as a formula, so a class called ``=cmd|' /C calc'!A0`` or a
file named ``=HYPERLINK(...).png`` would act when the file is opened. Every CSV Inspector writes
goes through :func:`escape_cell` (OWASP's rule: prefix a single quote, which spreadsheets show as
text and do not display). A cell that already begins with a quote gets one more, so
:func:`unescape_cell` (removing one leading quote) gives back exactly what was written; plain
numbers (``-0.5``, ``1e-3``) are left alone, since they cannot be formulas.
"""

from __future__ import annotations

import csv
import re
from typing import Any, Iterable, TextIO

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\Z")


def escape_cell(value: Any) -> Any:
    """The cell as a spreadsheet must see it: text that could start a formula gets a leading quote."""
    if not isinstance(value, str) or not value:
        return value
    if value.startswith("'") or (value.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.match(value)):
        return "'" + value
    return value


def unescape_cell(text: str) -> str:
    """Undo :func:`escape_cell` on a cell read back from a CSV file."""
    if text.startswith("'") and len(text) > 1 and (
            text[1] == "'" or (text[1:].startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.match(text[1:]))):
        return text[1:]
    return text


class SafeWriter:
    """``csv.writer`` whose every cell goes through :func:`escape_cell`."""

    def __init__(self, handle: TextIO, **options: Any) -> None:
        self._writer = csv.writer(handle, **options)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([escape_cell(cell) for cell in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)
