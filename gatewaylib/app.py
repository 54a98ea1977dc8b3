"""HTTP routes: thin handlers that wire auth, routing and providers together."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from klein import Klein
from prometheus_client import CollectorRegistry
from prometheus_client.twisted import MetricsResource
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request
from werkzeug.exceptions import MethodNotAllowed as WerkzeugMethodNotAllowed
from werkzeug.exceptions import NotFound as WerkzeugNotFound

from gatewaylib import jsonutil
from gatewaylib.chatrequest import parse_chat_request
from gatewaylib.errors import GatewayError, MethodNotAllowed, PathNotFound
from gatewaylib.gateway import Runtime
from gatewaylib.providers.base import Call

log = Logger()

_JSON = b"application/json"


class SSEResponse:
    """Writes a stream to the client; the first write commits status 200 and SSE headers."""

    def __init__(self, request: Request) -> None:
        self._request = request
        self.committed = False

    def write(self, data: bytes) -> None:
        if not self.committed:
            self.committed = True
            request = self._request
            request.setResponseCode(200)
            request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
            request.setHeader(b"cache-control", b"no-cache")
            request.setHeader(b"x-accel-buffering", b"no")
        self._request.write(data)


def write_json(request: Request, status: int, payload: bytes) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", _JSON)
    return payload


def write_error(request: Request, error: GatewayError) -> bytes:
    for name, value in error.response_headers().items():
        request.setHeader(name.encode("latin-1"), value.encode("latin-1"))
    return write_json(request, error.status, error.body())


class GatewayApp:
    """The Klein application. `runtime` is read once per request (reloads swap it)."""

    app = Klein()

    def __init__(
        self,
        runtime: Runtime,
        registry: CollectorRegistry,
        health: Callable[[], bool] = lambda: True,
    ) -> None:
        self.runtime = runtime
        self._metrics = MetricsResource(registry=registry)
        self._healthy = health

    def resource(self) -> Any:
        return self.app.resource()

    # -- errors from routing ---------------------------------------------------------------

    @app.handle_errors(WerkzeugNotFound)
    def not_found(self, request: Request, failure: Failure) -> bytes:
        return write_error(request, PathNotFound(f"Unknown path: {request.path.decode('latin-1')}"))

    @app.handle_errors(WerkzeugMethodNotAllowed)
    def method_not_allowed(self, request: Request, failure: Failure) -> bytes:
        allowed = sorted(failure.value.valid_methods or [])
        request.setHeader(b"allow", ", ".join(allowed).encode())
        method = request.method.decode("latin-1")
        return write_error(request, MethodNotAllowed(f"Method {method} is not allowed here."))

    # -- routes -----------------------------------------------------------------------------

    @app.route("/health", methods=["GET"])
    def health(self, request: Request) -> bytes:
        if self._healthy():
            return write_json(request, 200, b'{"status":"ok"}')
        return write_json(request, 503, b'{"status":"shutting_down"}')

    @app.route("/metrics", methods=["GET"])
    def metrics(self, request: Request) -> Any:
        return self._metrics

    @app.route("/v1/models", methods=["GET"])
    def models(self, request: Request) -> bytes:
        runtime = self.runtime
        try:
            caller = runtime.keys.authenticate(request.getHeader(b"authorization"))
        except GatewayError as e:
            return write_error(request, e)
        payload = {"object": "list", "data": runtime.models_for(caller)}
        return write_json(request, 200, jsonutil.dumps(payload))

    @app.route("/v1/chat/completions", methods=["POST"])
    async def chat_completions(self, request: Request) -> bytes | None:
        runtime = self.runtime
        out = SSEResponse(request)
        try:
            caller = runtime.keys.authenticate(request.getHeader(b"authorization"))
            chat = parse_chat_request(_read_body(request))
            caller.check_model(chat.model)
            route = runtime.router.route(chat.model)
            provider = runtime.provider_for(route)
            call = Call(
                body=chat.body,
                route=route,
                stream=chat.stream,
                include_usage=chat.include_usage,
                created=int(time.time()),
            )
            if chat.stream:
                await provider.stream(call, out)
                return None
            body = await provider.complete(call)
            return write_json(request, 200, body)
        except GatewayError as e:
            return _fail(request, out, e)
        except defer.CancelledError:
            raise
        except Exception:
            log.failure("unexpected error in /v1/chat/completions")
            return _fail(
                request, out, GatewayError("Internal gateway error.", code="internal_error")
            )


def _fail(request: Request, out: SSEResponse, error: GatewayError) -> bytes | None:
    """Report an error: in-band after the stream committed, as an HTTP error before."""
    if out.committed:
        out.write(b"data: " + error.body() + b"\n\n")
        return None
    return write_error(request, error)


def _read_body(request: Request) -> bytes:
    content = request.content
    if content is None:
        return b""
    content.seek(0)
    return content.read()
