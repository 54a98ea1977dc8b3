"""The HTTP client to providers: one pooled Agent per provider, deadlines, cancellation.

Requests go straight to Twisted's `Agent`. treq's request wrapper parsed the URL (hyperlink and
IDNA), built cookie-jar requests and wrapped decoder agents on every call: a quarter of the
gateway's CPU per proxied request in the profile, for features a gateway must not have (shared
cookies, redirects). Bodies are read by `BodyReader`, whose Deferred's canceller closes the
upstream connection: cancelling a request (client gone, deadline) stops the upstream from
generating and billing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.error import (
    ConnectError,
    ConnectingCancelledError,
    ConnectionRefusedError,
    DNSLookupError,
)
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone, ResponseNeverReceived
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from gatewaylib.errors import BadGateway, GatewayError, UpstreamTimeout, UpstreamUnavailable

# zope interfaces are opaque to mypy: these aliases name what is meant.
IResponse = Any  # twisted.web.iweb.IResponse
IReactorTime = Any  # twisted.internet.interfaces.IReactorTime
IDelayedCall = Any  # twisted.internet.interfaces.IDelayedCall

#: A non-streaming upstream body larger than this is refused (no provider sends one).
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class UpstreamRequest:
    url: str
    headers: Mapping[str, str]
    body: bytes


class _EndpointCache:
    """Agent's endpoint factory, remembering one endpoint per origin: the standard factory
    builds a new endpoint (IDNA-encoding the host again) for every request."""

    def __init__(self, reactor: Any, connect_timeout: float) -> None:
        self._reactor = reactor
        self._timeout = connect_timeout
        self._endpoints: dict[tuple[bytes, bytes, int], Any] = {}

    def endpointForURI(self, uri: Any) -> Any:
        key = (uri.scheme, uri.host, uri.port)
        endpoint: Any = self._endpoints.get(key)
        if endpoint is None:
            from twisted.internet.endpoints import wrapClientTLS
            from twisted.web.client import BrowserLikePolicyForHTTPS

            endpoint = _tcp_endpoint(self._reactor, uri.host, uri.port, self._timeout)
            if uri.scheme == b"https":
                policy = BrowserLikePolicyForHTTPS()  # verifies certificates and hostnames
                endpoint = wrapClientTLS(policy.creatorForNetloc(uri.host, uri.port), endpoint)
            self._endpoints[key] = endpoint
        return endpoint


def _tcp_endpoint(reactor: Any, host: bytes, port: int, timeout: float) -> Any:
    """A plain TCP endpoint for an IP address (a local server, a sidecar, a mesh address);
    HostnameEndpoint only for names. HostnameEndpoint resolves even an IP literal through
    getaddrinfo in the thread pool and races address families: in the profile, 1,000 streams
    opening at once spent ~10 % of the gateway's CPU there, and waited on 10 threads."""
    from twisted.internet.abstract import isIPAddress, isIPv6Address
    from twisted.internet.endpoints import (
        HostnameEndpoint,
        TCP4ClientEndpoint,
        TCP6ClientEndpoint,
    )

    name = host.decode("ascii").strip("[]")
    if isIPAddress(name):
        return TCP4ClientEndpoint(reactor, name, port, timeout=timeout)
    if isIPv6Address(name):
        return TCP6ClientEndpoint(reactor, name, port, timeout=timeout)
    return HostnameEndpoint(reactor, host, port, timeout=timeout)


