"""HTTP routes: thin handlers that wire auth, routing and providers together.

Every API request gets one `Exchange`, begun by the handler and finished from
`request.notifyFinish()`, which feeds both the metrics and the access log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from klein import Klein
from prometheus_client.twisted import MetricsResource
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from werkzeug.exceptions import MethodNotAllowed as WerkzeugMethodNotAllowed
from werkzeug.exceptions import NotFound as WerkzeugNotFound

from gatewaylib import jsonutil, pricing
from gatewaylib.accesslog import AccessLog
from gatewaylib.apis import API, ChatAPI, ResponsesAPI
from gatewaylib.errors import GatewayError, MethodNotAllowed, PathNotFound, UpstreamTimeout
from gatewaylib.exchange import Exchange
from gatewaylib.gateway import Runtime
from gatewaylib.metrics import Metrics
from gatewaylib.providers.base import Call, StreamWriter

log = Logger()

_JSON = b"application/json"
#: Status recorded for a client that left before any response byte (nginx's convention).
CLIENT_CLOSED = 499


class SSEResponse:
    """Writes a stream to the client; the first write commits status 200 and SSE headers."""

    def __init__(self, request: Request, exchange: Exchange) -> None:
        self._request = request
        self._exchange = exchange
        self.committed = False
        self._producer = False

    def bind_producer(self, producer: Any) -> None:
        self._request.registerProducer(producer, True)
        self._producer = True

    def release(self) -> None:
        """Detach the upstream producer before the response finishes."""
        if self._producer:
            self._producer = False
            if self._request.channel is not None:  # None once the client has gone
                self._request.unregisterProducer()

    def write(self, data: bytes) -> None:
        if not self.committed:
            self.committed = True
            self._exchange.first_byte = time.perf_counter()
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


class ShuttingDown(GatewayError):
    status = 503
    type = "service_unavailable_error"
    code = "server_shutting_down"


class Overloaded(GatewayError):
    status = 503
    type = "service_unavailable_error"
    code = "overloaded"


class _InFlight:
    """A provider call that the total deadline or shutdown may cut short."""

    __slots__ = ("deferred", "reason")

    def __init__(self, deferred: defer.Deferred[Any]) -> None:
        self.deferred = deferred
        self.reason: GatewayError | None = None

    def abort(self, reason: GatewayError) -> None:
        if self.reason is None:
            self.reason = reason
            self.deferred.cancel()


class GatewayApp:
    """The Klein application. `runtime` is read once per request (reloads swap it)."""

    app = Klein()

    def __init__(
        self,
        runtime: Runtime,
        metrics: Metrics,
        access_log: AccessLog,
        health: Callable[[], bool] = lambda: True,
        reactor: Any = None,
    ) -> None:
        self.runtime = runtime
        self.metrics = metrics
        self.access_log = access_log
        self._metrics_resource = MetricsResource(registry=metrics.registry)
        self._healthy = health
        #: API requests being handled (the concurrency limit and the drain wait on it).
        self.active = 0
        self._calls: set[_InFlight] = set()
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self._reactor = reactor

    def resource(self) -> Any:
        """The site's root: the two API endpoints dispatched directly, the rest by Klein."""
        return _Dispatch(self.app.resource(), {
            b"/v1/chat/completions": self.chat_completions,
            b"/v1/responses": self.responses,
        })

    # -- the per-request record ------------------------------------------------------------

    def _begin(self, request: Request) -> Exchange:
        """Start the request's Exchange; it is finished exactly once, however the request ends."""
        ex = Exchange.begin(request.method.decode("latin-1"), request.path.decode("latin-1"))
        request.setHeader(b"x-request-id", ex.request_id.encode())
        self.metrics.in_flight.inc()
        self.active += 1
        runtime = self.runtime
        runtime.acquire()

        def finished(result: object) -> None:
            if isinstance(result, Failure):
                # Client gone: let the handler's cancellation run first, so what the provider
                # learnt (usage so far, upstream time) is on the call when we record it.
                self._reactor.callLater(0, self._finish, request, ex, runtime, True)
            else:
                self._finish(request, ex, runtime, False)

        request.notifyFinish().addBoth(finished)
        return ex

    def _finish(self, request: Request, ex: Exchange, runtime: Runtime, aborted: bool) -> None:
        call: Call | None = ex.call
        if call is not None:
            ex.usage = call.usage
            ex.response_model = call.response_model
            ex.upstream_seconds = call.upstream_seconds
            if call.stream_error is not None:
                ex.stream_error = call.stream_error
        status = request.code if not aborted or request.startedWriting else CLIENT_CLOSED
        cost = 0.0
        if ex.usage is not None and ex.route is not None:
            alias = ex.route.requested if ex.route.alias is not None else None
            price = runtime.prices.price_for(alias, ex.route.upstream_model)
            if price is not None:
                cost = pricing.cost(ex.usage, price)
        ex.finish(status, aborted, cost)
        self.metrics.in_flight.dec()
        self.active -= 1
        runtime.release()
        self._record(ex)

    def _record(self, ex: Exchange) -> None:
        try:
            self.metrics.record(ex)
            self.access_log.write(ex)
        except Exception:
            log.failure("recording a finished request failed")

    def record_rejected(self, method: str, path: str, error: GatewayError) -> None:
        """Count and log a request refused by the HTTP layer before any handler ran."""
        ex = Exchange.begin(method, path)
        ex.error = error
        ex.finish(error.status, aborted=False)
        self._record(ex)

    def abort_all(self, reason: GatewayError) -> None:
        """Cut every provider call short (shutdown deadline): each handler reports `reason`."""
        for call in list(self._calls):
            call.abort(reason)

    async def _call_provider(self, provider: Any, call: Call, out: StreamWriter) -> bytes | None:
        """Run the provider call under the total deadline, abortable at shutdown."""
        work = defer.ensureDeferred(
            provider.stream(call, out) if call.stream else provider.complete(call)
        )
        inflight = _InFlight(work)
        total = provider.config.timeouts.total
        timer = self._reactor.callLater(
            total,
            inflight.abort,
            UpstreamTimeout(f"The request did not complete within {total:g}s."),
        )
        self._calls.add(inflight)
        try:
            result: bytes | None = await work
            return result
        except defer.CancelledError:
            if inflight.reason is not None:
                raise inflight.reason from None
            raise
        finally:
            self._calls.discard(inflight)
            if timer.active():
                timer.cancel()

    # -- errors from routing ---------------------------------------------------------------

    @app.handle_errors(WerkzeugNotFound)
    def not_found(self, request: Request, failure: Failure) -> bytes:
        ex = self._begin(request)
        ex.error = PathNotFound(f"Unknown path: {ex.path}")
        return write_error(request, ex.error)

    @app.handle_errors(WerkzeugMethodNotAllowed)
    def method_not_allowed(self, request: Request, failure: Failure) -> bytes:
        ex = self._begin(request)
        allowed = sorted(failure.value.valid_methods or [])
        request.setHeader(b"allow", ", ".join(allowed).encode())
        ex.error = MethodNotAllowed(f"Method {ex.method} is not allowed here.")
        return write_error(request, ex.error)

    # -- routes -----------------------------------------------------------------------------

    @app.route("/health", methods=["GET"])
    def health(self, request: Request) -> bytes:
        if self._healthy():
            return write_json(request, 200, b'{"status":"ok"}')
        return write_json(request, 503, b'{"status":"shutting_down"}')

    @app.route("/metrics", methods=["GET"])
    def prometheus(self, request: Request) -> Any:
        return self._metrics_resource

    @app.route("/v1/models", methods=["GET"])
    def models(self, request: Request) -> bytes:
        ex = self._begin(request)
        runtime = self.runtime
        try:
            caller = runtime.keys.authenticate(request.getHeader(b"authorization"))
        except GatewayError as e:
            ex.error = _detached(e)
            return write_error(request, e)
        ex.app = caller.name
        payload = {"object": "list", "data": runtime.models_for(caller)}
        return write_json(request, 200, jsonutil.dumps(payload))

    @app.route("/v1/chat/completions", methods=["POST"])
    async def chat_completions(self, request: Request) -> bytes | None:
        return await self._serve(request, ChatAPI())

    @app.route("/v1/responses", methods=["POST"])
    async def responses(self, request: Request) -> bytes | None:
        return await self._serve(request, ResponsesAPI())

    @app.route("/v1/responses/<string:response_id>", methods=["GET", "DELETE"])
    def stored_response(self, request: Request, response_id: str) -> bytes:
        ex = self._begin(request)
        ex.error = GatewayError(
            f"No response with id '{response_id}': this gateway does not store responses.",
            status=404,
            type="invalid_request_error",
            code="not_found",
            param="response_id",
        )
        return write_error(request, ex.error)

    async def _serve(self, request: Request, api: API) -> bytes | None:
        """The pipeline shared by every inbound API: auth, routing, provider, reply."""
        ex = self._begin(request)
        runtime = self.runtime
        out = SSEResponse(request, ex)
        try:
            if self.active > runtime.config.limits.max_concurrent_requests:
                raise Overloaded(
                    "The gateway is at its concurrency limit; retry shortly.",
                    headers={"Retry-After": "1"},
                )
            if not self._healthy():
                raise ShuttingDown("The gateway is shutting down; retry on another replica.")
            caller = runtime.keys.authenticate(request.getHeader(b"authorization"))
            ex.app = caller.name
            chat = api.parse(_read_body(request))
            ex.requested_model, ex.stream = chat.model, chat.stream
            caller.check_model(chat.model)
            route = runtime.router.route(chat.model)
            ex.route = route
            provider = runtime.provider_for(route)
            call = Call(
                body=chat.body,
                route=route,
                stream=chat.stream,
                include_usage=chat.include_usage,
                created=int(time.time()),
            )
            ex.call = call
            body = await self._call_provider(provider, call, api.stream_to(out))
            if body is None:
                api.end_stream()
                return None
            return write_json(request, 200, api.reply(body))
        except GatewayError as e:
            ex.error = _detached(e)
            return _fail(request, out, api, e)
        except defer.CancelledError:
            raise
        except Exception:
            log.failure("unexpected error in {path}", path=ex.path)
            ex.error = GatewayError("Internal gateway error.", code="internal_error")
            return _fail(request, out, api, ex.error)
        finally:
            out.release()


