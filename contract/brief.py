"""Quote a user's value in an error message without letting its size cost anything.

``repr`` of a value read from a file or the environment can be as big as the input, or, for
a structure with shared parts, exponentially bigger (a YAML alias bomb). ``brief`` shows the
first items and levels only and cuts the text, so an error line stays one short line.
"""

from __future__ import annotations

import reprlib
from typing import Any

__all__ = ["brief"]

_BRIEF = reprlib.Repr()
_BRIEF.maxlevel = 3
_BRIEF.maxlist = _BRIEF.maxtuple = _BRIEF.maxset = _BRIEF.maxdict = 4
_BRIEF.maxstring = 60
_BRIEF.maxother = 60
_BRIEF.maxlong = 40
_BRIEF_CHARS = 120


def brief(value: Any) -> str:
    """``repr(value)`` for an error message, bounded in size and in work (a huge or deeply nested
    value is shown by its first items, with ``...``)."""
    text = _BRIEF.repr(value)
    return text if len(text) <= _BRIEF_CHARS else text[:_BRIEF_CHARS - 3] + "..."