@implementer(IBodyProducer)
class _BytesProducer:
    """A request body already in memory, written in one go (no cooperator task per request)."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:
        consumer.write(self._body)
        return defer.succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class UpstreamClient:
    """A pooled HTTP client for one provider."""

    def __init__(self, reactor: Any, *, max_connections: int, connect_timeout: float) -> None:
        self._reactor = reactor
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = max_connections
        self._pool.retryAutomatically = False
        # No cookie handling and no redirect following: neither belongs in a shared gateway.
        self._agent = Agent.usingEndpointFactory(
            reactor, _EndpointCache(reactor, connect_timeout), pool=self._pool
        )

    async def post(self, request: UpstreamRequest, *, header_timeout: float) -> IResponse:
        """POST and wait for the response headers; map network failures to gateway errors."""
        headers = Headers({k.encode(): [v.encode()] for k, v in request.headers.items()})
        d = self._agent.request(
            b"POST",
            request.url.encode("ascii"),
            headers,
            _BytesProducer(request.body),
        )
        timed_out: list[bool] = []

        def expire() -> None:
            timed_out.append(True)
            d.cancel()

        timer = self._reactor.callLater(header_timeout, expire)
        try:
            response: IResponse = await d
        except Exception as e:
            # Cancelling an Agent request surfaces as ResponseNeverReceived/ConnectingCancelled
            # rather than CancelledError: tell our deadline from the caller's cancellation.
            if timed_out:
                raise UpstreamTimeout(
                    f"the provider did not answer within {header_timeout:g}s"
                ) from None
            if _cancelled(e):
                raise defer.CancelledError() from None
            raise _network_error(e) from None
        finally:
            if timer.active():
                timer.cancel()
        return response

    def close(self) -> defer.Deferred[None]:
        return self._pool.closeCachedConnections()


def _cancelled(exc: BaseException) -> bool:
    if isinstance(exc, defer.CancelledError | ConnectingCancelledError):
        return True
    if isinstance(exc, ResponseNeverReceived):
        return any(f.check(defer.CancelledError, ConnectingCancelledError) for f in exc.reasons)
    return False


def _network_error(exc: BaseException) -> GatewayError:
    from twisted.internet.error import TimeoutError as TxTimeoutError

    if isinstance(exc, TxTimeoutError):
        return UpstreamTimeout("connecting to the provider timed out")
    if isinstance(exc, ConnectionRefusedError | DNSLookupError | ConnectError):
        return UpstreamUnavailable("could not connect to the provider")
    return UpstreamUnavailable("the provider closed the connection before answering")


def lower_headers(response: IResponse) -> dict[str, str]:
    """Response headers as a dict with lower-case names (last value wins)."""
    out: dict[str, str] = {}
    for name, values in response.headers.getAllRawHeaders():
        out[name.decode("latin-1").lower()] = values[-1].decode("latin-1")
    return out


class BodyReader(Protocol):
    """Delivers an upstream body chunk by chunk, with an idle deadline and a real cancel.

    `done` fires with None at the end of the body, or fails with a GatewayError; cancelling it
    (or the idle deadline) closes the upstream connection.
    """

    def __init__(
        self,
        on_data: Callable[[bytes], None],
        clock: IReactorTime,
        idle_timeout: float | None,
        first_timeout: float | None = None,
    ) -> None:
        self._on_data = on_data
        self._clock = clock
        self._idle = idle_timeout
        self._timer: IDelayedCall | None = None
        self.done: defer.Deferred[None] = defer.Deferred(self._cancel)
        self._first_timeout = first_timeout
        self._paused = False

    def connectionMade(self) -> None:
        self._arm(self._first_timeout or self._idle)

    def _arm(self, seconds: float | None) -> None:
        if seconds is None:
            return
        if self._timer is not None and self._timer.active():
            self._timer.reset(seconds)
        else:
            self._timer = self._clock.callLater(seconds, self._expired, seconds)

    def _disarm(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _expired(self, seconds: float) -> None:
        self._timer = None
        self._abort(UpstreamTimeout(f"the provider sent nothing for {seconds:g}s"))

    def _abort(self, error: BaseException) -> None:
        if not self.done.called:
            self.done.errback(Failure(error))
        if self.transport is not None:
            self.transport.stopProducing()

    def _cancel(self, d: defer.Deferred[None]) -> None:
        self._disarm()
        if self.transport is not None:
            self.transport.stopProducing()

    # IPushProducer, registered with the client's request: a slow reader pauses the upstream
    # socket (and the idle deadline, which measures the upstream, not our client).

    def pauseProducing(self) -> None:
        if self.done.called or self._paused:
            return
        self._paused = True
        self._disarm()
        if self.transport is not None:
            self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        if self.done.called or not self._paused:
            return
        self._paused = False
        self._arm(self._idle)
        if self.transport is not None:
            self.transport.resumeProducing()

    def stopProducing(self) -> None:
        # The client connection is going away; the request's own cancellation (Klein cancels
        # the handler when the request's notifyFinish fails) closes the upstream right after.
        # Cancelling here, first, would make the handler fail before the request knows it was
        # aborted.
        pass

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        if self._idle is not None and not self._paused:
            self._arm(self._idle)
        try:
            self._on_data(data)
        except BaseException as e:  # a consumer error must not kill the reactor's callback
            self._disarm()
            self._abort(e)

    def connectionLost(self, reason: Failure = Failure(ResponseDone())) -> None:  # noqa: B008
        self._disarm()
        if self.done.called:
            return
        # isinstance, not Failure.check: check() computes the qualified names of the whole
        # exception MRO, once per upstream response (1.5 % of a proxied request's CPU).
        if isinstance(reason.value, ResponseDone | PotentialDataLoss):
            self.done.callback(None)
        else:
            self.done.errback(Failure(BodyInterrupted()))


class BodyInterrupted(Exception):
    """The upstream connection ended before the body was complete."""


async def read_body(
    response: IResponse,
    clock: IReactorTime,
    idle_timeout: float,
    limit: int = MAX_RESPONSE_BYTES,
) -> bytes:
    """Read a whole (non-streaming) body; cancellable, with an idle deadline and a size cap."""
    parts: list[bytes] = []
    size = [0]

    def collect(data: bytes) -> None:
        size[0] += len(data)
        if size[0] > limit:
            raise BadGateway(f"the provider's response exceeded {limit} bytes")
        parts.append(data)

    reader = BodyReader(collect, clock, idle_timeout)
    response.deliverBody(reader)
    try:
        await reader.done
    except BodyInterrupted:
        raise UpstreamUnavailable("the provider closed the connection mid-response") from None
    return b"".join(parts)
