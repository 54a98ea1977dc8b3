"""Server-sent events: an incremental parser (bytes in any split -> events) and the writer.

The parser follows the WHATWG event-stream rules as openai-python's decoder applies them: lines
end in CR, LF or CRLF (a CR at the end of one read may pair with an LF at the start of the next),
`data` lines are joined with LF, comments are skipped, and an event is dispatched on a blank line.
Lines are decoded only once complete, so a multi-byte character split across reads is intact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str | None
    data: str
    id: str | None = None
    retry: int | None = None


class SSEParser:
    """Feed bytes as they arrive; get back the events completed by them."""

    __slots__ = ("_buffer", "_data", "_event", "_id", "_retry", "_skip_lf")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._skip_lf = False
        self._event: str | None = None
        self._data: list[str] = []
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        if not chunk:
            return events
        start = 0
        if self._skip_lf and chunk[:1] == b"\n":
            start = 1
        self._skip_lf = False
        for match in _LINE_END.finditer(chunk, start):
            end = match.start()
            if self._buffer:
                self._buffer += chunk[start:end]
                line = bytes(self._buffer)
                self._buffer.clear()
            else:
                line = chunk[start:end]
            start = match.end()
            if match.group() == b"\r" and start == len(chunk):
                self._skip_lf = True  # the LF of a CRLF may come with the next read
            event = self._line(line)
            if event is not None:
                events.append(event)
        if start < len(chunk):
            self._buffer += chunk[start:]
        return events

    def _line(self, raw: bytes) -> SSEEvent | None:
        if not raw:
            if not self._event and not self._data and not self._id and self._retry is None:
                return None
            event = SSEEvent(self._event, "\n".join(self._data), self._id, self._retry)
            self._event = None
            self._data = []
            self._retry = None
            return event
        line = raw.decode("utf-8", errors="replace")
        if line[0] == ":":
            return None
        name, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry":
            try:
                self._retry = int(value)
            except ValueError:
                pass
        return None


def data_event(payload: bytes) -> bytes:
    """One `data:` event, as OpenAI's chat streams frame them."""
    return b"data: " + payload + b"\n\n"


def named_event(name: str, payload: bytes) -> bytes:
    """An `event:` + `data:` pair, as the Responses API frames them."""
    return b"event: " + name.encode() + b"\ndata: " + payload + b"\n\n"


DONE = b"data: [DONE]\n\n"
