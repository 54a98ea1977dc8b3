"""The interface every provider implements, and the shared HTTP plumbing of HTTP providers.

A provider turns one chat call into either a whole `chat.completion` body or a stream of SSE
bytes. HTTP providers only supply pure translators (`build_request`, `parse_response`,
`stream_translator`, `map_error`); `HTTPProvider` does the I/O, deadlines and cancellation.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.internet import defer

from gatewaylib.chatformat import Usage
from gatewaylib.config import ProviderConfig
from gatewaylib.errors import BadGateway, GatewayError, StreamInterrupted
from gatewaylib.routing import Route
from gatewaylib.sse import SSEEvent, SSEParser
from gatewaylib.upstream import (
    BodyInterrupted,
    BodyReader,
    IReactorTime,
    UpstreamClient,
    UpstreamRequest,
    lower_headers,
    read_body,
)


@dataclass
class Call:
    """One chat request on its way through a provider, and what the provider learnt of it."""

    body: dict[str, Any]
    route: Route
    stream: bool
    include_usage: bool
    created: int
    #: Filled in by the provider: the usage reported upstream and the model it named.
    usage: Usage | None = None
    response_model: str | None = None
    #: Seconds spent waiting on the upstream (the rest of a request's time is overhead).
    upstream_seconds: float = 0.0
    #: A provider failure reported in-band that did not raise (e.g. a relayed error event).
    stream_error: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class StreamWriter(Protocol):
    """Where a stream's SSE bytes go; the first write commits the 200 response."""

    def write(self, data: bytes) -> None: ...

    def bind_producer(self, producer: Any) -> None:
        """Let the client's pace pause and resume `producer` (the upstream body)."""
        ...


class StreamTranslator(Protocol):
    """Pure per-stream state: upstream SSE events in, client SSE bytes out."""

    def feed(self, event: SSEEvent) -> list[bytes]: ...

    def finish(self) -> list[bytes]:
        """Called at upstream EOF: the closing bytes, or raise if the protocol did not end."""
        ...

    @property
    def usage(self) -> Usage | None: ...

    @property
    def model(self) -> str | None: ...

    @property
    def relayed_error(self) -> str | None:
        """The provider-error kind of an upstream error event relayed as-is, if any."""
        ...


class Provider(Protocol):
    config: ProviderConfig

    async def complete(self, call: Call) -> bytes:
        """The `chat.completion` JSON for the client; raise GatewayError on failure."""
        ...

    async def stream(self, call: Call, out: StreamWriter) -> None:
        """Write the chunk stream to `out`; raise GatewayError on failure at any point."""
        ...

    def close(self) -> defer.Deferred[Any]: ...


class HTTPProvider(ABC):
    """Template for providers reached over HTTP: subclasses supply the translators."""

    def __init__(self, config: ProviderConfig, reactor: Any) -> None:
        self.config = config
        self._clock: IReactorTime = reactor
        self._client = UpstreamClient(
            reactor,
            max_connections=config.max_connections,
            connect_timeout=config.timeouts.connect,
        )

    # -- translators, overridden by each provider ------------------------------------------

    @abstractmethod
    def build_request(self, call: Call) -> UpstreamRequest:
        """The upstream request for a chat call (pure)."""

    @abstractmethod
    def parse_response(self, call: Call, body: bytes) -> bytes:
        """A 2xx upstream body -> the client's `chat.completion` JSON; sets call.usage."""

    @abstractmethod
    def stream_translator(self, call: Call) -> StreamTranslator:
        """Fresh per-stream translation state."""

    @abstractmethod
    def map_error(self, status: int, headers: dict[str, str], body: bytes) -> GatewayError:
        """An upstream error response -> the error the client gets."""

    async def prepare(self, call: Call) -> None:
        """Asynchronous work the request needs before it can be built (e.g. downloads)."""
        return None

    # -- I/O ------------------------------------------------------------------------------

    async def complete(self, call: Call) -> bytes:
        timeouts = self.config.timeouts
        await self.prepare(call)
        request = self.build_request(call)
        started = time.perf_counter()
        try:
            response = await self._client.post(request, header_timeout=timeouts.response_headers)
            body = await read_body(response, self._clock, timeouts.response_headers)
        finally:
            call.upstream_seconds += time.perf_counter() - started
        if not 200 <= response.code < 300:
            raise self.map_error(response.code, lower_headers(response), body)
        return self.parse_response(call, body)

    async def stream(self, call: Call, out: StreamWriter) -> None:
        await self.prepare(call)
        request = self.build_request(call)
        started = time.perf_counter()
        try:
            await self._stream(call, request, out)
        finally:
            call.upstream_seconds += time.perf_counter() - started

    async def _stream(self, call: Call, request: UpstreamRequest, out: StreamWriter) -> None:
        timeouts = self.config.timeouts
        response = await self._client.post(request, header_timeout=timeouts.first_event)
        headers = lower_headers(response)
        if response.code != 200:
            body = await read_body(response, self._clock, timeouts.first_event)
            raise self.map_error(response.code, headers, body)
        if not headers.get("content-type", "").startswith("text/event-stream"):
            await read_body(response, self._clock, timeouts.first_event)
            raise BadGateway(f"{self.config.name} answered a stream request without a stream")
        translator = self.stream_translator(call)
        parser = SSEParser()

        def on_data(data: bytes) -> None:
            for event in parser.feed(data):
                for piece in translator.feed(event):
                    out.write(piece)

        reader = BodyReader(
            on_data, self._clock, timeouts.stream_idle, first_timeout=timeouts.first_event
        )
        response.deliverBody(reader)
        out.bind_producer(reader)
        try:
            await reader.done
            closing = translator.finish()
        except BodyInterrupted:
            raise StreamInterrupted(
                f"the connection to {self.config.name} was lost mid-stream"
            ) from None
        finally:
            call.usage = translator.usage
            call.response_model = translator.model
            call.stream_error = translator.relayed_error
        for piece in closing:
            out.write(piece)

    def close(self) -> defer.Deferred[Any]:
        return self._client.close()
