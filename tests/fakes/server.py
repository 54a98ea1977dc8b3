"""Shared machinery of the fake upstreams: a real twisted.web server on 127.0.0.1:0 that
records every request and plays scripted replies (status, headers, body or timed SSE events).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.interfaces import IListeningPort
from twisted.web import resource, server


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    """A scripted reply. `events` (bytes each) make a streamed body; `delay` is between events.

    `hang` leaves the request open without a response; `drop_after` closes the socket after
    that many events without finishing the body.
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    events: list[bytes] | None = None
    delay: float = 0.0
    hang: bool = False
    drop_after: int | None = None
    #: Streams: send the headers at once, then wait this long before the first event.
    first_delay: float = 0.0
    #: Streams: after the last event, keep the response open instead of finishing it.
    hold_open: bool = False


class FakeServer(resource.Resource):
    """Subclasses implement `default_reply(path, request_json)` in the provider's wire format."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Recorded] = []
        self.script: deque[Reply | Callable[[Recorded], Reply]] = deque()
        self.port: IListeningPort | None = None
        self.closed_connections = 0
        self.open_requests: list[server.Request] = []
        #: The transport of every request served (to inspect what is still unsent).
        self.transports: list[Any] = []
        self.lost: list[defer.Deferred[None]] = []

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        site = server.Site(self)
        site.noisy = False
        self.port = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[attr-defined]

    async def stop(self) -> None:
        for request in list(self.open_requests):
            if request.channel is not None and request.channel.transport is not None:
                request.channel.transport.abortConnection()
        if self.port is not None:
            await self.port.stopListening()

    @property
    def origin(self) -> str:
        assert self.port is not None
        return f"http://127.0.0.1:{self.port.getHost().port}"

    # -- scripting ----------------------------------------------------------------------

    def queue(self, *replies: Reply | Callable[[Recorded], Reply]) -> None:
        self.script.extend(replies)

    def default_reply(self, recorded: Recorded) -> Reply:
        return Reply(status=404, body=b'{"error":{"message":"no route"}}')

    @property
    def last(self) -> Recorded:
        return self.requests[-1]

    # -- serving ------------------------------------------------------------------------

    def render(self, request: server.Request) -> Any:
        assert request.content is not None
        headers = {
            k.decode().lower(): v[-1].decode() for k, v in request.requestHeaders.getAllRawHeaders()
        }
        recorded = Recorded(
            request.method.decode(), request.uri.decode(), headers, request.content.read()
        )
        self.requests.append(recorded)
        item = self.script.popleft() if self.script else self.default_reply
        reply = item(recorded) if callable(item) else item
        self.open_requests.append(request)
        self.transports.append(request.channel.transport if request.channel else None)
        finished = request.notifyFinish()
        lost: defer.Deferred[None] = defer.Deferred()
        self.lost.append(lost)

        def gone(result: Any) -> None:
            if request in self.open_requests:
                self.open_requests.remove(request)
            if not lost.called:
                lost.callback(None)

        finished.addBoth(gone)
        if reply.hang:
            return server.NOT_DONE_YET
        request.setResponseCode(reply.status)
        for name, value in reply.headers.items():
            request.setHeader(name.encode(), value.encode())
        if reply.events is None:
            request.setHeader(b"content-length", str(len(reply.body)).encode())
            request.write(reply.body)
            request.finish()
            return server.NOT_DONE_YET
        if reply.first_delay:
            request.write(b"")  # flushes the status line and headers
            reactor.callLater(reply.first_delay, self._play, request, reply, 0)  # type: ignore[attr-defined]
        else:
            self._play(request, reply, 0)
        return server.NOT_DONE_YET

    def _play(self, request: server.Request, reply: Reply, index: int) -> None:
        """Write events from `index`: all at once without a delay, else one per delay."""
        assert reply.events is not None
        while True:
            if request._disconnected:  # type: ignore[attr-defined]
                return
            if reply.drop_after is not None and index >= reply.drop_after:
                assert request.channel is not None
                request.channel.transport.abortConnection()  # type: ignore[union-attr]
                return
            if index >= len(reply.events):
                if not reply.hold_open:
                    request.finish()
                return
            request.write(reply.events[index])
            index += 1
            if reply.delay:
                reactor.callLater(reply.delay, self._play, request, reply, index)  # type: ignore[attr-defined]
                return


def sse_data(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


def sse_named(name: str, obj: Any) -> bytes:
    return (
        b"event: "
        + name.encode()
        + b"\ndata: "
        + json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
        + b"\n\n"
    )
