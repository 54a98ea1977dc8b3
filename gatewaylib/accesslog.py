"""One access-log line per request, `key=value` text (or JSON lines), on stdout.

Lines carry no bodies and no keys: the app name stands for the caller.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from gatewaylib.exchange import Exchange


def _text_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if not text or any(c in text for c in ' "=\\') or not text.isprintable():
        return json.dumps(text, ensure_ascii=False)
    return text


def format_text(fields: dict[str, Any]) -> str:
    return " ".join(f"{key}={_text_value(value)}" for key, value in fields.items())


def format_json(fields: dict[str, Any]) -> str:
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)


class AccessLog:
    def __init__(self, log_format: str = "text", stream: TextIO | None = None) -> None:
        self._format = format_json if log_format == "json" else format_text
        # sys.__stdout__: under twistd sys.stdout is redirected into the Twisted log.
        self._stream = stream if stream is not None else (sys.__stdout__ or sys.stdout)

    def write(self, ex: Exchange) -> None:
        self._stream.write(self._format(ex.log_fields()) + "\n")
        self._stream.flush()
