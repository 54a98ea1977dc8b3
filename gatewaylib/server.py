"""The HTTP server side: what twisted.web does not do for us.

Twisted's idle timer is reset by every header line (a trickling client is never cut off), it has
no body-size limit (large bodies spill into unbounded temporary files), and it answers bad
requests with a bare text 400. Here: an absolute header deadline, a body deadline (408), a
request size limit checked against Content-Length before reading and counted for chunked bodies
(413, never spooled to disk), and JSON errors for malformed or oversized requests.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from twisted.web import http, server

from gatewaylib.errors import GatewayError, InvalidRequest

#: Called for requests refused at the HTTP layer, so metrics and the access log count them.
Rejected = Callable[[str, str, GatewayError], None]

_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    413: b"Content Too Large",
    431: b"Request Header Fields Too Large",
}


class RequestTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RequestTimeout(GatewayError):
    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


def raw_error(error: GatewayError) -> bytes:
    """A complete HTTP/1.1 error response, for use before a Request can answer itself."""
    body = error.body()
    reason = _REASONS.get(error.status, b"Error")
    head = [b"HTTP/1.1 %d %s" % (error.status, reason), b"Content-Type: application/json"]
    head += [f"{k}: {v}".encode("latin-1") for k, v in error.response_headers().items()]
    head += [b"Content-Length: %d" % len(body), b"Connection: close", b"", b""]
    return b"\r\n".join(head) + body


class GatewayRequest(server.Request):
    """Bodies are kept in memory up to the limit; anything larger is refused with 413."""

    _rejected = False
    _received = 0

    # twisted.web's attributes are typed loosely (zope interfaces); name what they are here.
    channel: Any
    content: Any

    def gotLength(self, length: int | None) -> None:
        site: GatewaySite = self.channel.site
        self.content = io.BytesIO()
        if length is not None and length > site.max_request_bytes:
            self._reject(_too_large(site.max_request_bytes))

    def handleContentChunk(self, data: bytes) -> None:
        if self._rejected:
            return
        self._received += len(data)
        site: GatewaySite = self.channel.site
        if self._received > site.max_request_bytes:
            self._reject(_too_large(site.max_request_bytes))
            return
        self.content.write(data)

    def _reject(self, error: GatewayError) -> None:
        self._rejected = True
        self.channel.reject(error)


def _too_large(limit: int) -> GatewayError:
    return RequestTooLarge(f"The request body exceeds the limit of {limit} bytes.")


class GatewayChannel(http.HTTPChannel):
    """Adds the absolute header deadline and the body deadline to Twisted's channel."""

    site: GatewaySite
    transport: Any
    _header_timer: Any = None
    _body_timer: Any = None
    _awaiting_headers = True
    _closing = False
    _idle_timeout: float | None = None

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        if self._awaiting_headers and self._header_timer is None:
            self._header_timer = self.callLater(self.site.header_timeout, self._headers_too_slow)
        super().dataReceived(data)

    def allHeadersReceived(self) -> None:
        self._awaiting_headers = False
        self._cancel_header_timer()
        super().allHeadersReceived()
        if self.length != 0 and not self._closing:
            # The body deadline governs now: suspend the idle timer, which would otherwise
            # close the connection silently instead of answering 408.
            self._idle_timeout = self.setTimeout(None)
            self._body_timer = self.callLater(self.site.body_timeout, self._body_too_slow)

    def allContentReceived(self) -> None:
        self._cancel_body_timer()
        if self._closing:
            return
        if self._idle_timeout is not None:
            self.setTimeout(self._idle_timeout)  # HTTPChannel saves and restores it per request
            self._idle_timeout = None
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        self._awaiting_headers = True
        super().requestDone(request)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None and self._header_timer.active():
            self._header_timer.cancel()
        self._header_timer = None

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None and self._body_timer.active():
            self._body_timer.cancel()
        self._body_timer = None

    def _headers_too_slow(self) -> None:
        # reliability.md: incomplete headers at the deadline -> connection closed.
        self._header_timer = None
        self._closing = True
        if self.transport is not None:
            self.transport.abortConnection()

    def _body_too_slow(self) -> None:
        self._body_timer = None
        timeout = self.site.body_timeout
        self.reject(RequestTimeout(f"The request body was not received within {timeout:g}s."))

    def reject(self, error: GatewayError) -> None:
        """Answer `error` now, count it, and close: the request is not processed further."""
        if self._closing:
            return
        self._closing = True
        self._cancel_header_timer()
        self._cancel_body_timer()
        method = getattr(self, "_command", b"-").decode("latin-1")
        path = getattr(self, "_path", b"-").split(b"?", 1)[0].decode("latin-1", "replace")
        self.transport.write(raw_error(error))
        self.site.on_rejected(method, path, error)
        self.transport.loseConnection()

    def _respondToBadRequestAndDisconnect(self) -> None:
        if self._receivedHeaderSize > self.totalHeadersSize:
            error: GatewayError = GatewayError(
                "The request headers are too large.",
                status=431,
                type="invalid_request_error",
                code="headers_too_large",
            )
        else:
            error = InvalidRequest("The HTTP request is malformed.", code="bad_request")
        self.reject(error)

    def connectionMade(self) -> None:
        super().connectionMade()
        self.site.channels.add(self)

    def lineLengthExceeded(self, line: bytes) -> None:
        # One line (request line or header) over MAX_LENGTH: too large, like too many headers.
        self._receivedHeaderSize = self.totalHeadersSize + 1
        self._respondToBadRequestAndDisconnect()

    def connectionLost(self, reason: Any = None) -> None:
        self.site.channels.discard(self)
        self._cancel_header_timer()
        self._cancel_body_timer()
        super().connectionLost(reason)


class GatewaySite(server.Site):
    """The Site with litegate's limits. twisted.web's own access log is off (we write ours)."""

    noisy = False
    displayTracebacks = False
    requestFactory = GatewayRequest
    protocol = GatewayChannel  # type: ignore[assignment]

    def __init__(
        self,
        resource: Any,
        *,
        max_request_bytes: int = 20 * 1024 * 1024,
        header_timeout: float = 10.0,
        body_timeout: float = 60.0,
        keepalive_timeout: float = 60.0,
        on_rejected: Rejected = lambda method, path, error: None,
    ) -> None:
        # No HTML form decoding of POST bodies: never needed here, and its content-type parsing
        # (the stdlib email package) was ~5 % of a proxied request's CPU in the profile. It must
        # be the Site's setting: Request.__init__ copies it over any class attribute.
        super().__init__(resource, timeout=keepalive_timeout, parsePOSTFormSubmission=False)
        self.max_request_bytes = max_request_bytes
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.on_rejected = on_rejected
        #: Open client connections, closed gracefully (buffers flushed) at shutdown.
        self.channels: set[GatewayChannel] = set()

    def close_connections(self) -> None:
        for channel in list(self.channels):
            channel.transport.loseConnection()

    def log(self, request: Any) -> None:
        pass
