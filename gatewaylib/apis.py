"""The inbound APIs served over the one chat pipeline: Chat Completions and Responses.

Each API says how to read its request into a chat call and how to turn the chat result (a
`chat.completion` body or a chunk stream) back into its own reply; `app.py` does the rest.
"""

from __future__ import annotations

from typing import Any, Protocol

from gatewaylib import jsonutil
from gatewaylib.chatrequest import ChatRequest, parse_chat_request
from gatewaylib.errors import BadGateway, GatewayError
from gatewaylib.providers.base import StreamWriter
from gatewaylib.responses import (
    ResponsesEventDriver,
    ResponsesRequest,
    build_response,
    parse_responses_request,
)
from gatewaylib.sse import SSEParser


class ClientStream(StreamWriter, Protocol):
    committed: bool


class API(Protocol):
    def parse(self, raw: bytes) -> ChatRequest: ...

    def stream_to(self, out: ClientStream) -> StreamWriter:
        """Where the provider's chat stream goes for this API."""
        ...

    def end_stream(self) -> None: ...

    def reply(self, completion: bytes) -> bytes: ...

    def stream_error(self, out: ClientStream, error: GatewayError) -> None: ...


class ChatAPI:
    """Chat Completions: the provider's output is already the reply."""

    def parse(self, raw: bytes) -> ChatRequest:
        return parse_chat_request(raw)

    def stream_to(self, out: ClientStream) -> StreamWriter:
        return out

    def end_stream(self) -> None:
        pass

    def reply(self, completion: bytes) -> bytes:
        return completion

    def stream_error(self, out: ClientStream, error: GatewayError) -> None:
        out.write(b"data: " + error.body() + b"\n\n")


class _ResponsesStream:
    """Reads the provider's chat SSE and writes Responses events through the driver."""

    def __init__(self, out: ClientStream, driver: ResponsesEventDriver) -> None:
        self._out = out
        self._driver = driver
        self._parser = SSEParser()

    def write(self, data: bytes) -> None:
        for event in self._parser.feed(data):
            if event.data == "[DONE]":
                pieces = self._driver.done()
            else:
                try:
                    chunk = jsonutil.loads(event.data)
                except jsonutil.JSONError:
                    raise BadGateway("the provider sent a stream event that is not JSON") from None
                pieces = self._driver.chunk(chunk) if isinstance(chunk, dict) else []
            for piece in pieces:
                self._out.write(piece)

    def bind_producer(self, producer: Any) -> None:
        self._out.bind_producer(producer)


class ResponsesAPI:
    """The Responses API: requests mapped to chat, results mapped back (translation.md E)."""

    def __init__(self) -> None:
        self._request: ResponsesRequest | None = None
        self._driver: ResponsesEventDriver | None = None

    def parse(self, raw: bytes) -> ChatRequest:
        self._request = parse_responses_request(raw)
        req = self._request
        return ChatRequest(req.chat, req.model, req.stream, include_usage=req.stream)

    def stream_to(self, out: ClientStream) -> StreamWriter:
        assert self._request is not None
        self._driver = ResponsesEventDriver(self._request)
        return _ResponsesStream(out, self._driver)

    def end_stream(self) -> None:
        pass

    def reply(self, completion: bytes) -> bytes:
        assert self._request is not None
        try:
            chat = jsonutil.loads(completion)
        except jsonutil.JSONError:
            raise BadGateway("the provider returned a response that is not JSON") from None
        return jsonutil.dumps(build_response(self._request, chat))

    def stream_error(self, out: ClientStream, error: GatewayError) -> None:
        assert self._driver is not None
        for piece in self._driver.fail(error):
            out.write(piece)
