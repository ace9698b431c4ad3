"""Reading JSON Lines files that a person wrote or exported: every bad line is one error
naming the file and the line, never a traceback and never a half-read file taken for whole."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterator

from pocketpack.errors import PocketPackError


def read_jsonl(path: str | Path, *, error: Callable[[str], Exception] = PocketPackError,
               where: Callable[[int], str] | None = None, objects: bool = True,
               not_json: str = "not valid JSON") -> Iterator[tuple[int, Any]]:
    """(line number, value) for each non-blank line of ``path``, read as it goes.

    A line that is not UTF-8 or not JSON, or (with ``objects``) not a JSON object, raises
    ``error("<where>: <what>")``, ``where`` giving the line's place (default: ``"NAME line N"``)
    and ``not_json`` the words for a line that does not parse (followed by the parser's reason).
    The caller's own checks of a value should name the place the same way: ``where(number)``."""
    path = Path(path)
    where = where or (lambda number: f"{path.name} line {number}")
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise error(f"{where(number)}: not UTF-8 text") from None
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise error(f"{where(number)}: {not_json} ({exc.msg})") from None
            if objects and not isinstance(value, dict):
                raise error(f"{where(number)}: expected an object")
            yield number, value