class _Dispatch(Resource):
    """POSTs to the API endpoints go straight to their handlers; everything else to Klein.

    For every request Klein binds a werkzeug URL map, adapts the request to IKleinRequest and
    chains half a dozen Deferreds: ~15 % of a proxied request's CPU in the profile, spent to
    find one of two fixed paths. The handlers are the Klein routes' own methods, run as Klein
    runs them: the result is written and the request finished, and a client that goes away
    cancels the handler (which cancels the upstream call).
    """

    isLeaf = True

    def __init__(self, klein: Any, handlers: dict[bytes, Callable[[Request], Any]]) -> None:
        super().__init__()
        self._klein = klein
        self._handlers = handlers

    def render(self, request: Request) -> Any:
        handler = self._handlers.get(request.path) if request.method == b"POST" else None
        if handler is None:
            return self._klein.render(request)
        gone: list[bool] = []
        d = defer.ensureDeferred(handler(request))

        def client_gone(reason: Failure) -> None:
            gone.append(True)
            d.cancel()

        request.notifyFinish().addErrback(client_gone)

        def respond(body: bytes | None) -> None:
            if gone:
                return
            if body is not None:
                # A whole JSON reply: framed by its length rather than chunked.
                request.setHeader(b"content-length", b"%d" % len(body))
                request.write(body)
            request.finish()

        def unhandled(failure: Failure) -> None:
            # The handlers answer every error themselves; only a cancellation (client gone)
            # or a bug reaches here. A bug still gets a JSON 500, never a traceback page.
            if gone:
                return
            log.failure("unhandled error in {path}", failure, path=request.path)
            if not request.startedWriting:
                error = GatewayError("Internal gateway error.", code="internal_error")
                request.write(write_error(request, error))
            request.finish()

        d.addCallbacks(respond, unhandled)
        d.addErrback(lambda failure: log.failure("writing the response failed", failure))
        return NOT_DONE_YET


def _detached(error: GatewayError) -> GatewayError:
    """The error without its traceback and the exceptions it was raised from.

    Their frames hold the request's locals (the Exchange that keeps this error among them):
    a reference cycle per failed request that only a full, stream-stalling GC pass frees. A
    storm of 429s left ~140 such objects per request.
    """
    error.__traceback__ = None
    error.__context__ = None
    error.__cause__ = None
    return error


def _fail(request: Request, out: SSEResponse, api: API, error: GatewayError) -> bytes | None:
    """Report an error: in-band after the stream committed, as an HTTP error before."""
    if out.committed:
        api.stream_error(out, error)
        return None
    return write_error(request, error)


def _read_body(request: Request) -> bytes:
    content = request.content
    if content is None:
        return b""
    content.seek(0)
    return content.read()
