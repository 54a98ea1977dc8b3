"""One access-log line per request, `key=value` text (or JSON lines), on stdout.

Lines carry no bodies and no keys: the app name stands for the caller. Lines are written at
once but flushed in batches (at most 0.2 s later), so a busy gateway does one write system call
per batch instead of one per request.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any, TextIO

from gatewaylib.exchange import Exchange

_NEEDS_QUOTES = re.compile(r'[\s"=\\]|^$|[^\x21-\x7e]')
FLUSH_DELAY = 0.2


def _text_value(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    text = str(value)
    if isinstance(value, str) and _NEEDS_QUOTES.search(text):
        return json.dumps(text, ensure_ascii=False)
    return text


def format_text(fields: dict[str, Any]) -> str:
    return " ".join([f"{key}={_text_value(value)}" for key, value in fields.items()])


def format_json(fields: dict[str, Any]) -> str:
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)


class AccessLog:
    def __init__(
        self, log_format: str = "text", stream: TextIO | None = None, clock: Any = None
    ) -> None:
        self._format = format_json if log_format == "json" else format_text
        # sys.__stdout__: under twistd sys.stdout is redirected into the Twisted log.
        self._stream = stream if stream is not None else (sys.__stdout__ or sys.stdout)
        self._clock = clock
        self._flush_pending = False

    def write(self, ex: Exchange) -> None:
        self._stream.write(self._format(ex.log_fields()) + "\n")
        if self._clock is None:
            self._stream.flush()
        elif not self._flush_pending:
            self._flush_pending = True
            self._clock.callLater(FLUSH_DELAY, self.flush)

    def flush(self) -> None:
        self._flush_pending = False
        self._stream.flush()
