"""Reading the Singer input: a bad line ends the run in one line naming it, never a traceback.

singer-sdk's reader raises on a line that is not JSON or a RECORD before its SCHEMA, after
logging the whole line and a 70-line traceback. This reader counts lines and turns each such
problem into :class:`BadSingerInput`, which names the line number and what is wrong. The target
then writes the records it received before that line and acknowledges no state past them (see
``TargetExactOnline.listen``), so a rerun after fixing the input repeats nothing and skips nothing.
"""

from __future__ import annotations

import json
import typing as t
from collections import Counter, defaultdict

from singer_sdk.exceptions import RecordsWithoutSchemaException
from singer_sdk.io_base import SingerReader
from singer_sdk.singerlib.exceptions import InvalidInputLine

from exactonline_api.compat import override
from exactonline_api.errors import ExactError

# What each message type must carry, and of which JSON type.
_REQUIRED: dict[str, dict[str, type]] = {
    "SCHEMA": {"stream": str, "schema": dict},
    "RECORD": {"stream": str, "record": dict},
    "STATE": {"value": dict},
    "ACTIVATE_VERSION": {"stream": str},
    "BATCH": {"stream": str},
}


class BadSingerInput(ExactError):
    """A line of the Singer input cannot be processed; ``line`` is its 1-based number."""

    def __init__(self, line: int, problem: str) -> None:
        self.line = line
        self.problem = problem
        super().__init__(f"input line {line}: {problem}")


def _shape_problem(message: object) -> str | None:
    if not isinstance(message, dict):
        return f"a Singer message is a JSON object, this is a JSON {type(message).__name__}"
    kind = message.get("type")
    if kind not in _REQUIRED:
        return f"unknown Singer message type {kind!r} (expected one of {', '.join(_REQUIRED)})"
    for name, wanted in _REQUIRED[kind].items():
        if not isinstance(message.get(name), wanted):
            return f"{kind} message without a valid {name!r} ({wanted.__name__} expected)"
    return None


class LineCountingReader(SingerReader):
    """singer-sdk's reader, with line numbers and one-line errors for bad input."""

    @override
    def process_lines(self, file_input: t.IO[str] | None,
                      callbacks: dict[str, t.Callable[[dict], None]]) -> t.Counter[str]:
        stats: dict[str, int] = defaultdict(int)
        number = 0
        for line in file_input or self.default_input:
            number += 1
            if not line.strip():
                continue  # a blank line (often the last) carries no message
            self._current_message = line
            try:
                message = json.loads(line)
            except ValueError as exc:
                raise BadSingerInput(number, f"not JSON ({getattr(exc, 'msg', exc)} at column "
                                             f"{getattr(exc, 'colno', '?')})") from None
            problem = _shape_problem(message)
            if problem:
                raise BadSingerInput(number, problem)
            try:
                callbacks[message["type"]](message)
            except RecordsWithoutSchemaException:
                raise BadSingerInput(number, f"a RECORD of stream {message['stream']!r} comes before that "
                                             "stream's SCHEMA message") from None
            except InvalidInputLine as exc:
                raise BadSingerInput(number, str(exc).split(":", 1)[0]) from None
            stats[message["type"]] += 1
        return Counter(**stats)
